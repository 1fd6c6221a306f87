/**
 * The table of collectors. Adding one is a row here; turning one on or off is
 * `--collector.NAME` / `--no-collector.NAME`, not code.
 * @module
 */

import { type Flag, type FlagValues, switchFlag } from "../lib/flags.ts";
import type { Collector, CollectorContext } from "./collector.ts";
import { configureDns, DNS_FLAGS, DnsCollector } from "./dns.ts";
import {
  configureNetwork,
  configurePeers,
  NETWORK_FLAGS,
  NetworkCollector,
  type NetworkEndpoint,
  type PeerFlags,
} from "./network.ts";
import { configureNtp, NTP_FLAGS, NtpCollector } from "./ntp.ts";
import { configureEcho, ECHO_FLAGS, EchoCollector } from "./echo.ts";

/** What discovery hands a collector that probes peers: the endpoints to dial, and its failures. */
export interface PeerReceiver {
  /** Replaces the discovered peers. */
  setPeers(peers: readonly NetworkEndpoint[]): void;
  /** Counts a failure of discovery among the collector's own internal errors. */
  countInternalError(): void;
  /** Every discovered pod's addresses, selected or not (who may ask the echo collector). */
  setKnownAddresses?(addresses: readonly string[]): void;
}

/** A collector whose flags were read and checked: ready to build. */
export type ConfiguredCollector =
  & {
    readonly name: string;
    /** Probes it may have in flight at once (for the open-file budget). */
    readonly concurrency: number;
  }
  & (
    | { readonly peers?: undefined; create(context: CollectorContext): Collector }
    | {
      /** It probes discovered peers: the port it dials on each, and how many it probes. */
      readonly peers: PeerFlags;
      create(context: CollectorContext): Collector & PeerReceiver;
    }
  );

/** A collector kind: its switch, its flags, and how checked flags become a collector. */
export interface CollectorDefinition {
  readonly name: string;
  readonly description: string;
  /** `--collector.NAME` / `--no-collector.NAME`. */
  readonly enabled: Flag<boolean>;
  /** The collector's own flags; they live beside it. */
  readonly flags: readonly Flag<unknown>[];
  /** It probes the peers Kubernetes discovery finds (and discovery runs only beside it). */
  readonly takesPeers: boolean;
  /**
   * Reads and checks the flags; throws a `FlagError` first, so that bad flags
   * stop the program before anything starts. Undefined when the flags leave
   * the collector nothing to do (NTP without servers): it is then not built.
   */
  configure(values: FlagValues): ConfiguredCollector | undefined;
}

type Unnamed<T> = T extends unknown ? Omit<T, "name"> : never;

function definition(
  name: string,
  description: string,
  flags: readonly Flag<unknown>[],
  configure: (values: FlagValues) => Unnamed<ConfiguredCollector> | undefined,
  takesPeers = false,
): CollectorDefinition {
  return {
    name,
    description,
    enabled: switchFlag(`collector.${name}`, `Run the ${name} collector: ${description}`),
    flags,
    takesPeers,
    configure: (values) => {
      const configured = configure(values);
      return configured && { name, ...configured };
    },
  };
}

/** Every collector, in the order they appear in help and on the status page. */
export const COLLECTORS: readonly CollectorDefinition[] = [
  definition("dns", "DNS lookup latency and errors", DNS_FLAGS, (values) => {
    const config = configureDns(values);
    return {
      concurrency: config.concurrency,
      create: (context) => new DnsCollector(config, context),
    };
  }),
  definition(
    "network",
    "TCP handshake latency and dial errors to targets and peers",
    NETWORK_FLAGS,
    (values) => {
      const config = configureNetwork(values);
      return {
        concurrency: config.concurrency,
        peers: configurePeers(values),
        create: (context) => new NetworkCollector(config, context),
      };
    },
    true,
  ),
  definition(
    "echo",
    "UDP echo to the peers (other net-exporters): packet loss and MTU black holes",
    ECHO_FLAGS,
    (values) => {
      const config = configureEcho(values);
      return {
        concurrency: config.concurrency,
        peers: configurePeers(values),
        create: (context) => new EchoCollector(config, context),
      };
    },
    true,
  ),
  definition(
    "ntp",
    "NTP round trip and this node's clock offset, once --ntp.servers names a server",
    NTP_FLAGS,
    (values) => {
      const config = configureNtp(values);
      if (config.servers.length === 0) return undefined;
      return {
        concurrency: config.concurrency,
        create: (context) => new NtpCollector(config, context),
      };
    },
  ),
];
