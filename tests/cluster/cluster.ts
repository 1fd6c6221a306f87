/**
 * A real-control-plane cluster on one machine: the simulated nodes of
 * tests/sim (network namespaces joined by the link emulator, a DNS server on
 * the control point) become real Node objects of a real kube-apiserver, each
 * with a node agent that runs the pods the scheduler binds to it, and the
 * chart is installed with helm, unchanged. Everything is torn down on
 * dispose, also after a failure.
 * @module
 */

import { SimCluster } from "../sim/cluster.ts";
import { CHILD_ENV } from "../helpers/requirements.ts";
import { ensureControlPlane } from "./build.ts";
import { ControlPlane } from "./control_plane.ts";
import { NodeAgent } from "./node_agent.ts";

const CHART = new URL("../../chart/", import.meta.url).pathname;
export const RELEASE = "net-exporter";
export const NAMESPACE = "monitoring";
/** Probes every 2 s (1 s timeout), so a run sees many rounds in a few minutes. */
export const PROBE_INTERVAL = "2s";

/** Options of a run. */
export interface ClusterOptions {
  readonly nodes: number;
  readonly log?: (line: string) => void;
}

/** The cluster: simulated network, real control plane, node agents. */
export class RealCluster implements AsyncDisposable {
  sim!: SimCluster;
  plane!: ControlPlane;
  readonly agents: NodeAgent[] = [];
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
        nodes: options.nodes,
        intervalMs: 2_000,
        timeoutMs: 1_000,
      });
      cluster.plane = await ControlPlane.start(binary, cluster.sim.controlAddress);
      for (const node of cluster.sim.nodes) {
        const agent = new NodeAgent(cluster.plane, cluster.sim, node);
        cluster.agents.push(agent);
        await agent.start();
      }
    } catch (error) {
      await cluster[Symbol.asyncDispose]();
      throw error;
    }
    return cluster;
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
        status && status.numberReady === this.sim.nodes.length &&
        status.updatedNumberScheduled === this.sim.nodes.length &&
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
    await Promise.all(this.agents.map((agent) => agent[Symbol.asyncDispose]().catch(() => {})));
    await this.plane?.[Symbol.asyncDispose]().catch(() => {});
    await this.sim?.[Symbol.asyncDispose]().catch(() => {});
  }
}
