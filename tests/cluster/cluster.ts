/**
 * A real-control-plane cluster on one machine: the simulated nodes of
 * tests/sim (network namespaces joined by the link emulator, a DNS server on
 * the control point) become real Node objects of a real kube-apiserver, each
 * with a node agent that runs the pods the scheduler binds to it, and the
 * chart is installed with helm, unchanged. Everything is torn down on
 * dispose, also after a failure.
 * @module
 */

import { EXPORTER_PORT, SimCluster } from "../sim/cluster.ts";
import { CHILD_ENV } from "../helpers/requirements.ts";
import { parse as parseYaml } from "yaml";
import { ensureControlPlane, monitoringCrds } from "./build.ts";
import { ControlPlane } from "./control_plane.ts";
import { HollowNodes } from "./hollow.ts";
import { NodeAgent } from "./node_agent.ts";

const CHART = new URL("../../chart/", import.meta.url).pathname;
export const RELEASE = "net-exporter";
export const NAMESPACE = "monitoring";
/** Probes every 2 s (1 s timeout), so a run sees many rounds in a few minutes. */
export const PROBE_INTERVAL = "2s";

/** Options of a run. */
export interface ClusterOptions {
  readonly nodes: number;
  /** Simulated nodes made but not registered, for a scenario to add later. */
  readonly spareNodes?: number;
  /**
   * Addresses for hollow nodes' pods (tests/cluster/hollow.ts), up to 1,000: with any, the run
   * has {@link RealCluster.hollow}, to which a scenario adds nodes.
   */
  readonly hollowAddresses?: number;
  readonly log?: (line: string) => void;
}

/** The cluster: simulated network, real control plane, node agents. */
export class RealCluster implements AsyncDisposable {
  sim!: SimCluster;
  plane!: ControlPlane;
  readonly agents: NodeAgent[] = [];
  /** The hollow nodes, when the run has addresses for them. */
  hollow: HollowNodes | undefined;
  builtSeconds: number | undefined;
  readonly log: (line: string) => void;

  private constructor(readonly options: ClusterOptions) {
    this.log = options.log ?? ((line) => console.error(line));
  }

  /** Builds (once per machine) and starts everything, then registers the nodes. */
  static async create(options: ClusterOptions): Promise<RealCluster> {
    const cluster = new RealCluster(options);
    try {
      const { binary, builtSeconds } = await ensureControlPlane(cluster.log);
      cluster.builtSeconds = builtSeconds;
      cluster.sim = await SimCluster.create({
        nodes: options.nodes + (options.spareNodes ?? 0),
        intervalMs: 2_000,
        timeoutMs: 1_000,
        ...(options.hollowAddresses
          ? { crowd: options.hollowAddresses + 1, crowdOnDemand: true }
          : {}),
      });
      cluster.plane = await ControlPlane.start(
        binary,
        cluster.sim.controlAddress,
        // With hundreds of hollow nodes, this machine's 2 cores carry the API server, etcd and
        // every node's lease at once: during a rollout a renewal can wait past Kubernetes' 50 s,
        // and a node would be called Unknown for what is this machine's limit, not a node's.
        options.hollowAddresses ? { nodeGracePeriod: "5m" } : {},
      );
      await cluster.#installCrds();
      for (const node of cluster.sim.nodes.slice(0, options.nodes)) {
        const agent = new NodeAgent(cluster.plane, cluster.sim, node);
        cluster.agents.push(agent);
        await agent.start();
      }
      if (options.hollowAddresses) {
        await cluster.sim.startCrowd([EXPORTER_PORT], { listPods: false });
        cluster.hollow = new HollowNodes({
          plane: cluster.plane,
          sim: cluster.sim,
          exporters: { namespace: NAMESPACE, serviceAccount: RELEASE },
        });
      }
    } catch (error) {
      await cluster[Symbol.asyncDispose]();
      throw error;
    }
    return cluster;
  }

  /** The ServiceMonitor and PrometheusRule CRDs, established, so the chart's monitoring objects are validated too. */
  async #installCrds(): Promise<void> {
    const names: string[] = [];
    for (const yaml of await monitoringCrds()) {
      const crd = parseYaml(yaml) as { metadata: { name: string } };
      await this.plane.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd);
      names.push(crd.metadata.name);
    }
    const deadline = performance.now() + 60_000;
    for (const name of names) {
      for (;;) {
        const crd = await this.plane.ok(
          "GET",
          `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`,
        );
        const conditions = (crd.status?.conditions ?? []) as Array<
          { type: string; status: string }
        >;
        if (conditions.some((c) => c.type === "Established" && c.status === "True")) break;
        if (performance.now() > deadline) {
          throw new Error(`Cannot install the CRD ${name}: not established within 60 s`);
        }
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  }

  /** Nodes registered now, real and hollow. */
  get nodeCount(): number {
    return this.agents.length + (this.hollow?.names.length ?? 0);
  }

  /** Registers the first spare simulated node as a Node, with its agent; returns its name. */
  async addNode(): Promise<string> {
    const registered = new Set(this.agents.map((agent) => agent.node.name));
    const node = this.sim.nodes.find((candidate) => !registered.has(candidate.name));
    if (!node) throw new Error("Cannot add a node: current run has no spare simulated node");
    const agent = new NodeAgent(this.plane, this.sim, node);
    this.agents.push(agent);
    await agent.start();
    return node.name;
  }

  /**
   * Deletes a Node object, as when a machine leaves the cluster: the pod
   * garbage collector deletes the pods bound to it, and its agent stops them.
   * Resolves once its pod is gone from the API server.
   */
  async removeNode(name: string, timeoutMs = 120_000): Promise<void> {
    const agent = this.agents.find((candidate) => candidate.node.name === name);
    if (!agent) throw new Error(`Cannot remove node ${name}: current run has no such node`);
    await this.plane.ok("DELETE", `/api/v1/nodes/${name}`);
    const deadline = performance.now() + timeoutMs;
    while ((await this.pods()).some((pod) => pod.spec.nodeName === name)) {
      if (performance.now() > deadline) {
        throw new Error(`Cannot remove node ${name}: its pod stayed`);
      }
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
    await agent[Symbol.asyncDispose]();
    this.agents.splice(this.agents.indexOf(agent), 1);
  }

  /** The values every install and upgrade of the run sets: DNS to the run's own server, short intervals. */
  baseValues(): Record<string, string> {
    return {
      "dns.servers[0]": this.sim.dns.address,
      "dns.interval": PROBE_INTERVAL,
      "dns.timeout": "1s",
      "network.interval": PROBE_INTERVAL,
      "network.timeout": "1s",
      "discovery.mode": "on",
      // Every object the chart can render; the monitoring ones are checked against the operator's CRDs.
      "serviceMonitor.enabled": "true",
      "prometheusRule.enabled": "true",
      "dashboard.enabled": "true",
      "networkPolicy.enabled": "true",
      // A handful of the prometheus-community knobs, so the API server (and the Operator's CRD
      // schemas) accept what they render, not only helm.
      "commonLabels.team": "platform",
      "revisionHistoryLimit": "5",
      "service.annotations.owner": "platform",
      "serviceMonitor.metricRelabelings[0].action": "drop",
      "serviceMonitor.metricRelabelings[0].sourceLabels[0]": "__name__",
      "serviceMonitor.metricRelabelings[0].regex": "go_.*",
      "prometheusRule.alerts.NetExporterClockSkew.enabled": "false",
    };
  }

  /** `helm install`/`upgrade` of chart/ as it is, with the admin kubeconfig; returns helm's output. */
  async helm(command: "install" | "upgrade", values: Record<string, string> = {}): Promise<string> {
    const args = [
      command,
      RELEASE,
      CHART,
      "--namespace",
      NAMESPACE,
      ...(command === "install" ? ["--create-namespace"] : []),
      "--kubeconfig",
      this.plane.adminKubeconfig,
      ...Object.entries({ ...this.baseValues(), ...values }).flatMap((
        [key, value],
      ) => ["--set", `${key}=${value}`]),
    ];
    const output = await new Deno.Command("helm", {
      args,
      stdout: "piped",
      stderr: "piped",
      env: CHILD_ENV,
    }).output();
    const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
    if (!output.success) throw new Error(`Cannot helm ${command}: ${text}`);
    return text;
  }

  /** Another release of chart/ (or its uninstall), for scenarios beside the main one. */
  async helmRelease(
    command: "install" | "uninstall",
    release: string,
    namespace: string,
    values: Record<string, string> = {},
  ): Promise<string> {
    const args = command === "install"
      ? [
        "install",
        release,
        CHART,
        "--namespace",
        namespace,
        "--create-namespace",
        ...Object.entries({ ...this.baseValues(), ...values }).flatMap((
          [key, value],
        ) => ["--set", `${key}=${value}`]),
      ]
      : ["uninstall", release, "--namespace", namespace];
    const output = await new Deno.Command("helm", {
      args: [...args, "--kubeconfig", this.plane.adminKubeconfig],
      stdout: "piped",
      stderr: "piped",
      env: CHILD_ENV,
    }).output();
    const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
    if (!output.success) throw new Error(`Cannot helm ${command} ${release}: ${text}`);
    return text;
  }

  /** The release's pods as the API server has them. */
  // deno-lint-ignore no-explicit-any
  async pods(): Promise<any[]> {
    const list = await this.plane.ok(
      "GET",
      `/api/v1/namespaces/${NAMESPACE}/pods?labelSelector=${
        encodeURIComponent(`app.kubernetes.io/instance=${RELEASE}`)
      }`,
    );
    return list.items;
  }

  /** Waits until every node runs one Ready pod of the release (of `generation` of the DaemonSet, if given). */
  async waitForPods(timeoutMs: number, generation?: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const daemonSet = await this.plane.ok(
        "GET",
        `/apis/apps/v1/namespaces/${NAMESPACE}/daemonsets/${RELEASE}`,
      )
        .catch(() => undefined);
      const status = daemonSet?.status;
      if (
        status && status.numberReady === this.nodeCount &&
        status.desiredNumberScheduled === this.nodeCount &&
        status.updatedNumberScheduled === this.nodeCount &&
        (generation === undefined || status.observedGeneration >= generation) &&
        (status.numberUnavailable ?? 0) === 0
      ) return;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const errors = this.agents.flatMap((agent) => agent.errors).slice(-10).join("\n");
    throw new Error(
      `Cannot go on: the DaemonSet's pods were not all ready within ${
        timeoutMs / 1000
      } s\n${errors}`,
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.hollow?.[Symbol.asyncDispose]().catch(() => {});
    await Promise.all(this.agents.map((agent) => agent[Symbol.asyncDispose]().catch(() => {})));
    await this.plane?.[Symbol.asyncDispose]().catch(() => {});
    await this.sim?.[Symbol.asyncDispose]().catch(() => {});
  }
}

/**
 * For command-line runs: on SIGINT or SIGTERM, tears down the cluster `current()` gives (if
 * any) once, and exits 130 or 143. The signal returned aborts when that begins, so the run's own
 * teardown stands aside.
 */
export function tearDownOnSignal(current: () => RealCluster | undefined): AbortSignal {
  const stopping = new AbortController();
  for (const [name, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    Deno.addSignalListener(name, async () => {
      if (stopping.signal.aborted) return;
      stopping.abort();
      console.error(`${name}: tearing down`);
      await current()?.[Symbol.asyncDispose]();
      Deno.exit(code);
    });
  }
  return stopping.signal;
}
