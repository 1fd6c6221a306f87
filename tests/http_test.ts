import { Counter, Gauge, Histogram, Registry } from "../lib/prom_client.ts";
import { renderRegistry } from "../lib/exposition.ts";
import { Histogram as ExporterHistogram } from "../lib/histogram.ts";
import { measureRenders } from "./bench/render.ts";
import { getLogger } from "@logtape/logtape";
import { NetworkCollector } from "../collectors/network.ts";
import { createHandler } from "../exporter/http.ts";
import { createExporterMetrics } from "../exporter/metrics.ts";
import { DEFAULT_BUCKETS } from "../collectors/pacing.ts";
import { assert } from "./helpers/assert.ts";
import { createFakeClock } from "./helpers/fake_clock.ts";
import { Exposition } from "./helpers/metrics.ts";

function setUp() {
  const clock = createFakeClock();
  const metrics = createExporterMetrics();
  let dials = 0;
  const collector = new NetworkCollector(
    {
      clock: "wall",
      intervalMs: 1_000,
      timeoutMs: 500,
      concurrency: 4,
      buckets: DEFAULT_BUCKETS,
      targets: [{ hostname: "127.0.0.1", port: 8000 }],
    },
    { metrics, logger: getLogger(["test"]), clock, random: () => 0.5 },
    {
      connect: () => {
        dials++;
        return Promise.resolve({ close() {} } as Deno.Conn);
      },
    },
  );
  let ready = false;
  const handler = createHandler({
    registry: metrics.registry,
    telemetryPath: "/metrics",
    alive: () => collector.alive,
    ready: () => ready && collector.ready,
    status: () => ({ flags: [["dns.hosts", "<script>"]], targets: collector.statuses() }),
  });
  return {
    clock,
    collector,
    handler,
    dials: () => dials,
    registry: metrics.registry,
    setReady: (value: boolean) => (ready = value),
  };
}

const get = (path: string, headers: Record<string, string> = {}) =>
  new Request(`http://exporter${path}`, { headers });

Deno.test("http: 50 scrapes change nothing about how often targets are probed", async () => {
  const { clock, collector, handler, dials, registry } = setUp();
  collector.start();
  await clock.tick(1_000);
  assert.equal(dials(), 1);
  for (let i = 0; i < 50; i++) {
    const response = await handler(get("/metrics"));
    assert.equal(response.status, 200);
    await response.text();
  }
  assert.equal(dials(), 1);
  await clock.tick(1_000);
  assert.equal(dials(), 2);
  const response = await handler(get("/metrics"));
  assert.match(response.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
  const body = await response.text();
  const exposition = new Exposition(body);
  assert.equal(
    exposition.histogram("network_latency_seconds", { host: "127.0.0.1:8000" }).count,
    2,
  );
  // Rendered family by family, yielding between them: the same bytes as prom-client's own.
  const steady = (text: string) => text.replace(/^process_\w+ .*$/gm, ""); // read anew each time
  assert.equal(steady(body), steady(await registry.metrics()));
  await collector.stop();
});

Deno.test("http: readiness follows the first round and the ready callback; health follows the scheduler", async () => {
  const { clock, collector, handler, setReady } = setUp();
  collector.start();
  assert.equal((await handler(get("/readyz"))).status, 503);
  await clock.tick(1_000);
  setReady(true);
  const ready = await handler(get("/readyz"));
  assert.equal(ready.status, 200);
  assert.equal(await ready.text(), "ready\n");
  assert.equal((await handler(get("/healthz"))).status, 200);
  setReady(false); // shutting down
  assert.equal((await handler(get("/readyz"))).status, 503);
  await collector.stop();
  assert.equal((await handler(get("/healthz"))).status, 503);
});

Deno.test("http: status page as HTML (escaped) and as JSON", async () => {
  const { clock, collector, handler } = setUp();
  collector.start();
  await clock.tick(1_000);
  const html = await (await handler(get("/"))).text();
  assert.match(
    html,
    /<td>127\.0\.0\.1:8000<\/td><td class="state">up<\/td><td>\d+s ago<\/td><td class="num">\d+\.\d{3} ms<\/td>/,
  );
  // The hostile flag value shows as text; the only script is the page's own refresher.
  assert.ok(html.includes("&lt;script&gt;"));
  assert.equal(html.split("<script>").length, 2);
  assert.match(html, /<svg class="spark"/, "a sparkline of the last probes");
  assert.match(html, /<span class="up">1 up<\/span>/);
  const json = await (await handler(get("/", { accept: "application/json" }))).json();
  assert.equal(json.targets[0].state, "up");
  assert.equal(typeof json.targets[0].seconds, "number");
  assert.equal(json.targets[0].history.length, 1);
  assert.equal(typeof json.targets[0].since, "number");
  await collector.stop();
});

Deno.test("http: unknown paths are 404, other methods 405", async () => {
  const { handler } = setUp();
  assert.equal((await handler(get("/nope"))).status, 404);
  const post = await handler(new Request("http://exporter/metrics", { method: "POST" }));
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET, HEAD");
});

Deno.test("http: the exposition is prom-client's own bytes, escapes, odd values and every metric type included", async () => {
  const registry = new Registry();
  const registers = [registry];
  // The exporter's own histogram (classic and native buckets) is read from its series.
  const histogram = new ExporterHistogram({
    native: { bucketFactor: 1.1, maxBuckets: 160 },
    name: "odd_seconds",
    help: 'Help with a \\ backslash,\na newline and "quotes".',
    labelNames: ["host", "note"],
    buckets: [0.001, 0.5, 2],
    registers,
  });
  const gauge = new Gauge({ name: "odd_gauge", help: "g", labelNames: ["a", "b"], registers });
  const counter = new Counter({ name: "odd_total", help: "c", labelNames: ["reason"], registers });
  new Gauge({
    name: "odd_collected",
    help: "set when read",
    registers,
    collect() {
      this.set(42);
    },
  });
  new Counter({ name: "odd_unlabelled_total", help: "none yet", registers });
  // prom-client's own histograms go through their public get(): unlabelled, filled when read.
  // (Exemplars need an OpenMetrics registry, which prom-client itself writes.)
  const unlabelled = new Histogram({ name: "odd_plain", help: "h", buckets: [1], registers });
  unlabelled.observe(0.5);
  unlabelled.observe(1e6);
  new Histogram({
    name: "odd_collected_seconds",
    help: "observed when read",
    labelNames: ["read"],
    buckets: [0.1, 1],
    registers,
    collect() {
      this.reset();
      this.observe({ read: "yes" }, 0.05);
    },
  });
  const emptied = new ExporterHistogram({
    name: "odd_emptied_seconds",
    help: "reset",
    labelNames: ["host"],
    buckets: [0.5],
    registers,
  });
  emptied.observe({ host: "gone" }, 1);
  emptied.reset();
  emptied.observe({ host: "back" }, 0.25);
  histogram.observe({ host: "[fd00::1]:8000", note: 'quote " and \\ and\nnewline' }, 0.3);
  histogram.observe({ host: "10.0.0.1:8000", note: "ünïcödé ✓" }, 3);
  histogram.observe({ host: "10.0.0.1:8000", note: "" }, 0.0001);
  gauge.set({ a: "1", b: "x" }, NaN);
  gauge.set({ a: "2", b: "y" }, Infinity);
  gauge.set({ a: "3", b: "z" }, -Infinity);
  gauge.set({ b: "only b" }, 1e-7);
  gauge.set({ a: "4", b: "w" }, -0.5);
  counter.inc({ reason: "timeout" }, 2 ** 53);
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  assert.equal(decode(await renderRegistry(registry)), await registry.metrics());
  assert.equal(
    decode(await renderRegistry(registry, { yieldAfterMs: 0 })),
    await registry.metrics(),
  );
  // Many series: the text is handed over in pieces and the buffer grows past its first size.
  for (let i = 0; i < 3_000; i++) gauge.set({ a: String(i), b: "ü".repeat(i % 7) }, i);
  for (let i = 0; i < 1_000; i++) {
    histogram.observe({ host: `10.0.${i}.1:8000`, note: "" }, i / 500);
  }
  histogram.remove({ host: "10.0.7.1:8000", note: "" });
  assert.equal(decode(await renderRegistry(registry)), await registry.metrics());
  // Turns given away between a histogram's series (every 64) change nothing in what is written.
  assert.equal(
    decode(await renderRegistry(registry, { yieldAfterMs: 0 })),
    await registry.metrics(),
  );
  // Default labels are never set on the exporter's registry (the renderer does not add them).
  // A histogram whose series are not kept as prom-client's Histogram keeps them: prom-client
  // writes the registry.
  const foreign = new Registry();
  foreign.registerMetric(
    {
      name: "foreign_seconds",
      help: "h",
      type: "histogram",
      get: () => ({
        name: "foreign_seconds",
        help: "h",
        type: "histogram",
        values: [
          {
            labels: { le: 1 },
            sharedLabels: { a: "x" },
            value: 2,
            metricName: "foreign_seconds_bucket",
          },
          { labels: {}, sharedLabels: { a: "x" }, value: 2, metricName: "foreign_seconds_count" },
        ],
      }),
    } as unknown as Parameters<Registry["registerMetric"]>[0],
  );
  new Gauge({ name: "foreign_gauge", help: "g", registers: [foreign] }).set(1);
  assert.equal(decode(await renderRegistry(foreign)), await foreign.metrics(), "foreign histogram");
});

Deno.test("http: the render bench compares the two renderers on the same registry", async () => {
  const [row] = await measureRenders([20]);
  assert.equal(row!.targets, 20);
  assert.ok(row!.bytes > 20 * 1_000, `about 2 KB per target: ${row!.bytes}`);
  for (const ms of [row!.promClientMedianMs, row!.expositionMedianMs]) assert.ok(ms > 0);
});
