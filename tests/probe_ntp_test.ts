import { getLogger } from "@logtape/logtape";
import { assert, assertNear } from "./helpers/assert.ts";
import { Exposition } from "./helpers/metrics.ts";
import { type NtpBehaviour, startNtpServer } from "./helpers/ntp_server.ts";
import { probeNtp } from "../collectors/probe_ntp.ts";
import { NTP_BUCKETS, NtpCollector, type NtpConfig } from "../collectors/ntp.ts";
import { createExporterMetrics } from "../exporter/metrics.ts";
import { parseCommandLine } from "../exporter/cli.ts";
import { openLibc } from "../lib/libc.ts";
import { connectedUdpExchanger } from "../collectors/udp_connected.ts";
import { procEntries } from "./helpers/proc.ts";
import { closedUdpPort } from "./helpers/tcp.ts";

const probe = (port: number, timeoutMs = 1_000) =>
  probeNtp({ hostname: "127.0.0.1", port }, {}, AbortSignal.timeout(timeoutMs));

Deno.test("NTP: a server 250 ms ahead over a 20 ms path reads as offset 250 ± 2 ms, delay 20-23 ms", async () => {
  await using server = startNtpServer({ offsetMs: 250, delayMs: 20 });
  const metrics = createExporterMetrics();
  const config = configureNtpFor(server.address);
  const collector = new NtpCollector(config, { metrics, logger: getLogger(["test"]) });
  await collector.warmUp(AbortSignal.timeout(5_000));
  // The figures are a median of five: one exchange read late by a busy machine is not the prober's error.
  const offsets: number[] = [];
  const delays: number[] = [];
  for (let i = 0; i < 5; i++) {
    const [status] = await collector.probeAll(AbortSignal.timeout(5_000));
    assert.equal(status!.state, "up", status!.message ?? "");
    const exposition = new Exposition(await metrics.registry.metrics());
    offsets.push(exposition.value("ntp_offset_seconds", { server: server.address }));
    delays.push(exposition.value("ntp_last_latency_seconds", { server: server.address }));
    assert.equal(exposition.value("ntp_stratum", { server: server.address }), 2);
    assert.equal(exposition.value("ntp_leap", { server: server.address }), 0);
    // Root delay 2 ms, dispersion 1 ms (16.16 fixed point).
    assertNear(
      exposition.value("ntp_root_distance_seconds", { server: server.address }),
      0.002,
      0.0001,
    );
  }
  const median = (values: number[]) => values.sort((a, b) => a - b)[2]!;
  assertNear(median(offsets), 0.250, 0.002, "offset");
  const delay = median(delays);
  assert.ok(delay >= 0.020 && delay <= 0.023, `delay ${delay}`);
  const exposition = new Exposition(await metrics.registry.metrics());
  assert.equal(exposition.histogram("ntp_latency_seconds", { server: server.address }).count, 5);
  for (
    const reason of ["timeout", "kiss_of_death", "unsynchronized", "invalid", "resolve", "other"]
  ) {
    assert.equal(exposition.value("ntp_sync_error_total", { server: server.address, reason }), 0);
  }
  await collector.stop();
});

Deno.test("NTP: a server behind reads as a negative offset; a clean path as a small delay", async () => {
  await using server = startNtpServer({ offsetMs: -1_500 });
  const result = await probe(server.port);
  assert(result.ok, JSON.stringify(result));
  assertNear(result.offsetSeconds, -1.5, 0.005, "offset");
  assert.ok(result.seconds >= 0 && result.seconds < 0.05, `delay ${result.seconds}`);
});

const failures: ReadonlyArray<[string, NtpBehaviour, string, RegExp]> = [
  ["kiss-o'-death", { kiss: "RATE" }, "kiss_of_death", /RATE/],
  ["stratum 16", { stratum: 16 }, "unsynchronized", /stratum 16/],
  ["leap indicator 3", { leap: 3, stratum: 3 }, "unsynchronized", /leap indicator 3/],
  ["wrong origin, then silence", { forge: "wrong-origin", silent: true }, "invalid", /origin/],
  [
    "a reply from another port",
    { forge: "other-port", silent: true },
    "invalid",
    /another address or port/,
  ],
  ["a reply in client mode", { forge: "client-mode", silent: true }, "invalid", /server mode/],
  ["a short datagram", { forge: "short", silent: true }, "invalid", /48 bytes/],
  ["a zero transmit timestamp", { zeroTransmit: true }, "invalid", /transmit/],
  ["a hold longer than the round trip", { claimsLongHold: true }, "invalid", /out of order/],
  ["silence", { silent: true }, "timeout", /./],
];

for (const [what, behaviour, reason, message] of failures) {
  Deno.test(`NTP: ${what} is ${reason}`, async () => {
    await using server = startNtpServer(behaviour);
    const result = await probe(server.port, 300);
    assert(!result.ok, `${what} must not be a success`);
    assert.equal(result.reason, reason, result.message);
    assert.match(result.message, message);
  });
}

Deno.test("NTP: a forgery followed by the real reply gives the real reply", async () => {
  for (const forge of ["wrong-origin", "other-port", "client-mode", "short"] as const) {
    await using server = startNtpServer({ forge, offsetMs: 40 });
    const result = await probe(server.port);
    assert(result.ok, `${forge}: ${JSON.stringify(result)}`);
    assertNear(result.offsetSeconds, 0.040, 0.005, `${forge} offset`);
  }
});

Deno.test("NTP: a name is resolved before the exchange; a name that does not resolve is resolve", async () => {
  await using server = startNtpServer({ offsetMs: 10 });
  const resolved = await probeNtp(
    { hostname: "time.test", port: server.port },
    { resolve: () => Promise.resolve("127.0.0.1") },
    AbortSignal.timeout(1_000),
  );
  assert(resolved.ok, JSON.stringify(resolved));
  const missing = await probeNtp(
    { hostname: "nowhere.test", port: server.port },
    { resolve: () => Promise.reject(new Deno.errors.NotFound("no such name")) },
    AbortSignal.timeout(1_000),
  );
  assert(!missing.ok);
  assert.equal(missing.reason, "resolve");
});

Deno.test("NTP collector: failures land under their reason; a removed server takes every series with it", async () => {
  await using server = startNtpServer({ kiss: "DENY" });
  const metrics = createExporterMetrics();
  const collector = new NtpCollector(configureNtpFor(server.address), {
    metrics,
    logger: getLogger(["test"]),
  });
  const [status] = await collector.probeAll(AbortSignal.timeout(5_000));
  assert.equal(status!.state, "down");
  assert.equal(status!.reason, "kiss_of_death");
  let exposition = new Exposition(await metrics.registry.metrics());
  const labels = { server: server.address };
  assert.equal(exposition.value("ntp_sync_error_total", { ...labels, reason: "kiss_of_death" }), 1);
  assert.equal(exposition.value("ntp_sync_error_total", { ...labels, reason: "timeout" }), 0);
  assert.equal(exposition.value("ntp_probe_success", labels), 0);
  assert.deepEqual(exposition.samples("ntp_offset_seconds", labels), [], "no offset while failing");
  assert.deepEqual(exposition.samples("ntp_stratum", labels), []);

  server.behaviour = { offsetMs: 5 };
  await collector.probeAll(AbortSignal.timeout(5_000));
  exposition = new Exposition(await metrics.registry.metrics());
  assert.equal(exposition.samples("ntp_offset_seconds", labels).length, 1);

  collector.setTargets([]);
  exposition = new Exposition(await metrics.registry.metrics());
  for (const sample of exposition.all) {
    assert.ok(sample.labels.server === undefined, `${sample.name} left behind`);
  }
  await collector.stop();
});

Deno.test("NTP: without --ntp.servers no NTP collector is built, so nothing is sent", async () => {
  const parse = async (argv: string[]) => {
    const invocation = await parseCommandLine(argv, {
      output: { writeOut: () => {}, writeErr: () => {} },
      env: () => undefined,
    });
    assert.ok(invocation.command === "check");
    return invocation.settings.collectors.map((collector) => collector.name);
  };
  assert.deepEqual(await parse(["check", "--k8s.discovery=off"]), ["dns", "network", "echo"]);
  assert.deepEqual(
    await parse(["check", "--k8s.discovery=off", "--ntp.servers=127.0.0.1:1234"]),
    ["dns", "network", "echo", "ntp"],
  );
  assert.deepEqual(
    await parse(["check", "--k8s.discovery=off", "--ntp.servers=127.0.0.1", "--no-collector.ntp"]),
    ["dns", "network", "echo"],
  );
  assert.deepEqual(NTP_BUCKETS, [
    0.001,
    0.002,
    0.004,
    0.008,
    0.016,
    0.032,
    0.064,
    0.128,
    0.256,
    0.512,
  ]);
});

function configureNtpFor(address: string): NtpConfig {
  const [hostname, port] = address.split(":");
  return {
    servers: [{ hostname: hostname!, port: Number(port) }],
    intervalMs: 60_000,
    timeoutMs: 2_000,
    concurrency: 8,
    buckets: NTP_BUCKETS,
  };
}

const openDescriptors = () => procEntries("fd");

Deno.test("NTP over a socket connected through libc: a closed port is refused at once, and the rest reads as over Deno's socket", async () => {
  const libc = openLibc();
  const exchanger = connectedUdpExchanger(libc);
  const over = (hostname: string, port: number, timeoutMs: number) =>
    probeNtp({ hostname, port }, { exchanger }, AbortSignal.timeout(timeoutMs));
  try {
    const before = openDescriptors();
    // A deadline of 5 s: "refused" can only come from the ICMP port unreachable, long before it.
    for (const hostname of ["127.0.0.1", "::1"]) {
      const refused = await over(hostname, closedUdpPort(hostname), 5_000);
      assert(!refused.ok);
      assert.equal(refused.reason, "refused", refused.message);
      assert.match(refused.message, /ECONNREFUSED/);
    }
    {
      await using server = startNtpServer({ offsetMs: 60 });
      const result = await over("127.0.0.1", server.port, 1_000);
      assert(result.ok, JSON.stringify(result));
      assertNear(result.offsetSeconds, 0.060, 0.005, "offset");
    }
    for (const forge of ["wrong-origin", "client-mode", "short"] as const) {
      await using server = startNtpServer({ forge, silent: true });
      const result = await over("127.0.0.1", server.port, 300);
      assert(!result.ok);
      assert.equal(result.reason, "invalid", `${forge}: ${result.message}`);
    }
    // A datagram from another port never reaches a connected socket: it is silence.
    {
      await using server = startNtpServer({ forge: "other-port", silent: true });
      const result = await over("127.0.0.1", server.port, 300);
      assert(!result.ok);
      assert.equal(result.reason, "timeout", result.message);
    }
    // Cancelled mid-exchange (shutdown): rethrown, not counted, and nothing left open.
    {
      await using server = startNtpServer({ silent: true });
      const controller = new AbortController();
      const pending = probeNtp(
        { hostname: "127.0.0.1", port: server.port },
        { exchanger },
        controller.signal,
      );
      setTimeout(() => controller.abort(new DOMException("shutdown", "AbortError")), 50);
      await assert.rejects(() => pending);
    }
    assert.ok(openDescriptors() <= before, "every socket and eventfd closed");
  } finally {
    libc.close();
  }
});

Deno.test("NTP collector: with libc, a closed server port is refused, not a timeout", async () => {
  const metrics = createExporterMetrics();
  const server = `127.0.0.1:${closedUdpPort("127.0.0.1")}`;
  const collector = new NtpCollector(
    { ...configureNtpFor(server), timeoutMs: 5_000 },
    { metrics, logger: getLogger(["test"]) },
  );
  try {
    await collector.warmUp(AbortSignal.timeout(5_000));
    const [status] = await collector.probeAll(AbortSignal.timeout(10_000));
    assert.equal(status!.state, "down");
    assert.equal(status!.reason, "refused", status!.message ?? "");
    const exposition = new Exposition(await metrics.registry.metrics());
    assert.equal(exposition.value("ntp_sync_error_total", { server, reason: "refused" }), 1);
  } finally {
    await collector.stop();
  }
});
