/**
 * Scraping the compared tools the way Prometheus would, and reading figures
 * from what was scraped: every scrape is kept (only the mapped metrics) with
 * its time, so each scenario reads its own time window afterwards.
 *
 * Background tools are scraped every `pollMs` on their metrics path.
 * Per-target tools are scraped once per interval per target, spread over the
 * interval, the target list coming from {@link ServiceDiscovery}.
 * @module
 */

import { quantile } from "../helpers/stats.ts";
export { quantile };
import { parseSamples, type Sample } from "../helpers/metrics.ts";
import type { SimNode } from "./cluster.ts";
import type { MetricRef, ProbeMapping, ToolConfig, ToolInstance } from "./tools.ts";
import { fill } from "./tools.ts";

/** One scrape. */
export interface Recording {
  /** The scraped process (its URL); a restarted process is a new one. */
  readonly instance: string;
  readonly kind: "metrics" | "dial" | "dns";
  /** Per-target dial probes: the dialled peer's IP. */
  readonly peer?: string;
  readonly startedAt: number;
  /** When the answer's head was in (performance.now()): its first bytes, before the body. */
  readonly headAt?: number;
  /** When the answer was complete (performance.now()). */
  readonly at: number;
  /** The mapped metrics' samples; undefined when the scrape failed. */
  readonly samples: readonly Sample[] | undefined;
}

/** A pod as a scraper's service discovery sees it. */
export interface DiscoveredPod {
  readonly ip: string;
  readonly node: string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Prometheus' view of the pods: lists them from the API server with its own
 * token every `refreshMs` — Prometheus' discovery manager hands target
 * changes to the scrape loops at most every 5 s.
 */
export class ServiceDiscovery {
  pods: DiscoveredPod[] = [];
  readonly #url: string;
  readonly #client: Deno.HttpClient;
  readonly #token: string;
  readonly #refreshMs: number;
  #running = true;
  #loop: Promise<void> | undefined;

  constructor(apiUrl: string, caPem: string, token: string, refreshMs = 5_000) {
    this.#url = `${apiUrl}/api/v1/namespaces/monitoring/pods?labelSelector=${
      encodeURIComponent("app.kubernetes.io/name=net-exporter")
    }`;
    this.#client = Deno.createHttpClient({ caCerts: [caPem] });
    this.#token = token;
    this.#refreshMs = refreshMs;
  }

  /** Lists once now, then keeps refreshing. */
  async start(): Promise<void> {
    await this.refresh();
    this.#loop = (async () => {
      while (this.#running) {
        await sleep(this.#refreshMs);
        if (this.#running) await this.refresh().catch(() => {});
      }
    })();
  }

  /** Lists the pods now. */
  async refresh(): Promise<void> {
    const response = await fetch(this.#url, {
      client: this.#client,
      headers: { authorization: `Bearer ${this.#token}` },
      signal: AbortSignal.timeout(5_000),
    });
    const list = await response.json() as {
      items: Array<{ spec: { nodeName: string }; status: { podIP?: string } }>;
    };
    this.pods = list.items.filter((pod) => pod.status.podIP).map((pod) => ({
      ip: pod.status.podIP!,
      node: pod.spec.nodeName,
    }));
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
    this.#client.close();
  }
}

/** The metric names a mapping reads, with a histogram's series. */
function mappedNames(tool: ToolConfig): Set<string> {
  const names = new Set<string>();
  for (const mapping of [tool.dial, tool.dns]) {
    for (const ref of [mapping.latency, mapping.errors, mapping.successes]) {
      if (!ref) continue;
      names.add(ref.metric);
      if (ref.type === "histogram") {
        for (const suffix of ["_bucket", "_sum", "_count"]) names.add(ref.metric + suffix);
      }
    }
  }
  return names;
}

/** Scrapes one node's instance of a tool, and keeps every scrape. */
export class Recorder {
  readonly tool: ToolConfig;
  readonly node: SimNode;
  readonly recordings: Recording[] = [];
  /** The process to scrape now (replaced on a restart). */
  instance: ToolInstance | undefined;
  /** Background tools: time between scrapes (on average, when shorter than the interval). */
  pollMs: number;
  /** Per-target tools: probe the crowd too. */
  loaded = false;
  paused = false;
  readonly #intervalMs: number;
  readonly #names: Set<string>;
  readonly #discovery: ServiceDiscovery;
  readonly #dnsServer: string;
  readonly #inFlight = new Set<Promise<void>>();
  #running = true;
  #loop: Promise<void> | undefined;

  constructor(
    tool: ToolConfig,
    node: SimNode,
    options: { intervalMs: number; discovery: ServiceDiscovery; dnsServer: string },
  ) {
    this.tool = tool;
    this.node = node;
    this.#intervalMs = options.intervalMs;
    this.pollMs = options.intervalMs;
    this.#discovery = options.discovery;
    this.#dnsServer = options.dnsServer;
    this.#names = mappedNames(tool);
  }

  /** Starts scraping after `phaseMs`: where in the interval a per-target tool's probes fall. */
  start(phaseMs = 0): void {
    this.#loop = (async () => {
      await sleep(phaseMs);
      await (this.tool.scrape.mode === "background"
        ? this.#background()
        : this.#perTarget(this.tool.scrape.dial_path, this.tool.scrape.dns_path));
    })();
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
    await Promise.all(this.#inFlight);
  }

  async #background(): Promise<void> {
    while (this.#running) {
      const startedAt = performance.now();
      if (!this.paused) await this.#scrape("metrics", this.tool.scrape.path);
      // Polled faster than the tool probes (a detection trial), the waits are random: polls in
      // step with the probes would see every change at the same point of a gap between polls.
      const waitMs = this.pollMs < this.#intervalMs
        ? this.pollMs * (0.5 + Math.random())
        : this.pollMs;
      await sleep(Math.max(0, waitMs - (performance.now() - startedAt)));
    }
  }

  /** The peers Prometheus would probe through this instance: other nodes' pods, and the crowd when loaded. */
  #targets(): DiscoveredPod[] {
    return this.#discovery.pods.filter((pod) =>
      pod.node !== this.node.name && (this.loaded || pod.node.startsWith("node-"))
    );
  }

  async #perTarget(dialPath: string, dnsPath: string): Promise<void> {
    while (this.#running) {
      const tickAt = performance.now();
      if (!this.paused) {
        const requests: Array<() => Promise<void>> = [
          () => this.#scrape("dns", fill(dnsPath, { dns_server: this.#dnsServer })),
          ...this.#targets().map((pod) => () =>
            this.#scrape(
              "dial",
              fill(dialPath, { peer_ip: pod.ip, port: String(this.tool.port) }),
              pod.ip,
            )
          ),
        ];
        // Prometheus spreads a job's targets over the interval.
        requests.forEach((request, index) => {
          const started = (async () => {
            await sleep((index / requests.length) * this.#intervalMs);
            if (this.#running && !this.paused) await request();
          })();
          this.#inFlight.add(started);
          started.finally(() => this.#inFlight.delete(started));
        });
      }
      await sleep(Math.max(0, this.#intervalMs - (performance.now() - tickAt)));
    }
  }

  async #scrape(kind: Recording["kind"], path: string, peer?: string): Promise<void> {
    const instance = this.instance;
    if (!instance) return;
    const startedAt = performance.now();
    let samples: Sample[] | undefined;
    // The answer is complete when its last byte is in, before this harness parses it: parsing a
    // 1 MB exposition (500 targets) on this busy thread is the observer's cost, not the tool's.
    // (Runs before 2026-12-02 10:05 UTC took the time after parsing.)
    let at: number | undefined;
    let headAt: number | undefined;
    try {
      const response = await fetch(`${instance.url}${path}`, {
        signal: AbortSignal.timeout(2 * this.#intervalMs),
      });
      headAt = performance.now();
      const text = await response.text();
      at = performance.now();
      if (response.ok) samples = parseSamples(text).filter((s) => this.#names.has(s.name));
    } catch { /* a failed scrape is recorded as such */ }
    this.recordings.push({
      instance: instance.url,
      kind,
      ...(peer === undefined ? {} : { peer }),
      startedAt,
      ...(headAt === undefined ? {} : { headAt }),
      at: at ?? performance.now(),
      samples,
    });
  }
}

/** Samples of `ref` (or `name` instead of its metric) in a recording, with extra label filters. */
function select(
  recording: Recording,
  ref: MetricRef,
  labels: Record<string, string>,
  name = ref.metric,
): Sample[] {
  const wanted = { ...ref.labels, ...labels };
  return (recording.samples ?? []).filter((sample) =>
    sample.name === name &&
    Object.entries(wanted).every(([key, value]) => sample.labels[key] === value)
  );
}

/** Which peer and which probe kind: how a figure picks its series. */
export interface Selection {
  readonly kind: "dial" | "dns";
  /** Dial probes: only those to this peer IP; otherwise every peer. */
  readonly peerIp?: string;
}

function mappingOf(tool: ToolConfig, selection: Selection): ProbeMapping {
  return selection.kind === "dial" ? tool.dial : tool.dns;
}

/** Label filter naming the peer in a background tool's series. */
export function peerLabels(tool: ToolConfig, selection: Selection): Record<string, string> {
  if (selection.kind !== "dial" || selection.peerIp === undefined || !tool.dial.target) return {};
  return {
    [tool.dial.target.label]: fill(tool.dial.target.value, {
      peer_ip: selection.peerIp,
      port: String(tool.port),
    }),
  };
}

/** Recordings of per-target probes that match `selection`. */
function probeRecordings(recordings: readonly Recording[], selection: Selection): Recording[] {
  return recordings.filter((recording) =>
    recording.kind === selection.kind && recording.samples !== undefined &&
    (selection.peerIp === undefined || recording.peer === selection.peerIp)
  );
}

function failed(recording: Recording, ref: MetricRef, labels: Record<string, string>): boolean {
  return select(recording, ref, labels).some((sample) => sample.value === ref.failed_when);
}

/** One series of one process: restarted processes and other label sets are other series. */
function seriesKey(recording: Recording, sample: Sample): string {
  return `${recording.instance} ${JSON.stringify(sample.labels)}`;
}

/**
 * What one answer shows that the one before it did not. A background tool's
 * change happened somewhere in (previousAt, at]; a per-target answer is the
 * probe itself, so there previousAt is at.
 */
interface Step {
  readonly at: number;
  readonly previousAt: number;
  readonly growth: number;
}

/** The growth of the steps in (from, to]. */
function growthWithin(
  steps: Iterable<Step>,
  from: number,
  to: number,
): number {
  let total = 0;
  for (const { at, growth } of steps) {
    if (at > from && at <= to) total += growth;
  }
  return total;
}

/**
 * Each scrape with how much its counter series grew since the same process'
 * previous scrape: a new series counts from 0 and a drop counts as a reset
 * (Prometheus' `increase`, without extrapolation).
 */
function* counterGrowth(
  recordings: readonly Recording[],
  pick: (recording: Recording) => Sample[],
): Generator<Step> {
  const last = new Map<string, number>();
  let previousAt = -Infinity;
  for (const recording of recordings) {
    if (recording.samples === undefined) continue;
    let growth = 0;
    for (const sample of pick(recording)) {
      const key = seriesKey(recording, sample);
      const previous = last.get(key) ?? 0;
      growth += sample.value >= previous ? sample.value - previous : sample.value;
      last.set(key, sample.value);
    }
    yield { at: recording.at, previousAt, growth };
    previousAt = recording.at;
  }
}

/** How much every counter series grew in (from, to]. */
function counterIncrease(
  recordings: readonly Recording[],
  pick: (recording: Recording) => Sample[],
  from: number,
  to: number,
): number {
  return growthWithin(counterGrowth(recordings, pick), from, to);
}

/** Each scrape with the probe errors of `selection` it shows for the first time. */
function* newErrors(
  tool: ToolConfig,
  recordings: readonly Recording[],
  selection: Selection,
): Generator<Step> {
  const ref = mappingOf(tool, selection).errors;
  if (tool.scrape.mode === "per_target") {
    for (const recording of probeRecordings(recordings, selection)) {
      const growth = failed(recording, ref, {}) ? 1 : 0;
      yield { at: recording.at, previousAt: recording.at, growth };
    }
    return;
  }
  const labels = peerLabels(tool, selection);
  const metrics = recordings.filter((recording) =>
    recording.samples !== undefined &&
    recording.kind === "metrics"
  );
  if (ref.type === "gauge") {
    let previousAt = -Infinity;
    for (const recording of metrics) {
      yield { at: recording.at, previousAt, growth: failed(recording, ref, labels) ? 1 : 0 };
      previousAt = recording.at;
    }
    return;
  }
  yield* counterGrowth(metrics, (recording) => select(recording, ref, labels));
}

/** Probe errors of `selection` in (from, to]. */
export function errorCount(
  tool: ToolConfig,
  recordings: readonly Recording[],
  selection: Selection,
  from: number,
  to: number,
): number {
  return growthWithin(newErrors(tool, recordings, selection), from, to);
}

/**
 * Milliseconds after `after` until an answer first shows an error of
 * `selection`; undefined if none by `until`. `recordings` are one scraper's,
 * in the order their answers arrived.
 *
 * A per-target answer is the probe, so its time is exact. A background tool
 * is polled: the error appeared between the last answer without it (or the
 * fault, if later) and the first answer with it, and the figure is the middle
 * of that gap — off by at most half a poll either way, by nothing on average
 * while the polls keep no step with the probes. Taking the later end instead
 * would add half a poll to every background tool.
 */
export function detectionMs(
  tool: ToolConfig,
  recordings: readonly Recording[],
  selection: Selection,
  after: number,
  until: number,
): number | undefined {
  for (const { at, previousAt, growth } of newErrors(tool, recordings, selection)) {
    if (at > until) return undefined;
    if (at > after && growth > 0) return (Math.max(previousAt, after) + at) / 2 - after;
  }
  return undefined;
}

/**
 * When a scraper asking every `intervalMs`, at instants `phaseMs` + k ×
 * `intervalMs`, first sees something a background tool shows from `shownAt`
 * on: the first of its instants from then. Times are on one clock (ms).
 */
export function firstScrapeFrom(shownAt: number, intervalMs: number, phaseMs: number): number {
  return phaseMs + Math.ceil((shownAt - phaseMs) / intervalMs) * intervalMs;
}

/** Probes run in (from, to]: per-target requests, or the background tool's success and error counters. */
export function probeCount(
  tool: ToolConfig,
  recordings: readonly Recording[],
  from: number,
  to: number,
): number {
  if (tool.scrape.mode === "per_target") {
    return recordings.filter((recording) =>
      recording.kind !== "metrics" && recording.at > from && recording.at <= to
    ).length;
  }
  const metrics = recordings.filter((recording) => recording.kind === "metrics");
  let total = 0;
  for (const mapping of [tool.dial, tool.dns]) {
    for (const ref of [mapping.successes!, mapping.errors]) {
      const name = ref.type === "histogram" ? `${ref.metric}_count` : ref.metric;
      total += counterIncrease(metrics, (recording) => select(recording, ref, {}, name), from, to);
    }
  }
  return total;
}

/**
 * Probes a tool ran while nobody scraped it, from `pausedFrom` to `pausedTo`.
 * A per-target tool: the probes asked of it then (none, while paused). A
 * background tool: its counters' growth from the last scrape before the pause
 * to the first after it, less the growth of the ordinary scrape interval just
 * before the pause. A tool that probes on its own grows by the pause's
 * intervals; one that probes when it is scraped grows by what that one scrape
 * ran, as in any ordinary interval, so its count is 0.
 */
export function probesWhilePaused(
  tool: ToolConfig,
  recordings: readonly Recording[],
  pausedFrom: number,
  pausedTo: number,
): number {
  if (tool.scrape.mode === "per_target") {
    return recordings.filter((recording) =>
      recording.kind !== "metrics" && recording.startedAt >= pausedFrom &&
      recording.startedAt < pausedTo
    ).length;
  }
  const scrapes = recordings.filter((recording) =>
    recording.kind === "metrics" && recording.samples !== undefined
  );
  const before = scrapes.filter((recording) => recording.startedAt < pausedFrom);
  const after = scrapes.find((recording) => recording.startedAt >= pausedTo);
  const [previous, last] = [before.at(-2), before.at(-1)];
  if (!previous || !last || !after) {
    throw new Error(
      "Cannot count probes while unscraped: current recordings lack two scrapes before the pause or one after",
    );
  }
  const across = probeCount(tool, recordings, last.at, after.at);
  const ordinary = probeCount(tool, recordings, previous.at, last.at);
  return Math.max(0, across - ordinary);
}

/** Latency figures in milliseconds. */
export interface LatencyFigures {
  readonly median_ms: number;
  readonly p99_ms: number;
  readonly samples: number;
  /** Each probe's latency (ms), where the tool reports probes one by one (not a histogram's). */
  readonly values_ms?: readonly number[];
}

/** Prometheus' histogram_quantile over cumulative `[le, count]` pairs (le ascending, +Inf last). */
export function histogramQuantile(q: number, buckets: ReadonlyArray<[number, number]>): number {
  const total = buckets.at(-1)?.[1] ?? 0;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Infinity) return lower;
      return lower + (le - lower) * (count === below ? 0 : (rank - below) / (count - below));
    }
    lower = le;
    below = count;
  }
  return lower;
}

/**
 * Latency of `selection` as the tool reports it in (from, to]; without a
 * peer, and over several scrapers' recordings, every probe pooled.
 */
export function latency(
  tool: ToolConfig,
  recordings: readonly Recording[],
  selection: Selection,
  from: number,
  to: number,
): LatencyFigures | undefined {
  const mapping = mappingOf(tool, selection);
  const ref = mapping.latency;
  const inWindow = (recording: Recording) => recording.at > from && recording.at <= to;
  let values: number[];
  if (tool.scrape.mode === "per_target") {
    values = probeRecordings(recordings, selection).filter((recording) =>
      inWindow(recording) && !failed(recording, mapping.errors, {})
    ).flatMap((recording) => select(recording, ref, {}).map((sample) => sample.value));
  } else if (ref.type === "histogram") {
    const labels = peerLabels(tool, selection);
    const metrics = recordings.filter((recording) => recording.kind === "metrics");
    const bound = (sample: Sample) =>
      sample.labels.le === "+Inf" ? Infinity : Number(sample.labels.le);
    const bucketsOf = (recording: Recording) =>
      select(recording, ref, labels, `${ref.metric}_bucket`);
    const les = new Set(metrics.filter(inWindow).flatMap((r) => bucketsOf(r).map(bound)));
    const byLe = new Map<number, number>();
    for (const le of les) {
      byLe.set(
        le,
        counterIncrease(
          metrics,
          (recording) => bucketsOf(recording).filter((sample) => bound(sample) === le),
          from,
          to,
        ),
      );
    }
    const buckets = [...byLe.entries()].sort((a, b) => a[0] - b[0]);
    const count = buckets.at(-1)?.[1] ?? 0;
    if (count === 0) return undefined;
    return {
      median_ms: histogramQuantile(0.5, buckets) * 1000,
      p99_ms: histogramQuantile(0.99, buckets) * 1000,
      samples: count,
    };
  } else {
    // A gauge of the last result: each new value of a series is one probe.
    const labels = peerLabels(tool, selection);
    values = [];
    const previous = new Map<string, number>();
    for (const recording of recordings) {
      if (recording.kind !== "metrics" || !inWindow(recording)) continue;
      for (const sample of select(recording, ref, labels)) {
        const key = seriesKey(recording, sample);
        if (sample.value !== previous.get(key)) values.push(sample.value);
        previous.set(key, sample.value);
      }
    }
  }
  if (values.length === 0) return undefined;
  return {
    median_ms: quantile(values, 0.5) * 1000,
    p99_ms: quantile(values, 0.99) * 1000,
    samples: values.length,
    values_ms: values.map((value) => value * 1000),
  };
}

/** The successful scrapes whose answer was complete in (from, to]. */
function completedScrapes(recordings: readonly Recording[], from: number, to: number): Recording[] {
  return recordings.filter((recording) =>
    recording.samples !== undefined && recording.at > from && recording.at <= to
  );
}

/** Response times (ms) of the scrapes in (from, to]: /metrics, or /probe for per-target tools. */
export function scrapeTimes(recordings: readonly Recording[], from: number, to: number): number[] {
  return completedScrapes(recordings, from, to).map((recording) =>
    recording.at - recording.startedAt
  );
}

/**
 * Time to the answer's head of the same scrapes as {@link scrapeTimes}: the
 * part before the body streams in.
 */
export function scrapeHeadTimes(
  recordings: readonly Recording[],
  from: number,
  to: number,
): number[] {
  return completedScrapes(recordings, from, to).flatMap((recording) =>
    recording.headAt === undefined ? [] : [recording.headAt - recording.startedAt]
  );
}
