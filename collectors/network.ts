/**
 * Network collector: times a TCP handshake to each target — static ones from
 * `--network.targets`, and peers found by Kubernetes discovery.
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { formatHostPort, type HostPort, parseHostPort } from "../lib/address.ts";
import { type Flag, type FlagValues, integerFlag, listFlag } from "../lib/flags.ts";
import {
  type CollectorContext,
  createProbeMetrics,
  ProbeCollector,
  type ProbeTarget,
} from "./collector.ts";
import { Dialer } from "./dialer.ts";
import { pacingFlags, type ProbePacing } from "./pacing.ts";
import { DIAL_ERROR_REASONS, probeTcp, type TcpProbeOptions, warmUpTcp } from "./probe_tcp.ts";

/** The network collector's settings, from its flags. */
export interface NetworkConfig extends ProbePacing {
  readonly targets: readonly HostPort[];
}

/** What the network collector's flags say of discovered peers, for discovery. */
export interface PeerFlags {
  /** The port dialled on each peer. */
  readonly port: number;
  /** How many peers this pod probes (its neighbours on a ring of node names); 0: every peer. */
  readonly maxPeers: number;
}

/** An endpoint to dial; `node` names the peer's node (empty for static targets). */
export interface NetworkEndpoint extends HostPort {
  readonly node: string;
}

const TARGETS = listFlag(
  "network.targets",
  "host:port",
  "Static targets to dial, e.g. 10.0.0.5:8000,[fd00::5]:8000",
  "",
  (item) => parseHostPort(item),
);
const PACING = pacingFlags("network", {
  what: "dial",
  interval: "15s",
  timeout: "5s",
  concurrency: 100,
  histogram: "network_latency_seconds",
});

const PEER_PORT = integerFlag("network.port", "TCP port to dial on discovered peers", 8000, {
  max: 65535,
});
const MAX_PEERS = integerFlag(
  "network.max-peers",
  "Peers each pod probes (neighbours on a ring of node names); 0: every peer",
  10,
  { allowZero: true },
);

/** The network collector's flags. */
export const NETWORK_FLAGS: readonly Flag<unknown>[] = [
  TARGETS,
  ...PACING.flags,
  PEER_PORT,
  MAX_PEERS,
];

/** Reads and checks the network flags together. */
export function configureNetwork(values: FlagValues): NetworkConfig {
  return { targets: TARGETS.read(values), ...PACING.read(values) };
}

/** Reads `--network.port` and `--network.max-peers`. */
export function configurePeers(values: FlagValues): PeerFlags {
  return { port: PEER_PORT.read(values), maxPeers: MAX_PEERS.read(values) };
}

/**
 * Above this many targets the dialer thread times the handshakes. A /metrics
 * render then takes milliseconds, and any handshake ending meanwhile would be
 * read late on the main thread (the benchmark's busy-scraper column: 19% of
 * loopback handshakes read over 5 ms at 1,000 targets without the thread, 1%
 * with it). Below, the thread would only cost its ~10 MiB.
 */
export const DIAL_THREAD_ABOVE = 100;

/** The network collector: static targets plus whatever peers discovery hands it. */
export class NetworkCollector extends ProbeCollector {
  readonly #static: readonly NetworkEndpoint[];
  readonly #probeOptions: TcpProbeOptions;
  readonly #injected: boolean;
  readonly #logger: Logger;
  #dialer: Dialer | undefined;
  #dialOptions: TcpProbeOptions | undefined;
  #stopped = false;

  constructor(
    config: NetworkConfig,
    context: CollectorContext,
    probeOptions: TcpProbeOptions = {},
  ) {
    super(
      "network",
      createProbeMetrics(context.metrics.registry, {
        prefix: "network",
        labelNames: ["host", "target_node"],
        buckets: config.buckets,
        measured: "TCP handshakes to a target (host is ip:port)",
        errors: {
          name: "network_dial_error_total",
          help: "Failed TCP dials by reason: timeout, refused, unreachable, reset, resolve, other.",
          reasons: DIAL_ERROR_REASONS,
        },
        internalHelp:
          "Errors inside the exporter's network collector and its discovery (not dial failures).",
      }),
      config,
      context,
      (signal) => warmUpTcp(this.#dialOptions ?? this.#probeOptions, signal),
    );
    this.#static = config.targets.map((target) => ({ ...target, node: "" }));
    this.#probeOptions = probeOptions;
    this.#injected = probeOptions.connect !== undefined || probeOptions.dial !== undefined;
    this.#logger = context.logger;
    this.setPeers([]);
  }

  /** True once handshakes are timed on the dialer thread. */
  get dialsOnThread(): boolean {
    return this.#dialOptions !== undefined;
  }

  /** Replaces the discovered peers; static targets stay. */
  setPeers(peers: readonly NetworkEndpoint[]): void {
    const endpoints = [...this.#static, ...peers];
    if (
      endpoints.length > DIAL_THREAD_ABOVE && !this.#dialer && !this.#injected && !this.#stopped
    ) {
      const dialer = this.#dialer = new Dialer();
      this.#dialOptions = {
        ...this.#probeOptions,
        dial: (hostname, port, signal) => dialer.dial(hostname, port, signal),
      };
      this.#logger.info(
        `network: ${endpoints.length} targets: timing handshakes on a thread of their own`,
        { targets: endpoints.length },
      );
    }
    this.setTargets(endpoints.map((endpoint) => this.#target(endpoint)));
  }

  override async stop(): Promise<void> {
    this.#stopped = true;
    await super.stop();
    this.#dialer?.close();
  }

  #target(endpoint: NetworkEndpoint): ProbeTarget {
    const labels = { host: formatHostPort(endpoint), target_node: endpoint.node };
    return {
      key: `${labels.host}|${labels.target_node}`,
      title: endpoint.node ? `${labels.host} (${endpoint.node})` : labels.host,
      labels,
      probe: (signal) => probeTcp(endpoint, this.#dialOptions ?? this.#probeOptions, signal),
    };
  }
}
