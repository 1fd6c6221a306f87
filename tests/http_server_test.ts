/**
 * The HTTP server under hostile clients: idle and slow connections, more
 * connections than it holds, more connections than the process has
 * descriptors, and a SIGTERM in the middle of hundreds of requests.
 */

import { HttpServer } from "../lib/http_server.ts";
import { assert } from "./helpers/assert.ts";
import { START_FLAGS, startExporter, waitFor } from "./helpers/exporter_process.ts";
import { requires } from "./helpers/requirements.ts";

const encoder = new TextEncoder();
const MAIN = new URL("../main.ts", import.meta.url).pathname;

function testServer(options: ConstructorParameters<typeof HttpServer>[2] = {}) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const server = new HttpServer(
    listener,
    (request) => Promise.resolve(new Response(`hello ${new URL(request.url).pathname}\n`)),
    options,
  );
  return Object.assign(server, {
    [Symbol.asyncDispose]: () => server.shutdown(),
  });
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
  assert.match(await request(server.addr.port, "/", "Content-Length: 5\r\n"), /^HTTP\/1\.1 413/);
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
