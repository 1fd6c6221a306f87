/**
 * A node agent for the simulated cluster only: what a kubelet does for the
 * pods the scheduler binds to its node, as far as these machines allow (no
 * container runtime, no images). It registers the Node object and keeps its
 * status and lease fresh, watches the pods bound to its node, and for each:
 *
 * - runs the container's command and args as the rendered chart gives them,
 *   the image's entrypoint being the exporter run from source
 *   (`deno run <start task flags> main.ts`), in the node's network namespace
 *   and a mount namespace of its own;
 * - resolves its env, downward-API `fieldRef`s included;
 * - projects a service-account token from the TokenRequest API (bound to
 *   the pod), `ca.crt` and `namespace` into
 *   /var/run/secrets/kubernetes.io/serviceaccount;
 * - gives it an IP on the node, runs its readinessProbe, and patches its
 *   status (podIP, podIPs, phase, Ready) through the status subresource;
 * - on deletion sends SIGTERM, waits the grace period, SIGKILLs, and makes
 *   the final delete, as a kubelet does.
 *
 * What it does not do: images, resource limits, securityContext (the process
 * runs as root), token rotation (runs are far shorter than a token's hour).
 * `KUBERNETES_SERVICE_HOST/PORT` name the API server itself: no kube-proxy
 * implements the `kubernetes` Service's ClusterIP here.
 * @module
 */

import { LineSplitter } from "../../lib/lines.ts";
import { START_FLAGS } from "../helpers/exporter_process.ts";
import { CHILD_ENV } from "../helpers/requirements.ts";
import type { SimCluster, SimNode } from "../sim/cluster.ts";
import {
  type ControlPlane,
  isPodReady,
  isPodTerminal,
  microTime,
  secondTime,
} from "./control_plane.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";
/** Times a pod's sync is tried before it counts as an error. */
const SYNC_ATTEMPTS = 10;
/** What a pod's process runs in: a tmpfs over /run, the service-account files copied in, then the program. */
const IN_POD = 'mount -t tmpfs tmpfs /run && mkdir -p "$SA" && cp "$SECRETS"/* "$SA"/ && exec "$@"';

// deno-lint-ignore no-explicit-any
type Pod = any;

/** The lines of a text stream, one by one. */
async function* linesOf(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const splitter = new LineSplitter();
  const decoder = new TextDecoder();
  for await (const chunk of stream) yield* splitter.push(decoder.decode(chunk, { stream: true }));
}

/** A pod this agent runs. */
export interface RunningPod {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  readonly address: string;
  readonly child: Deno.ChildProcess;
  readonly logs: string[];
  readonly secrets: string;
  /** When its process started, ms since the epoch. */
  readonly startedAt: number;
  ready: boolean;
  stopping: boolean;
  readonly exited: Promise<Deno.CommandStatus>;
  readinessTimer: ReturnType<typeof setInterval> | undefined;
}

/** The node agent of one simulated node. */
export class NodeAgent implements AsyncDisposable {
  readonly pods = new Map<string, RunningPod>();
  readonly #abort = new AbortController();
  #watching: Promise<void> = Promise.resolve();
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #queue: Promise<void> = Promise.resolve();
  /** Pods the agent failed to run or stop as asked, for the report; the agent keeps going. */
  readonly errors: string[] = [];
  /** Pod syncs that failed and were tried again (a request timed out under load). */
  syncRetries = 0;
  /** Requests that failed while the API server was away (restarts): retried, not failures. */
  apiUnavailable = 0;

  constructor(
    readonly plane: ControlPlane,
    readonly cluster: SimCluster,
    readonly node: SimNode,
  ) {}

  /** Registers the Node (Ready, with allocatable resources) and starts the lease and the pod watch. */
  async start(): Promise<void> {
    await this.plane.ok("POST", "/api/v1/nodes", {
      apiVersion: "v1",
      kind: "Node",
      metadata: {
        name: this.node.name,
        labels: {
          "kubernetes.io/hostname": this.node.name,
          "kubernetes.io/os": "linux",
          "kubernetes.io/arch": "amd64",
        },
      },
    });
    await this.#reportStatus();
    await this.#renewLease();
    this.#heartbeat = setInterval(() => {
      this.#renewLease().catch(() => void this.apiUnavailable++);
    }, 10_000);
    this.#watching = this.#watch();
  }

  async #reportStatus(): Promise<void> {
    const now = secondTime();
    const resources = { cpu: "2", memory: "4Gi", pods: "110", "ephemeral-storage": "20Gi" };
    await this.plane.ok(
      "PATCH",
      `/api/v1/nodes/${this.node.name}/status`,
      {
        status: {
          capacity: resources,
          allocatable: resources,
          addresses: [{ type: "InternalIP", address: this.node.address }, {
            type: "Hostname",
            address: this.node.name,
          }],
          conditions: [{
            type: "Ready",
            status: "True",
            reason: "KubeletReady",
            message: "simulated node agent is posting ready status",
            lastHeartbeatTime: now,
            lastTransitionTime: now,
          }],
          nodeInfo: {
            kubeletVersion: "v1.34.2",
            kubeProxyVersion: "",
            operatingSystem: "linux",
            architecture: "amd64",
            containerRuntimeVersion: "sim://0",
            kernelVersion: "",
            osImage: "",
            machineID: "",
            systemUUID: "",
            bootID: "",
          },
        },
      },
      "application/merge-patch+json",
    );
  }

  /** The node's heartbeat: its lease in kube-node-lease, as the node lifecycle controller reads it. */
  async #renewLease(): Promise<void> {
    const path = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${this.node.name}`;
    const renewTime = microTime();
    const body = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: this.node.name, namespace: "kube-node-lease" },
      spec: { holderIdentity: this.node.name, leaseDurationSeconds: 40, renewTime },
    };
    const existing = await this.plane.request("GET", path);
    if (existing.status === 404) {
      await this.plane.ok(
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
        body,
      );
    } else {
      await this.plane.ok("PATCH", path, { spec: { renewTime } }, "application/merge-patch+json");
    }
  }

  /** Lists, then watches, the pods bound to this node; every change goes through one queue. */
  async #watch(): Promise<void> {
    const selector = encodeURIComponent(`spec.nodeName=${this.node.name}`);
    while (!this.#abort.signal.aborted) {
      try {
        const list = await this.plane.ok("GET", `/api/v1/pods?fieldSelector=${selector}`);
        for (const pod of list.items) this.#enqueue(pod);
        await this.#stream(
          `/api/v1/pods?fieldSelector=${selector}&watch=1&allowWatchBookmarks=true&resourceVersion=${list.metadata.resourceVersion}`,
        );
      } catch {
        if (this.#abort.signal.aborted) return;
        this.apiUnavailable++;
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    }
  }

  async #stream(path: string): Promise<void> {
    const response = await this.plane.watch(path, this.#abort.signal);
    try {
      if (!response.ok || !response.body) throw new Error(`watch answered ${response.status}`);
      for await (const line of linesOf(response.body)) {
        if (line.trim() === "") continue;
        const event = JSON.parse(line) as { type: string; object: Pod };
        if (event.type === "ERROR") throw new Error(`watch error ${event.object?.code}`);
        if (event.type === "BOOKMARK") continue;
        // Gone without a graceful delete (e.g. by the pod garbage collector when its node went): stop it now.
        if (event.type === "DELETED") this.#enqueueGone(event.object);
        else this.#enqueue(event.object);
      }
    } finally {
      await response.body?.cancel().catch(() => {});
    }
  }

  #enqueue(pod: Pod, attempt = 0): void {
    this.#queue = this.#queue.then(() => this.#sync(pod)).catch((error) => {
      if (this.#abort.signal.aborted) return;
      // A kubelet's pod worker tries again: an API server under load times requests out.
      if (attempt < SYNC_ATTEMPTS - 1) {
        this.syncRetries++;
        setTimeout(() => {
          if (!this.#abort.signal.aborted) this.#enqueue(pod, attempt + 1);
        }, 2_000);
        return;
      }
      this.errors.push(`pod ${pod.metadata?.name}: ${(error as Error).message}`);
    });
  }

  #enqueueGone(pod: Pod): void {
    this.#queue = this.#queue.then(async () => {
      const running = this.pods.get(pod.metadata.uid);
      if (running && !running.stopping) await this.#stop(running, 0);
    }).catch((error) =>
      void this.errors.push(`pod ${pod.metadata?.name}: ${(error as Error).message}`)
    );
  }

  /** Brings one pod to what its object asks: running, or stopped and finally deleted. */
  async #sync(pod: Pod): Promise<void> {
    const uid = pod.metadata.uid as string;
    const running = this.pods.get(uid);
    if (pod.metadata.deletionTimestamp) {
      if (running && !running.stopping) {
        await this.#stop(running, pod.spec.terminationGracePeriodSeconds ?? 30);
      }
      // Our own terminal status coming back: its turn made the final delete too.
      if (isPodTerminal(pod)) return;
      // The final delete: the API server removes the object once the kubelet says the pod is gone,
      // after its terminal status (from the process's exit code).
      if (pod.status?.phase === "Running") {
        const exitCode = running ? (await running.exited).code : 0;
        await this.plane.reportTerminated(pod, exitCode);
      }
      await this.plane.finalDelete(pod);
      return;
    }
    if (running) {
      // Marked not ready by someone else (the node lifecycle controller, while this node's lease
      // was late): a kubelet's next status sync says again what its probe says.
      if (running.ready && !isPodReady(pod) && !running.stopping) {
        await this.#patchStatus(running, pod);
      }
      return;
    }
    if (isPodTerminal(pod)) return;
    await this.#run(pod);
  }

  /** Resolves a container's env: plain values and the downward API's field references. */
  #env(pod: Pod, address: string): Record<string, string> {
    const container = pod.spec.containers[0];
    const fields: Record<string, string> = {
      "metadata.name": pod.metadata.name,
      "metadata.namespace": pod.metadata.namespace,
      "metadata.uid": pod.metadata.uid,
      "spec.nodeName": this.node.name,
      "spec.serviceAccountName": pod.spec.serviceAccountName ?? "default",
      "status.podIP": address,
      "status.podIPs": address,
      "status.hostIP": this.node.address,
    };
    const env: Record<string, string> = {
      KUBERNETES_SERVICE_HOST: new URL(this.plane.apiUrl).hostname,
      KUBERNETES_SERVICE_PORT: new URL(this.plane.apiUrl).port,
    };
    for (const variable of container.env ?? []) {
      if (variable.value !== undefined) env[variable.name] = variable.value;
      else if (variable.valueFrom?.fieldRef) {
        const value = fields[variable.valueFrom.fieldRef.fieldPath];
        if (value === undefined) {
          throw new Error(`cannot resolve fieldRef ${variable.valueFrom.fieldRef.fieldPath}`);
        }
        env[variable.name] = value;
      } else {throw new Error(
          `cannot resolve env ${variable.name}: only values and fieldRefs are simulated`,
        );}
    }
    return env;
  }

  async #run(pod: Pod): Promise<void> {
    const { namespace, name, uid } = pod.metadata;
    const container = pod.spec.containers[0];
    if (pod.spec.containers.length !== 1) {
      throw new Error("only pods of one container are simulated");
    }
    // A new pod, a new address; the node holds one pod address at a time (see SimCluster.renumber).
    await this.cluster.renumber(this.node);
    const address = this.node.address;
    const token = await this.plane.serviceAccountToken(
      namespace,
      pod.spec.serviceAccountName ?? "default",
      3607,
      { name, uid },
    );
    const secrets = await Deno.makeTempDir({ prefix: `sa-${name}-` });
    await Deno.writeTextFile(`${secrets}/token`, token);
    await Deno.writeTextFile(`${secrets}/ca.crt`, this.plane.caPem);
    await Deno.writeTextFile(`${secrets}/namespace`, namespace);
    // The image's entrypoint is the exporter; the chart gives only args.
    const program = container.command ?? [Deno.execPath(), "run", ...START_FLAGS, MAIN];
    const child = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        this.node.netns,
        "unshare",
        "--mount",
        "sh",
        "-c",
        IN_POD,
        "sh",
        ...program,
        ...(container.args ?? []),
      ],
      // A container sees its own env only; PATH and HOME (Deno's cache) stand for the image's.
      env: {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        HOME: Deno.env.get("HOME") ?? "/root",
        ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
        ...CHILD_ENV,
        ...this.#env(pod, address),
        SA: SA_DIR,
        SECRETS: secrets,
      },
      clearEnv: true,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const logs: string[] = [];
    (async () => {
      for await (const line of linesOf(child.stderr)) {
        logs.push(line);
        if (logs.length > 2_000) logs.splice(0, 1_000);
      }
    })().catch(() => {});
    const running: RunningPod = {
      uid,
      namespace,
      name,
      address,
      child,
      logs,
      secrets,
      startedAt: Date.now(),
      ready: false,
      stopping: false,
      exited: child.status,
      readinessTimer: undefined,
    };
    this.pods.set(uid, running);
    await this.#patchStatus(running, pod);
    const probe = container.readinessProbe?.httpGet;
    const period = (container.readinessProbe?.periodSeconds ?? 10) * 1000;
    const port = typeof probe?.port === "number"
      ? probe.port
      : (container.ports ?? []).find((each: { name: string }) => each.name === probe?.port)
        ?.containerPort;
    const check = async () => {
      if (running.stopping) return;
      let ready = !probe;
      if (probe) {
        try {
          const response = await fetch(
            `${(probe.scheme ?? "HTTP").toLowerCase()}://${address}:${port}${probe.path}`,
            {
              signal: AbortSignal.timeout((container.readinessProbe?.timeoutSeconds ?? 1) * 1000),
            },
          );
          await response.body?.cancel();
          ready = response.status >= 200 && response.status < 400;
        } catch {
          ready = false;
        }
      }
      if (ready !== running.ready && !running.stopping) {
        running.ready = ready;
        await this.#patchStatus(running, pod).catch((error) =>
          this.errors.push(`status: ${error.message}`)
        );
      }
    };
    // A first check soon, then at the probe's period (a kubelet starts after initialDelaySeconds).
    setTimeout(() => check(), 500);
    running.readinessTimer = setInterval(() => check(), Math.min(period, 2_000));
    running.exited.then((status) => {
      clearInterval(running.readinessTimer);
      if (!running.stopping) {
        this.errors.push(
          `pod ${name} exited by itself (${status.code}): ${logs.slice(-5).join(" | ")}`,
        );
      }
    });
  }

  async #patchStatus(running: RunningPod, pod: Pod): Promise<void> {
    const now = secondTime();
    const ready = running.ready ? "True" : "False";
    await this.plane.ok(
      "PATCH",
      `/api/v1/namespaces/${running.namespace}/pods/${running.name}/status`,
      {
        status: {
          phase: "Running",
          hostIP: this.node.address,
          hostIPs: [{ ip: this.node.address }],
          podIP: running.address,
          podIPs: [{ ip: running.address }],
          startTime: pod.status?.startTime ?? now,
          conditions: [
            { type: "PodScheduled", status: "True", lastTransitionTime: now },
            { type: "Initialized", status: "True", lastTransitionTime: now },
            { type: "ContainersReady", status: ready, lastTransitionTime: now },
            { type: "Ready", status: ready, lastTransitionTime: now },
          ],
          containerStatuses: [{
            name: pod.spec.containers[0].name,
            image: pod.spec.containers[0].image,
            imageID: "",
            ready: running.ready,
            started: true,
            restartCount: 0,
            state: { running: { startedAt: now } },
          }],
        },
      },
      "application/merge-patch+json",
    );
  }

  /** SIGTERM, the grace period, SIGKILL: as a kubelet stops a container. */
  async #stop(running: RunningPod, graceSeconds: number): Promise<void> {
    running.stopping = true;
    clearInterval(running.readinessTimer);
    try {
      running.child.kill("SIGTERM");
    } catch { /* gone */ }
    const killer = setTimeout(() => {
      try {
        running.child.kill("SIGKILL");
      } catch { /* gone */ }
    }, graceSeconds * 1000);
    await running.exited;
    clearTimeout(killer);
    this.pods.delete(running.uid);
    await Deno.remove(running.secrets, { recursive: true }).catch(() => {});
  }

  /** Kills a pod's process as a crash would (the agent does not restart it). */
  crash(uid: string): void {
    const running = this.pods.get(uid);
    running?.child.kill("SIGKILL");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#abort.abort();
    clearInterval(this.#heartbeat);
    await this.#watching.catch(() => {});
    await this.#queue.catch(() => {});
    await Promise.all([...this.pods.values()].map((running) => this.#stop(running, 5)));
  }
}
