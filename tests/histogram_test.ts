/**
 * Native buckets as client_golang defines them, and the protobuf exposition
 * that carries them: bucket keys on and around boundaries, schemas from
 * bucket factors, resolution halving under a cap, spans and deltas, and the
 * content negotiation a scrape goes through.
 */

import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { sizeDelimitedPeek } from "@bufbuild/protobuf/wire";
import { Counter, Gauge, Registry } from "../lib/prom_client.ts";
import { Histogram, nativeBucketKey, schemaForFactor } from "../lib/histogram.ts";
import { METRIC_FAMILY, renderRegistryProtobuf } from "../lib/exposition_proto.ts";
import { negotiateExposition } from "../lib/exposition_negotiation.ts";

Deno.test("histogram: a bucket factor picks the coarsest schema that is at least as fine", () => {
  assert.equal(schemaForFactor(1.1), 3, "client_golang's documented example: 1.1 → 1.09");
  assert.equal(schemaForFactor(2), 0);
  assert.equal(schemaForFactor(1.5), 1, "√2 = 1.414 ≤ 1.5 < 2");
  assert.equal(schemaForFactor(4), -1);
  assert.equal(schemaForFactor(65536), -4);
  assert.equal(schemaForFactor(1.0001), 8, "finer than 8 asked: 8, the finest there is");
  assert.throws(() => schemaForFactor(1), /not above 1/);
});

Deno.test("histogram: native bucket keys — a boundary belongs to the bucket it bounds, at every schema", () => {
  // Schema 0: bucket k is (2^(k-1), 2^k].
  assert.equal(nativeBucketKey(1, 0), 0);
  assert.equal(nativeBucketKey(0.5, 0), -1);
  assert.equal(nativeBucketKey(0.75, 0), 0);
  assert.equal(nativeBucketKey(2, 0), 1);
  assert.equal(nativeBucketKey(2.0000001, 0), 2);
  // Schema 3: 8 buckets per power of two.
  assert.equal(nativeBucketKey(1, 3), 0);
  assert.equal(nativeBucketKey(2, 3), 8);
  assert.equal(nativeBucketKey(2 ** (1 / 8), 3), 1);
  assert.equal(nativeBucketKey(1.0000001, 3), 1);
  assert.equal(nativeBucketKey(0.0001, 3), Math.ceil(8 * Math.log2(0.0001)));
  // Schema -1: bucket k is (4^(k-1), 4^k].
  assert.equal(nativeBucketKey(4, -1), 1);
  assert.equal(nativeBucketKey(5, -1), 2);
  assert.equal(nativeBucketKey(1, -1), 0);
  // Against the definition, on values spread over 20 octaves.
  for (const schema of [-2, 0, 1, 3, 5, 8]) {
    for (let i = 0; i < 500; i++) {
      const value = 2 ** (-14 + 20 * ((i * 0.6180339887) % 1));
      const key = nativeBucketKey(value, schema);
      const base = 2 ** (2 ** -schema);
      assert.ok(
        value > base ** (key - 1) * (1 - 1e-12) && value <= base ** key * (1 + 1e-12),
        `${value} at schema ${schema}: key ${key}`,
      );
    }
  }
});

Deno.test("histogram: past the bucket cap the schema drops and every observation is kept", () => {
  const histogram = new Histogram({
    name: "capped_seconds",
    help: "h",
    labelNames: ["host"],
    buckets: [0.001, 1],
    native: { bucketFactor: 1.1, maxBuckets: 20 },
  });
  for (let i = 0; i < 1_000; i++) histogram.observe({ host: "a" }, 2 ** (-20 + (i % 40) / 2));
  const [series] = [...histogram.series()];
  const native = series!.native!;
  assert.ok(native.schema < 3, `schema lowered: ${native.schema}`);
  assert.ok(native.positive.size <= 20, `${native.positive.size} buckets`);
  const total = [...native.positive.values()].reduce((sum, count) => sum + count, 0);
  assert.equal(total + native.zeroCount, 1_000);
  assert.equal(series!.count, 1_000);
  assert.equal(
    series!.classic[0]! + series!.classic[1]!,
    1_000 - [...Array(40).keys()].filter((i) => 2 ** (-20 + i / 2) > 1).length * 25,
  );
});

Deno.test("histogram: unknown labels and non-finite values are refused with the value named", () => {
  const histogram = new Histogram({
    name: "h_seconds",
    help: "h",
    labelNames: ["host"],
    buckets: [1],
  });
  assert.throws(() => histogram.observe({ hots: "a" }, 1), /"hots" is not one of host/);
  assert.throws(() => histogram.observe({ host: "a" }, NaN), /current value is NaN/);
  assert.throws(
    () => new Histogram({ name: "x", help: "h", labelNames: [], buckets: [1, 1] }),
    /not increasing/,
  );
});

/** The fields of a decoded MetricFamily this test reads (bufbuild's message shape). */
interface DecodedFamily {
  name: string;
  type: number;
  metric: Array<{
    label: Array<{ name: string; value: string }>;
    counter?: { value: number };
    histogram?: {
      sampleCount: bigint;
      schema: number;
      zeroCount: bigint;
      zeroThreshold: number;
      positiveSpan: Array<{ offset: number; length: number }>;
      positiveDelta: bigint[];
      bucket: Array<{ cumulativeCount: bigint; upperBound: number }>;
    };
  }>;
}

Deno.test("protobuf: families in order, counters and gauges by value, histograms with classic and native buckets", async () => {
  const registry = new Registry();
  const histogram = new Histogram({
    name: "network_latency_seconds",
    help: "Time of handshakes.",
    labelNames: ["host"],
    buckets: [0.0001, 0.001],
    native: { bucketFactor: 1.1, maxBuckets: 160 },
    registers: [registry],
  });
  new Counter({ name: "dials_total", help: "c", labelNames: ["reason"], registers: [registry] })
    .inc({ reason: "refused" }, 3);
  new Gauge({ name: "up_now", help: "g", registers: [registry] }).set(1);
  new Gauge({ name: "never_set", help: "no series", labelNames: ["a"], registers: [registry] });
  // Keys at schema 3: 0.0001 → -106, 0.00012 → -104 (one empty bucket between: one span),
  // 0.002 → -71 (a gap of 32: a new span), 0 → the zero bucket.
  for (const value of [0.0001, 0.0001, 0.00012, 0.002, 0]) {
    histogram.observe({ host: "a:1" }, value);
  }
  const bytes = await renderRegistryProtobuf(registry);
  for (let i = 0; i < 200; i++) histogram.observe({ host: `b:${i}` }, i / 1000);
  assert.deepEqual(
    await renderRegistryProtobuf(registry, { yieldAfterMs: 0 }),
    await renderRegistryProtobuf(registry),
    "turns given away between series (every 64) change nothing in what is written",
  );
  for (let i = 0; i < 200; i++) histogram.remove({ host: `b:${i}` });
  const families = [];
  let offset = 0;
  while (offset < bytes.length) {
    const { size, offset: headerLength } = sizeDelimitedPeek(bytes.subarray(offset));
    const start = offset + headerLength!;
    families.push(
      fromBinary(METRIC_FAMILY, bytes.subarray(start, start + size!)) as unknown as DecodedFamily,
    );
    offset = start + size!;
  }
  assert.deepEqual(families.map((family) => family.name), [
    "network_latency_seconds",
    "dials_total",
    "up_now",
  ], "a family without series is left out");
  assert.deepEqual(families.map((family) => family.type), [4, 0, 1]);
  assert.equal(families[1]!.metric[0]!.counter!.value, 3);
  assert.deepEqual(
    families[1]!.metric[0]!.label.map((
      pair: { name: string; value: string },
    ) => [pair.name, pair.value]),
    [["reason", "refused"]],
  );
  const h = families[0]!.metric[0]!.histogram!;
  assert.equal(h.sampleCount, 5n);
  assert.equal(h.schema, 3);
  assert.equal(h.zeroCount, 1n);
  assert.equal(h.zeroThreshold, 2 ** -128);
  assert.deepEqual(
    h.positiveSpan.map((span) => [span.offset, span.length]),
    [[-106, 3], [32, 1]],
  );
  assert.deepEqual(h.positiveDelta, [2n, -2n, 1n, 0n]);
  assert.deepEqual(
    h.bucket.map((
      b: { cumulativeCount: bigint; upperBound: number },
    ) => [b.cumulativeCount, b.upperBound]),
    [[3n, 0.0001], [4n, 0.001]],
  );
});

Deno.test("protobuf: a scrape gets protobuf only when its Accept header ranks the delimited MetricFamily first", () => {
  // Prometheus 2.42 with native histograms on, and 3.x's default with scrape_native_histograms.
  assert.equal(
    negotiateExposition(
      "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
    ),
    "protobuf",
  );
  // Prometheus without native histograms: OpenMetrics first, then text.
  assert.equal(
    negotiateExposition(
      "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    ),
    "text",
  );
  assert.equal(negotiateExposition(null), "text");
  assert.equal(negotiateExposition("*/*"), "text");
  assert.equal(
    negotiateExposition(
      "text/plain;q=0.9, application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
    ),
    "protobuf",
    "quality decides, not order",
  );
  assert.equal(
    negotiateExposition(
      "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text",
    ),
    "text",
    "the text encoding of protobuf is not served",
  );
  assert.equal(
    negotiateExposition(
      "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0",
    ),
    "text",
  );
  assert.equal(negotiateExposition(";;;,,=;q=x"), "text", "garbage is text, not an error");
});
