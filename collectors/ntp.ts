/**
 * NTP collector: one SNTP exchange per server and interval, for the network's
 * round trip and — what the original exporter's NTP collector threw away —
 * how far this node's clock is from the server's.
 *
 * Off unless `--ntp.servers` names a server: by default nothing is sent.
 * @module
 */

import { formatHostPort, type HostPort, parseHostPort } from "../lib/address.ts";
import { type Flag, type FlagValues, listFlag } from "../lib/flags.ts";
import {
  type CollectorContext,
  createProbeMetrics,
  ProbeCollector,
  type ProbeOutcome,
  type ProbeTarget,
} from "./collector.ts";
import { pacingFlags, type ProbePacing } from "./pacing.ts";
import { NTP_ERROR_REASONS, type NtpProbeOptions, probeNtp, warmUpNtp } from "./probe_ntp.ts";
import { describeError } from "../lib/errors.ts";
import { type ConnectedUdp, openConnectedUdp } from "./udp_connected.ts";

/** The NTP collector's settings, from its flags. */
export interface NtpConfig extends ProbePacing {
  readonly servers: readonly HostPort[];
}

/** The original's buckets: 1 ms × 2ⁿ up to 512 ms, so its dashboards keep working. */
export const NTP_BUCKETS: readonly number[] = Array.from({ length: 10 }, (_, n) => 0.001 * 2 ** n);

const SERVERS = listFlag(
  "ntp.servers",
  "host[:port]",
  "NTP servers to query (port 123 by default), e.g. the node's own time source. Empty: the NTP " +
    "collector sends nothing",
  "",
  (item) => parseHostPort(item, { defaultPort: 123 }),
);
const PACING = pacingFlags("ntp", {
  what: "NTP exchange",
  interval: "60s",
  timeout: "5s",
  concurrency: 8,
  histogram: "ntp_latency_seconds",
  buckets: NTP_BUCKETS,
});

/** The NTP collector's flags. */
export const NTP_FLAGS: readonly Flag<unknown>[] = [SERVERS, ...PACING.flags];

/** Reads and checks the NTP flags together. */
export function configureNtp(values: FlagValues): NtpConfig {
  return { servers: SERVERS.read(values), ...PACING.read(values) };
}

/** One target per server; the probe's extra figures become the collector's readings. */
export function ntpTargets(config: NtpConfig, options: NtpProbeOptions = {}): ProbeTarget[] {
  return config.servers.map((server) => {
    const labels = { server: formatHostPort(server) };
    return {
      key: labels.server,
      title: `${labels.server} (NTP)`,
      labels,
      probe: async (signal): Promise<ProbeOutcome> => {
        const result = await probeNtp(server, options, signal);
        if (!result.ok) return result;
        return {
          ok: true,
          seconds: result.seconds,
          readings: {
            offsetSeconds: result.offsetSeconds,
            stratum: result.stratum,
            rootDistanceSeconds: result.rootDistanceSeconds,
            leap: result.leap,
          },
        };
      },
    };
  });
}

/**
 * The NTP collector: its servers are fixed by its flags. Its exchanges go
 * over sockets connected through libc where libc opens (the permission the
 * network collector's kernel clock has), so a closed server port fails at
 * once as `refused`; elsewhere over Deno's sockets, where it is a timeout.
 */
export class NtpCollector extends ProbeCollector {
  /** The probes' options; the exchanger is set when probing starts. */
  readonly #probeOptions: NtpProbeOptions;
  readonly #context: CollectorContext;
  #connected: ConnectedUdp | undefined;

  constructor(config: NtpConfig, context: CollectorContext, options: NtpProbeOptions = {}) {
    super(
      "ntp",
      createProbeMetrics(context.metrics, {
        prefix: "ntp",
        labelNames: ["server"],
        buckets: config.buckets,
        measured: "NTP exchanges: the round-trip delay (RFC 5905 δ), without the server's own " +
          "processing time",
        errors: {
          name: "ntp_sync_error_total",
          help: "Failed NTP exchanges by reason: timeout, kiss_of_death (the server asked to " +
            "back off or refused), unsynchronized (stratum 16 or leap indicator 3), invalid (a " +
            "malformed reply, or only replies not answering the request: forged or stray), " +
            "resolve, other.",
          reasons: NTP_ERROR_REASONS,
        },
        internalHelp: "Errors inside the exporter's NTP collector (not exchange failures).",
        readings: {
          offsetSeconds: {
            name: "ntp_offset_seconds",
            help: "Offset of the server's clock from this node's (RFC 5905 θ) at the last " +
              "exchange: positive when the node is behind. Absent while the last exchange failed.",
          },
          stratum: {
            name: "ntp_stratum",
            help: "The server's stratum at the last exchange (1: it has a reference clock).",
          },
          rootDistanceSeconds: {
            name: "ntp_root_distance_seconds",
            help: "The server's root delay / 2 + root dispersion at the last exchange: its own " +
              "bound on its error against the reference.",
          },
          leap: {
            name: "ntp_leap",
            help: "The server's leap indicator at the last exchange: 0 none, 1 a leap second " +
              "will be inserted, 2 deleted, at the end of the day.",
          },
        },
      }),
      config,
      context,
      warmUpNtp,
    );
    this.#context = context;
    this.#probeOptions = { ...options };
    this.setTargets(ntpTargets(config, this.#probeOptions));
  }

  /** Sockets connected through libc for the exchanges, unless the caller (a test) gave its own. */
  protected override prepare(): void {
    if (this.#probeOptions.exchanger) return;
    try {
      this.#connected = openConnectedUdp();
      this.#probeOptions.exchanger = this.#connected.exchanger;
    } catch (error) {
      this.#context.logger.info(
        `ntp: a closed server port reads as a timeout (no connected socket): ${
          describeError(error)
        }`,
      );
    }
  }

  override async stop(): Promise<void> {
    await super.stop();
    this.#connected?.close();
    this.#connected = undefined;
  }
}
