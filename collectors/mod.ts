/**
 * The table of collectors. Adding one is a row here; turning one on or off is
 * `--collector.NAME` / `--no-collector.NAME`, not code.
 * @module
 */

import { type Flag, type FlagValues, switchFlag } from "../lib/flags.ts";
import type { Collector, CollectorContext } from "./collector.ts";
import { configureDns, DNS_FLAGS, DnsCollector } from "./dns.ts";
import { configureNetwork, NETWORK_FLAGS, NetworkCollector } from "./network.ts";
import { configureNtp, NTP_FLAGS, NtpCollector } from "./ntp.ts";

/** A collector whose flags were read and checked: ready to build. */
export interface ConfiguredCollector {
  readonly name: string;
  /** Probes it may have in flight at once (for the open-file budget). */
  readonly concurrency: number;
  create(context: CollectorContext): Collector;
}

/** A collector kind: its switch, its flags, and how checked flags become a collector. */
export interface CollectorDefinition {
  readonly name: string;
  readonly description: string;
  /** `--collector.NAME` / `--no-collector.NAME`. */
  readonly enabled: Flag<boolean>;
  /** The collector's own flags; they live beside it. */
  readonly flags: readonly Flag<unknown>[];
  /**
   * Reads and checks the flags; throws a `FlagError` first, so that bad flags
   * stop the program before anything starts. Undefined when the flags leave
   * the collector nothing to do (NTP without servers): it is then not built.
   */
  configure(values: FlagValues): ConfiguredCollector | undefined;
}

function definition(
  name: string,
  description: string,
  flags: readonly Flag<unknown>[],
  configure: (values: FlagValues) => Omit<ConfiguredCollector, "name"> | undefined,
): CollectorDefinition {
  return {
    name,
    description,
    enabled: switchFlag(`collector.${name}`, `Run the ${name} collector: ${description}`),
    flags,
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
        create: (context) => new NetworkCollector(config, context),
      };
    },
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
