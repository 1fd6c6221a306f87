/**
 * Hollow nodes, the way Kubernetes tests its own scale (kubemark): Node
 * objects with status and leases kept fresh as kubelets keep them, the real
 * DaemonSet controller and scheduler placing the chart's pods on them, and
 * one agent for all of them that does what a kubelet's API traffic does for
 * those pods without starting a process:
 *
 * - a pod bound to a hollow node gets an address of the simulation's crowd
 *   (one listener answers TCP and UDP echo for every address the crowd's
 *   namespace holds) and turns Running and Ready in one status patch, as a
 *   container that starts at once would;
 * - a pod marked for deletion drops its address at once (what is sent to it
 *   from then on is lost, as for a stopped pod) and gets its final delete;
 * - while it runs, a pod of the release is a hollow exporter: it asks the
 *   API server exactly what the exporter's discovery asks (one paginated list
 *   of the release's pods, then one watch renewed every ~5 minutes, resumed
 *   from the last resourceVersion), with the release's own service-account
 *   token, and reads every byte the server sends, but probes nothing. So the
 *   API server serves the same lists and sends the same watch events as to a
 *   fleet of real exporters: the fan-out it measures is the real one.
 *
 * Addresses are reused, oldest released first, as a node's IPAM reuses
 * them: a series left for an address after its pod is gone is told apart
 * from one for a new pod that took it by the node label.
 * @module
 */

import { LineSplitter } from "../../lib/lines.ts";
import {
  LIST_PAGE_SIZE,
  listQuery,
  podsPath,
  WATCH_TIMEOUT_SECONDS,
  watchTimeout,
} from "../../k8s/watcher.ts";
import { SHUTDOWN_LINGER_MS } from "../../exporter/serve.ts";
import type { SimCluster } from "../sim/cluster.ts";
import {
  type ControlPlane,
  isPodReady,
  isPodTerminal,
  microTime,
  secondTime,
} from "./control_plane.ts";

// deno-lint-ignore no-explicit-any
type Pod = any;

/** A kubelet renews its lease every quarter of its 40 s duration. */
const LEASE_RENEW_MS = 10_000;
/** A kubelet that renews its lease reports its status every 5 minutes. */
const STATUS_REPORT_MS = 300_000;
/** Bytes of a list's head kept: its metadata (continue token, resourceVersion) comes first. */
const LIST_HEAD_BYTES = 1_000;
/** Bytes of an event's head kept: its type and its object's resourceVersion come first. */
const HEAD_BYTES = 512;
const NEWLINE = 10;
const LETTER_B = 66;
const LETTER_E = 69;
/** Times a pod's sync is tried before it counts as an error. */
const SYNC_ATTEMPTS = 10;
/** Requests in flight at once while nodes register. */
const REGISTER_CONCURRENCY = 16;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** What the hollow exporters asked and were sent, summed. */
export interface HollowWatchTotals {
  lists: number;
  listBytes: number;
  watches: number;
  /** Watch events (lines) received, bookmarks included. */
  events: number;
  bookmarks: number;
  eventBytes: number;
  /** Requests that failed or were refused (the agent retries them). */
  failures: number;
}

/** One hollow pod: its address, and its hollow exporter if it is one of the release's. */
interface HollowPod {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly node: string;
  readonly address: string;
  readonly watch: AbortController | undefined;
}

/** Options of the hollow nodes. */
export interface HollowOptions {
  readonly plane: ControlPlane;
  readonly sim: SimCluster;
  /** Pods labelled so (`key=value,…`) in `namespace` are hollow exporters. */
  readonly exporters: { readonly namespace: string; readonly serviceAccount: string } | undefined;
}

/** The hollow nodes of a run and the one agent that keeps them. */
export class HollowNodes implements AsyncDisposable {
  readonly names: string[] = [];
  readonly #nodes = new Set<string>();
  readonly #free: string[];
  readonly #pods = new Map<string, HollowPod>();
  /** uid → the work queued for that pod, so its events apply in order. */
  readonly #turns = new Map<string, Promise<void>>();
  readonly #abort = new AbortController();
  #watching: Promise<void> = Promise.resolve();
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #tick = 0;
  /** The hollow exporters' token, fetched at first need and again after a 401 (a reinstall). */
  #token: Promise<string> | undefined;
  /** Pod changes the agent's cluster-wide watch saw, by namespace. */
  readonly changes = new Map<string, number>();
  readonly totals: HollowWatchTotals = {
    lists: 0,
    listBytes: 0,
    watches: 0,
    events: 0,
    bookmarks: 0,
    eventBytes: 0,
    failures: 0,
  };
  /** The last failures of the hollow exporters' requests (retried, as the exporter retries). */
  readonly failureSamples: string[] = [];
  /** What went wrong, for the report; the agent keeps going. */
  readonly errors: string[] = [];
  /** Pod syncs that failed and were tried again (a request timed out under load). */
  syncRetries = 0;
  /** Hollow exporters' watch streams open now. */
  watching = 0;
  /** Times the agent's own pod watch ended and it listed again. */
  watchRestarts = 0;
  /** Requests that failed while the API server was away (restarts): retried, not failures. */
  apiUnavailable = 0;

  constructor(readonly options: HollowOptions) {
    this.#free = [...options.sim.crowdPool];
  }

  /** Hollow pods running now. */
  get running(): number {
    return this.#pods.size;
  }

  /** Hollow exporters (running pods of the release) now. */
  get exporters(): number {
    let count = 0;
    for (const pod of this.#pods.values()) if (pod.watch) count++;
    return count;
  }

  /** Registers `count` more hollow nodes (Node, status, lease) and, the first time, starts the agent. */
  async add(count: number): Promise<void> {
    const first = this.names.length;
    if (first + count > this.#free.length + this.#pods.size) {
      throw new Error(
        `Cannot add ${count} hollow nodes: current run's crowd has addresses for ${
          this.#free.length + this.#pods.size
        } pods, ${first} nodes are hollow already`,
      );
    }
    const names = Array.from(
      { length: count },
      (_, index) => `hollow-${String(first + index).padStart(4, "0")}`,
    );
    let next = 0;
    await Promise.all(
      Array.from({ length: REGISTER_CONCURRENCY }, async () => {
        while (next < names.length) {
          const name = names[next++]!;
          await this.#register(name);
          this.names.push(name);
          this.#nodes.add(name);
        }
      }),
    );
    if (first === 0) this.#startAgent();
  }

  async #register(name: string): Promise<void> {
    await this.options.plane.ok("POST", "/api/v1/nodes", {
      apiVersion: "v1",
      kind: "Node",
      metadata: {
        name,
        labels: {
          "kubernetes.io/hostname": name,
          "kubernetes.io/os": "linux",
          "kubernetes.io/arch": "amd64",
          "net-exporter.test/hollow": "true",
        },
      },
    });
    await this.#reportStatus(name);
    await this.options.plane.ok(
      "POST",
      "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
      {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name, namespace: "kube-node-lease" },
        spec: { holderIdentity: name, leaseDurationSeconds: 40, renewTime: microTime() },
      },
    );
  }

  async #reportStatus(name: string): Promise<void> {
    const resources = { cpu: "2", memory: "4Gi", pods: "110", "ephemeral-storage": "20Gi" };
    const time = secondTime();
    await this.options.plane.ok(
      "PATCH",
      `/api/v1/nodes/${name}/status`,
      {
        status: {
          capacity: resources,
          allocatable: resources,
          addresses: [{ type: "Hostname", address: name }],
          conditions: [{
            type: "Ready",
            status: "True",
            reason: "KubeletReady",
            message: "hollow node agent is posting ready status",
            lastHeartbeatTime: time,
            lastTransitionTime: time,
          }],
          nodeInfo: {
            kubeletVersion: "v1.34.2",
            kubeProxyVersion: "",
            operatingSystem: "linux",
            architecture: "amd64",
            containerRuntimeVersion: "hollow://0",
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

  #startAgent(): void {
    // Every second, a tenth of the nodes renew their leases (each every 10 s), and a 300th
    // report their status (each every 5 minutes): spread, as kubelets started at random are.
    const slots = LEASE_RENEW_MS / 1000;
    const statusSlots = STATUS_REPORT_MS / 1000;
    this.#heartbeat = setInterval(() => {
      const tick = this.#tick++;
      this.names.forEach((name, index) => {
        if (index % slots === tick % slots) {
          this.#renewLease(name).catch(() => void this.apiUnavailable++);
        }
        if (index % statusSlots === tick % statusSlots) {
          this.#reportStatus(name).catch(() => void this.apiUnavailable++);
        }
      });
    }, 1_000);
    this.#watching = this.#watchPods();
  }

  async #renewLease(name: string): Promise<void> {
    await this.options.plane.ok(
      "PATCH",
      `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${name}`,
      { spec: { renewTime: microTime() } },
      "application/merge-patch+json",
    );
  }

  /** Lists, then watches, every pod of the cluster (as the harness); hollow nodes' pods are acted on. */
  async #watchPods(): Promise<void> {
    // A connection of its own: the harness's other requests come and go on the shared one.
    const client = await this.options.plane.adminClient();
    this.#abort.signal.addEventListener("abort", () => client.close(), { once: true });
    while (!this.#abort.signal.aborted) {
      try {
        const list = await this.options.plane.ok("GET", "/api/v1/pods");
        for (const pod of list.items) this.#enqueue(pod, false);
        const response = await this.options.plane.watch(
          `/api/v1/pods?watch=1&allowWatchBookmarks=true&resourceVersion=${list.metadata.resourceVersion}`,
          this.#abort.signal,
          client,
        );
        if (!response.ok || !response.body) throw new Error(`watch answered ${response.status}`);
        const splitter = new LineSplitter();
        const decoder = new TextDecoder();
        for await (const chunk of response.body) {
          // An aborted fetch does not end a body that keeps coming: stop reading it here.
          if (this.#abort.signal.aborted) break;
          for (const line of splitter.push(decoder.decode(chunk, { stream: true }))) {
            if (line.trim() === "") continue;
            const event = JSON.parse(line) as { type: string; object: Pod };
            if (event.type === "ERROR") throw new Error(`watch error ${event.object?.code}`);
            if (event.type === "BOOKMARK") continue;
            const namespace = event.object.metadata.namespace as string;
            this.changes.set(namespace, (this.changes.get(namespace) ?? 0) + 1);
            this.#enqueue(event.object, event.type === "DELETED");
          }
        }
      } catch {
        if (this.#abort.signal.aborted) return;
        this.apiUnavailable++;
        await sleep(1_000);
      }
      // Changes between the end of a watch and the next list are not counted: say how often.
      this.watchRestarts++;
    }
  }

  #enqueue(pod: Pod, deleted: boolean, attempt = 0): void {
    if (!this.#nodes.has(pod.spec?.nodeName)) return;
    const uid = pod.metadata.uid as string;
    const turn = (this.#turns.get(uid) ?? Promise.resolve())
      .then(() => this.#sync(pod, deleted))
      .catch((error) => {
        if (this.#abort.signal.aborted) return;
        // A kubelet's pod worker tries again: an API server under load times requests out.
        if (attempt < SYNC_ATTEMPTS - 1) {
          this.syncRetries++;
          setTimeout(() => {
            if (!this.#abort.signal.aborted) this.#enqueue(pod, deleted, attempt + 1);
          }, 2_000);
          return;
        }
        this.errors.push(`pod ${pod.metadata?.name}: ${(error as Error).message}`);
      });
    this.#turns.set(uid, turn);
    turn.then(() => {
      if (this.#turns.get(uid) === turn) this.#turns.delete(uid);
    });
  }

  /** Brings one hollow pod to what its object asks: running, or stopped and finally deleted. */
  async #sync(pod: Pod, deleted: boolean): Promise<void> {
    const uid = pod.metadata.uid as string;
    const held = this.#pods.get(uid);
    if (deleted || pod.metadata.deletionTimestamp) {
      // A graceful delete: the exporter lingers, answering, before it exits (exporter/serve.ts).
      if (held) await this.#stop(held, deleted ? 0 : SHUTDOWN_LINGER_MS);
      // Our own terminal status coming back: its turn made the final delete too.
      if (deleted || isPodTerminal(pod)) return;
      // The exporter exits 0 on SIGTERM; a kubelet reports that before the final delete.
      if (pod.status?.phase === "Running") await this.options.plane.reportTerminated(pod, 0);
      await this.options.plane.finalDelete(pod);
      return;
    }
    if (held) {
      // Marked not ready by someone else (the node lifecycle controller, while the node's lease
      // was late): a kubelet's next status sync says again what it knows, Running and Ready.
      if (!isPodReady(pod)) await this.#patchRunning(pod, held.address);
      return;
    }
    if (isPodTerminal(pod)) return;
    const address = this.#free.shift();
    if (address === undefined) throw new Error("no crowd address left for a hollow pod");
    try {
      await this.options.sim.holdCrowdAddresses([address], true);
      await this.#patchRunning(pod, address);
    } catch (error) {
      await this.options.sim.holdCrowdAddresses([address], false).catch(() => {});
      this.#free.push(address);
      // Gone meanwhile (deleted before it could run): nothing to try again.
      if ((error as Error).message.includes(" 404")) return;
      throw error;
    }
    const running: HollowPod = {
      uid,
      name: pod.metadata.name,
      namespace: pod.metadata.namespace,
      node: pod.spec.nodeName,
      address,
      watch: this.#isExporter(pod) ? new AbortController() : undefined,
    };
    this.#pods.set(uid, running);
    if (running.watch) {
      this.#hollowExporter(pod, running.watch.signal).catch((error) =>
        this.errors.push(`hollow exporter ${running.name}: ${(error as Error).message}`)
      );
    }
  }

  async #stop(pod: HollowPod, lingerMs: number): Promise<void> {
    pod.watch?.abort();
    this.#pods.delete(pod.uid);
    if (lingerMs > 0) await sleep(lingerMs);
    await this.options.sim.holdCrowdAddresses([pod.address], false);
    this.#free.push(pod.address);
  }

  #isExporter(pod: Pod): boolean {
    return this.options.exporters !== undefined &&
      pod.metadata.namespace === this.options.exporters.namespace &&
      pod.spec.serviceAccountName === this.options.exporters.serviceAccount &&
      this.#selector(pod) !== undefined;
  }

  /** The container's `--k8s.label-selector`: what the exporter in it would watch. */
  #selector(pod: Pod): string | undefined {
    const args = (pod.spec.containers?.[0]?.args ?? []) as string[];
    return args.find((arg) => arg.startsWith("--k8s.label-selector="))?.split("=").slice(1)
      .join("=");
  }

  async #patchRunning(pod: Pod, address: string): Promise<void> {
    const time = secondTime();
    await this.options.plane.ok(
      "PATCH",
      `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}/status`,
      {
        status: {
          phase: "Running",
          hostIP: address,
          hostIPs: [{ ip: address }],
          podIP: address,
          podIPs: [{ ip: address }],
          startTime: time,
          conditions: [
            { type: "PodScheduled", status: "True", lastTransitionTime: time },
            { type: "Initialized", status: "True", lastTransitionTime: time },
            { type: "ContainersReady", status: "True", lastTransitionTime: time },
            { type: "Ready", status: "True", lastTransitionTime: time },
          ],
          containerStatuses: (pod.spec.containers as Array<{ name: string; image: string }>)
            .map((container) => ({
              name: container.name,
              image: container.image,
              imageID: "",
              ready: true,
              started: true,
              restartCount: 0,
              state: { running: { startedAt: time } },
            })),
        },
      },
      "application/merge-patch+json",
    );
  }

  /**
   * A token of the release's service account, one for every hollow exporter: their requests are
   * authorized as a pod's are, and audited under the same user.
   */
  #exporterToken(): Promise<string> {
    const { namespace, serviceAccount } = this.options.exporters!;
    this.#token ??= this.options.plane.serviceAccountToken(namespace, serviceAccount, 7200);
    const token = this.#token;
    token.catch(() => {
      if (this.#token === token) this.#token = undefined;
    });
    return token;
  }

  /**
   * What the exporter's discovery asks of the API server (k8s/watcher.ts),
   * with every byte read and counted but not decoded past the resourceVersion
   * it resumes from: the list's pages, then watches until `signal` aborts.
   */
  async #hollowExporter(pod: Pod, signal: AbortSignal): Promise<void> {
    const { namespace } = this.options.exporters!;
    const selector = this.#selector(pod)!;
    // A connection of its own, as each exporter pod has: one shared by many would make one
    // stream's abort everyone's business.
    const client = Deno.createHttpClient({ caCerts: [this.options.plane.caPem] });
    signal.addEventListener("abort", () => client.close(), { once: true });
    const get = async (path: string, requestSignal: AbortSignal) => {
      const token = this.#exporterToken();
      const response = await fetch(`${this.options.plane.apiUrl}${path}`, {
        client,
        signal: requestSignal,
        headers: { authorization: `Bearer ${await token}`, accept: "application/json" },
      });
      // The service account was made again (a reinstall): its old tokens are no longer valid.
      if (response.status === 401 && this.#token === token) this.#token = undefined;
      return response;
    };
    let resourceVersion: string | undefined;
    let listed = false;
    let failures = 0;
    while (!signal.aborted) {
      try {
        if (resourceVersion === undefined) {
          let continueToken = "";
          do {
            const response = await get(
              podsPath(namespace, selector, listQuery(LIST_PAGE_SIZE, continueToken, !listed)),
              AbortSignal.any([signal, AbortSignal.timeout(30_000)]),
            );
            if (response.status !== 200) {
              await response.body?.cancel();
              throw new Error(`list answered ${response.status}`);
            }
            // Counted on the bytes, as the watch is: a list of 1,000 pods is megabytes, and a
            // rollout's new pods ask for hundreds of them at once. The list's metadata comes
            // before its items, so its head holds the continue token and the version.
            const { bytes, head } = await readCounting(response.body);
            this.totals.lists++;
            this.totals.listBytes += bytes;
            continueToken = /"continue":"([^"]*)"/.exec(head)?.[1] ?? "";
            resourceVersion = /"resourceVersion":"(\d+)"/.exec(head)?.[1] ?? "";
          } while (continueToken);
          listed = true;
        }
        const response = await get(
          podsPath(namespace, selector, {
            watch: "1",
            resourceVersion: resourceVersion ?? "",
            allowWatchBookmarks: "true",
            timeoutSeconds: String(watchTimeout(WATCH_TIMEOUT_SECONDS, Math.random)),
          }),
          signal,
        );
        this.totals.watches++;
        if (response.status !== 200) {
          await response.body?.cancel();
          throw new Error(`watch answered ${response.status}`);
        }
        // Events are counted on the bytes, not decoded: at 1,000 exporters a rollout sends tens
        // of gigabytes, and the harness shares the machine with the API server. Only the head
        // of a chunk's last event is decoded, for the resourceVersion to resume from.
        const head = new Uint8Array(HEAD_BYTES);
        let headLength = 0;
        let lineLength = 0;
        let gone = false;
        this.watching++;
        try {
          for await (const chunk of response.body ?? []) {
            if (signal.aborted) break;
            this.totals.eventBytes += chunk.length;
            let lastHead: Uint8Array | undefined;
            let start = 0;
            for (;;) {
              const newline = chunk.indexOf(NEWLINE, start);
              const end = newline === -1 ? chunk.length : newline;
              if (headLength < HEAD_BYTES) {
                const take = Math.min(HEAD_BYTES - headLength, end - start);
                head.set(chunk.subarray(start, start + take), headLength);
                headLength += take;
              }
              lineLength += end - start;
              if (newline === -1) break;
              if (lineLength > 0) {
                this.totals.events++;
                // `{"type":"` is 9 bytes: the type's first letter tells BOOKMARK and ERROR.
                if (head[9] === LETTER_B) this.totals.bookmarks++;
                // 410 Gone (the history is gone): list again, as the exporter does.
                if (head[9] === LETTER_E) gone = true;
                lastHead = head.slice(0, headLength);
              }
              headLength = 0;
              lineLength = 0;
              start = newline + 1;
            }
            if (lastHead && !gone) {
              resourceVersion = /"resourceVersion":"(\d+)"/.exec(new TextDecoder().decode(lastHead))
                ?.[1] ?? resourceVersion;
            }
            if (gone) break;
          }
        } finally {
          this.watching--;
        }
        if (gone) resourceVersion = undefined;
        failures = 0;
      } catch (error) {
        if (signal.aborted) return;
        this.totals.failures++;
        this.failureSamples.push(`${pod.metadata.name}: ${(error as Error).message}`);
        if (this.failureSamples.length > 20) this.failureSamples.shift();
        // The exporter's backoff: capped exponential, half of it random.
        const ceiling = Math.min(30_000, 500 * 2 ** failures++);
        await sleep(ceiling / 2 + Math.random() * ceiling / 2);
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#abort.abort();
    clearInterval(this.#heartbeat);
    for (const pod of this.#pods.values()) pod.watch?.abort();
    // Bounded: a request the API server never answers must not hold the teardown.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all([this.#watching, ...this.#turns.values()]).catch(() => {}),
      new Promise((resolve) => timer = setTimeout(resolve, 30_000)),
    ]);
    clearTimeout(timer);
  }
}

/** Reads a body to its end, counting its bytes; keeps the first {@link LIST_HEAD_BYTES} decoded. */
async function readCounting(
  body: ReadableStream<Uint8Array> | null,
): Promise<{ bytes: number; head: string }> {
  const head = new Uint8Array(LIST_HEAD_BYTES);
  let headLength = 0;
  let bytes = 0;
  for await (const chunk of body ?? []) {
    if (headLength < LIST_HEAD_BYTES) {
      const take = Math.min(LIST_HEAD_BYTES - headLength, chunk.length);
      head.set(chunk.subarray(0, take), headLength);
      headLength += take;
    }
    bytes += chunk.length;
  }
  return { bytes, head: new TextDecoder().decode(head.subarray(0, headLength)) };
}
