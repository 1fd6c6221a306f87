/**
 * The table of collectors. Adding one is a row here; turning one on or off is
 * `--collector.NAME` / `--no-collector.NAME`, not code.
 * @module
 */

import type { Option } from "commander";
import type { FlagValues } from "../exporter/flags.ts";
import type { Collector, CollectorContext } from "./collector.ts";
import { configureDns, createDnsCollector, dnsFlags } from "./dns.ts";
import { configureNetwork, NetworkCollector, networkFlags } from "./network.ts";

/** A collector kind: its flags, and how checked flags become a collector. */
export interface CollectorDefinition {
  readonly name: string;
  readonly description: string;
  /** The collector's own flags; they live beside it. */
  flags(): Option[];
  /**
   * Checks the flags and returns what builds the collector; throws a
   * `FlagError` first, so that bad flags stop the program before anything starts.
   */
  configure(values: FlagValues): (context: CollectorContext) => Collector;
}

/** Every collector, in the order they appear in help and on the status page. */
export const COLLECTORS: readonly CollectorDefinition[] = [
  {
    name: "dns",
    description: "DNS lookup latency and errors",
    flags: dnsFlags,
    configure(values) {
      const config = configureDns(values);
      return (context) => createDnsCollector(config, context);
    },
  },
  {
    name: "network",
    description: "TCP handshake latency and dial errors to targets and peers",
    flags: networkFlags,
    configure(values) {
      const config = configureNetwork(values);
      return (context) => new NetworkCollector(config, context);
    },
  },
];
