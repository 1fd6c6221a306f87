/**
 * Echo collector: UDP echo rounds between the exporter's own pods, for what a
 * TCP handshake cannot show — packet loss of a few percent, and MTU black
 * holes (small packets pass, full-size ones vanish). Every exporter answers
 * echo on its own listen port (collectors/echo_server.ts); every exporter
 * echoes to its discovered peers (the same ring neighbours the network
 * collector dials) and to `--echo.targets` (other net-exporters) one round per
 * interval (collectors/probe_echo.ts).
 * @module
 */

import type { Logger } from "@logtape/logtape";
import * as client from "../lib/prom_client.ts";
import { formatHostPort, type HostPort, parseHostPort } from "../lib/address.ts";
import { type Flag, type FlagValues, integerFlag, listFlag, valueFlag } from "../lib/flags.ts";
import { describeError } from "../lib/errors.ts";
import {
  type CollectorContext,
  createProbeMetrics,
  ProbeCollector,
  type ProbeOutcome,
  type ProbeTarget,
} from "./collector.ts";
import { pacingFlags, type ProbePacing } from "./pacing.ts";
import type { NetworkEndpoint } from "./network.ts";
import {
  ECHO_ERROR_REASONS,
  type EchoProbeOptions,
  type EchoProbeResult,
  probeEcho,
} from "./probe_echo.ts";
import { ECHO_REQUEST_RESULTS, type EchoRequestResult, EchoServer } from "./echo_server.ts";
import { type ConnectedUdp, openConnectedUdp } from "./udp_connected.ts";

/** The echo collector's settings, from its flags. */
export interface EchoConfig extends ProbePacing {
  /** Other net-exporters to echo to, besides the discovered peers. */
  readonly targets: readonly HostPort[];
  /** Where to answer; undefined: the host and port of `--web.listen-address`. */
  readonly listen: HostPort | undefined;
  /** Small datagrams per round. */
  readonly count: number;
  /** The full-size datagram's payload in bytes; 0: the path MTU less the IP and UDP headers. */
  readonly fullSize: number;
  /** Datagrams answered per second at most. */
  readonly rateLimit: number;
}

const TARGETS = listFlag(
  "echo.targets",
  "host:port",
  "Other net-exporters to echo to (UDP, their listen port), besides the discovered peers",
  "",
  (item) => parseHostPort(item),
);
const LISTEN = valueFlag(
  "echo.listen-address",
  "[host]:port",
  "Where to answer echo (UDP). Empty: the host and port of --web.listen-address",
  "",
  (text) => text === "" ? undefined : parseListen(text),
  (value) => value === undefined ? "" : formatHostPort(value),
);
const PACING = pacingFlags("echo", {
  what: "echo round",
  interval: "15s",
  timeout: "2s",
  concurrency: 16,
  histogram: "echo_rtt_seconds",
});
const COUNT = integerFlag("echo.count", "Small datagrams (64 bytes) per round", 10, { max: 1000 });
const FULL_SIZE = integerFlag(
  "echo.full-size",
  "Payload of the round's full-size datagram in bytes; 0: the path MTU of the route to the " +
    "target less the IP and UDP headers (1472 where it cannot be read)",
  0,
  { allowZero: true, max: 65_507 },
);
const RATE_LIMIT = integerFlag(
  "echo.rate-limit",
  "Echo datagrams answered per second at most; more are dropped and counted",
  2_000,
);

/** The echo collector's flags (both commands). */
export const ECHO_FLAGS: readonly Flag<unknown>[] = [
  TARGETS,
  ...PACING.flags,
  COUNT,
  FULL_SIZE,
  RATE_LIMIT,
];

/** `--echo.listen-address`: `serve` answers, `check` only asks, so only `serve` has it. */
export const ECHO_LISTEN_FLAG: Flag<HostPort | undefined> = LISTEN;

function parseListen(text: string): HostPort {
  // ":8000" means every interface, as for --web.listen-address.
  if (/^:\d+$/.test(text)) return { ...parseHostPort(`0.0.0.0${text}`), hostname: "::" };
  return parseHostPort(text);
}

/** Reads and checks the echo flags together. */
export function configureEcho(values: FlagValues): EchoConfig {
  return {
    targets: TARGETS.read(values),
    // Read where the command has it (serve); check answers nobody.
    listen: values.shown.some(([name]) => name === LISTEN.name) ? LISTEN.read(values) : undefined,
    ...PACING.read(values),
    count: COUNT.read(values),
    fullSize: FULL_SIZE.read(values),
    rateLimit: RATE_LIMIT.read(values),
  };
}

/** The counters of datagrams, each told apart by `size`: small (64 bytes) or full. */
const SENT = {
  name: "echo_packets_sent_total",
  help: "Echo datagrams sent, by size: small (64 bytes) or full (fills the path MTU).",
};
const LOST = {
  name: "echo_packets_lost_total",
  help: "Echo datagrams not back within --echo.timeout (or not sent: EMSGSIZE), by size.",
};

/** The middle of sorted `values` (seconds), or undefined for none. */
function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** A round's result as the collector records it. */
export function echoOutcome(result: EchoProbeResult): ProbeOutcome {
  const counts = {
    smallSent: result.smallSent ?? 0,
    smallLost: result.smallLost ?? 0,
    fullSent: result.fullSent ?? 0,
    fullLost: result.fullLost ?? 0,
  };
  const sizeReading = result.fullSize === undefined ? {} : { fullSizeBytes: result.fullSize };
  if (!result.ok) {
    return {
      ok: false,
      reason: result.reason,
      message: result.message,
      counts,
      ...(result.rtts && result.rtts.length > 0 ? { observations: result.rtts } : {}),
      readings: sizeReading,
    };
  }
  return {
    ok: true,
    seconds: median(result.rtts) ?? 0,
    observations: result.rtts,
    counts,
    readings: {
      lossRatio: result.smallSent === 0 ? 0 : result.smallLost / result.smallSent,
      ...sizeReading,
    },
  };
}

/** Options of {@link EchoCollector}, for tests: how rounds are made. */
export interface EchoCollectorOptions {
  readonly probe?: Partial<EchoProbeOptions>;
}

/**
 * The echo collector: static targets plus the discovered peers; the answering
 * side starts with probing (not in `check`, which only asks).
 */
export class EchoCollector extends ProbeCollector {
  readonly #config: EchoConfig;
  readonly #context: CollectorContext;
  readonly #logger: Logger;
  readonly #static: readonly NetworkEndpoint[];
  /** The rounds' options; the exchanger is set when probing starts. */
  readonly #probeOptions: { -readonly [K in keyof EchoProbeOptions]: EchoProbeOptions[K] };
  readonly #requests: client.Counter<"result">;
  /** Addresses of every discovered pod: who may ask, when discovery runs. */
  #known = new Set<string>();
  readonly #staticAddresses: ReadonlySet<string>;
  #connected: ConnectedUdp | undefined;
  #server: EchoServer | undefined;

  constructor(config: EchoConfig, context: CollectorContext, options: EchoCollectorOptions = {}) {
    super(
      "echo",
      createProbeMetrics(context.metrics, {
        prefix: "echo",
        labelNames: ["host", "target_node"],
        buckets: config.buckets,
        measured: "UDP echo rounds to a peer",
        latency: {
          name: "echo_rtt_seconds",
          help: "Round trips of the small echo datagrams that came back (each one observed).",
        },
        errors: {
          name: "echo_round_error_total",
          help: "Failed echo rounds by reason: timeout (no small datagram came back), refused " +
            "(the peer's port is closed), mtu (the full-size datagram was lost, or could not be " +
            "sent as the kernel knows a smaller path MTU, while small ones came back), " +
            "unreachable, resolve, other.",
          reasons: ECHO_ERROR_REASONS,
        },
        internalHelp: "Errors inside the exporter's echo collector (not lost datagrams).",
        readings: {
          fullSizeBytes: {
            name: "echo_full_size_bytes",
            help: "Payload of the full-size datagram tried in the last round (the path MTU less " +
              "the IP and UDP headers, or --echo.full-size); 0 before the first round.",
            kept: true,
          },
        },
        counters: {
          smallSent: { ...SENT, labels: { size: "small" } },
          fullSent: { ...SENT, labels: { size: "full" } },
          smallLost: { ...LOST, labels: { size: "small" } },
          fullLost: { ...LOST, labels: { size: "full" } },
        },
      }),
      config,
      context,
      (signal) => this.#warmUp(signal),
    );
    this.#config = config;
    this.#context = context;
    this.#logger = context.logger;
    this.#static = config.targets.map((target) => ({ ...target, node: "" }));
    this.#staticAddresses = new Set(config.targets.map((target) => target.hostname.toLowerCase()));
    this.#probeOptions = {
      count: config.count,
      fullSize: config.fullSize,
      ...options.probe,
    };
    this.#requests = new client.Counter({
      name: "echo_requests_total",
      help: "Echo datagrams that arrived at this exporter, by what became of them: answered, " +
        "refused (not an echo request of this version, or from an address that is not a peer), " +
        "rate_limited (over --echo.rate-limit).",
      labelNames: ["result"],
      registers: [context.metrics.registry],
    });
    for (const result of ECHO_REQUEST_RESULTS) this.#requests.inc({ result }, 0);
    this.setPeers([]);
  }

  /** Replaces the discovered peers; static targets stay. */
  setPeers(peers: readonly NetworkEndpoint[]): void {
    this.setTargets([...this.#static, ...peers].map((endpoint) => this.#target(endpoint)));
  }

  /** Every discovered pod's addresses: with discovery on, only they (and static targets) may ask. */
  setKnownAddresses(addresses: readonly string[]): void {
    this.#known = new Set(addresses.map((address) => address.toLowerCase()));
  }

  override start(): void {
    this.#listen();
    super.start();
  }

  override async stop(): Promise<void> {
    await super.stop();
    await this.#server?.close();
    this.#server = undefined;
    this.#connected?.close();
    this.#connected = undefined;
  }

  /** The address the answering side listens on, once started. */
  get listening(): Deno.NetAddr | undefined {
    return this.#server?.addr;
  }

  /**
   * Opens libc for rounds over connected sockets with Don't Fragment set
   * (refusals seen at once, the path MTU read from the route, EMSGSIZE);
   * without it, rounds go over Deno's sockets with `--echo.full-size` or 1472.
   */
  protected override prepare(): void {
    // An exchanger given by the caller (a test) is kept.
    if (this.#probeOptions.exchanger) return;
    try {
      this.#connected = openConnectedUdp({ dontFragment: true });
      this.#probeOptions.exchanger = this.#connected.exchanger;
    } catch (error) {
      this.#logger.info(
        `echo: rounds over Deno's sockets (no path MTU, no Don't Fragment control): ${
          describeError(error)
        }`,
      );
    }
  }

  #listen(): void {
    const listen = this.#config.listen ?? this.#context.listen?.();
    if (!listen || this.#server) return;
    const known = () => this.#known;
    const peersOnly = this.#context.peersFromDiscovery === true;
    try {
      this.#server = new EchoServer({
        hostname: listen.hostname,
        port: listen.port,
        ratePerSecond: this.#config.rateLimit,
        allowed: (address) =>
          !peersOnly || known().has(address) || this.#staticAddresses.has(address),
        count: (result: EchoRequestResult) => this.#requests.inc({ result }),
      });
    } catch (error) {
      throw new Error(
        `Cannot answer echo on ${formatHostPort(listen)}/udp: ${describeError(error)}`,
        { cause: error },
      );
    }
    this.#logger.info(`echo: answering on ${formatHostPort(listen)}/udp`, {
      address: formatHostPort(listen),
      peers_only: peersOnly,
    });
  }

  #target(endpoint: NetworkEndpoint): ProbeTarget {
    const labels = { host: formatHostPort(endpoint), target_node: endpoint.node };
    return {
      key: `${labels.host}|${labels.target_node}`,
      title: `${labels.host}/udp${endpoint.node ? ` (${endpoint.node})` : ""}`,
      labels,
      probe: async (signal) => echoOutcome(await probeEcho(endpoint, this.#probeOptions, signal)),
    };
  }

  /** Rounds against an echo server of its own on 127.0.0.1, untimed (for `check`). */
  async #warmUp(signal: AbortSignal): Promise<void> {
    const server = new EchoServer({
      hostname: "127.0.0.1",
      port: 0,
      ratePerSecond: 1_000,
      allowed: () => true,
      count: () => {},
    });
    try {
      for (let round = 0; round < 2 && !signal.aborted; round++) {
        await probeEcho(
          { hostname: "127.0.0.1", port: server.addr.port },
          { ...this.#probeOptions, count: 3, spacingMs: 0 },
          AbortSignal.any([signal, AbortSignal.timeout(1_000)]),
        ).catch(() => {});
      }
    } finally {
      await server.close();
    }
  }
}
