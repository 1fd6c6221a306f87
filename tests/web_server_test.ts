/**
 * The web layer's HTTP server under hostile clients: idle and slow
 * connections, more connections than it holds, more connections than the
 * process has descriptors, a SIGTERM in the middle of hundreds of requests,
 * and every framing trick that would make a body run as a request.
 */

import { HttpServer } from "../web/server.ts";
import { assert } from "./helpers/assert.ts";
import { runProgram, START_FLAGS, startExporter, waitFor } from "./helpers/exporter_process.ts";
import { requires } from "./helpers/requirements.ts";

const encoder = new TextEncoder();
const MAIN = new URL("../main.ts", import.meta.url).pathname;

function testServer(
  options: ConstructorParameters<typeof HttpServer>[2] = {},
  handler = (request: Request) =>
    Promise.resolve(new Response(`hello ${new URL(request.url).pathname}\n`)),
) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const server = new HttpServer(listener, handler, options);
  return Object.assign(server, {
    [Symbol.asyncDispose]: () => server.shutdown(),
  });
}

/** Writes `bytes` on a new connection, half-closes, and reads until the server closes. */
async function exchange(port: number, bytes: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reading = readUntilClosed(conn);
  try {
    await conn.write(Uint8Array.from(bytes, (c) => c.charCodeAt(0)));
    await conn.closeWrite();
  } catch { /* closed by the server first */ }
  return await reading;
}

/** The status codes in a stream of responses. */
function statuses(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((match) => Number(match[1]));
}

/** Reads until the peer closes (or `ms` pass); the text read. */
async function readUntilClosed(conn: Deno.Conn, ms = 10_000): Promise<string> {
  const timer = setTimeout(() => conn.close(), ms);
  const chunks: string[] = [];
  const buffer = new Uint8Array(65_536);
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const read = await conn.read(buffer);
      if (read === null) break;
      chunks.push(decoder.decode(buffer.subarray(0, read), { stream: true }));
    }
  } catch {
    /* closed by the timer */
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed already */ }
  }
  return chunks.join("");
}

async function request(port: number, path: string, headers = ""): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(
    encoder.encode(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${headers}\r\n`),
  );
  return await readUntilClosed(conn);
}

Deno.test("http server: a connection that sends nothing, or dribbles its head, is closed at the header deadline", async () => {
  await using server = testServer({ headerTimeoutMs: 300 });
  const silent = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  const dribbling = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  const dribble = (async () => {
    for (const byte of "GET / HTTP/1.1\r\nX-Slow: 1") {
      try {
        await dribbling.write(encoder.encode(byte));
      } catch {
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  const startedAt = performance.now();
  assert.equal(await readUntilClosed(silent), "", "closed without an answer");
  await readUntilClosed(dribbling);
  await dribble;
  // Closed by the server, long before the 10 s the reader would wait.
  assert.ok(performance.now() - startedAt < 5_000);
  assert.equal(server.connections, 0);
});

Deno.test("http server: keep-alive, pipelining, HEAD, gzip, and a kept-alive connection closed when idle", async () => {
  await using server = testServer({ idleTimeoutMs: 300 });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  await conn.write(encoder.encode(
    "GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\n",
  ));
  const text = await readUntilClosed(conn);
  assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(text, /hello \/a\n/);
  assert.equal(text.match(/HTTP\/1\.1 200/g)?.length, 2, "both pipelined requests answered");
  assert.doesNotMatch(text, /hello \/b/, "HEAD has no body");
  assert.equal(server.connections, 0, "closed once idle");

  const big = new HttpServer(
    Deno.listen({ hostname: "127.0.0.1", port: 0 }),
    () => Promise.resolve(new Response("x".repeat(10_000))),
  );
  try {
    const response = await fetch(`http://127.0.0.1:${big.addr.port}/`, {
      headers: { "accept-encoding": "gzip" },
    });
    assert.equal(response.headers.get("content-encoding"), "gzip");
    assert.equal((await response.text()).length, 10_000);
  } finally {
    await big.shutdown();
  }
});

Deno.test("http server: bad requests get one answer and a closed connection", async () => {
  await using server = testServer({ maxHeaderBytes: 1024 });
  assert.match(
    await request(server.addr.port, "/", `X-Big: ${"a".repeat(2000)}\r\n`),
    /^HTTP\/1\.1 431/,
  );
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  await conn.write(encoder.encode("NOT_A_REQUEST\r\n\r\n"));
  assert.match(await readUntilClosed(conn), /^HTTP\/1\.1 400/);
  assert.match(
    await request(server.addr.port, "/", "Content-Length: 100000\r\n"),
    /^HTTP\/1\.1 413/,
    "a body over the limit is refused, not read",
  );
});

Deno.test("http server: idle clients past the connection limit cannot lock out a scrape", async () => {
  await using server = testServer({ maxConnections: 8 });
  const idle = await Promise.all(
    Array.from(
      { length: 40 },
      () => Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }),
    ),
  );
  try {
    assert.match(await request(server.addr.port, "/metrics"), /hello \/metrics/);
    assert.ok(server.connections <= 8, `${server.connections} connections held`);
  } finally {
    for (const conn of idle) conn.close();
  }
});

const FD_LIMIT = "exporter: 300 idle connections against a 256-descriptor limit";
Deno.test({
  name: `${FD_LIMIT} leave it running and serving`,
  ignore: !requires(FD_LIMIT, { commands: ["prlimit"] }),
  async fn() {
    // Enough connections to run the process out of descriptors if it held them all.
    await using exporter = await startExporter(
      ["--no-collector.dns", "--network.targets=127.0.0.1:9", "--web.max-connections=512"],
      { command: ["prlimit", "--nofile=256:256", Deno.execPath(), "run", ...START_FLAGS, MAIN] },
    );
    const port = Number(new URL(exporter.url).port);
    const idle: Deno.Conn[] = [];
    try {
      for (let i = 0; i < 300; i++) {
        idle.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      }
      // The connections it could not accept wait in the queue; those it holds time out.
      await waitFor(
        async () => /network_dial_error_total/.test(await request(port, "/metrics")),
        30_000,
        "a scrape answered while 300 idle connections are open",
      );
      assert.equal(
        exporter.child.pid > 0 && (await Promise.race([
          exporter.child.status.then(() => "exited"),
          new Promise((resolve) => setTimeout(() => resolve("running"), 100)),
        ])),
        "running",
      );
      assert.ok(exporter.logs.some((line) => /Cannot accept a connection/.test(line)), "logged");
    } finally {
      for (const conn of idle) conn.close();
    }
    const { code } = await exporter.stop();
    assert.equal(code, 0);
  },
});

Deno.test("exporter: SIGTERM answers every request already sent", async () => {
  await using exporter = await startExporter([
    "--no-collector.dns",
    "--network.targets=127.0.0.1:9",
  ]);
  const port = Number(new URL(exporter.url).port);
  const conns = await Promise.all(
    Array.from({ length: 300 }, () => Deno.connect({ hostname: "127.0.0.1", port })),
  );
  await Promise.all(
    conns.map((conn) => conn.write(encoder.encode("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"))),
  );
  const answers = Promise.all(conns.map((conn) => readUntilClosed(conn, 20_000)));
  const stopped = exporter.stop();
  const texts = await answers;
  const answered = texts.filter((text) => /^HTTP\/1\.1 (200|503) /.test(text)).length;
  assert.equal(answered, 300, `${answered} of 300 answered`);
  assert.equal((await stopped).code, 0);
});

Deno.test("web server: a body is never parsed as a request, and ambiguous framing is refused", async () => {
  const seen: string[] = [];
  await using server = testServer({}, (request) => {
    seen.push(new URL(request.url).pathname);
    return Promise.resolve(new Response("ok\n"));
  });
  const port = server.addr.port;
  const hidden = "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n";
  // A body is read and dropped: the request inside it never reaches the handler.
  assert.deepEqual(
    statuses(
      await exchange(
        port,
        `GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: ${hidden.length}\r\n\r\n${hidden}`,
      ),
    ),
    [200],
  );
  assert.deepEqual(seen, ["/healthz"]);
  for (
    const framing of [
      "Content-Length: 40\r\nContent-Length: 40\r\n",
      "Content-Length: abc\r\n",
      "Content-Length: -1\r\n",
      "Content-Length: +0\r\n",
      "Content-Length: 34\r\nTransfer-Encoding: chunked\r\n",
    ]
  ) {
    seen.length = 0;
    const text = await exchange(
      port,
      `GET /healthz HTTP/1.1\r\nHost: x\r\n${framing}\r\n${hidden}`,
    );
    assert.deepEqual(statuses(text), [400], JSON.stringify(framing));
    assert.match(text, /connection: close/i);
    assert.deepEqual(seen, [], "nothing reached the handler");
  }
  // A chunked body is not read: one answer, then the connection closes.
  seen.length = 0;
  assert.deepEqual(
    statuses(
      await exchange(
        port,
        `POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${
          hidden.length.toString(16)
        }\r\n${hidden}\r\n0\r\n\r\n`,
      ),
    ),
    [200],
  );
  assert.deepEqual(seen, ["/healthz"]);
  // A body over the limit: 413, not read.
  assert.deepEqual(
    statuses(await exchange(port, `GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999\r\n\r\n`)),
    [413],
  );
});

Deno.test("web server: request lines and heads as RFC 9112 has them", async () => {
  const seen: string[] = [];
  await using server = testServer({}, (request) => {
    seen.push(`${request.method} ${new URL(request.url).pathname} ${request.headers.get("x-v")}`);
    return Promise.resolve(new Response("ok\n", { status: request.method === "PUT" ? 401 : 200 }));
  });
  const port = server.addr.port;
  const ok = async (bytes: string, expected: string) => {
    seen.length = 0;
    assert.deepEqual(statuses(await exchange(port, bytes)), [200], JSON.stringify(bytes));
    assert.deepEqual(seen, [expected]);
  };
  const refused = async (bytes: string, status = 400) => {
    seen.length = 0;
    assert.deepEqual(statuses(await exchange(port, bytes)), [status], JSON.stringify(bytes));
    assert.deepEqual(seen, []);
  };
  await ok("\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n", "GET /a null"); // empty lines first
  await ok("GET /a HTTP/1.1\nHost: x\nX-V: lf\n\n", "GET /a lf"); // bare LF
  await ok("GET /a HTTP/1.1\r\nHost: x\r\nX-V: caf\xe9\r\n\r\n", "GET /a caf\xe9"); // obs-text
  await ok("GET /a HTTP/1.0\r\nX-V: 1.0\r\n\r\n", "GET /a 1.0"); // HTTP/1.0 needs no Host
  await refused("GET /met\trics HTTP/1.1\r\nHost: x\r\n\r\n");
  await refused("GET /met\x00rics HTTP/1.1\r\nHost: x\r\n\r\n");
  await refused("GET /caf\xe9 HTTP/1.1\r\nHost: x\r\n\r\n");
  await refused("GET metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  await refused("GET /a HTTP/1.1\r\n\r\n"); // no Host
  await refused("GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n");
  await refused("GET /a HTTP/1.1\r\nHost: x\r\nX-V : 1\r\n\r\n");
  await refused("GET /a HTTP/1.1\r\nHost: x\r\nX-V: 1\r\n folded\r\n\r\n");
  await refused("GET /a HTTP/1.1\r\nHost: x\r\nX-V: a\rb\r\n\r\n");
  await refused("GET /a HTTP/2.0\r\nHost: x\r\n\r\n", 505);
  // Reason phrases name the status.
  const unauthorized = await exchange(port, "PUT /a HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.match(unauthorized, /^HTTP\/1\.1 401 Unauthorized\r\n/);
});

Deno.test("web server: thousands of header names are refused at once, before any Request is built", async () => {
  let handled = 0;
  await using server = testServer({}, () => {
    handled++;
    return Promise.resolve(new Response("ok\n"));
  });
  // As many distinct names as fit in the 16 KiB head limit: building a Request from them would
  // take Deno most of a second (its Headers are quadratic in distinct names).
  let names = "";
  let count = 0;
  while (names.length < 16 * 1024 - 100) names += `${(count++).toString(36)}:\r\n`;
  assert.ok(count > 2_500, `${count} names`);
  const text = await exchange(server.addr.port, `GET /healthz HTTP/1.1\r\nHost: x\r\n${names}\r\n`);
  assert.deepEqual(statuses(text), [431]);
  assert.equal(handled, 0);
  const hundred = Array.from({ length: 99 }, (_, i) => `x${i}: 1\r\n`).join("");
  assert.deepEqual(
    statuses(await exchange(server.addr.port, `GET / HTTP/1.1\r\nHost: x\r\n${hundred}\r\n`)),
    [200],
    "100 fields, Host among them, pass",
  );
});

Deno.test("web server: gzip only for a client that takes it, by q-value", async () => {
  await using server = testServer({}, () => Promise.resolve(new Response("x".repeat(5_000))));
  const encodingFor = async (acceptEncoding: string) => {
    const text = await exchange(
      server.addr.port,
      `GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: ${acceptEncoding}\r\nConnection: close\r\n\r\n`,
    );
    return /content-encoding: (\S+)/i.exec(text)?.[1] ?? "identity";
  };
  assert.equal(await encodingFor("gzip"), "gzip");
  assert.equal(await encodingFor("br, gzip;q=0.5"), "gzip");
  assert.equal(await encodingFor("gzip;q=0"), "identity");
  assert.equal(await encodingFor("gzip; q=0.000, *"), "identity");
  assert.equal(await encodingFor("*"), "gzip");
  assert.equal(await encodingFor("*;q=0"), "identity");
  assert.equal(await encodingFor("identity"), "identity");
});

Deno.test("web server: 300 connections dribbling their heads cannot hold a scrape out", async () => {
  await using server = testServer({ maxConnections: 64 });
  const port = server.addr.port;
  const dribblers = await Promise.all(
    Array.from({ length: 300 }, () => Deno.connect({ hostname: "127.0.0.1", port })),
  );
  let stop = false;
  const dribbling = Promise.all(dribblers.map(async (conn) => {
    for (const byte of "GET / HTTP/1.1\r\nX-Slow: 1") {
      if (stop) break;
      try {
        await conn.write(encoder.encode(byte));
      } catch {
        break; // displaced
      }
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  }));
  try {
    assert.match(await request(port, "/metrics"), /hello \/metrics/);
    assert.ok(server.connections <= 64, `${server.connections} connections held`);
  } finally {
    stop = true;
    for (const conn of dribblers) {
      try {
        conn.close();
      } catch { /* displaced */ }
    }
    await dribbling;
  }
});

Deno.test("web server: shutting down under steady keep-alive load leaves no request unanswered", async () => {
  await using server = testServer();
  const port = server.addr.port;
  let stopping = false;
  let unanswered = 0, answered = 0;
  const client = async () => {
    // A client that reuses its connection for as long as the server says keep-alive.
    while (!stopping || answered === 0) {
      let conn: Deno.Conn;
      try {
        conn = await Deno.connect({ hostname: "127.0.0.1", port });
      } catch {
        return; // the listener is closed: nothing was sent
      }
      const buffer = new Uint8Array(4_096);
      try {
        for (;;) {
          await conn.write(encoder.encode("GET /k HTTP/1.1\r\nHost: x\r\n\r\n"));
          let text = "";
          while (!/\r\n\r\nhello \/k\n$/.test(text)) {
            const read = await conn.read(buffer);
            if (read === null) throw new Error("closed without an answer");
            text += new TextDecoder().decode(buffer.subarray(0, read));
          }
          answered++;
          if (/connection: close/i.test(text)) break;
        }
      } catch {
        unanswered++;
      } finally {
        try {
          conn.close();
        } catch { /* closed */ }
      }
    }
  };
  const clients = Array.from({ length: 16 }, client);
  await new Promise((resolve) => setTimeout(resolve, 300));
  stopping = true;
  await server.shutdown();
  await Promise.all(clients);
  assert.ok(answered > 16, `${answered} answered`);
  assert.equal(
    unanswered,
    0,
    `${unanswered} requests sent on a kept-alive connection got no answer`,
  );
});

Deno.test("exporter: a listen address in use is one error line and exit 1, nothing left running", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const result = await runProgram([
      `--web.listen-address=127.0.0.1:${taken.addr.port}`,
      "--no-collector.dns",
      "--network.targets=127.0.0.1:9",
      "--k8s.discovery=off",
    ]);
    assert.equal(result.code, 1);
    const lines = result.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0]!, /Cannot listen on 127\.0\.0\.1:\d+: .*(in use|AddrInUse)/i);
  } finally {
    taken.close();
  }
});
