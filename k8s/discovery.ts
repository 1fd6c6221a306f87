/**
 * Kubernetes peer discovery: a reconciler from the watched pod list to the
 * network collector's peers. Pods that are Ready, running, have an IP and are
 * not being deleted are peers; the neighbour ring picks which of their nodes
 * this pod probes; the collector adds and removes targets (and their series)
 * to match. The API server going away changes nothing: the last known peers
 * keep being probed.
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { isIP } from "../lib/ip.ts";
import * as client from "../lib/prom_client.ts";
import { formatDuration } from "../lib/duration.ts";
import { describeError } from "../lib/errors.ts";
import {
  choiceFlag,
  durationFlag,
  type Flag,
  FlagError,
  type FlagValues,
  valueFlag,
} from "../lib/flags.ts";
import {
  type ApiClient,
  type ClusterConfig,
  createApiClient,
  loadClusterConfig,
  SERVICE_ACCOUNT_DIR,
} from "./client.ts";
import { probersOf, selectNeighbours } from "./neighbours.ts";
import { isLoopback, isPeer, type PodRecord, unicastAddress } from "./pods.ts";
import { PodWatcher, type WatcherOptions } from "./watcher.ts";

const DISCOVERY_MODES = ["auto", "on", "off"] as const;

/** A peer endpoint to dial: an IP, the port, and the peer's node. */
export interface Peer {
  readonly hostname: string;
  readonly port: number;
  readonly node: string;
}

/** What discovery needs from the collector it feeds (the network collector). */
export interface PeerSink {
  /** Replaces the discovered peers. */
  setPeers(peers: readonly Peer[]): void;
  /** Counts a failure of discovery where the collector counts its own (`network_error_total`). */
  countInternalError(): void;
  /**
   * The addresses of every pod discovery sees, ready or not, selected or not: the peers that may
   * probe this pod.
   */
  setKnownAddresses?(addresses: readonly string[]): void;
}

/** A discovered peer as the status page lists it. */
export interface PeerView {
  readonly name: string;
  readonly node: string;
  readonly addresses: readonly string[];
  /** This pod probes it. */
  readonly selected: boolean;
  /** It probes this pod (its node has this pod's node among its ring neighbours); unknown without this pod's node. */
  readonly probesThisPod?: boolean;
}

/** Who this pod is, from the downward API (never from dialling out). */
export interface Identity {
  readonly podName: string | undefined;
  readonly podIPs: readonly string[];
  readonly node: string | undefined;
}

/** Checked discovery settings. */
export interface DiscoverySettings {
  readonly cluster: ClusterConfig;
  readonly namespace: string;
  readonly labelSelector: string;
  readonly port: number;
  readonly maxPeers: number;
  /** Deadline of a list page, and of a watch's answer. */
  readonly requestTimeoutMs: number;
  readonly identity: Identity;
}

const LABEL_SELECTOR = /^[A-Za-z0-9_./!=,() -]+$/;

/** `--k8s.discovery`: on, off, or auto. */
export const DISCOVERY_MODE = choiceFlag(
  "k8s.discovery",
  "Find peers through the Kubernetes API: on, off, or auto (on when a kubeconfig or in-cluster configuration exists)",
  "auto",
  DISCOVERY_MODES,
);
const KUBECONFIG = valueFlag(
  "k8s.kubeconfig",
  "path",
  "Kubeconfig to use; empty: $KUBECONFIG, else in-cluster",
  "",
  (text) => text,
);
const NAMESPACE = valueFlag(
  "k8s.namespace",
  "namespace",
  "Namespace of the peer pods; empty: $POD_NAMESPACE, else the service account's namespace",
  "",
  (text) => text,
);
const SELECTOR = valueFlag(
  "k8s.label-selector",
  "selector",
  "Label selector of the peer pods",
  "app.kubernetes.io/name=net-exporter",
  (text) => {
    if (!LABEL_SELECTOR.test(text)) {
      throw new RangeError(`Cannot use label selector: current value is "${text}"`);
    }
    return text;
  },
);
const REQUEST_TIMEOUT = durationFlag(
  "k8s.request-timeout",
  "Deadline of each list page and of a watch's answer from the API server",
  "30s",
);

/** Discovery's flags. */
export const DISCOVERY_FLAGS: readonly Flag<unknown>[] = [
  DISCOVERY_MODE,
  KUBECONFIG,
  NAMESPACE,
  SELECTOR,
  REQUEST_TIMEOUT,
];

/** What the collector that takes the peers says of them (its `--network.port` and `--network.max-peers`). */
export interface PeerOptions {
  /** TCP port dialled on each peer. */
  readonly port: number;
  /** Peers this pod probes, its neighbours on a ring of node names; 0: every peer. */
  readonly maxPeers: number;
}

/**
 * Decides whether discovery runs and with what; `undefined` when it is off
 * (or auto without a configuration, which is logged by the caller).
 * @throws {FlagError} when it is on but cannot work.
 */
export async function configureDiscovery(
  values: FlagValues,
  peers: PeerOptions,
  env: (name: string) => string | undefined,
  readFile: (path: string) => string | undefined = readFileOrUndefined,
): Promise<DiscoverySettings | undefined> {
  const mode = DISCOVERY_MODE.read(values);
  if (mode === "off") return undefined;
  const kubeconfig = KUBECONFIG.read(values) || env("KUBECONFIG") || undefined;
  let cluster: ClusterConfig | undefined;
  try {
    cluster = await loadClusterConfig(kubeconfig, env);
  } catch (error) {
    throw new FlagError(error instanceof Error ? error.message : String(error));
  }
  if (!cluster) {
    if (mode === "on") {
      throw new FlagError(
        "Cannot discover peers: current --k8s.discovery=on, but there is no kubeconfig (--k8s.kubeconfig, $KUBECONFIG) " +
          "and no in-cluster configuration ($KUBERNETES_SERVICE_HOST and a service-account token)",
      );
    }
    return undefined;
  }
  const namespace = NAMESPACE.read(values) || env("POD_NAMESPACE") ||
    readFile(`${SERVICE_ACCOUNT_DIR}/namespace`)?.trim() || cluster.namespace;
  if (!namespace) {
    throw new FlagError(
      "Cannot discover peers: current namespace is unknown (set --k8s.namespace or $POD_NAMESPACE)",
    );
  }
  const podIPs = [...new Set([...(env("POD_IPS") ?? "").split(","), env("POD_IP") ?? ""])]
    .map((ip) => ip.trim()).filter((ip) => ip !== "");
  for (const ip of podIPs) {
    if (isIP(ip) === 0) {
      throw new FlagError(
        `Cannot use $POD_IP/$POD_IPS: current value "${ip}" is not an IP address`,
      );
    }
  }
  // Canonical, so that a peer listing this pod's address in another spelling is still this pod.
  const ownIPs = [...new Set(podIPs.map((ip) => unicastAddress(ip) ?? ip))];
  return {
    cluster,
    namespace,
    labelSelector: SELECTOR.read(values),
    port: peers.port,
    maxPeers: peers.maxPeers,
    requestTimeoutMs: REQUEST_TIMEOUT.read(values),
    identity: {
      podName: env("POD_NAME") || undefined,
      podIPs: ownIPs,
      node: env("NODE_NAME") || undefined,
    },
  };
}

function readFileOrUndefined(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

/** The peers this pod sees and the ones it probes. */
export interface PeerSelection {
  /** Every peer pod except this one. */
  readonly discovered: readonly PodRecord[];
  /** The peers this pod probes. */
  readonly selected: readonly PodRecord[];
  /** This pod's node, as known from $NODE_NAME or its own pod in the list. */
  readonly selfNode: string | undefined;
}

/**
 * Picks the peers to probe: not this pod (by name or IP), not on this pod's
 * node, and on a node the neighbour ring selects. Without a known node of
 * its own (e.g. run from a workstation), every peer is probed.
 */
export function selectPeers(
  pods: Iterable<PodRecord>,
  identity: Identity,
  maxPeers: number,
): PeerSelection {
  // Loopback is only a peer's address where this pod's own is too: several exporters on one host.
  const loopbackAllowed = identity.podIPs.some(isLoopback);
  const all = [...pods].map((pod) =>
    loopbackAllowed ? pod : { ...pod, ips: pod.ips.filter((ip) => !isLoopback(ip)) }
  );
  const isSelf = (pod: PodRecord) =>
    pod.name === identity.podName || pod.ips.some((ip) => identity.podIPs.includes(ip));
  const selfNode = identity.node ?? all.find(isSelf)?.node;
  const discovered = all.filter((pod) => isPeer(pod) && !isSelf(pod))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (selfNode === undefined) return { discovered, selected: discovered, selfNode };
  const otherNodes = discovered.map((pod) => pod.node).filter((node) => node !== selfNode);
  const chosen = new Set(selectNeighbours(selfNode, otherNodes, maxPeers));
  return { discovered, selected: discovered.filter((pod) => chosen.has(pod.node)), selfNode };
}

/** The endpoints to dial for the selected peers: every IP of every selected pod. */
export function peerEndpoints(selected: readonly PodRecord[], port: number): Peer[] {
  return selected.flatMap((pod) => pod.ips.map((ip) => ({ hostname: ip, port, node: pod.node })));
}

/** Discovery's own metrics. */
export interface DiscoveryMetrics {
  readonly peers: client.Gauge<"state">;
  readonly lastSync: client.Gauge;
  readonly requests: client.Counter<"verb" | "code">;
}

/** Registers discovery's metrics in `registry`. */
export function createDiscoveryMetrics(registry: client.Registry): DiscoveryMetrics {
  const registers = [registry];
  const peers = new client.Gauge({
    name: "net_exporter_peers",
    help:
      "Peer pods: discovered (every Ready peer but this pod) and selected (probed by this pod).",
    labelNames: ["state"],
    registers,
  });
  peers.set({ state: "discovered" }, 0);
  peers.set({ state: "selected" }, 0);
  return {
    peers,
    lastSync: new client.Gauge({
      name: "net_exporter_discovery_last_sync_timestamp_seconds",
      help:
        "When the pod list was last known to be current (a list, a watch event or a bookmark), " +
        "seconds since the epoch.",
      registers,
    }),
    requests: new client.Counter({
      name: "net_exporter_kubernetes_requests_total",
      help:
        "Requests to the Kubernetes API by verb (list, watch) and HTTP status (error: none came back).",
      labelNames: ["verb", "code"],
      registers,
    }),
  };
}

/** Discovery as the status page shows it. */
export interface DiscoveryHealth {
  readonly state: "syncing" | "current" | "failing";
  /** When the current failure began, ms since the epoch. */
  readonly since?: number;
  /** The last failure, with its cause. */
  readonly error?: string;
}

/** What a running discovery needs. */
export interface DiscoveryContext {
  readonly network: PeerSink;
  readonly metrics: DiscoveryMetrics;
  readonly logger: Logger;
  readonly client?: ApiClient;
  readonly watcher?: Partial<Omit<WatcherOptions, "client" | "namespace" | "labelSelector">>;
  readonly now?: () => number;
}

/** Runs the watch and keeps the network collector's peers current. */
export class Discovery {
  readonly #settings: DiscoverySettings;
  readonly #context: DiscoveryContext;
  readonly #watcher: PodWatcher;
  readonly #client: ApiClient;
  #selection: PeerSelection = { discovered: [], selected: [], selfNode: undefined };
  #failure: { since: number; error: string } | undefined;
  /** The kind of the last failure logged, so a retry that fails the same way is not logged again. */
  #loggedFailure: string | undefined;
  #warnedUnknownNode = false;

  constructor(settings: DiscoverySettings, context: DiscoveryContext) {
    this.#settings = settings;
    this.#context = context;
    this.#client = context.client ?? createApiClient(settings.cluster);
    this.#watcher = new PodWatcher(
      {
        listTimeoutMs: settings.requestTimeoutMs,
        watchOpenTimeoutMs: settings.requestTimeoutMs,
        ...context.watcher,
        client: this.#client,
        namespace: settings.namespace,
        labelSelector: settings.labelSelector,
      },
      {
        onPods: (pods) => this.#reconcile(pods.values()),
        onFailure: (error, retryInMs) => this.#failed(error, retryInMs),
        onRequest: (verb, code) => context.metrics.requests.inc({ verb, code }),
        onSynced: () => this.#synced(),
      },
    );
  }

  /** True once the first list has synced. */
  get ready(): boolean {
    return this.#watcher.synced;
  }

  /** Starts watching. */
  start(): void {
    this.#context.logger.info(
      `Discovering peers: pods in namespace ${this.#settings.namespace} matching ${this.#settings.labelSelector}`,
      { namespace: this.#settings.namespace, labelSelector: this.#settings.labelSelector },
    );
    this.#watcher.start();
  }

  /** Lists once and sets the peers, then closes the API connections; for `check`. */
  async syncOnce(signal: AbortSignal): Promise<void> {
    try {
      await this.#watcher.listOnce(signal);
    } finally {
      this.#client.close();
    }
  }

  /** Stops watching and closes the API connections. */
  async stop(): Promise<void> {
    await this.#watcher.stop();
    this.#client.close();
  }

  /** Discovered peers for the status page. */
  peers(): PeerView[] {
    const { discovered, selfNode } = this.#selection;
    const selected = new Set(this.#selection.selected);
    const probers = selfNode === undefined
      ? undefined
      : probersOf(selfNode, discovered.map((pod) => pod.node), this.#settings.maxPeers);
    return discovered.map((pod) => ({
      name: pod.name,
      node: pod.node,
      addresses: pod.ips,
      selected: selected.has(pod),
      ...(probers ? { probesThisPod: probers.has(pod.node) } : {}),
    }));
  }

  #reconcile(iterable: Iterable<PodRecord>): void {
    const pods = [...iterable];
    const previous = this.#selection;
    this.#selection = selectPeers(pods, this.#settings.identity, this.#settings.maxPeers);
    const { discovered, selected, selfNode } = this.#selection;
    this.#context.network.setPeers(peerEndpoints(selected, this.#settings.port));
    // Every pod of the release with an address, ready or not: a pod that has just started echoes
    // to its peers before it is Ready (its readiness waits for that first round), and a pod on
    // its way out still does until it stops.
    this.#context.network.setKnownAddresses?.(pods.flatMap((pod) => pod.ips));
    this.#context.metrics.peers.set({ state: "discovered" }, discovered.length);
    this.#context.metrics.peers.set({ state: "selected" }, selected.length);
    if (
      previous.discovered.length !== discovered.length ||
      previous.selected.length !== selected.length
    ) {
      this.#context.logger.info(
        `Peers: ${discovered.length} discovered, ${selected.length} probed`,
        {
          discovered: discovered.length,
          selected: selected.length,
          node: selfNode ?? "",
        },
      );
    }
    if (selfNode === undefined && !this.#warnedUnknownNode) {
      this.#warnedUnknownNode = true;
      this.#context.logger.warn(
        "This pod's node is unknown ($NODE_NAME unset and no pod named $POD_NAME): probing every peer",
      );
    }
  }

  /** Discovery's state for the status page: failing since when, and why, with its cause. */
  health(): DiscoveryHealth {
    return this.#failure === undefined
      ? { state: this.ready ? "current" : "syncing" }
      : { state: "failing", since: this.#failure.since, error: this.#failure.error };
  }

  #synced(): void {
    this.#context.metrics.lastSync.set((this.#context.now ?? Date.now)() / 1000);
    if (this.#failure !== undefined) {
      this.#failure = undefined;
      this.#loggedFailure = undefined;
      this.#context.logger.info("Kubernetes API reachable again; peers are current");
    }
  }

  /**
   * Counts every failure; logs one line per change of state: the first
   * failure, and a failure of another kind (its text without numbers), so an
   * outage is one warning with its cause, not one a retry.
   */
  #failed(error: Error, retryInMs: number): void {
    this.#context.network.countInternalError();
    const description = describeError(error);
    const now = (this.#context.now ?? Date.now)();
    this.#failure = { since: this.#failure?.since ?? now, error: description };
    const kind = description.replace(/\d+(\.\d+)?/g, "N");
    if (kind === this.#loggedFailure) {
      this.#context.logger.debug(`Kubernetes API: ${description}`, { error: description });
      return;
    }
    this.#loggedFailure = kind;
    this.#context.logger.warn(
      `Kubernetes API: ${description}; keeping the last known peers, retrying in ${
        formatDuration(Math.round(retryInMs))
      } and backing off while it fails`,
      { error: description, retryInMs: Math.round(retryInMs) },
    );
  }
}
