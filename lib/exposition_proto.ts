/**
 * A prom-client registry in the Prometheus protobuf exposition: what a
 * scrape asking for `application/vnd.google.protobuf;
 * proto=io.prometheus.client.MetricFamily; encoding=delimited` gets — each
 * family a `MetricFamily` message, prefixed by its length as a varint. It is
 * the only format that carries native histograms (Prometheus 2.40 and later
 * with native histograms on). The exporter's histograms (lib/histogram.ts)
 * carry their native buckets and their classic ones in the same message, so
 * a Prometheus that keeps classic buckets too (`scrape_classic_histograms`,
 * `always_scrape_classic_histograms`) finds them.
 *
 * Encoded with `@bufbuild/protobuf` from a descriptor built here in code:
 * the messages of `io/prometheus/client/metrics.proto` (prometheus/
 * client_model v0.6, Apache-2.0) with their field numbers and types, less
 * the fields the exporter never sets (exemplars, created timestamps,
 * summaries' quantiles are kept; float counts are not used).
 * @module
 */

import {
  create,
  createFileRegistry,
  type DescMessage,
  type MessageInitShape,
} from "@bufbuild/protobuf";
import { sizeDelimitedEncode } from "@bufbuild/protobuf/wire";
import {
  type DescriptorProtoSchema,
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";
import type * as client from "./prom_client.ts";
import { Histogram, type NativeBuckets } from "./histogram.ts";
import { concatBytes } from "./io.ts";
import { TurnTaker } from "./event_loop.ts";

const {
  STRING: TYPE_STRING,
  DOUBLE: TYPE_DOUBLE,
  UINT64: TYPE_UINT64,
  SINT32: TYPE_SINT32,
  UINT32: TYPE_UINT32,
  SINT64: TYPE_SINT64,
  INT64: TYPE_INT64,
  MESSAGE: TYPE_MESSAGE,
  ENUM: TYPE_ENUM,
} = FieldDescriptorProto_Type;
const OPTIONAL = FieldDescriptorProto_Label.OPTIONAL;
const REPEATED = FieldDescriptorProto_Label.REPEATED;

type FieldSpec = [
  name: string,
  number: number,
  type: FieldDescriptorProto_Type,
  repeated?: boolean,
  typeName?: string,
];

function message(
  name: string,
  fields: FieldSpec[],
): MessageInitShape<typeof DescriptorProtoSchema> {
  return {
    name,
    field: fields.map(([fieldName, number, type, repeated, typeName]) => ({
      name: fieldName,
      number,
      type,
      label: repeated ? REPEATED : OPTIONAL,
      ...(typeName ? { typeName: `.io.prometheus.client.${typeName}` } : {}),
    })),
  };
}

/** metrics.proto, as proto2 like the original. */
const METRICS_PROTO = create(FileDescriptorProtoSchema, {
  name: "io/prometheus/client/metrics.proto",
  package: "io.prometheus.client",
  syntax: "proto2",
  enumType: [{
    name: "MetricType",
    value: ["COUNTER", "GAUGE", "SUMMARY", "UNTYPED", "HISTOGRAM", "GAUGE_HISTOGRAM"].map(
      (name, number) => ({ name, number }),
    ),
  }],
  messageType: [
    message("LabelPair", [["name", 1, TYPE_STRING], ["value", 2, TYPE_STRING]]),
    message("Gauge", [["value", 1, TYPE_DOUBLE]]),
    message("Counter", [["value", 1, TYPE_DOUBLE]]),
    message("Quantile", [["quantile", 1, TYPE_DOUBLE], ["value", 2, TYPE_DOUBLE]]),
    message("Summary", [
      ["sample_count", 1, TYPE_UINT64],
      ["sample_sum", 2, TYPE_DOUBLE],
      ["quantile", 3, TYPE_MESSAGE, true, "Quantile"],
    ]),
    message("Untyped", [["value", 1, TYPE_DOUBLE]]),
    message("Histogram", [
      ["sample_count", 1, TYPE_UINT64],
      ["sample_sum", 2, TYPE_DOUBLE],
      ["bucket", 3, TYPE_MESSAGE, true, "Bucket"],
      ["schema", 5, TYPE_SINT32],
      ["zero_threshold", 6, TYPE_DOUBLE],
      ["zero_count", 7, TYPE_UINT64],
      ["negative_span", 9, TYPE_MESSAGE, true, "BucketSpan"],
      ["negative_delta", 10, TYPE_SINT64, true],
      ["positive_span", 12, TYPE_MESSAGE, true, "BucketSpan"],
      ["positive_delta", 13, TYPE_SINT64, true],
    ]),
    message("Bucket", [["cumulative_count", 1, TYPE_UINT64], ["upper_bound", 2, TYPE_DOUBLE]]),
    message("BucketSpan", [["offset", 1, TYPE_SINT32], ["length", 2, TYPE_UINT32]]),
    message("Metric", [
      ["label", 1, TYPE_MESSAGE, true, "LabelPair"],
      ["gauge", 2, TYPE_MESSAGE, false, "Gauge"],
      ["counter", 3, TYPE_MESSAGE, false, "Counter"],
      ["summary", 4, TYPE_MESSAGE, false, "Summary"],
      ["untyped", 5, TYPE_MESSAGE, false, "Untyped"],
      ["timestamp_ms", 6, TYPE_INT64],
      ["histogram", 7, TYPE_MESSAGE, false, "Histogram"],
    ]),
    message("MetricFamily", [
      ["name", 1, TYPE_STRING],
      ["help", 2, TYPE_STRING],
      ["type", 3, TYPE_ENUM, false, "MetricType"],
      ["metric", 4, TYPE_MESSAGE, true, "Metric"],
    ]),
  ],
});

const REGISTRY = createFileRegistry(METRICS_PROTO, () => undefined);
/** The `io.prometheus.client.MetricFamily` message. */
export const METRIC_FAMILY: DescMessage = REGISTRY.getMessage("io.prometheus.client.MetricFamily")!;

const METRIC_TYPE = { counter: 0, gauge: 1, summary: 2, untyped: 3, histogram: 4 } as const;

/** A MetricFamily as plain data, the shape `create()` takes. */
type FamilyInit = {
  name: string;
  help: string;
  type: number;
  metric: Record<string, unknown>[];
};

interface FamilyData {
  name: string;
  help: string;
  type: string;
  values?: Array<{ value: number; labels?: Record<string, string | number>; metricName?: string }>;
}

function labelPairs(labels: Readonly<Record<string, string | number>> | undefined) {
  const pairs: { name: string; value: string }[] = [];
  for (const name in labels) pairs.push({ name, value: `${labels[name]}` });
  return pairs;
}

/** Spans and deltas of one side of a native histogram, as client_golang writes them. */
function spansAndDeltas(buckets: ReadonlyMap<number, number>) {
  const keys = [...buckets.keys()].sort((a, b) => a - b);
  const spans: { offset: number; length: number }[] = [];
  const deltas: bigint[] = [];
  let previousKey = 0;
  let previousCount = 0;
  for (const key of keys) {
    const count = buckets.get(key)!;
    const gap = key - previousKey - 1;
    if (spans.length === 0) {
      spans.push({ offset: key, length: 0 });
    } else if (gap > 2) {
      spans.push({ offset: gap, length: 0 });
    } else {
      // A gap of one or two empty buckets costs less as zeros in the span than as a new span.
      for (let i = 0; i < gap; i++) {
        deltas.push(BigInt(-previousCount));
        previousCount = 0;
        spans[spans.length - 1]!.length++;
      }
    }
    spans[spans.length - 1]!.length++;
    deltas.push(BigInt(count - previousCount));
    previousCount = count;
    previousKey = key;
  }
  return { spans, deltas };
}

function nativeFields(native: NativeBuckets) {
  const positive = spansAndDeltas(native.positive);
  const negative = spansAndDeltas(native.negative);
  return {
    schema: native.schema,
    zeroThreshold: native.zeroThreshold,
    zeroCount: BigInt(native.zeroCount),
    positiveSpan: positive.spans,
    positiveDelta: positive.deltas,
    negativeSpan: negative.spans,
    negativeDelta: negative.deltas,
  };
}

async function histogramFamily(
  histogram: Histogram,
  turns: TurnTaker | undefined,
): Promise<FamilyInit> {
  const metric: Record<string, unknown>[] = [];
  // Each series is read whole between two turns, so its buckets and count agree.
  for (const series of histogram.series()) {
    await turns?.item();
    const bucket: { cumulativeCount: bigint; upperBound: number }[] = [];
    let cumulative = 0;
    for (let i = 0; i < histogram.classicBounds.length; i++) {
      cumulative += series.classic[i]!;
      bucket.push({ cumulativeCount: BigInt(cumulative), upperBound: histogram.classicBounds[i]! });
    }
    metric.push({
      label: labelPairs(series.labels),
      histogram: {
        sampleCount: BigInt(series.count),
        sampleSum: series.sum,
        bucket,
        ...(series.native ? nativeFields(series.native) : {}),
      },
    });
  }
  return { name: histogram.name, help: histogram.help, type: METRIC_TYPE.histogram, metric };
}

function scalarFamily(data: FamilyData): FamilyInit {
  const kind = data.type === "counter" || data.type === "gauge" ? data.type : "untyped";
  return {
    name: data.name,
    help: data.help,
    type: METRIC_TYPE[kind],
    metric: (data.values ?? []).map((sample) => ({
      label: labelPairs(sample.labels),
      [kind]: { value: sample.value },
    })),
  };
}

/** Options of {@link renderRegistryProtobuf}. */
export interface ProtobufRenderOptions {
  /**
   * Give the event loop a turn (lib/event_loop.ts) between families and
   * between a histogram's series once rendering has held it this long (ms).
   * Default: never.
   */
  readonly yieldAfterMs?: number;
}

/**
 * Every family of `registry` in the delimited protobuf exposition. Families
 * other than the exporter's histograms are read through prom-client's public
 * `get()`; a prom-client histogram or summary (the exporter has none) would
 * go out untyped, sample by sample.
 */
export async function renderRegistryProtobuf(
  registry: client.Registry,
  options: ProtobufRenderOptions = {},
): Promise<Uint8Array<ArrayBuffer>> {
  const turns = options.yieldAfterMs === undefined
    ? undefined
    : new TurnTaker(options.yieldAfterMs);
  const pieces: Uint8Array[] = [];
  // prom-client types the array's items as their data; they are the metrics themselves.
  for (const metric of registry.getMetricsAsArray() as readonly object[]) {
    await turns?.maybeYield();
    const init = metric instanceof Histogram
      ? await histogramFamily(metric, turns)
      : scalarFamily(await (metric as { get(): Promise<unknown> | unknown }).get() as FamilyData);
    if (init.metric.length === 0) continue;
    // Encoding one family is not divided: a family's message is one piece of work for the library.
    pieces.push(sizeDelimitedEncode(METRIC_FAMILY, create(METRIC_FAMILY, init)));
  }
  return concatBytes(pieces);
}
