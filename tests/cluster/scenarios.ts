/**
 * What the real-control-plane cluster proves, one scenario each, every figure
 * read from the API server (its audit log) or from the exporters' /metrics:
 *
 * - install: `helm install` of chart/, unchanged, accepted; one Ready pod per
 *   node, also on an API server that limits critical priority classes to
 *   namespaces with a matching quota (as GKE does by default);
 * - discovery through the real watch: every pod probes min(K, N−1) peers;
 *   list and watch requests per pod per hour, from the audit log;
 * - RBAC: no forbidden request in steady state, and a pod's own token is
 *   refused for secrets, for pods of another namespace and for cluster-scope
 *   lists;
 * - `helm upgrade` changing a flag: the DaemonSet controller rolls every pod;
 *   dial errors counted anywhere during the rollout, series left for old pod
 *   IPs;
 * - etcd compacted past every watch's resourceVersion, then the API server
 *   restarted: the exporters relist, keep their peers and keep probing;
 * - a node cut off: its peers count it unreachable, the rest stay clean.
 * @module
 */

import { Exposition } from "../helpers/metrics.ts";
import type { RealCluster } from "./cluster.ts";
import { NAMESPACE, RELEASE } from "./cluster.ts";
import type { AuditEvent } from "./control_plane.ts";

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// deno-lint-ignore no-explicit-any
type Pod = any;

/** Each pod's /metrics, by pod name (a pod that does not answer is left out). */
async function scrapeAll(
  cluster: RealCluster,
): Promise<Map<string, { pod: Pod; metrics: Exposition }>> {
  const result = new Map<string, { pod: Pod; metrics: Exposition }>();
  // The API server may be restarting: then nobody is listed, and the caller asks again.
  const pods = await cluster.pods().catch(() => []);
  for (const pod of pods) {
    if (!pod.status?.podIP || pod.metadata.deletionTimestamp) continue;
    try {
      const response = await fetch(`http://${pod.status.podIP}:8000/metrics`, {
        signal: AbortSignal.timeout(3_000),
      });
      result.set(pod.metadata.name, { pod, metrics: new Exposition(await response.text()) });
    } catch { /* not answering (starting or stopping) */ }
  }
  return result;
}

const sum = (metrics: Exposition, name: string, labels: Record<string, string> = {}) =>
  metrics.samples(name, labels).reduce((total, sample) => total + sample.value, 0);

/** Requests by the release's service account, from the audit log, with the pod named in its token. */
function exporterRequests(events: readonly AuditEvent[]): AuditEvent[] {
  return events.filter((event) =>
    event.user.username === `system:serviceaccount:${NAMESPACE}:${RELEASE}`
  );
}

export interface InstallResult {
  readonly objects_applied: number;
  readonly pods_ready: number;
  readonly nodes: number;
  readonly seconds_to_all_ready: number;
  readonly admission: string;
}

/** `helm install` as it is; the API server limits critical priority classes as GKE does. */
export async function install(cluster: RealCluster): Promise<InstallResult> {
  const started = performance.now();
  const output = await cluster.helm("install");
  await cluster.waitForPods(120_000);
  const manifest = await new Deno.Command("helm", {
    args: [
      "get",
      "manifest",
      RELEASE,
      "--namespace",
      NAMESPACE,
      "--kubeconfig",
      cluster.plane.adminKubeconfig,
    ],
    stdout: "piped",
    stderr: "null",
  }).output();
  const objects =
    new TextDecoder().decode(manifest.stdout).split("\n").filter((line) =>
      line.startsWith("kind: ")
    ).length;
  return {
    objects_applied: objects,
    pods_ready: (await cluster.pods()).length,
    nodes: cluster.nodeCount,
    seconds_to_all_ready: Math.round((performance.now() - started) / 100) / 10,
    admission: output.includes("STATUS: deployed")
      ? "ResourceQuota limits system-node-critical/system-cluster-critical pods to namespaces with a matching quota"
      : "",
  };
}

export interface DiscoveryResult {
  readonly max_peers: number;
  /** Per pod: peers selected (should be min(K, N−1)). */
  readonly selected_per_pod: Record<string, number>;
  readonly expected_selected: number;
  readonly window_seconds: number;
  readonly list_per_pod_per_hour: number;
  readonly watch_per_pod_per_hour: number;
  /** Median seconds between one pod's consecutive watch requests (null: fewer than two in the window). */
  readonly seconds_between_watches: number | null;
  readonly forbidden: number;
  /** `network_error_total` summed over the pods at the end of the window: API failures they counted. */
  readonly exporter_errors: number;
}

/** Steady state over `windowMs`: peers selected, and the API server's count of requests per pod. */
export async function discovery(cluster: RealCluster, windowMs: number): Promise<DiscoveryResult> {
  const maxPeers = 10;
  const expected = Math.min(maxPeers, cluster.nodeCount - 1);
  const from = new Date().toISOString();
  await sleep(windowMs);
  const to = new Date().toISOString();
  const scraped = await scrapeAll(cluster);
  const selected = Object.fromEntries(
    [...scraped].map((
      [name, { metrics }],
    ) => [name, metrics.value("net_exporter_peers", { state: "selected" })]),
  );
  // The audit log is written in batches of at most a second.
  await sleep(2_000);
  const events = exporterRequests(await cluster.plane.audit()).filter((event) =>
    event.requestReceivedTimestamp >= from && event.requestReceivedTimestamp <= to
  );
  const perPodPerHour = (verb: string) =>
    Math.round(
      events.filter((event) => event.verb === verb).length / scraped.size / (windowMs / 3_600_000) *
        10,
    ) / 10;
  // A count over a window is at the mercy of where the window's edges fall; the gap is not,
  // so it is taken over every watch of the pods so far, from their first.
  const watchesByPod = new Map<string, number[]>();
  const watches = exporterRequests(await cluster.plane.audit()).filter((event) =>
    event.verb === "watch" && event.requestReceivedTimestamp <= to
  );
  for (const event of watches) {
    const pod = event.user.extra?.["authentication.kubernetes.io/pod-name"]?.[0] ?? "?";
    watchesByPod.set(pod, [
      ...(watchesByPod.get(pod) ?? []),
      Date.parse(event.requestReceivedTimestamp),
    ]);
  }
  const gaps = [...watchesByPod.values()].flatMap((times) =>
    times.sort((a, b) => a - b).slice(1).map((time, index) => (time - times[index]!) / 1000)
  ).sort((a, b) => a - b);
  return {
    max_peers: maxPeers,
    selected_per_pod: selected,
    expected_selected: expected,
    window_seconds: windowMs / 1000,
    list_per_pod_per_hour: perPodPerHour("list"),
    watch_per_pod_per_hour: perPodPerHour("watch"),
    seconds_between_watches: gaps.length === 0
      ? null
      : Math.round(gaps[Math.floor(gaps.length / 2)]! * 10) / 10,
    forbidden: events.filter((event) => event.responseStatus?.code === 403).length,
    exporter_errors: [...scraped.values()].reduce(
      (total, { metrics }) => total + metrics.value("network_error_total"),
      0,
    ),
  };
}

export interface RbacResult {
  readonly forbidden_in_steady_state: number;
  readonly requests_in_steady_state: number;
  readonly refused: Record<string, number>;
  readonly allowed_own_pods: number;
}

/** The pod's own token (a bound one, as the kubelet projects it) tried against what it must not read. */
export async function rbac(cluster: RealCluster): Promise<RbacResult> {
  const [pod] = await cluster.pods();
  const token = await cluster.plane.serviceAccountToken(
    NAMESPACE,
    pod.spec.serviceAccountName,
    600,
    { name: pod.metadata.name, uid: pod.metadata.uid },
  );
  // Everything the pods asked so far is the steady state; the refusals below are asked after it.
  const probedAt = new Date().toISOString();
  const status = async (path: string) =>
    (await cluster.plane.request("GET", path, { token })).status;
  const refused = {
    [`secrets in ${NAMESPACE}`]: await status(`/api/v1/namespaces/${NAMESPACE}/secrets`),
    "pods in kube-system": await status("/api/v1/namespaces/kube-system/pods"),
    "pods of every namespace (cluster scope)": await status("/api/v1/pods"),
    "nodes (cluster scope)": await status("/api/v1/nodes"),
  };
  const own = await status(`/api/v1/namespaces/${NAMESPACE}/pods`);
  // The audit log is written in batches of at most a second.
  await sleep(2_000);
  const steady = exporterRequests(await cluster.plane.audit()).filter((event) =>
    event.requestReceivedTimestamp < probedAt
  );
  return {
    forbidden_in_steady_state: steady.filter((event) => event.responseStatus?.code === 403).length,
    requests_in_steady_state: steady.length,
    refused,
    allowed_own_pods: own,
  };
}

export interface RolloutResult {
  readonly pods_replaced: number;
  readonly seconds: number;
  readonly max_unavailable: number;
  readonly dial_errors_counted: number;
  readonly series_left_for_old_pod_ips: number;
}

/**
 * `helm upgrade` changing one flag; every pod's counters are read every
 * second while the DaemonSet controller replaces the pods, so errors counted
 * by a pod just before it stops are kept.
 */
export async function rollout(cluster: RealCluster): Promise<RolloutResult> {
  const before = await cluster.pods();
  const oldIps = new Set(before.map((pod: Pod) => pod.status.podIP as string));
  const oldUids = new Set(before.map((pod: Pod) => pod.metadata.uid as string));
  const lastErrors = new Map<string, number>();
  let maxUnavailable = 0;
  const started = performance.now();
  const daemonSet = await cluster.plane.ok(
    "GET",
    `/apis/apps/v1/namespaces/${NAMESPACE}/daemonsets/${RELEASE}`,
  );
  await cluster.helm("upgrade", { "log.level": "debug" });
  const generation = daemonSet.metadata.generation + 1;
  const deadline = performance.now() + 180_000;
  for (;;) {
    for (const [name, { metrics }] of await scrapeAll(cluster)) {
      lastErrors.set(name, sum(metrics, "network_dial_error_total"));
    }
    const status =
      (await cluster.plane.ok("GET", `/apis/apps/v1/namespaces/${NAMESPACE}/daemonsets/${RELEASE}`))
        .status;
    maxUnavailable = Math.max(maxUnavailable, status.numberUnavailable ?? 0);
    const pods = await cluster.pods();
    const replaced = pods.every((pod: Pod) => !oldUids.has(pod.metadata.uid));
    if (
      replaced && status.observedGeneration >= generation &&
      status.numberReady === cluster.nodeCount &&
      status.updatedNumberScheduled === cluster.nodeCount
    ) break;
    if (performance.now() > deadline) {
      throw new Error("Cannot finish the rollout: not done within 180 s");
    }
    await sleep(1_000);
  }
  const seconds = Math.round((performance.now() - started) / 100) / 10;
  // Two probe rounds with every new pod in place, then the last word on counters and series.
  await sleep(5_000);
  const after = await scrapeAll(cluster);
  for (const [name, { metrics }] of after) {
    lastErrors.set(name, sum(metrics, "network_dial_error_total"));
  }
  let left = 0;
  for (const { metrics } of after.values()) {
    left += metrics.all.filter((sample) =>
      [...oldIps].some((ip) =>
        (sample.labels.host ?? "").startsWith(`${ip}:`)
      )
    ).length;
  }
  return {
    pods_replaced: before.length,
    seconds,
    max_unavailable: maxUnavailable,
    dial_errors_counted: [...lastErrors.values()].reduce((total, value) => total + value, 0),
    series_left_for_old_pod_ips: left,
  };
}

export interface RecoveryResult {
  readonly compacted_to_revision: number;
  readonly api_server_restart_seconds: number;
  readonly relists_after_restart: number;
  readonly peers_selected_min_during: number;
  readonly expected_selected: number;
  readonly probes_during: number;
  readonly seconds_to_fresh_sync: number | null;
}

/** etcd compacted past every watch's resourceVersion, then the API server restarted under the exporters. */
export async function recovery(cluster: RealCluster): Promise<RecoveryResult> {
  const expected = Math.min(10, cluster.nodeCount - 1);
  // Writes of the cluster's own (leases, events) move the revision on; compact to now.
  const status = JSON.parse(await cluster.plane.etcdctl("endpoint", "status", "--write-out=json"));
  const revision = status[0].Status.header.revision as number;
  await cluster.plane.etcdctl("compact", String(revision));
  const before = await scrapeAll(cluster);
  const probesBefore = [...before.values()].reduce(
    (total, { metrics }) => total + sum(metrics, "network_latency_seconds_count"),
    0,
  );
  const restartAt = new Date().toISOString();
  const started = performance.now();
  let minSelected = Infinity;
  const watching = (async () => {
    while (performance.now() - started < 40_000) {
      for (const { metrics } of (await scrapeAll(cluster)).values()) {
        minSelected = Math.min(
          minSelected,
          metrics.value("net_exporter_peers", { state: "selected" }),
        );
      }
      await sleep(1_000);
    }
  })();
  await cluster.plane.restartApiServer();
  const restartSeconds = Math.round((performance.now() - started) / 100) / 10;
  // Fresh: every pod's last sync is after the restart.
  let fresh: number | null = null;
  while (performance.now() - started < 40_000) {
    const scraped = await scrapeAll(cluster);
    const synced = [...scraped.values()].every(({ metrics }) =>
      metrics.value("net_exporter_discovery_last_sync_timestamp_seconds") * 1000 >
        Date.parse(restartAt)
    );
    if (synced && scraped.size === cluster.nodeCount) {
      fresh = Math.round((performance.now() - started) / 100) / 10;
      break;
    }
    await sleep(1_000);
  }
  await watching;
  const after = await scrapeAll(cluster);
  const probesAfter = [...after.values()].reduce(
    (total, { metrics }) => total + sum(metrics, "network_latency_seconds_count"),
    0,
  );
  // The audit log is written in batches of at most a second.
  await sleep(2_000);
  const events = exporterRequests(await cluster.plane.audit()).filter((event) =>
    event.requestReceivedTimestamp >= restartAt
  );
  return {
    compacted_to_revision: revision,
    api_server_restart_seconds: restartSeconds,
    relists_after_restart: events.filter((event) => event.verb === "list").length,
    peers_selected_min_during: minSelected,
    expected_selected: expected,
    probes_during: probesAfter - probesBefore,
    seconds_to_fresh_sync: fresh,
  };
}

export interface CutResult {
  readonly cut_node: string;
  readonly peers_counting_it_unreachable: number;
  readonly observers: number;
  readonly errors_between_other_nodes: number;
}

/** A node cut off for three probe intervals: its observers count it, no other pair counts anything. */
export async function cutNode(cluster: RealCluster): Promise<CutResult> {
  const node = cluster.sim.nodes[1]!;
  const errors = async () => {
    const result = new Map<string, number>();
    for (const [, { pod, metrics }] of await scrapeAll(cluster)) {
      for (const sample of metrics.samples("network_dial_error_total")) {
        const key = `${pod.spec.nodeName}→${sample.labels.target_node}`;
        result.set(key, (result.get(key) ?? 0) + sample.value);
      }
    }
    return result;
  };
  const before = await errors();
  await cluster.sim.isolate(node, "cut");
  await sleep(6_500);
  await cluster.sim.isolate(node, {});
  await sleep(2_500);
  const after = await errors();
  let counting = 0;
  let clean = 0;
  let observers = 0;
  for (const [key, value] of after) {
    const [from, to] = key.split("→");
    const grew = value - (before.get(key) ?? 0);
    if (to === node.name) {
      observers++;
      if (grew > 0) counting++;
    } else if (from !== node.name) clean += grew;
  }
  return {
    cut_node: node.name,
    peers_counting_it_unreachable: counting,
    observers,
    errors_between_other_nodes: clean,
  };
}

export interface MembershipResult {
  readonly added_node: string;
  readonly seconds_until_added_node_probed_by_all: number | null;
  readonly removed_node: string;
  /** From the Node's deletion until the pod garbage collector had removed its pod. */
  readonly seconds_until_removed_pod_collected: number;
  readonly seconds_until_removed_node_gone_everywhere: number | null;
  readonly series_left_for_removed_node: number;
  readonly pairs_before: number;
  readonly pairs_after_add: number;
  readonly pairs_after_remove: number;
  readonly expected_selected_after: number;
  readonly selected_after: number[];
}

/** The probing pairs (observer node → target node) now. */
async function pairs(cluster: RealCluster): Promise<Set<string>> {
  const result = new Set<string>();
  for (const { pod, metrics } of (await scrapeAll(cluster)).values()) {
    for (const sample of metrics.samples("network_latency_seconds_count")) {
      if (sample.labels.target_node) {
        result.add(`${pod.spec.nodeName}→${sample.labels.target_node}`);
      }
    }
  }
  return result;
}

/**
 * A node joins (Node object and agent: the DaemonSet controller gives it a
 * pod) and one leaves (its Node deleted: the pod garbage collector removes
 * its pod): neighbours re-form, and the gone node's series leave every pod.
 */
export async function membership(cluster: RealCluster): Promise<MembershipResult> {
  const before = await pairs(cluster);
  const started = performance.now();
  const added = await cluster.addNode();
  await cluster.waitForPods(120_000);
  let addedSeen: number | null = null;
  while (performance.now() - started < 90_000) {
    const scraped = await scrapeAll(cluster);
    const probing = [...scraped.values()].filter(({ pod, metrics }) =>
      pod.spec.nodeName === added ||
      metrics.samples("network_latency_seconds_count", { target_node: added }).length > 0
    );
    if (scraped.size === cluster.nodeCount && probing.length === cluster.nodeCount) {
      addedSeen = Math.round((performance.now() - started) / 100) / 10;
      break;
    }
    await sleep(1_000);
  }
  const afterAdd = await pairs(cluster);
  const removed = cluster.agents[0]!.node.name;
  const removing = performance.now();
  await cluster.removeNode(removed);
  const podCollected = Math.round((performance.now() - removing) / 100) / 10;
  let goneEverywhere: number | null = null;
  let left = -1;
  const deadline = performance.now() + 60_000;
  while (performance.now() < deadline) {
    const scraped = await scrapeAll(cluster);
    left = [...scraped.values()].reduce(
      (total, { metrics }) =>
        total + metrics.all.filter((sample) => sample.labels.target_node === removed).length,
      0,
    );
    if (left === 0 && scraped.size === cluster.nodeCount) {
      goneEverywhere = Math.round((performance.now() - removing) / 100) / 10;
      break;
    }
    await sleep(1_000);
  }
  const afterRemove = await pairs(cluster);
  const selected = [...(await scrapeAll(cluster)).values()].map(({ metrics }) =>
    metrics.value("net_exporter_peers", { state: "selected" })
  );
  return {
    added_node: added,
    seconds_until_added_node_probed_by_all: addedSeen,
    removed_node: removed,
    seconds_until_removed_pod_collected: podCollected,
    seconds_until_removed_node_gone_everywhere: goneEverywhere,
    series_left_for_removed_node: left,
    pairs_before: before.size,
    pairs_after_add: afterAdd.size,
    pairs_after_remove: afterRemove.size,
    expected_selected_after: Math.min(10, cluster.nodeCount - 1),
    selected_after: selected,
  };
}

export interface PriorityResult {
  readonly default_values_pods: number;
  readonly nodes: number;
  readonly critical_class_pods: number;
  readonly critical_class_event: string;
}

/**
 * The ResourceQuota admission GKE applies: the chart's defaults got a pod on
 * every node (install), and `priorityClassName=system-node-critical` in a
 * namespace without a matching quota gets none — what the chart's README
 * warns of in one line.
 */
export async function priorityQuota(cluster: RealCluster): Promise<PriorityResult> {
  const namespace = "critical-test";
  const release = "net-exporter-critical";
  await cluster.helmRelease("install", release, namespace, {
    priorityClassName: "system-node-critical",
    port: "8001",
  });
  let event = "";
  const deadline = performance.now() + 30_000;
  while (performance.now() < deadline && event === "") {
    const events = await cluster.plane.ok("GET", `/api/v1/namespaces/${namespace}/events`);
    // deno-lint-ignore no-explicit-any
    event = events.items.find((item: any) => item.reason === "FailedCreate")?.message ?? "";
    await sleep(1_000);
  }
  const pods = (await cluster.plane.ok("GET", `/api/v1/namespaces/${namespace}/pods`)).items.length;
  await cluster.helmRelease("uninstall", release, namespace);
  return {
    default_values_pods: (await cluster.pods()).length,
    nodes: cluster.nodeCount,
    critical_class_pods: pods,
    critical_class_event: event,
  };
}
