/**
 * Network collector: times a TCP handshake to each target — static ones from
 * `--network.targets`, and peers found by Kubernetes discovery.
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { formatHostPort, type HostPort, parseHostPort } from "../lib/address.ts";
import { describeError } from "../lib/errors.ts";
import { choiceFlag, type Flag, type FlagValues, integerFlag, listFlag } from "../lib/flags.ts";
import * as client from "../lib/prom_client.ts";
import {
  type CollectorContext,
  createProbeMetrics,
  ProbeCollector,
  type ProbeOutcome,
  type ProbeTarget,
} from "./collector.ts";
import { Dialer } from "./dialer.ts";
import { KernelDialer } from "./kernel_dialer.ts";
import { pacingFlags, type ProbePacing } from "./pacing.ts";
import {
  DIAL_ERROR_REASONS,
  type HandshakeClock,
  probeTcp,
  type TcpProbeOptions,
  type TcpProbeResult,
  warmUpTcp,
} from "./probe_tcp.ts";

/** The network collector's settings, from its flags. */
export interface NetworkConfig extends ProbePacing {
  readonly targets: readonly HostPort[];
  /** Which clock times handshakes: the kernel's where it can be read, or the exporter's. */
  readonly clock: HandshakeClock;
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

const CLOCK = choiceFlag(
  "network.clock",
  "What times a handshake: kernel (the round trip the kernel measured, TCP_INFO through libc; " +
    "Linux, with FFI permission for libc; else wall, with one log line), or wall (the exporter's clock " +
    "around the connect)",
  "kernel",
  ["kernel", "wall"],
);

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
  CLOCK,
  PEER_PORT,
  MAX_PEERS,
];

/** Reads and checks the network flags together. */
export function configureNetwork(values: FlagValues): NetworkConfig {
  return { targets: TARGETS.read(values), ...PACING.read(values), clock: CLOCK.read(values) };
}

/** Reads `--network.port` and `--network.max-peers`. */
export function configurePeers(values: FlagValues): PeerFlags {
  return { port: PEER_PORT.read(values), maxPeers: MAX_PEERS.read(values) };
}

/**
 * With the wall clock, above this many targets the dialer thread times the handshakes. A /metrics
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
  readonly #wantsKernelClock: boolean;
  readonly #clockInfo: client.Gauge<"clock">;
  #clockChosen = false;
  #targetCount = 0;
  #kernelDialer: KernelDialer | undefined;
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
      createProbeMetrics(context.metrics, {
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
        readings: {
          pathMtuBytes: {
            name: "network_path_mtu_bytes",
            help: "The path MTU the kernel holds for a target after the last handshake " +
              "(kernel clock only).",
          },
        },
        counters: {
          synRetransmits: {
            name: "network_syn_retransmits_total",
            help: "SYNs the kernel sent again while dialling a target, successful dials or not: " +
              "packet loss on the path (kernel clock only).",
          },
        },
      }),
      config,
      context,
      (signal) => warmUpTcp(this.#dialOptions ?? this.#probeOptions, signal),
    );
    this.#static = config.targets.map((target) => ({ ...target, node: "" }));
    this.#probeOptions = probeOptions;
    this.#injected = probeOptions.connect !== undefined || probeOptions.dial !== undefined;
    this.#logger = context.logger;
    this.#wantsKernelClock = config.clock === "kernel" && !this.#injected;
    this.#clockInfo = new client.Gauge({
      name: "network_handshake_clock_info",
      help: "1 for the clock that times TCP handshakes: kernel (the kernel's round trip) or " +
        "wall (the exporter's clock around the connect).",
      labelNames: ["clock"],
      registers: [context.metrics.registry],
    });
    this.setPeers([]);
  }

  /** The clock that times handshakes. */
  get clock(): HandshakeClock {
    return this.#kernelDialer ? "kernel" : "wall";
  }

  /** True once handshakes are timed off the main thread (by the kernel or the dialer thread). */
  get dialsOnThread(): boolean {
    return this.#dialOptions !== undefined;
  }

  /** Replaces the discovered peers; static targets stay. */
  setPeers(peers: readonly NetworkEndpoint[]): void {
    const endpoints = [...this.#static, ...peers];
    this.#targetCount = endpoints.length;
    this.#useDialThreadIfNeeded();
    this.setTargets(endpoints.map((endpoint) => this.#target(endpoint)));
  }

  /** With the wall clock and over {@link DIAL_THREAD_ABOVE} targets, dials move to a thread. */
  #useDialThreadIfNeeded(): void {
    if (
      this.#targetCount <= DIAL_THREAD_ABOVE || !this.#clockChosen || this.#dialer ||
      this.#kernelDialer || this.#injected || this.#stopped
    ) {
      return;
    }
    const dialer = this.#dialer = new Dialer();
    this.#dialOptions = {
      ...this.#probeOptions,
      dial: (hostname, port, signal) => dialer.dial(hostname, port, signal),
    };
    this.#logger.info(
      `network: ${this.#targetCount} targets: timing handshakes on a thread of their own`,
      { targets: this.#targetCount },
    );
  }

  /** Opens the kernel dialer, or says in one line why the wall clock is used. */
  protected override prepare(): void {
    this.#clockChosen = true;
    if (this.#wantsKernelClock && !this.#stopped) {
      try {
        const kernel = this.#kernelDialer = new KernelDialer();
        this.#dialOptions = {
          ...this.#probeOptions,
          dial: (hostname, port, signal) => kernel.dial(hostname, port, signal),
        };
        this.#logger.info("network: handshakes timed by the kernel (TCP_INFO)", {
          clock: "kernel",
          libc: kernel.libcPath,
        });
      } catch (error) {
        this.#logger.warn(
          "network: handshakes timed by the exporter's clock, not the kernel's: " +
            describeError(error),
          { clock: "wall" },
        );
      }
    }
    this.#clockInfo.set({ clock: this.clock }, 1);
    this.#useDialThreadIfNeeded();
  }

  override async stop(): Promise<void> {
    this.#stopped = true;
    await super.stop();
    this.#dialer?.close();
    await this.#kernelDialer?.close();
  }

  #target(endpoint: NetworkEndpoint): ProbeTarget {
    const labels = { host: formatHostPort(endpoint), target_node: endpoint.node };
    return {
      key: `${labels.host}|${labels.target_node}`,
      title: endpoint.node ? `${labels.host} (${endpoint.node})` : labels.host,
      labels,
      probe: async (signal) =>
        outcomeOf(await probeTcp(endpoint, this.#dialOptions ?? this.#probeOptions, signal)),
    };
  }
}

/**
 * A dial as the collector records it: the kernel's path MTU as a reading (a
 * gauge), the exporter's own clock beside the kernel's only for display, and
 * the SYNs resent as a count, whether the dial succeeded or not.
 */
function outcomeOf(result: TcpProbeResult): ProbeOutcome {
  const counts = result.synRetransmits === undefined
    ? {}
    : { counts: { synRetransmits: result.synRetransmits } };
  if (!result.ok) {
    return { ok: false, reason: result.reason, message: result.message, ...counts };
  }
  const readings: Record<string, number> = {};
  if (result.pathMtu !== undefined) readings.pathMtuBytes = result.pathMtu;
  if (result.clock === "kernel" && result.wallSeconds !== undefined) {
    readings.wallSeconds = result.wallSeconds;
  }
  return {
    ok: true,
    seconds: result.seconds,
    ...(Object.keys(readings).length > 0 ? { readings } : {}),
    ...counts,
  };
}
