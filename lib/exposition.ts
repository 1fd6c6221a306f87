/**
 * A prom-client registry in the Prometheus text format, byte for byte what
 * `Registry.metrics()` writes, in less time: prom-client's own formatter
 * copies every sample's labels into arrays, filters and joins them, runs three
 * regular-expression replacements on every label value of every line, and
 * builds the whole exposition as one string that must then be encoded. The
 * benchmark times both (tests/bench/render.ts, figures in docs/reports/benchmark.md:
 * warm, about a third of prom-client's time at 5,000 targets and a quarter at
 * 500).
 *
 * This keeps prom-client's data (each family's public `get()`, so collect
 * callbacks run as before; the exporter's histograms are its own
 * (lib/histogram.ts), read through their `series()`, see
 * {@link renderHistogram}) and its algorithm — the same label order,
 * escaping, label formatting and value spelling, copied from
 * prom-client 15.1.3's lib/registry.js and lib/util.js (Apache-2.0) — and
 * writes UTF-8 straight into one growing buffer: a label set is formatted once
 * per series (prom-client keeps a counter's or gauge's labels object from
 * scrape to scrape), a value is escaped only when it holds a character that
 * needs it, and no 1 MB string is built, so the young generation holds only
 * short pieces. tests/http_test.ts checks the bytes against prom-client's on
 * awkward input, and `deno task bench` times both.
 * @module
 */

import type * as client from "./prom_client.ts";
import { Histogram } from "./histogram.ts";
import { TurnTaker } from "./event_loop.ts";

/** What a counter's or gauge's `get` returns (a summary's too). */
interface FamilyData {
  name: string;
  help: string;
  type: string;
  values?: Array<{
    value: number;
    labels?: Record<string, string | number>;
    /** Labels a metric's `get()` may give apart (prom-client's histogram in its text path does). */
    sharedLabels?: Record<string, string | number>;
    metricName?: string;
  }>;
}

interface Family {
  get(): Promise<unknown> | unknown;
}

const NEEDS_ESCAPE = /[\\\n]/;
const NEEDS_LABEL_ESCAPE = /[\\\n"]/;

function escapeText(text: string): string {
  return NEEDS_ESCAPE.test(text) ? text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n") : text;
}

function escapeLabelValue(value: string | number): string | number {
  if (typeof value !== "string" || !NEEDS_LABEL_ESCAPE.test(value)) return value;
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

/** prom-client's value spelling (note its "Nan"). */
function valueText(value: number): string {
  if (Number.isNaN(value)) return "Nan";
  if (!Number.isFinite(value)) return value < 0 ? "-Inf" : "+Inf";
  return `${value}`;
}

/** Formatted labels of a series: prom-client keeps a series' labels object from scrape to scrape. */
const formattedLabels = new WeakMap<object, string>();

function formatLabels(labels: Record<string, string | number>): string {
  let text = formattedLabels.get(labels);
  if (text === undefined) {
    text = "";
    for (const name in labels) {
      text += `${text === "" ? "" : ","}${name}="${escapeLabelValue(labels[name]!)}"`;
    }
    formattedLabels.set(labels, text);
  }
  return text;
}

/**
 * True when `registry` renders in the Prometheus text format — the case
 * this formatter reproduces. (Default labels, which it would not add, are
 * never set on the exporter's registry.)
 */
function renderableFast(registry: client.Registry): boolean {
  return registry.contentType === "text/plain; version=0.0.4; charset=utf-8";
}

/** Text is encoded in pieces of about this many characters. */
const PIECE = 16 * 1024;

/**
 * UTF-8 text gathered in one buffer that doubles as it fills. Short writes
 * are joined into a piece of about {@link PIECE} characters before they are
 * encoded, so no string of the whole exposition is ever built.
 */
class ByteSink {
  #buffer = new Uint8Array(64 * 1024);
  #length = 0;
  #pending = "";
  readonly #encoder = new TextEncoder();

  write(text: string): void {
    this.#pending += text;
    if (this.#pending.length > PIECE) this.#flush();
  }

  bytes(): Uint8Array<ArrayBuffer> {
    this.#flush();
    return this.#buffer.slice(0, this.#length);
  }

  #flush(): void {
    const text = this.#pending;
    this.#pending = "";
    // A UTF-16 code unit takes at most 3 bytes in UTF-8.
    const room = text.length * 3;
    if (this.#buffer.length - this.#length < room) {
      const grown = new Uint8Array(Math.max(this.#buffer.length * 2, this.#length + room));
      grown.set(this.#buffer.subarray(0, this.#length));
      this.#buffer = grown;
    }
    this.#length += this.#encoder.encodeInto(text, this.#buffer.subarray(this.#length)).written;
  }
}

/** Options of {@link renderRegistry}. */
export interface RenderOptions {
  /**
   * Give the event loop a turn (lib/event_loop.ts) between families, and
   * between a histogram's series, once rendering has held it this long (ms):
   * thousands of series rendered in one go would hold up probe starts and DNS
   * answers for as long. Default: never.
   */
  readonly yieldAfterMs?: number;
}

/**
 * The registry's exposition as UTF-8, the same bytes as `registry.metrics()`
 * (which it falls back to for what this does not reproduce: default labels,
 * OpenMetrics).
 */
export async function renderRegistry(
  registry: client.Registry,
  options: RenderOptions = {},
): Promise<Uint8Array<ArrayBuffer>> {
  const sink = new ByteSink();
  const metrics = registry.getMetricsAsArray();
  if (!renderableFast(registry)) {
    sink.write(await registry.metrics());
    return sink.bytes();
  }
  const turns = options.yieldAfterMs === undefined
    ? undefined
    : new TurnTaker(options.yieldAfterMs);
  let first = true;
  for (const metric of metrics) {
    await turns?.maybeYield();
    if (!first) sink.write("\n\n");
    first = false;
    await renderFamily(metric, sink, turns);
  }
  sink.write("\n");
  return sink.bytes();
}

/** `name_bucket{le="…"` of each bound of a histogram, and of +Inf last. */
const bucketPrefixes = new WeakMap<object, string[]>();

function bucketPrefixesOf(histogram: Histogram): string[] {
  let prefixes = bucketPrefixes.get(histogram);
  if (prefixes === undefined) {
    prefixes = [
      ...histogram.classicBounds.map((bound) => `${histogram.name}_bucket{le="${bound}"`),
      `${histogram.name}_bucket{le="+Inf"`,
    ];
    bucketPrefixes.set(histogram, prefixes);
  }
  return prefixes;
}

/**
 * A series' labels as they end a bucket line (`,host="…"} `) and as they
 * follow `_sum` and `_count` (`{host="…"} `), kept while the series lives: two
 * strings a series, where whole line beginnings would be one per bucket.
 */
const seriesEnds = new WeakMap<object, readonly [string, string]>();

function seriesEndsOf(labels: Readonly<Record<string, string>>): readonly [string, string] {
  let ends = seriesEnds.get(labels);
  if (ends === undefined) {
    const shared = formatLabels(labels);
    ends = shared === "" ? ["} ", " "] : [`,${shared}} `, `{${shared}} `];
    seriesEnds.set(labels, ends);
  }
  return ends;
}

/**
 * A histogram as prom-client's registry would write its `get()`, read from
 * its series directly: `get()` builds an object per bucket line, whose
 * labels this would then walk line by line. A
 * histogram's bucket beginnings and a series' label endings are built once;
 * a scrape joins them with the values. At 500 targets this took the warm
 * render from about 4.4 to 2.5 ms (median, ad hoc, before and after on one
 * machine; `deno task bench` keeps the figure). Whole line beginnings kept
 * per series were no faster and held 9 MB more heap at 5,000 targets.
 */
async function renderHistogram(
  histogram: Histogram,
  sink: ByteSink,
  turns: TurnTaker | undefined,
): Promise<void> {
  writeHeader(sink, histogram.name, histogram.help, "histogram");
  const bounds = histogram.classicBounds;
  const buckets = bucketPrefixesOf(histogram);
  const sum = `${histogram.name}_sum`;
  const count = `${histogram.name}_count`;
  // Each series is written whole between two turns, so its buckets, _sum and _count agree; a
  // Map's iterator stays valid when a probe adds or removes a series during a turn given away.
  for (const series of histogram.series()) {
    await turns?.item();
    const [bucketEnd, ownEnd] = seriesEndsOf(series.labels);
    let cumulative = 0;
    for (let i = 0; i < bounds.length; i++) {
      cumulative += series.classic[i]!;
      sink.write(`\n${buckets[i]}${bucketEnd}${valueText(cumulative)}`);
    }
    sink.write(
      `\n${buckets[bounds.length]}${bucketEnd}${valueText(series.count)}\n${sum}${ownEnd}${
        valueText(series.sum)
      }\n${count}${ownEnd}${valueText(series.count)}`,
    );
  }
}

/** A family's `# HELP` and `# TYPE` lines, without a trailing newline. */
function writeHeader(sink: ByteSink, name: string, help: string, type: string): void {
  const escaped = escapeText(name);
  sink.write(`# HELP ${escaped} ${escapeText(help)}\n# TYPE ${escaped} ${type}`);
}

/** Own labels not shadowed by a shared one, then the shared ones: prom-client's order. */
function withSharedLabels(
  labels: Record<string, string | number>,
  shared: Record<string, string | number>,
): string {
  const own = Object.fromEntries(
    Object.entries(labels).filter(([name]) => !Object.hasOwn(shared, name)),
  );
  return [formatLabels(own), formatLabels(shared)].filter((part) => part !== "").join(",");
}

/** One family, without a trailing newline, as prom-client writes it. */
async function renderFamily(
  metric: object,
  sink: ByteSink,
  turns: TurnTaker | undefined,
): Promise<void> {
  if (metric instanceof Histogram) return await renderHistogram(metric, sink, turns);
  const data = await (metric as Family).get() as FamilyData;
  writeHeader(sink, data.name, data.help, data.type);
  const name = escapeText(data.name);
  for (const sample of data.values ?? []) {
    const parts = sample.sharedLabels === undefined
      ? (sample.labels === undefined ? "" : formatLabels(sample.labels))
      : withSharedLabels(sample.labels ?? {}, sample.sharedLabels);
    sink.write(
      `\n${sample.metricName ?? name}${parts === "" ? "" : `{${parts}}`} ${
        valueText(sample.value)
      }`,
    );
  }
}
