/**
 * The echo collector's parts on loopback: the datagram format, the answering
 * side against junk, forgeries, strangers and floods, and rounds that count
 * loss and the full-size datagram. Loss and MTU black holes on a real link
 * are the simulated cluster's (tests/e2e/echo_test.ts).
 */

import { getLogger } from "@logtape/logtape";
import { assert } from "./helpers/assert.ts";
import { Exposition } from "./helpers/metrics.ts";
import {
  decodeEcho,
  ECHO_HEADER_BYTES,
  ECHO_REPLY,
  ECHO_REQUEST,
  encodeEcho,
} from "../collectors/echo_wire.ts";
import { type EchoRequestResult, EchoServer } from "../collectors/echo_server.ts";
import { probeEcho } from "../collectors/probe_echo.ts";
import { connectedUdpExchanger } from "../collectors/udp_connected.ts";
import { EchoCollector, type EchoConfig } from "../collectors/echo.ts";
import { DEFAULT_BUCKETS } from "../collectors/pacing.ts";
import { createExporterMetrics } from "../exporter/metrics.ts";
import { openLibc } from "../lib/libc.ts";
import { parseCommandLine } from "../exporter/cli.ts";
import { closedUdpPort } from "./helpers/tcp.ts";

const NONCE = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);

/** A UDP socket on `hostname` that a `using` closes (once). */
function udpSocket(hostname: string): Deno.DatagramConn & Disposable {
  const socket = Deno.listenDatagram({ hostname, port: 0, transport: "udp" });
  return Object.assign(socket, {
    [Symbol.dispose]() {
      try {
        socket.close();
      } catch { /* closed already */ }
    },
  });
}

function counted() {
  const counts: Record<EchoRequestResult, number> = { answered: 0, refused: 0, rate_limited: 0 };
  return { counts, count: (result: EchoRequestResult) => counts[result]++ };
}

Deno.test("echo wire: a request decodes as written; anything else is not an echo datagram", () => {
  const request = encodeEcho(64, ECHO_REQUEST, NONCE, 7);
  assert.equal(request.length, 64);
  const header = decodeEcho(request)!;
  assert.equal(header.type, ECHO_REQUEST);
  assert.equal(header.sequence, 7);
  assert.deepEqual([...header.nonce], [...NONCE]);
  assert.equal(decodeEcho(request.subarray(0, ECHO_HEADER_BYTES - 1)), undefined, "too short");
  for (const [offset, value] of [[0, 0x41], [4, 2], [5, 9], [6, 1]] as const) {
    const bent = request.slice();
    bent[offset] = value;
    assert.equal(decodeEcho(bent), undefined, `byte ${offset} = ${value}`);
  }
  assert.equal(decodeEcho(encodeEcho(20, ECHO_REPLY, NONCE, 0))!.type, ECHO_REPLY);
  assert.throws(() => encodeEcho(19, ECHO_REQUEST, NONCE, 0), RangeError);
});

Deno.test("echo server: answers requests with themselves, refuses the rest, and never sends more than came", async () => {
  const { counts, count } = counted();
  const server = new EchoServer({
    hostname: "127.0.0.1",
    port: 0,
    ratePerSecond: 1_000,
    allowed: (address) => address === "127.0.0.1",
    count,
  });
  using client = udpSocket("127.0.0.1");
  using stranger = udpSocket("127.0.0.2");
  try {
    const to = { ...server.addr, transport: "udp" as const };
    const request = encodeEcho(300, ECHO_REQUEST, NONCE, 1);
    await client.send(request, to);
    const [reply] = await client.receive(new Uint8Array(2_000));
    assert.equal(reply.length, 300, "as long as the request");
    assert.equal(decodeEcho(reply)!.type, ECHO_REPLY);
    assert.deepEqual(reply.subarray(6), request.subarray(6), "everything else as it came");
    // Junk, a reply passed off as a request, and a request from an address that is not a peer.
    await client.send(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"), to);
    await client.send(encodeEcho(64, ECHO_REPLY, NONCE, 2), to);
    await stranger.send(encodeEcho(64, ECHO_REQUEST, NONCE, 3), to);
    // The last answer proves the three before it were judged.
    await client.send(encodeEcho(64, ECHO_REQUEST, NONCE, 4), to);
    const [last] = await client.receive(new Uint8Array(2_000));
    assert.equal(decodeEcho(last)!.sequence, 4, "nothing was answered in between");
    for (let i = 0; i < 50 && counts.refused < 3; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(counts, { answered: 2, refused: 3, rate_limited: 0 });
  } finally {
    await server.close();
  }
});

Deno.test("echo server: a flood of 10,000 junk, forged and stranger datagrams is counted, costs bounded memory, and gets no answer", async () => {
  const { counts, count } = counted();
  const server = new EchoServer({
    hostname: "127.0.0.1",
    port: 0,
    ratePerSecond: 2_000,
    allowed: (address) => address === "127.0.0.1",
    count,
  });
  using local = udpSocket("127.0.0.1");
  using stranger = udpSocket("127.0.0.3");
  const to = { ...server.addr, transport: "udp" as const };
  const junk = crypto.getRandomValues(new Uint8Array(1_400));
  const forged = encodeEcho(1_400, ECHO_REPLY, NONCE, 0);
  const strangers = encodeEcho(1_400, ECHO_REQUEST, NONCE, 0);
  // A stray reply would be read here; the server answers none of these.
  let replies = 0;
  let largest = 0;
  const listening = (async () => {
    const buffer = new Uint8Array(2_000);
    for (;;) {
      try {
        const [message] = await local.receive(buffer);
        replies++;
        largest = Math.max(largest, message.length);
      } catch {
        return;
      }
    }
  })();
  const heapBefore = Deno.memoryUsage().heapUsed;
  const rssBefore = Deno.memoryUsage().rss;
  try {
    // In bursts of 50 (70 KB, well inside a socket's receive buffer) with a turn between: what a
    // longer burst adds is datagrams the kernel drops before anyone sees them.
    for (let i = 0; i < 10_000; i++) {
      const kind = i % 4;
      if (kind === 3) await stranger.send(strangers, to);
      else await local.send(kind === 0 ? junk.subarray(0, 1 + (i % 1_400)) : forged, to);
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 0));
    }
    // Every datagram that arrived is judged and counted.
    for (let i = 0; i < 300 && counts.refused < 10_000; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(counts.refused >= 9_500, `counted ${JSON.stringify(counts)}`);
    assert.equal(counts.answered, 0);
    assert.equal(replies, 0, "no answer to any of them");
    assert.equal(largest, 0);
    assert.ok(
      Deno.memoryUsage().rss - rssBefore < 32 * 2 ** 20,
      `rss grew ${(Deno.memoryUsage().rss - rssBefore) / 2 ** 20} MiB`,
    );
    assert.ok(Deno.memoryUsage().heapUsed - heapBefore < 16 * 2 ** 20, "heap stays bounded");
  } finally {
    await server.close();
    local.close();
    await listening;
  }
});

Deno.test("echo server: past its rate, requests are dropped and counted as rate_limited", async () => {
  const { counts, count } = counted();
  let now = 0;
  const server = new EchoServer({
    hostname: "127.0.0.1",
    port: 0,
    ratePerSecond: 10,
    allowed: () => true,
    count,
    now: () => now,
  });
  using client = udpSocket("127.0.0.1");
  try {
    const to = { ...server.addr, transport: "udp" as const };
    for (let i = 0; i < 25; i++) await client.send(encodeEcho(64, ECHO_REQUEST, NONCE, i), to);
    for (let i = 0; i < 100 && counts.answered + counts.rate_limited < 25; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(counts, { answered: 10, refused: 0, rate_limited: 15 });
    now += 1_000; // a second later, the bucket is full again
    await client.send(encodeEcho(64, ECHO_REQUEST, NONCE, 99), to);
    for (let i = 0; i < 100 && counts.answered < 11; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(counts.answered, 11);
  } finally {
    await server.close();
  }
});

Deno.test("echo round: every datagram back on a clean path, the full-size one filling the route's MTU", async () => {
  const server = new EchoServer({
    hostname: "127.0.0.1",
    port: 0,
    ratePerSecond: 2_000,
    allowed: () => true,
    count: () => {},
  });
  const libc = openLibc();
  try {
    const target = { hostname: "127.0.0.1", port: server.addr.port };
    const viaLibc = await probeEcho(
      target,
      { count: 10, fullSize: 0, exchanger: connectedUdpExchanger(libc, { dontFragment: true }) },
      AbortSignal.timeout(2_000),
    );
    assert.ok(viaLibc.ok, JSON.stringify(viaLibc));
    assert.equal(viaLibc.smallSent, 10);
    assert.equal(viaLibc.smallLost, 0);
    assert.equal(viaLibc.rtts.length, 10);
    // Loopback's MTU is 65,536: more than one IP packet holds, so the largest UDP payload.
    assert.equal(viaLibc.fullSize, 65_507);
    assert.equal(viaLibc.fullLost, 0);
    // Over Deno's socket the path MTU is not known: --echo.full-size, or 1472.
    const viaDeno = await probeEcho(target, { count: 3, fullSize: 0 }, AbortSignal.timeout(2_000));
    assert.ok(viaDeno.ok && viaDeno.fullSize === 1_472, JSON.stringify(viaDeno));
    const sized = await probeEcho(
      target,
      { count: 3, fullSize: 9_000 },
      AbortSignal.timeout(2_000),
    );
    assert.ok(sized.ok && sized.fullSize === 9_000, JSON.stringify(sized));
  } finally {
    libc.close();
    await server.close();
  }
});

Deno.test("echo round: a closed port is refused at once; silence is a timeout with every datagram lost", async () => {
  const libc = openLibc();
  try {
    const port = closedUdpPort();
    const refused = await probeEcho(
      { hostname: "127.0.0.1", port },
      { count: 5, fullSize: 0, exchanger: connectedUdpExchanger(libc, { dontFragment: true }) },
      AbortSignal.timeout(5_000),
    );
    assert.ok(!refused.ok);
    assert.equal(refused.reason, "refused", refused.message);
    using silent = udpSocket("127.0.0.1");
    const timedOut = await probeEcho(
      { hostname: "127.0.0.1", port: (silent.addr as Deno.NetAddr).port },
      { count: 5, fullSize: 0, exchanger: connectedUdpExchanger(libc, { dontFragment: true }) },
      AbortSignal.timeout(500),
    );
    assert.ok(!timedOut.ok);
    assert.equal(timedOut.reason, "timeout");
    assert.equal(timedOut.smallSent, 5);
    assert.equal(timedOut.smallLost, 5);
    assert.equal(timedOut.fullLost, 1);
  } finally {
    libc.close();
  }
});

function echoConfig(targets: string[]): EchoConfig {
  return {
    targets: targets.map((target) => {
      const [hostname, port] = target.split(":");
      return { hostname: hostname!, port: Number(port) };
    }),
    listen: { hostname: "127.0.0.1", port: 0 },
    intervalMs: 60_000,
    timeoutMs: 1_000,
    concurrency: 4,
    buckets: DEFAULT_BUCKETS,
    count: 10,
    fullSize: 0,
    rateLimit: 2_000,
  };
}

Deno.test("echo collector: two exporters' collectors echo to each other; every series exists at 0 from the start and leaves with its target", async () => {
  const a = createExporterMetrics();
  const b = createExporterMetrics();
  const answering = new EchoCollector(echoConfig([]), { metrics: b, logger: getLogger(["test"]) });
  answering.start();
  const port = answering.listening!.port;
  const asking = new EchoCollector(echoConfig([`127.0.0.1:${port}`]), {
    metrics: a,
    logger: getLogger(["test"]),
  });
  try {
    const labels = { host: `127.0.0.1:${port}`, target_node: "" };
    let exposition = new Exposition(await a.registry.metrics());
    for (const size of ["small", "full"]) {
      assert.equal(exposition.value("echo_packets_sent_total", { ...labels, size }), 0);
      assert.equal(exposition.value("echo_packets_lost_total", { ...labels, size }), 0);
    }
    assert.equal(exposition.value("echo_full_size_bytes", labels), 0);
    assert.equal(exposition.value("echo_round_error_total", { ...labels, reason: "mtu" }), 0);

    await asking.warmUp(AbortSignal.timeout(5_000));
    const [status] = await asking.probeAll(AbortSignal.timeout(5_000));
    assert.equal(status!.state, "up", status!.message ?? "");
    assert.equal(status!.readings!.lossRatio, 0);
    exposition = new Exposition(await a.registry.metrics());
    assert.equal(exposition.value("echo_packets_sent_total", { ...labels, size: "small" }), 10);
    assert.equal(exposition.value("echo_packets_sent_total", { ...labels, size: "full" }), 1);
    assert.equal(exposition.value("echo_packets_lost_total", { ...labels, size: "small" }), 0);
    assert.equal(
      exposition.value("echo_rtt_seconds_count", labels),
      10,
      "each small echo observed",
    );
    assert.equal(exposition.value("echo_full_size_bytes", labels), 65_507);
    const served = new Exposition(await b.registry.metrics());
    assert.equal(served.value("echo_requests_total", { result: "answered" }), 11);
    assert.equal(served.value("echo_requests_total", { result: "refused" }), 0);

    asking.setTargets([]);
    exposition = new Exposition(await a.registry.metrics());
    for (const sample of exposition.all) {
      assert.ok(sample.labels.host === undefined, `${sample.name} left behind`);
    }
  } finally {
    await asking.stop();
    await answering.stop();
  }
});

Deno.test("echo collector: with discovery, only the peers it discovered (and static targets) are answered", async () => {
  const metrics = createExporterMetrics();
  const collector = new EchoCollector(echoConfig([]), {
    metrics,
    logger: getLogger(["test"]),
    peersFromDiscovery: true,
  });
  collector.start();
  using client = udpSocket("127.0.0.5");
  try {
    const to = { ...collector.listening!, transport: "udp" as const };
    await client.send(encodeEcho(64, ECHO_REQUEST, NONCE, 1), to);
    const refused = async () =>
      new Exposition(await metrics.registry.metrics()).value("echo_requests_total", {
        result: "refused",
      });
    for (let i = 0; i < 200 && await refused() < 1; i++) await new Promise((r) => setTimeout(r, 5));
    collector.setKnownAddresses(["127.0.0.5"]);
    await client.send(encodeEcho(64, ECHO_REQUEST, NONCE, 2), to);
    const [reply] = await client.receive(new Uint8Array(100));
    assert.equal(decodeEcho(reply)!.sequence, 2, "the first, from a stranger then, got nothing");
    const exposition = new Exposition(await metrics.registry.metrics());
    assert.equal(exposition.value("echo_requests_total", { result: "refused" }), 1);
    assert.equal(exposition.value("echo_requests_total", { result: "answered" }), 1);
  } finally {
    await collector.stop();
  }
});

Deno.test("echo flags: on by default, off with --no-collector.echo, checked like the others", async () => {
  const parse = async (argv: string[]) => {
    let err = "";
    const invocation = await parseCommandLine(argv, {
      output: { writeOut: () => {}, writeErr: (text) => (err += text) },
      env: () => undefined,
    });
    return { invocation, err };
  };
  const on = (await parse(["--echo.targets=10.0.0.5:8000"])).invocation;
  assert.ok(on.command === "serve");
  assert.ok(on.settings.collectors.some((collector) => collector.name === "echo"));
  const off = (await parse(["--no-collector.echo"])).invocation;
  assert.ok(off.command === "serve");
  assert.ok(!off.settings.collectors.some((collector) => collector.name === "echo"));
  const bad = await parse(["--echo.timeout=20s"]);
  assert.deepEqual(bad.invocation, { command: "exit", code: 2 });
  assert.match(bad.err, /--echo\.timeout=20s is not below --echo\.interval=15s/);
});
