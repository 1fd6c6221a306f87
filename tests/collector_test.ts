import { getLogger } from "@logtape/logtape";
import client from "prom-client";
import { Histogram } from "../lib/histogram.ts";
import { ProbeCollector, type ProbeOutcome, type ProbeTarget } from "../collectors/collector.ts";
import { DIAL_THREAD_ABOVE, NetworkCollector } from "../collectors/network.ts";
import { createExporterMetrics } from "../exporter/metrics.ts";
import { DEFAULT_BUCKETS } from "../collectors/pacing.ts";
import { assert } from "./helpers/assert.ts";
import { createFakeClock } from "./helpers/fake_clock.ts";
import { Exposition } from "./helpers/metrics.ts";

const pacing = { intervalMs: 1_000, timeoutMs: 500, concurrency: 10, buckets: DEFAULT_BUCKETS };

function networkCollector(outcomes: Map<string, ProbeOutcome>, clock = createFakeClock()) {
  const metrics = createExporterMetrics();
  const collector = new NetworkCollector(
    { ...pacing, targets: [{ hostname: "127.0.0.1", port: 9 }], clock: "wall" },
    { metrics, logger: getLogger(["test"]), clock, random: () => 0.5 },
    {
      connect: (options) => {
        const outcome = outcomes.get(`${options.hostname}:${options.port}`);
        if (outcome?.ok) {
          return Promise.resolve({ close() {} } as Deno.Conn);
        }
        return Promise.reject(Object.assign(new Error("refused"), { code: "ECONNREFUSED" }));
      },
    },
  );
  return { collector, metrics, clock };
}

Deno.test("collector: a new target's error series exist at 0 for every reason", async () => {
  const { metrics } = networkCollector(new Map());
  const exposition = new Exposition(await metrics.registry.metrics());
  for (const reason of ["timeout", "refused", "unreachable", "reset", "resolve", "other"]) {
    assert.equal(
      exposition.value("network_dial_error_total", {
        host: "127.0.0.1:9",
        target_node: "",
        reason,
      }),
      0,
    );
  }
  assert.equal(exposition.value("net_exporter_targets", { collector: "network" }), 1);
});

Deno.test("collector: a peer that leaves takes every series with it; one that comes starts at 0", async () => {
  const outcomes = new Map<string, ProbeOutcome>([["10.9.0.2:8000", { ok: true, seconds: 0 }]]);
  const { collector, metrics, clock } = networkCollector(outcomes);
  collector.setPeers([{ hostname: "10.9.0.2", port: 8000, node: "node-b" }, {
    hostname: "10.9.0.3",
    port: 8000,
    node: "node-c",
  }]);
  collector.start();
  await clock.tick(1_000);
  let exposition = new Exposition(await metrics.registry.metrics());
  assert.equal(exposition.histogram("network_latency_seconds", { host: "10.9.0.2:8000" }).count, 1);
  assert.equal(
    exposition.value("network_last_latency_seconds", { host: "10.9.0.2:8000" }),
    exposition.histogram("network_latency_seconds", { host: "10.9.0.2:8000" }).sum,
  );
  assert.equal(
    exposition.value("network_dial_error_total", { host: "10.9.0.3:8000", reason: "refused" }),
    1,
  );
  // A target that never succeeded has no last latency to show.
  assert.deepEqual(
    exposition.samples("network_last_latency_seconds", { host: "10.9.0.3:8000" }),
    [],
  );
  assert.equal(
    exposition.value("network_dial_error_total", { host: "127.0.0.1:9", reason: "refused" }),
    1,
  );

  collector.setPeers([{ hostname: "10.9.0.2", port: 8000, node: "node-b" }]);
  exposition = new Exposition(await metrics.registry.metrics());
  assert.deepEqual(exposition.samples("network_dial_error_total", { host: "10.9.0.3:8000" }), []);
  assert.equal(exposition.value("net_exporter_targets", { collector: "network" }), 2);

  collector.setPeers([{ hostname: "10.9.0.2", port: 8000, node: "node-b" }, {
    hostname: "10.9.0.3",
    port: 8000,
    node: "node-c",
  }]);
  exposition = new Exposition(await metrics.registry.metrics());
  assert.equal(
    exposition.value("network_dial_error_total", { host: "10.9.0.3:8000", reason: "refused" }),
    0,
  );
  collector.setPeers([]);
  exposition = new Exposition(await metrics.registry.metrics());
  assert.deepEqual(
    exposition.samples("network_latency_seconds_count", { host: "10.9.0.2:8000" }),
    [],
  );
  assert.deepEqual(
    exposition.samples("network_last_latency_seconds", { host: "10.9.0.2:8000" }),
    [],
  );
  assert.deepEqual(exposition.samples("network_dial_error_total", { target_node: "node-b" }), []);
  await collector.stop();
  // Static targets are kept whatever discovery says.
  assert.ok(collector.statuses().some((status) => status.labels.host === "127.0.0.1:9"));
});

Deno.test("collector: probe_success follows the last probe; the last latency is absent while a target is down", async () => {
  const outcomes = new Map<string, ProbeOutcome>();
  const { collector, metrics, clock } = networkCollector(outcomes);
  const target = { host: "127.0.0.1:9", target_node: "" };
  let exposition = new Exposition(await metrics.registry.metrics());
  assert.deepEqual(exposition.samples("network_probe_success", target), [], "absent until probed");
  collector.start();
  await clock.tick(1_000);
  exposition = new Exposition(await metrics.registry.metrics());
  assert.equal(exposition.value("network_probe_success", target), 0);
  assert.deepEqual(exposition.samples("network_last_latency_seconds", target), []);

  outcomes.set("127.0.0.1:9", { ok: true, seconds: 0 });
  await clock.tick(1_000);
  exposition = new Exposition(await metrics.registry.metrics());
  assert.equal(exposition.value("network_probe_success", target), 1);
  assert.equal(exposition.samples("network_last_latency_seconds", target).length, 1);

  // Down again: a "latency now" panel must not keep showing the healthy figure.
  outcomes.delete("127.0.0.1:9");
  await clock.tick(1_000);
  exposition = new Exposition(await metrics.registry.metrics());
  assert.equal(exposition.value("network_probe_success", target), 0);
  assert.deepEqual(exposition.samples("network_last_latency_seconds", target), []);
  assert.equal(exposition.histogram("network_latency_seconds", target).count, 1);
  await collector.stop();
});

Deno.test("collector: a result that lands after its target left is not recorded", async () => {
  const metrics = createExporterMetrics();
  const clock = createFakeClock();
  let finish: (outcome: ProbeOutcome) => void = () => {};
  const collector = new ProbeCollector(
    "test",
    {
      latency: new Histogram({
        name: "t_seconds",
        help: "h",
        labelNames: ["host"],
        buckets: [0.1, 1],
        registers: [metrics.registry],
      }),
      lastLatency: new client.Gauge({
        name: "t_last_seconds",
        help: "h",
        labelNames: ["host"],
        registers: [metrics.registry],
      }),
      success: new client.Gauge({
        name: "t_success",
        help: "h",
        labelNames: ["host"],
        registers: [metrics.registry],
      }),
      errors: new client.Counter({
        name: "t_errors_total",
        help: "h",
        labelNames: ["host", "reason"],
        registers: [metrics.registry],
      }),
      internalErrors: new client.Counter({
        name: "t_internal_total",
        help: "h",
        registers: [metrics.registry],
      }),
      reasons: ["timeout"],
      readings: {},
      counters: {},
      counterLabels: {},
      keptReadings: new Set(),
    },
    pacing,
    { metrics, logger: getLogger(["test"]), clock, random: () => 0.5 },
  );
  const target: ProbeTarget = {
    key: "a",
    title: "a",
    labels: { host: "a" },
    // Ignores the removal signal on purpose, like a probe that returns just as it is removed.
    probe: () => new Promise((resolve) => (finish = resolve)),
  };
  collector.setTargets([target]);
  collector.start();
  await clock.tick(500);
  collector.setTargets([]);
  finish({ ok: false, reason: "timeout", message: "late" });
  await clock.tick(10);
  const exposition = new Exposition(await metrics.registry.metrics());
  assert.deepEqual(exposition.samples("t_errors_total"), []);
  assert.deepEqual(exposition.samples("t_seconds"), []);
  await collector.stop();
});

Deno.test("collector: a probe that throws is an internal error, not a dial error", async () => {
  const metrics = createExporterMetrics();
  const clock = createFakeClock();
  const collector = new NetworkCollector(
    { ...pacing, targets: [{ hostname: "127.0.0.1", port: 9 }], clock: "wall" },
    { metrics, logger: getLogger(["test"]), clock, random: () => 0.5 },
    {
      connect: () => Promise.reject(new TypeError("bug")),
      now: () => {
        throw new Error("clock broke");
      },
    },
  );
  collector.start();
  await clock.tick(1_000);
  await collector.stop();
  const exposition = new Exposition(await metrics.registry.metrics());
  assert.equal(exposition.value("network_error_total"), 1);
  const dialErrors = exposition.samples("network_dial_error_total").map((sample) =>
    Number(sample.value)
  );
  assert.ok(dialErrors.every((value) => value === 0));
});

Deno.test("collector: above 100 targets handshakes are timed on the dialer thread, below on the main one", async () => {
  const endpoints = (count: number, node = "") =>
    Array.from(
      { length: count },
      (_, index) => ({ hostname: "127.0.0.1", port: 20_000 + index, node }),
    );
  const collector = (targets: number) =>
    new NetworkCollector(
      { ...pacing, targets: endpoints(targets), clock: "wall" },
      { metrics: createExporterMetrics(), logger: getLogger(["test"]), clock: createFakeClock() },
    );
  const small = collector(DIAL_THREAD_ABOVE);
  small.start();
  assert.equal(small.dialsOnThread, false);
  small.setPeers(endpoints(1, "node-b").map((peer) => ({ ...peer, port: 30_000 })));
  assert.equal(small.dialsOnThread, true, "discovered peers count too");
  await small.stop();
  const large = collector(DIAL_THREAD_ABOVE + 1);
  assert.equal(large.dialsOnThread, false, "nothing is started before probing starts");
  large.start();
  assert.equal(large.dialsOnThread, true);
  await large.stop();
  const stopped = collector(10);
  await stopped.stop();
  stopped.setPeers(endpoints(200, "node-c"));
  assert.equal(stopped.dialsOnThread, false, "no thread is started after stop");
});
