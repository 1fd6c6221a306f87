/**
 * A histogram with classic buckets and, beside them, Prometheus native
 * (sparse, exponential) buckets — what prom-client lacks (its pull request
 * for native histograms is open, not merged). It registers in a prom-client
 * `Registry` like any metric and answers `get()` the way prom-client's own
 * histogram does, so `registry.metrics()` writes the same text; the
 * protobuf exposition (lib/exposition_proto.ts) reads its native buckets
 * through {@link Histogram.series}.
 *
 * Native buckets follow client_golang's definitions (prometheus/histogram.go,
 * Apache-2.0), copied in behaviour: a bucket factor picks the largest schema
 * whose growth factor 2^(2^-schema) does not exceed it; bucket `k` holds
 * (base^(k-1), base^k]; an observation's key comes from `frexp`, so a value
 * on a boundary lands in the bucket it bounds; values within the zero
 * threshold count in the zero bucket; past a cap on populated buckets the
 * schema is lowered by one (each pair of buckets merged) until it fits.
 * @module
 */

import type * as client from "./prom_client.ts";

/** Native buckets' settings. */
export interface NativeHistogramOptions {
  /**
   * Growth factor of one bucket over the previous one, as client_golang's
   * `NativeHistogramBucketFactor`: 1.1 → schema 3 (factor 1.09). 0: no native buckets.
   */
  readonly bucketFactor: number;
  /** Populated buckets a series may hold before its schema is lowered (0: no cap). */
  readonly maxBuckets: number;
  /** Observations with an absolute value at most this count in the zero bucket. */
  readonly zeroThreshold?: number;
}

/** client_golang's `DefNativeHistogramZeroThreshold`: 2^-128. */
export const DEFAULT_ZERO_THRESHOLD = 2 ** -128;
/** The schemas Prometheus reads: -4 (factor 65536) to 8 (factor 1.0027). */
const MIN_SCHEMA = -4;
const MAX_SCHEMA = 8;

/**
 * The schema a bucket factor asks for: the coarsest whose factor
 * 2^(2^-schema) is at most `bucketFactor`, within -4…8 (1.1 → 3, whose
 * factor is 1.09). Throws for a factor of 1 or less.
 */
export function schemaForFactor(bucketFactor: number): number {
  if (!(bucketFactor > 1)) {
    throw new RangeError(
      `Cannot pick a native histogram schema: current bucket factor is ${bucketFactor}, not above 1`,
    );
  }
  for (let schema = MIN_SCHEMA; schema < MAX_SCHEMA; schema++) {
    if (2 ** (2 ** -schema) <= bucketFactor) return schema;
  }
  return MAX_SCHEMA;
}

/** `v = frac × 2^exp` with frac in [0.5, 1), as C's and Go's `frexp` (v finite and > 0). */
function frexp(value: number): [number, number] {
  let exp = Math.floor(Math.log2(value)) + 1;
  let frac = value * 2 ** -exp;
  // Math.log2 may be off by one ulp near powers of two: settle frac into [0.5, 1).
  while (frac < 0.5) {
    frac *= 2;
    exp--;
  }
  while (frac >= 1) {
    frac /= 2;
    exp++;
  }
  return [frac, exp];
}

/** Per positive schema, the lower bounds of its buckets within one power of two: 2^(i/2^s) / 2. */
const BOUNDS_BY_SCHEMA = new Map<number, Float64Array>();

function boundsOf(schema: number): Float64Array {
  let bounds = BOUNDS_BY_SCHEMA.get(schema);
  if (!bounds) {
    const per = 2 ** schema;
    bounds = Float64Array.from({ length: per }, (_, i) => 2 ** (i / per) / 2);
    BOUNDS_BY_SCHEMA.set(schema, bounds);
  }
  return bounds;
}

/** The key of the native bucket holding `value` (> 0) at `schema`. */
export function nativeBucketKey(value: number, schema: number): number {
  const [frac, exp] = frexp(value);
  if (schema > 0) {
    const bounds = boundsOf(schema);
    // The first bound at or above frac (bounds are few: at most 256, searched in halves).
    let low = 0;
    let high = bounds.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (bounds[middle]! < frac) low = middle + 1;
      else high = middle;
    }
    return low + (exp - 1) * bounds.length;
  }
  const key = frac === 0.5 ? exp - 1 : exp;
  const shift = -schema;
  return Math.floor((key + (1 << shift) - 1) / (1 << shift));
}

/** One labelled series of a {@link Histogram}. */
export interface HistogramSeries {
  /** Label values by name, in the histogram's label order. */
  readonly labels: Readonly<Record<string, string>>;
  /** Observations per classic bucket (not cumulative), in the order of {@link Histogram.classicBounds}. */
  readonly classic: Float64Array;
  readonly count: number;
  readonly sum: number;
  /** Native buckets; undefined when the histogram has none. */
  readonly native?: NativeBuckets;
}

/** A series' native buckets. */
export interface NativeBuckets {
  readonly schema: number;
  readonly zeroThreshold: number;
  readonly zeroCount: number;
  /** Observations by bucket key, for positive and negative values. */
  readonly positive: ReadonlyMap<number, number>;
  readonly negative: ReadonlyMap<number, number>;
}

interface MutableSeries {
  labels: Record<string, string>;
  classic: Float64Array;
  count: number;
  sum: number;
  native?: {
    schema: number;
    zeroThreshold: number;
    zeroCount: number;
    positive: Map<number, number>;
    negative: Map<number, number>;
  };
}

/** What prom-client's registry reads of a metric's `get()`. */
interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  metricName: string;
}

/** Options of a {@link Histogram}. */
export interface HistogramOptions {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  /** Classic buckets' upper bounds, increasing; +Inf is implied. */
  readonly buckets: readonly number[];
  /** Native buckets beside the classic ones; none when absent or its factor is 0. */
  readonly native?: NativeHistogramOptions;
  readonly registers?: readonly client.Registry[];
}

/** A histogram with classic and native buckets, registered in prom-client registries. */
export class Histogram {
  readonly name: string;
  readonly help: string;
  readonly type = "histogram";
  readonly labelNames: readonly string[];
  /** Upper bounds of the classic buckets, increasing (+Inf implied). */
  readonly classicBounds: readonly number[];
  /** The native schema new series start at; undefined without native buckets. */
  readonly nativeSchema: number | undefined;
  /** prom-client's registry reads this (how series merge across cluster workers). */
  readonly aggregator = "sum";
  readonly #maxBuckets: number;
  readonly #zeroThreshold: number;
  readonly #series = new Map<string, MutableSeries>();

  constructor(options: HistogramOptions) {
    this.name = options.name;
    this.help = options.help;
    this.labelNames = [...options.labelNames];
    const bounds = [...options.buckets];
    for (let i = 1; i < bounds.length; i++) {
      if (!(bounds[i]! > bounds[i - 1]!)) {
        throw new RangeError(
          `Cannot make histogram ${options.name}: current bucket bounds are not increasing at ${
            bounds[i]
          }`,
        );
      }
    }
    this.classicBounds = bounds;
    const factor = options.native?.bucketFactor ?? 0;
    this.nativeSchema = factor === 0 ? undefined : schemaForFactor(factor);
    this.#maxBuckets = options.native?.maxBuckets ?? 0;
    this.#zeroThreshold = options.native?.zeroThreshold ?? DEFAULT_ZERO_THRESHOLD;
    for (const registry of options.registers ?? []) {
      registry.registerMetric(this as unknown as client.Histogram<string>);
    }
  }

  /** Counts `value` in the series of `labels` (every label of the histogram, no other). */
  observe(labels: Readonly<Record<string, string | number>>, value: number): void {
    if (!Number.isFinite(value)) {
      throw new RangeError(
        `Cannot observe ${this.name}: current value is ${value}, not a finite number`,
      );
    }
    const series = this.#seriesOf(labels);
    series.count++;
    series.sum += value;
    const bounds = this.classicBounds;
    let index = 0;
    while (index < bounds.length && value > bounds[index]!) index++;
    if (index < bounds.length) series.classic[index]!++;
    const native = series.native;
    if (!native) return;
    if (Math.abs(value) <= native.zeroThreshold) {
      native.zeroCount++;
      return;
    }
    const buckets = value > 0 ? native.positive : native.negative;
    const key = nativeBucketKey(Math.abs(value), native.schema);
    buckets.set(key, (buckets.get(key) ?? 0) + 1);
    if (this.#maxBuckets > 0) {
      while (
        native.positive.size + native.negative.size > this.#maxBuckets &&
        native.schema > MIN_SCHEMA
      ) {
        native.schema--;
        native.positive = halveResolution(native.positive);
        native.negative = halveResolution(native.negative);
      }
    }
  }

  /** Removes the series of `labels`. */
  remove(labels: Readonly<Record<string, string | number>>): void {
    this.#series.delete(this.#key(labels));
  }

  /** Removes every series. */
  reset(): void {
    this.#series.clear();
  }

  /** Every series, in the order they appeared. */
  series(): IterableIterator<HistogramSeries> {
    return this.#series.values();
  }

  /**
   * The histogram as prom-client's `Histogram.get()` gives it: for each
   * series its cumulative buckets (`le` first), `+Inf`, `_sum` and `_count`.
   */
  get(): { name: string; help: string; type: string; values: MetricValue[]; aggregator: string } {
    const values: MetricValue[] = [];
    const bucketName = `${this.name}_bucket`;
    for (const series of this.#series.values()) {
      let cumulative = 0;
      for (let i = 0; i < this.classicBounds.length; i++) {
        cumulative += series.classic[i]!;
        values.push({
          value: cumulative,
          labels: { le: this.classicBounds[i]!, ...series.labels },
          metricName: bucketName,
        });
      }
      values.push(
        { value: series.count, labels: { le: "+Inf", ...series.labels }, metricName: bucketName },
        { value: series.sum, labels: { ...series.labels }, metricName: `${this.name}_sum` },
        { value: series.count, labels: { ...series.labels }, metricName: `${this.name}_count` },
      );
    }
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      values,
      aggregator: this.aggregator,
    };
  }

  #key(labels: Readonly<Record<string, string | number>>): string {
    let key = "";
    for (const name of this.labelNames) key += `${labels[name] ?? ""}\u0000`;
    return key;
  }

  #seriesOf(labels: Readonly<Record<string, string | number>>): MutableSeries {
    const key = this.#key(labels);
    let series = this.#series.get(key);
    if (series) return series;
    for (const name in labels) {
      if (!this.labelNames.includes(name)) {
        throw new RangeError(
          `Cannot observe ${this.name}: current label "${name}" is not one of ${
            this.labelNames.join(", ")
          }`,
        );
      }
    }
    series = {
      labels: Object.fromEntries(this.labelNames.map((name) => [name, `${labels[name] ?? ""}`])),
      classic: new Float64Array(this.classicBounds.length),
      count: 0,
      sum: 0,
    };
    if (this.nativeSchema !== undefined) {
      series.native = {
        schema: this.nativeSchema,
        zeroThreshold: this.#zeroThreshold,
        zeroCount: 0,
        positive: new Map(),
        negative: new Map(),
      };
    }
    this.#series.set(key, series);
    return series;
  }
}

/** The buckets of one schema lower: bucket k becomes ⌈k/2⌉, whose range holds k's. */
function halveResolution(buckets: ReadonlyMap<number, number>): Map<number, number> {
  const merged = new Map<number, number>();
  for (const [key, count] of buckets) {
    const wider = Math.ceil(key / 2);
    merged.set(wider, (merged.get(wider) ?? 0) + count);
  }
  return merged;
}
