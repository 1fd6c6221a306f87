/**
 * Runs the real-cluster scenarios in order and writes what they showed: the
 * report (JSON and Markdown) and the judgement of each figure against what
 * it must be.
 * @module
 */

import type { RealCluster } from "./cluster.ts";
import { KUBERNETES_VERSION } from "./build.ts";
import {
  cutNode,
  type CutResult,
  discovery,
  type DiscoveryResult,
  install,
  type InstallResult,
  membership,
  type MembershipResult,
  priorityQuota,
  type PriorityResult,
  rbac,
  type RbacResult,
  recovery,
  type RecoveryResult,
  rollout,
  type RolloutResult,
} from "./scenarios.ts";

/** Everything one run showed. */
export interface ClusterReport {
  readonly started: string;
  readonly machine: string;
  readonly kubernetes: string;
  readonly nodes: number;
  /** Seconds the control plane took to build, when this run built it. */
  readonly build_seconds: number | null;
  readonly install: InstallResult;
  readonly discovery: DiscoveryResult;
  readonly rbac: RbacResult;
  readonly rollout: RolloutResult;
  readonly recovery?: RecoveryResult;
  readonly cut?: CutResult;
  readonly priority?: PriorityResult;
  readonly membership?: MembershipResult;
  /** What the node agents met (should be empty). */
  readonly agent_errors: string[];
}

/** Which scenarios a run takes beyond install, discovery, RBAC and the rollout. */
export interface RunOptions {
  readonly discoveryWindowMs: number;
  readonly recovery?: boolean;
  readonly cut?: boolean;
  readonly priority?: boolean;
  /** Needs a spare simulated node (`spareNodes: 1`). */
  readonly membership?: boolean;
}

export async function runAll(cluster: RealCluster, options: RunOptions): Promise<ClusterReport> {
  const started = new Date().toISOString().slice(0, 16) + "Z";
  const step = (name: string) => cluster.log(`cluster scenario: ${name}`);
  step("helm install");
  const installed = await install(cluster);
  step("discovery through the real watch");
  const discovered = await discovery(cluster, options.discoveryWindowMs);
  step("RBAC");
  const rbacResult = await rbac(cluster);
  step("helm upgrade rollout");
  const rolled = await rollout(cluster);
  let recovered: RecoveryResult | undefined;
  if (options.recovery ?? true) {
    step("etcd compaction and API server restart");
    recovered = await recovery(cluster);
  }
  let cut: CutResult | undefined;
  if (options.cut ?? true) {
    step("a node cut off");
    cut = await cutNode(cluster);
  }
  let priority: PriorityResult | undefined;
  if (options.priority ?? true) {
    step("a critical priority class on a quota-limited API server");
    priority = await priorityQuota(cluster);
  }
  let members: MembershipResult | undefined;
  if (options.membership ?? true) {
    step("a node added, one removed");
    members = await membership(cluster);
  }
  return {
    started,
    machine: `${Deno.build.os}/${Deno.build.arch}, ${navigator.hardwareConcurrency} cores`,
    kubernetes: KUBERNETES_VERSION,
    nodes: cluster.nodeCount,
    build_seconds: cluster.builtSeconds ?? null,
    install: installed,
    discovery: discovered,
    rbac: rbacResult,
    rollout: rolled,
    ...(recovered ? { recovery: recovered } : {}),
    ...(cut ? { cut } : {}),
    ...(priority ? { priority } : {}),
    ...(members ? { membership: members } : {}),
    agent_errors: cluster.agents.flatMap((agent) => agent.errors),
  };
}

/** Every figure that is not what it must be, in words; empty when the run proves its claims. */
export function judge(report: ClusterReport): string[] {
  const problems: string[] = [];
  const expect = (ok: boolean, what: string) => ok || problems.push(what);
  expect(
    report.install.pods_ready === report.nodes,
    `${report.install.pods_ready} pods for ${report.nodes} nodes`,
  );
  for (const [pod, selected] of Object.entries(report.discovery.selected_per_pod)) {
    expect(
      selected === report.discovery.expected_selected,
      `${pod} probes ${selected} peers, not ${report.discovery.expected_selected}`,
    );
  }
  expect(
    Object.keys(report.discovery.selected_per_pod).length === report.nodes,
    "not every pod answered",
  );
  expect(
    report.discovery.forbidden === 0,
    `${report.discovery.forbidden} forbidden requests while discovering`,
  );
  expect(
    report.discovery.seconds_between_watches === null ||
      report.discovery.seconds_between_watches >= 200,
    `the pods renew their watches every ${report.discovery.seconds_between_watches} s, not every 300 s`,
  );
  expect(
    report.discovery.exporter_errors === 0,
    `${report.discovery.exporter_errors} API failures counted by the pods in steady state`,
  );
  expect(
    report.rbac.forbidden_in_steady_state === 0,
    `${report.rbac.forbidden_in_steady_state} forbidden requests in steady state`,
  );
  for (const [what, status] of Object.entries(report.rbac.refused)) {
    expect(status === 403, `the pod's token read ${what}: ${status}`);
  }
  expect(
    report.rbac.allowed_own_pods === 200,
    `the pod's token could not list its own namespace's pods: ${report.rbac.allowed_own_pods}`,
  );
  expect(
    report.rollout.dial_errors_counted === 0,
    `${report.rollout.dial_errors_counted} dial errors during the rollout`,
  );
  expect(
    report.rollout.series_left_for_old_pod_ips === 0,
    `${report.rollout.series_left_for_old_pod_ips} series left for old pod IPs`,
  );
  expect(
    report.rollout.max_unavailable <= 1,
    `${report.rollout.max_unavailable} pods unavailable at once (maxUnavailable 1)`,
  );
  if (report.recovery) {
    expect(
      report.recovery.peers_selected_min_during === report.recovery.expected_selected,
      `peers dropped to ${report.recovery.peers_selected_min_during} across the API server restart`,
    );
    expect(
      report.recovery.seconds_to_fresh_sync !== null,
      "not every pod synced again after the API server restart",
    );
    expect(report.recovery.probes_during > 0, "no probe ran across the API server restart");
    expect(
      report.recovery.relists_after_restart >= report.nodes,
      "not every pod listed again after the API server restart",
    );
  }
  if (report.priority) {
    expect(
      report.priority.default_values_pods === report.priority.nodes,
      "the default values did not get a pod on every node",
    );
    expect(
      report.priority.critical_class_pods === 0 &&
        /quota/i.test(report.priority.critical_class_event),
      `system-node-critical without a quota: ${report.priority.critical_class_pods} pods, event "${report.priority.critical_class_event}"`,
    );
  }
  if (report.membership) {
    const m = report.membership;
    expect(
      m.seconds_until_added_node_probed_by_all !== null,
      `the added node ${m.added_node} was not probed by every pod`,
    );
    expect(
      m.seconds_until_removed_node_gone_everywhere !== null && m.series_left_for_removed_node === 0,
      `${m.series_left_for_removed_node} series left for the removed node ${m.removed_node}`,
    );
    expect(
      m.selected_after.every((count) => count === m.expected_selected_after),
      `after the changes pods probe ${
        m.selected_after.join(", ")
      } peers, not ${m.expected_selected_after}`,
    );
  }
  if (report.cut) {
    expect(
      report.cut.peers_counting_it_unreachable === report.cut.observers,
      `${report.cut.peers_counting_it_unreachable} of ${report.cut.observers} observers counted the cut node`,
    );
    expect(
      report.cut.errors_between_other_nodes === 0,
      `${report.cut.errors_between_other_nodes} dial errors between nodes that were not cut`,
    );
  }
  expect(
    report.agent_errors.length === 0,
    `node agents met: ${report.agent_errors.slice(0, 3).join("; ")}`,
  );
  return problems;
}

/** The report as Markdown. */
export function markdown(report: ClusterReport): string {
  const rows: Array<[string, string]> = [
    [
      "`helm install` of chart/, unchanged, every object on (ServiceMonitor and PrometheusRule checked against the Prometheus Operator's CRDs): objects accepted by the API server",
      `${report.install.objects_applied}`,
    ],
    [
      `Ready pods, one per node (${report.nodes} nodes), on an API server limiting critical priority classes as GKE does`,
      `${report.install.pods_ready} in ${report.install.seconds_to_all_ready} s`,
    ],
    [
      `Peers each pod probes: min(K=${report.discovery.max_peers}, N−1) = ${report.discovery.expected_selected}`,
      [...new Set(Object.values(report.discovery.selected_per_pod))].join(", "),
    ],
    [
      `List / watch requests per pod per hour, from the API server's audit log (${report.discovery.window_seconds} s window)`,
      `${report.discovery.list_per_pod_per_hour} / ${report.discovery.watch_per_pod_per_hour}`,
    ],
    [
      "Seconds between one pod's consecutive watch requests (median, audit log; the exporter asks for 300 s watches)",
      `${report.discovery.seconds_between_watches ?? "fewer than two so far"}`,
    ],
    [
      "API failures the pods counted in steady state (network_error_total)",
      `${report.discovery.exporter_errors}`,
    ],
    [
      "Forbidden requests by the pods in steady state (audit log)",
      `${report.rbac.forbidden_in_steady_state} of ${report.rbac.requests_in_steady_state}`,
    ],
    ...Object.entries(report.rbac.refused).map(([what, status]) =>
      [`A pod's own token asking for ${what}`, `${status}`] as [string, string]
    ),
    ["…and for its own namespace's pods", `${report.rbac.allowed_own_pods}`],
    [
      `\`helm upgrade\` changing a flag: pods replaced by the DaemonSet controller`,
      `${report.rollout.pods_replaced} in ${report.rollout.seconds} s, at most ${report.rollout.max_unavailable} unavailable`,
    ],
    ["Dial errors counted anywhere during that rollout", `${report.rollout.dial_errors_counted}`],
    ["Series left for old pod IPs after it", `${report.rollout.series_left_for_old_pod_ips}`],
  ];
  if (report.recovery) {
    const r = report.recovery;
    rows.push(
      [
        `etcd compacted to revision ${r.compacted_to_revision}, then the API server restarted (ready again in ${r.api_server_restart_seconds} s): lists by the pods after it, each resuming its watch from a compacted revision (audit log)`,
        `${r.relists_after_restart}`,
      ],
      [
        `Fewest peers any pod probed across it (of ${r.expected_selected})`,
        `${r.peers_selected_min_during}`,
      ],
      ["Probes made across it", `${r.probes_during}`],
      [
        "Seconds until every pod's pod list was current again",
        `${r.seconds_to_fresh_sync ?? "never"}`,
      ],
    );
  }
  if (report.cut) {
    rows.push(
      [
        `A node cut off for three probe intervals: its observers that counted it`,
        `${report.cut.peers_counting_it_unreachable} of ${report.cut.observers}`,
      ],
      ["Dial errors between the nodes not cut", `${report.cut.errors_between_other_nodes}`],
    );
  }
  if (report.priority) {
    rows.push([
      "`priorityClassName=system-node-critical` in a namespace without a matching quota: pods created",
      `${report.priority.critical_class_pods} (${
        report.priority.critical_class_event.replaceAll("|", "/").slice(0, 160)
      })`,
    ]);
  }
  if (report.membership) {
    const m = report.membership;
    rows.push(
      [
        `Node ${m.added_node} added: seconds until every pod probes it, or it them`,
        `${m.seconds_until_added_node_probed_by_all ?? "never"}`,
      ],
      [
        `Node ${m.removed_node} deleted: seconds until the pod garbage collector removed its pod (${m.seconds_until_removed_pod_collected} s), then until its series left every pod`,
        `${m.seconds_until_removed_node_gone_everywhere ?? "never"}`,
      ],
      [
        "Probing pairs before / after the addition / after the removal",
        `${m.pairs_before} / ${m.pairs_after_add} / ${m.pairs_after_remove}`,
      ],
    );
  }
  return [
    `Kubernetes ${report.kubernetes} (Debian's etcd, kube-apiserver, kube-controller-manager, kube-scheduler), ${report.nodes} simulated nodes, ${report.machine}, ${report.started}.${
      report.build_seconds === null
        ? ""
        : ` The control plane was built by this run in ${report.build_seconds} s.`
    }`,
    "",
    "| what | result |",
    "| --- | ---: |",
    ...rows.map(([what, result]) => `| ${what} | ${result} |`),
    "",
    report.agent_errors.length === 0
      ? "The node agents met no error."
      : `The node agents met: ${report.agent_errors.join("; ")}`,
    "",
  ].join("\n");
}
