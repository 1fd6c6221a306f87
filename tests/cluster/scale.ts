/**
 * What the DaemonSet costs the API server at a given node count, measured
 * on the real control plane with hollow nodes (hollow.ts) beside a handful
 * of real ones. One {@link measureSize} per size, in this order:
 *
 * 1. baseline: the cluster without the release, for the steady window;
 * 2. `helm install` of chart/ as it is: time until every pod is Ready;
 * 3. steady state: the API server's and etcd's CPU and memory, the watch
 *    traffic to the exporters, the real exporters' memory, CPU and requests;
 * 4. lists as a starting pod asks them: from etcd, and from the watch cache;
 * 5. `helm upgrade` changing one flag at the old default (one pod at a time),
 *    for a sample of its pace; then at the chart's defaults, to the end: time,
 *    dial errors counted by the real exporters, series left for pods gone,
 *    watch events per pod change and their bytes, each new real exporter's
 *    time to its first full peer list;
 * 6. the API server restarted: time until every real exporter is current,
 *    and the lists the exporters asked again;
 * 7. `helm uninstall`, so the next size starts from a clean baseline.
 *
 * Figures come from /proc (CPU, memory), the API server's audit log and
 * /metrics, the hollow exporters' byte counts and the real exporters'
 * /metrics and logs; none is a guess.
 * @module
 */

import { processUsage } from "../helpers/proc.ts";
import { Exposition } from "../helpers/metrics.ts";
import type { RealCluster } from "./cluster.ts";
import { NAMESPACE, RELEASE } from "./cluster.ts";
import type { AuditEvent } from "./control_plane.ts";
import type { HollowNodes, HollowWatchTotals } from "./hollow.ts";
import { LIST_PAGE_SIZE, podsPath } from "../../k8s/watcher.ts";

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;
const MIB = 1024 * 1024;
const SELECTOR = `app.kubernetes.io/name=${RELEASE},app.kubernetes.io/instance=${RELEASE}`;

/** CPU and memory of the API server and etcd over one phase. */
export interface PlaneUsage {
  readonly seconds: number;
  readonly apiserver_cpu_seconds: number;
  readonly apiserver_cores: number;
  readonly apiserver_rss_mib_max: number;
  readonly etcd_cpu_seconds: number;
  readonly etcd_cores: number;
  readonly etcd_rss_mib_max: number;
}

/**
 * Samples the API server's and etcd's /proc every 2 s from `start` to
 * `stop`. CPU is summed over the processes a component had in the phase: an
 * API server restarted in it counts its old process up to its last sample
 * (taken just before the restart with {@link PlaneSampler.sample}) and the new one.
 */
class PlaneSampler {
  #startedAt = 0;
  /** Per component: CPU of the processes gone, the current process and its CPU, peak RSS. */
  readonly #state = new Map<string, { gone: number; pid: number; cpu: number; rssMax: number }>();
  #cpuAtStart = new Map<string, number>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #pending: Promise<void> = Promise.resolve();

  constructor(readonly cluster: RealCluster) {}

  /** Reads both components now. */
  sample(): Promise<void> {
    this.#pending = this.#pending.then(async () => {
      for (const name of ["kube-apiserver", "etcd"]) {
        const pid = this.cluster.plane.pid(name);
        const usage = await processUsage(pid);
        if (!usage) continue;
        const state = this.#state.get(name) ?? { gone: 0, pid, cpu: 0, rssMax: 0 };
        if (state.pid !== pid) {
          state.gone += state.cpu;
          state.pid = pid;
        }
        state.cpu = usage.cpuSeconds;
        state.rssMax = Math.max(state.rssMax, usage.rssBytes);
        this.#state.set(name, state);
      }
    }).catch(() => {});
    return this.#pending;
  }

  #cpu(name: string): number {
    const state = this.#state.get(name);
    return state ? state.gone + state.cpu : 0;
  }

  async start(): Promise<void> {
    await this.sample();
    for (const state of this.#state.values()) state.rssMax = 0;
    await this.sample();
    this.#cpuAtStart = new Map(["kube-apiserver", "etcd"].map((name) => [name, this.#cpu(name)]));
    this.#startedAt = performance.now();
    this.#timer = setInterval(() => void this.sample(), 2_000);
  }

  async stop(): Promise<PlaneUsage> {
    clearInterval(this.#timer);
    await this.sample();
    const seconds = (performance.now() - this.#startedAt) / 1000;
    const used = (name: string) => this.#cpu(name) - (this.#cpuAtStart.get(name) ?? 0);
    const rss = (name: string) => round((this.#state.get(name)?.rssMax ?? 0) / MIB);
    return {
      seconds: round(seconds),
      apiserver_cpu_seconds: round(used("kube-apiserver"), 2),
      apiserver_cores: round(used("kube-apiserver") / seconds, 3),
      apiserver_rss_mib_max: rss("kube-apiserver"),
      etcd_cpu_seconds: round(used("etcd"), 2),
      etcd_cores: round(used("etcd") / seconds, 3),
      etcd_rss_mib_max: rss("etcd"),
    };
  }
}

/** Runs `body` between a sampler's start and stop. */
async function sampled<T>(
  cluster: RealCluster,
  body: (sampler: PlaneSampler) => Promise<T>,
): Promise<{ usage: PlaneUsage; result: T }> {
  const sampler = new PlaneSampler(cluster);
  await sampler.start();
  try {
    const result = await body(sampler);
    return { usage: await sampler.stop(), result };
  } catch (error) {
    await sampler.stop().catch(() => {});
    throw error;
  }
}

/** The API server's count of watch events sent for pods (to every watcher), from its /metrics. */
async function watchEventCounters(cluster: RealCluster): Promise<{ events: number }> {
  const text = (await cluster.plane.request("GET", "/metrics")).text;
  const metrics = new Exposition(
    text.split("\n").filter((line) => line.startsWith("apiserver_watch_events_total")).join("\n"),
  );
  const pods = (name: string) =>
    metrics.all.filter((sample) =>
      sample.name === name && (sample.labels.resource === "pods" || sample.labels.kind === "Pod")
    ).reduce((total, sample) => total + sample.value, 0);
  return { events: pods("apiserver_watch_events_total") };
}

/** What the real exporters export, by pod name (a pod that does not answer is left out). */
async function scrapeReal(cluster: RealCluster): Promise<Map<string, Exposition>> {
  const result = new Map<string, Exposition>();
  await Promise.all(cluster.agents.flatMap((agent) =>
    [...agent.pods.values()].map(async (pod) => {
      try {
        const response = await fetch(`http://${pod.address}:8000/metrics`, {
          signal: AbortSignal.timeout(3_000),
        });
        result.set(pod.name, new Exposition(await response.text()));
      } catch { /* starting or stopping */ }
    })
  ));
  return result;
}

/** The release's DaemonSet status. */
// deno-lint-ignore no-explicit-any
async function daemonSetStatus(cluster: RealCluster): Promise<any> {
  return (await cluster.plane.ok(
    "GET",
    `/apis/apps/v1/namespaces/${NAMESPACE}/daemonsets/${RELEASE}`,
  ));
}

/** Requests of the release's service account in [from, to): real pods (bound tokens) and hollow ones. */
function exporterRequests(
  events: readonly AuditEvent[],
  from: string,
  to: string,
): { real: AuditEvent[]; hollow: AuditEvent[] } {
  const inWindow = events.filter((event) =>
    event.user.username === `system:serviceaccount:${NAMESPACE}:${RELEASE}` &&
    event.requestReceivedTimestamp >= from && event.requestReceivedTimestamp < to
  );
  const real = inWindow.filter((event) =>
    event.user.extra?.["authentication.kubernetes.io/pod-name"] !== undefined
  );
  return { real, hollow: inWindow.filter((event) => !real.includes(event)) };
}

function totalsDelta(after: HollowWatchTotals, before: HollowWatchTotals): HollowWatchTotals {
  return Object.fromEntries(
    Object.entries(after).map((
      [key, value],
    ) => [key, value - before[key as keyof HollowWatchTotals]]),
  ) as unknown as HollowWatchTotals;
}

/** The steady state with the release installed. */
export interface SteadyResult {
  readonly usage: PlaneUsage;
  /** Seconds from every pod Ready to the window's start: until the install's events drained. */
  readonly settle_seconds?: number;
  /** Requests per real exporter per hour in the window (lists, watches). */
  readonly real_lists_per_pod_per_hour: number;
  readonly real_watches_per_pod_per_hour: number;
  /** Every exporter's (real and hollow) requests per pod per hour in the window, from the audit log. */
  readonly lists_per_pod_per_hour: number;
  readonly watches_per_pod_per_hour: number;
  /** The most exporter requests the API server received in one second of the window. */
  readonly requests_peak_per_second: number;
  /** Watch events (bookmarks) per exporter per minute, and their bytes, seen by the hollow exporters. */
  readonly events_per_exporter_per_minute: number;
  readonly bytes_per_exporter_per_minute: number;
  readonly pod_changes_in_window: number;
  /** The real exporters: resident memory and CPU (cores) over the window, and peers. */
  readonly real_rss_mib: { readonly min: number; readonly max: number };
  /**
   * Each real exporter's peak resident memory since its start (`VmHWM`), with its anonymous part
   * now, read from /proc at the window's end, in MiB: where a high reading came from.
   */
  readonly real_processes?: ReadonlyArray<
    { readonly rss: number; readonly peak_rss: number; readonly anon_rss: number }
  >;
  readonly real_heap_mib_max: number;
  readonly real_cores_max: number;
  readonly real_discovered_min: number;
  readonly real_selected: number[];
}

/** Lists of the release's pods as a starting exporter asks them (its token, its pages). */
export interface ListResult {
  readonly pods: number;
  readonly bytes: number;
  /** From etcd (resourceVersion unset): median milliseconds to the last byte, and CPU per list. */
  readonly etcd_ms: number;
  readonly etcd_apiserver_cpu_ms: number;
  readonly etcd_etcd_cpu_ms: number;
  /** From the API server's watch cache (resourceVersion=0). */
  readonly cache_ms: number;
  readonly cache_apiserver_cpu_ms: number;
  readonly cache_etcd_cpu_ms: number;
}

/** One `helm upgrade` rolled to the end. */
export interface UpgradeResult {
  readonly max_unavailable: string;
  readonly pods_replaced: number;
  readonly seconds: number;
  readonly max_unavailable_seen: number;
  readonly usage: PlaneUsage;
  readonly dial_errors_counted: number;
  readonly stale_series: number;
  /** Pod changes in the release's namespace (the agent's cluster-wide watch), per pod replaced. */
  readonly changes_per_pod_replaced: number;
  /** Watch events the hollow exporters were sent per pod change, per hollow exporter running. */
  readonly events_per_change_per_exporter: number;
  readonly bytes_per_event: number;
  /** The API server's own count of pod watch events sent (to every watcher) per change. */
  readonly apiserver_events_per_change: number;
  readonly lists_by_new_exporters: number;
  readonly list_bytes_per_pod: number;
  /** Each new real exporter: seconds from its process's start to its first full peer list. */
  readonly real_seconds_to_peer_list: number[];
  readonly hollow_failures: number;
  /** Times the agent's own watch (which counts the changes) ended in the rollout: 0 for exact counts. */
  readonly agent_watch_restarts: number;
  /** Hollow exporters' watch streams open during the rollout. */
  readonly hollow_watches_open: { readonly average: number; readonly max: number };
}

/** A sample of the old default's pace (one pod at a time), not run to the end. */
export interface PaceResult {
  readonly max_unavailable: string;
  readonly sample_seconds: number;
  readonly pods_replaced: number;
  readonly seconds_per_pod: number;
  readonly projected_minutes: number;
}

/** The API server restarted under the exporters. */
export interface RestartResult {
  readonly restart_seconds: number;
  readonly seconds_to_every_real_current: number | null;
  readonly relists_real: number;
  readonly relists_hollow: number;
  readonly rewatches_hollow: number;
  readonly usage: PlaneUsage;
}

/** Everything measured at one size. */
export interface SizeResult {
  readonly nodes: number;
  readonly real: number;
  readonly baseline: PlaneUsage;
  readonly install: { readonly seconds: number; readonly usage: PlaneUsage };
  readonly steady: SteadyResult;
  readonly lists: ListResult;
  readonly endpoints_bytes: number;
  readonly endpoints_addresses: number;
  readonly service_bytes: number;
  readonly pace_old_default?: PaceResult;
  readonly upgrade: UpgradeResult;
  readonly restart: RestartResult;
  readonly uninstall_seconds: number;
}

/** How long each phase runs. */
export interface ScaleOptions {
  readonly baselineMs: number;
  readonly steadyMs: number;
  /** How long the old default's upgrade is sampled; 0: not at all. */
  readonly paceSampleMs: number;
  /**
   * How long an upgrade may take before the run gives up (default 30 minutes): longer than the
   * 10 minutes a 1,000-node upgrade must take, so a slow one is measured and judged, not lost.
   */
  readonly upgradeTimeoutMs?: number;
  readonly log: (line: string) => void;
}

/** Waits until every node runs a Ready pod of the release's current generation. */
async function waitRolled(cluster: RealCluster, generation: number, timeoutMs: number) {
  const deadline = performance.now() + timeoutMs;
  let maxUnavailable = 0;
  for (;;) {
    const { status } = await daemonSetStatus(cluster).catch(() => ({ status: undefined }));
    if (status) {
      maxUnavailable = Math.max(maxUnavailable, status.numberUnavailable ?? 0);
      if (
        status.observedGeneration >= generation &&
        status.desiredNumberScheduled === cluster.nodeCount &&
        status.updatedNumberScheduled === cluster.nodeCount &&
        status.numberReady === cluster.nodeCount && (status.numberUnavailable ?? 0) === 0
      ) return maxUnavailable;
    }
    if (performance.now() > deadline) {
      throw new Error(
        `Cannot finish the rollout: not done within ${timeoutMs / 1000} s (${
          JSON.stringify(status)
        })`,
      );
    }
    await sleep(1_000);
  }
}

/** Lists asked each way: /proc counts CPU in 10 ms ticks, so 20 give 0.5 ms a list. */
const LISTS = 20;

async function measureLists(cluster: RealCluster, pods: number): Promise<ListResult> {
  const token = await cluster.plane.serviceAccountToken(NAMESPACE, RELEASE, 3600);
  const client = Deno.createHttpClient({ caCerts: [cluster.plane.caPem] });
  const list = async (resourceVersion: string | undefined) => {
    const started = performance.now();
    let bytes = 0;
    let continueToken = "";
    do {
      const query: Record<string, string> = { limit: String(LIST_PAGE_SIZE) };
      if (continueToken) query.continue = continueToken;
      if (resourceVersion !== undefined && !continueToken) query.resourceVersion = resourceVersion;
      const response = await fetch(
        `${cluster.plane.apiUrl}${podsPath(NAMESPACE, SELECTOR, query)}`,
        {
          client,
          headers: { authorization: `Bearer ${token}`, accept: "application/json" },
          signal: AbortSignal.timeout(60_000),
        },
      );
      const body = await response.text();
      if (response.status !== 200) {
        throw new Error(`list answered ${response.status}: ${body.slice(0, 200)}`);
      }
      bytes += body.length;
      continueToken = /"continue":"([^"]*)"/.exec(body.slice(0, 1_000))?.[1] ?? "";
    } while (continueToken);
    return { ms: performance.now() - started, bytes };
  };
  const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const run = async (resourceVersion: string | undefined) => {
    const times: number[] = [];
    let bytes = 0;
    const { usage } = await sampled(cluster, async () => {
      for (let index = 0; index < LISTS; index++) {
        const result = await list(resourceVersion);
        times.push(result.ms);
        bytes = result.bytes;
      }
    });
    return {
      ms: round(median(times)),
      apiserver: round(usage.apiserver_cpu_seconds * 1000 / LISTS, 1),
      etcd: round(usage.etcd_cpu_seconds * 1000 / LISTS, 1),
      bytes,
    };
  };
  try {
    const etcd = await run(undefined);
    const cache = await run("0");
    return {
      pods,
      bytes: etcd.bytes,
      etcd_ms: etcd.ms,
      etcd_apiserver_cpu_ms: etcd.apiserver,
      etcd_etcd_cpu_ms: etcd.etcd,
      cache_ms: cache.ms,
      cache_apiserver_cpu_ms: cache.apiserver,
      cache_etcd_cpu_ms: cache.etcd,
    };
  } finally {
    client.close();
  }
}

/** Seconds from each real pod's start to its first "Peers:" log line (its first full list), for pods started after `since`. */
function secondsToPeerList(cluster: RealCluster, since: number): number[] {
  const result: number[] = [];
  for (const agent of cluster.agents) {
    for (const pod of agent.pods.values()) {
      if (pod.startedAt < since) continue;
      for (const line of pod.logs) {
        if (!line.includes('"Peers: ')) continue;
        try {
          const record = JSON.parse(line) as { "@timestamp": string };
          result.push(round((Date.parse(record["@timestamp"]) - pod.startedAt) / 1000));
        } catch { /* not a JSON line */ }
        break;
      }
    }
  }
  return result.sort((a, b) => a - b);
}

/**
 * Series a real exporter keeps for a pod that is gone: a `host` whose IP no
 * pod holds now, or holds on another node (an address reused).
 */
async function staleSeries(cluster: RealCluster): Promise<number> {
  const current = new Set<string>();
  for (const pod of await cluster.pods()) {
    if (pod.status?.podIP) current.add(`${pod.status.podIP}|${pod.spec.nodeName}`);
  }
  let stale = 0;
  for (const metrics of (await scrapeReal(cluster)).values()) {
    for (const sample of metrics.all) {
      const host = sample.labels.host;
      const node = sample.labels.target_node;
      if (host === undefined || node === undefined) continue;
      const ip = host.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
      if (!current.has(`${ip}|${node}`)) stale++;
    }
  }
  return stale;
}

/** `helm upgrade` with `values`, rolled to the end; the real exporters are read every 2 s. */
async function upgrade(
  cluster: RealCluster,
  timeoutMs: number,
  values: Record<string, string>,
  label: string,
): Promise<UpgradeResult> {
  const hollow = cluster.hollow!;
  const daemonSet = await daemonSetStatus(cluster);
  const generation = daemonSet.metadata.generation + 1;
  const pods = cluster.nodeCount;
  const lastErrors = new Map<string, number>();
  const readErrors = async () => {
    for (const [name, metrics] of await scrapeReal(cluster)) {
      lastErrors.set(
        name,
        metrics.samples("network_dial_error_total").reduce(
          (total, sample) => total + sample.value,
          0,
        ),
      );
    }
  };
  await readErrors();
  const errorsBefore = [...lastErrors.values()].reduce((a, b) => a + b, 0);
  lastErrors.clear();
  const totalsBefore = { ...hollow.totals };
  const changesBefore = hollow.changes.get(NAMESPACE) ?? 0;
  const restartsBefore = hollow.watchRestarts;
  const serverBefore = await watchEventCounters(cluster);
  const started = Date.now();
  let exporterSamples = 0;
  let maxWatching = 0;
  let samples = 0;
  const { usage, result: maxUnavailable } = await sampled(cluster, async () => {
    await cluster.helm("upgrade", values);
    let done = false;
    const reading = (async () => {
      while (!done) {
        await readErrors();
        exporterSamples += hollow.watching;
        maxWatching = Math.max(maxWatching, hollow.watching);
        samples++;
        await sleep(2_000);
      }
    })();
    try {
      return await waitRolled(cluster, generation, timeoutMs);
    } finally {
      done = true;
      await reading;
    }
  });
  const seconds = (Date.now() - started) / 1000;
  // Two probe rounds with every new pod in place, then the last word on counters and series.
  await sleep(5_000);
  await readErrors();
  const changes = (hollow.changes.get(NAMESPACE) ?? 0) - changesBefore;
  const totals = totalsDelta(hollow.totals, totalsBefore);
  const serverAfter = await watchEventCounters(cluster);
  const events = totals.events - totals.bookmarks;
  // The hollow exporters' watches open, averaged over the rollout (read about every 2 s).
  const averageExporters = exporterSamples / Math.max(1, samples);
  return {
    max_unavailable: label,
    pods_replaced: pods,
    seconds: round(seconds),
    max_unavailable_seen: maxUnavailable,
    usage,
    // The real exporters that were replaced took their counts along; what each counted is
    // read every 2 s, so this is what they counted, less what the old ones had before.
    dial_errors_counted: Math.max(
      0,
      [...lastErrors.values()].reduce((a, b) => a + b, 0) - errorsBefore,
    ),
    stale_series: await staleSeries(cluster),
    changes_per_pod_replaced: round(changes / pods, 2),
    events_per_change_per_exporter: round(
      events / Math.max(1, changes) / Math.max(1, averageExporters),
      2,
    ),
    bytes_per_event: round(totals.eventBytes / Math.max(1, totals.events), 0),
    apiserver_events_per_change: round(
      (serverAfter.events - serverBefore.events) / Math.max(1, changes),
      1,
    ),
    lists_by_new_exporters: totals.lists,
    list_bytes_per_pod: round(totals.listBytes / Math.max(1, totals.lists) / pods, 0),
    real_seconds_to_peer_list: secondsToPeerList(cluster, started),
    hollow_failures: totals.failures,
    agent_watch_restarts: hollow.watchRestarts - restartsBefore,
    hollow_watches_open: { average: round(averageExporters), max: maxWatching },
  };
}

/** The old default (one pod at a time) for `sampleMs`: its pace, projected to every pod. */
async function paceOfOldDefault(
  cluster: RealCluster,
  values: Record<string, string>,
  sampleMs: number,
): Promise<PaceResult> {
  await cluster.helm("upgrade", { ...values, "updateStrategy.rollingUpdate.maxUnavailable": "1" });
  const started = performance.now();
  await sleep(sampleMs);
  const { status } = await daemonSetStatus(cluster);
  // Pods of the new template that are up: the ones replaced so far.
  const replaced = Math.max(
    0,
    (status.updatedNumberScheduled ?? 0) - (status.numberUnavailable ?? 0),
  );
  const seconds = (performance.now() - started) / 1000;
  const perPod = seconds / Math.max(1, replaced);
  return {
    max_unavailable: "1",
    sample_seconds: round(seconds),
    pods_replaced: replaced,
    seconds_per_pod: round(perPod, 2),
    projected_minutes: round(perPod * cluster.nodeCount / 60),
  };
}

/** The API server's and etcd's usage after a restart is measured over this long. */
const RESTART_USAGE_MS = 60_000;
/** How long after a restart the real exporters may take to be current before it counts as never. */
const RESTART_CURRENT_LIMIT_MS = 420_000;

/**
 * Seconds from `started` until every real exporter's pod list is current again (synced after
 * `since`), or `null` when that has not happened `limitMs` after `started`.
 */
async function untilRealCurrent(
  cluster: RealCluster,
  since: string,
  started: number,
  limitMs: number,
): Promise<number | null> {
  while (performance.now() - started < limitMs) {
    const scraped = await scrapeReal(cluster);
    const current = [...scraped.values()].every((metrics) =>
      metrics.value("net_exporter_discovery_last_sync_timestamp_seconds") * 1000 >
        Date.parse(since)
    );
    if (current && scraped.size === cluster.agents.length) {
      return round((performance.now() - started) / 1000);
    }
    await sleep(1_000);
  }
  return null;
}

async function restartApiServer(cluster: RealCluster): Promise<RestartResult> {
  const restartAt = new Date().toISOString();
  const started = performance.now();
  let restartSeconds = 0;
  let fresh: number | null = null;
  const { usage } = await sampled(cluster, async (sampler) => {
    await sampler.sample();
    await cluster.plane.restartApiServer();
    await sampler.sample();
    restartSeconds = round((performance.now() - started) / 1000);
    fresh = await untilRealCurrent(cluster, restartAt, started, RESTART_USAGE_MS);
    // The rest of a minute, for the hollow exporters' relists and the CPU they cost.
    await sleep(Math.max(0, RESTART_USAGE_MS - (performance.now() - started)));
  });
  // Every exporter relists at once: at 1,000 nodes that is 1,000 lists of 1,000 pods, which an
  // API server on 2 shared cores serves in minutes, not in the minute measured for its CPU.
  fresh ??= await untilRealCurrent(cluster, restartAt, started, RESTART_CURRENT_LIMIT_MS);
  await sleep(2_000); // the audit log is written in batches of at most a second
  const { real, hollow } = exporterRequests(
    await cluster.plane.audit(),
    restartAt,
    new Date().toISOString(),
  );
  return {
    restart_seconds: restartSeconds,
    seconds_to_every_real_current: fresh,
    relists_real: real.filter((event) => event.verb === "list").length,
    relists_hollow: hollow.filter((event) => event.verb === "list").length,
    rewatches_hollow: hollow.filter((event) => event.verb === "watch").length,
    usage,
  };
}

/** /proc's view of every real exporter's process (the node agents' children), in MiB. */
async function realProcesses(
  cluster: RealCluster,
): Promise<Array<{ rss: number; peak_rss: number; anon_rss: number }>> {
  const readings = [];
  for (const agent of cluster.agents) {
    for (const running of agent.pods.values()) {
      const usage = await processUsage(running.child.pid);
      if (usage === undefined) continue;
      readings.push({
        rss: round(usage.rssBytes / MIB),
        peak_rss: round(usage.peakRssBytes / MIB),
        anon_rss: round(usage.rssAnonBytes / MIB),
      });
    }
  }
  return readings;
}

/** The install's fan-out has drained when no pod event reached a hollow exporter for this long. */
const SETTLE_QUIET_MS = 20_000;
/** The steady window starts at the latest this long after every pod was Ready. */
const SETTLE_LIMIT_MS = 300_000;

/**
 * Waits until the install's watch fan-out has drained: every hollow exporter has its watch open
 * and none was sent a pod event (bookmarks aside) for {@link SETTLE_QUIET_MS}, at least 15 s and
 * at most `limitMs`. Every pod Ready is not enough: at 1,000 nodes the API server is still
 * sending the install's events (each new pod to every earlier one) minutes later, and a window
 * started then measures the install. Returns the seconds waited.
 */
async function settle(hollow: HollowNodes, limitMs: number): Promise<number> {
  const started = performance.now();
  const podEvents = () => hollow.totals.events - hollow.totals.bookmarks;
  let last = podEvents();
  let quietSince = performance.now();
  await sleep(15_000);
  while (performance.now() - started < limitMs) {
    if (podEvents() !== last) {
      last = podEvents();
      quietSince = performance.now();
    } else if (
      performance.now() - quietSince >= SETTLE_QUIET_MS && hollow.watching >= hollow.exporters
    ) {
      break;
    }
    await sleep(1_000);
  }
  return round((performance.now() - started) / 1000);
}

/** Grows the hollow nodes to `nodes` in all and measures every phase at that size. */
export async function measureSize(
  cluster: RealCluster,
  nodes: number,
  options: ScaleOptions,
): Promise<SizeResult> {
  const hollow = cluster.hollow!;
  const { log } = options;
  const add = nodes - cluster.nodeCount;
  if (add < 0) {
    throw new Error(`Cannot measure ${nodes} nodes: current run has ${cluster.nodeCount}`);
  }
  log(`scale ${nodes}: registering ${add} hollow nodes`);
  await hollow.add(add);
  log(`scale ${nodes}: baseline without the release`);
  await sleep(10_000);
  const { usage: baseline } = await sampled(cluster, () => sleep(options.baselineMs));

  log(`scale ${nodes}: helm install`);
  const installStarted = performance.now();
  const { usage: installUsage } = await sampled(cluster, async () => {
    await cluster.helm("install");
    await cluster.waitForPods(900_000);
  });
  const installSeconds = round((performance.now() - installStarted) / 1000);

  log(`scale ${nodes}: steady state`);
  const settleSeconds = await settle(hollow, SETTLE_LIMIT_MS);
  const from = new Date().toISOString();
  const totalsBefore = { ...hollow.totals };
  const changesBefore = [...hollow.changes.values()].reduce((a, b) => a + b, 0);
  const exportersInWindow = hollow.running;
  const cpuBefore = new Map<string, number>();
  for (const [name, metrics] of await scrapeReal(cluster)) {
    cpuBefore.set(name, metrics.value("process_cpu_seconds_total"));
  }
  const windowStarted = performance.now();
  const { usage: steadyUsage } = await sampled(cluster, () => sleep(options.steadyMs));
  const windowSeconds = (performance.now() - windowStarted) / 1000;
  const to = new Date().toISOString();
  const scraped = await scrapeReal(cluster);
  await sleep(2_000); // the audit log is written in batches of at most a second
  const { real, hollow: hollowRequests } = exporterRequests(await cluster.plane.audit(), from, to);
  const every = [...real, ...hollowRequests];
  const perSecond = new Map<string, number>();
  for (const event of every) {
    const second = event.requestReceivedTimestamp.slice(0, 19);
    perSecond.set(second, (perSecond.get(second) ?? 0) + 1);
  }
  const everyPerHour = (verb: string) =>
    round(
      every.filter((event) => event.verb === verb).length /
        (cluster.agents.length + exportersInWindow) /
        (windowSeconds / 3600),
    );
  const totals = totalsDelta(hollow.totals, totalsBefore);
  const perHour = (verb: string) =>
    round(
      real.filter((event) => event.verb === verb).length / cluster.agents.length /
        (windowSeconds / 3600),
    );
  const realRss = [...scraped.values()].map((metrics) =>
    metrics.value("process_resident_memory_bytes") / MIB
  );
  const steady: SteadyResult = {
    usage: steadyUsage,
    settle_seconds: settleSeconds,
    real_lists_per_pod_per_hour: perHour("list"),
    real_watches_per_pod_per_hour: perHour("watch"),
    lists_per_pod_per_hour: everyPerHour("list"),
    watches_per_pod_per_hour: everyPerHour("watch"),
    requests_peak_per_second: Math.max(0, ...perSecond.values()),
    events_per_exporter_per_minute: round(
      totals.events / Math.max(1, exportersInWindow) / (windowSeconds / 60),
      2,
    ),
    bytes_per_exporter_per_minute: round(
      totals.eventBytes / Math.max(1, exportersInWindow) / (windowSeconds / 60),
      0,
    ),
    pod_changes_in_window: [...hollow.changes.values()].reduce((a, b) => a + b, 0) - changesBefore,
    real_rss_mib: { min: round(Math.min(...realRss)), max: round(Math.max(...realRss)) },
    real_processes: await realProcesses(cluster),
    real_heap_mib_max: round(
      Math.max(...[...scraped.values()].map((metrics) => metrics.value("process_heap_bytes"))) /
        MIB,
    ),
    real_cores_max: round(
      Math.max(
        ...[...scraped].map(([name, metrics]) =>
          (metrics.value("process_cpu_seconds_total") - (cpuBefore.get(name) ?? 0)) / windowSeconds
        ),
      ),
      3,
    ),
    real_discovered_min: Math.min(
      ...[...scraped.values()].map((metrics) =>
        metrics.value("net_exporter_peers", { state: "discovered" })
      ),
    ),
    real_selected: [...scraped.values()].map((metrics) =>
      metrics.value("net_exporter_peers", { state: "selected" })
    ),
  };

  log(`scale ${nodes}: lists from etcd and from the watch cache`);
  const lists = await measureLists(cluster, nodes);
  const endpoints = await cluster.plane.request(
    "GET",
    `/api/v1/namespaces/${NAMESPACE}/endpoints/${RELEASE}`,
  );
  const service = await cluster.plane.request(
    "GET",
    `/api/v1/namespaces/${NAMESPACE}/services/${RELEASE}`,
  );
  const endpointsAddresses = (endpoints.json?.subsets ?? []).reduce(
    (total: number, subset: { addresses?: unknown[] }) => total + (subset.addresses?.length ?? 0),
    0,
  );

  let pace: PaceResult | undefined;
  if (options.paceSampleMs > 0) {
    log(`scale ${nodes}: helm upgrade at the old default (one pod at a time), sampled`);
    pace = await paceOfOldDefault(cluster, { "dns.timeout": "900ms" }, options.paceSampleMs);
  }
  log(`scale ${nodes}: helm upgrade at the chart's defaults`);
  const upgraded = await upgrade(
    cluster,
    options.upgradeTimeoutMs ?? 1_800_000,
    { "dns.timeout": "800ms" },
    "chart default",
  );

  log(`scale ${nodes}: API server restart`);
  const restart = await restartApiServer(cluster);

  log(`scale ${nodes}: helm uninstall`);
  const uninstallStarted = performance.now();
  await cluster.helmRelease("uninstall", RELEASE, NAMESPACE);
  for (;;) {
    if ((await cluster.pods()).length === 0) break;
    if (performance.now() - uninstallStarted > 600_000) {
      throw new Error("Cannot uninstall: pods stayed for 10 minutes");
    }
    await sleep(2_000);
  }
  return {
    nodes,
    real: cluster.agents.length,
    baseline,
    install: { seconds: installSeconds, usage: installUsage },
    steady,
    lists,
    endpoints_bytes: endpoints.text.length,
    endpoints_addresses: endpointsAddresses,
    service_bytes: service.text.length,
    ...(pace ? { pace_old_default: pace } : {}),
    upgrade: upgraded,
    restart,
    uninstall_seconds: round((performance.now() - uninstallStarted) / 1000),
  };
}
