/**
 * DNS collector: for each host and record type, a lookup through the system
 * resolver (no `--dns.servers`) or straight to each listed server and protocol.
 * @module
 */

import { isIP } from "../lib/ip.ts";
import * as client from "../lib/prom_client.ts";
import { formatHostPort, type HostPort, parseHostPort } from "../lib/address.ts";
import { type Flag, FlagError, type FlagValues, listFlag } from "../lib/flags.ts";
import {
  type CollectorContext,
  createProbeMetrics,
  ProbeCollector,
  type ProbeTarget,
} from "./collector.ts";
import { pacingFlags, type ProbePacing } from "./pacing.ts";
import {
  DNS_ERROR_REASONS,
  DNS_PROTOCOLS,
  type DnsProbeOptions,
  type DnsProtocol,
  probeDns,
  RECORD_TYPES,
  type RecordType,
  STRAY_REASONS,
  warmUpDns,
} from "./probe_dns.ts";
import { probeSystemDns, type SystemDnsProbeOptions } from "./probe_dns_system.ts";

/** The DNS collector's settings, from its flags. */
export interface DnsConfig extends ProbePacing {
  readonly hosts: readonly string[];
  readonly servers: readonly HostPort[];
  readonly recordTypes: readonly RecordType[];
  readonly protocols: readonly DnsProtocol[];
}

const DNS_NAME =
  /^(?=.{1,254}$)(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?$/;

function parseDnsName(text: string): string {
  if (!DNS_NAME.test(text)) {
    throw new RangeError(`Cannot use host: current value "${text}" is not a DNS name`);
  }
  return text;
}

function parseServer(text: string): HostPort {
  const server = parseHostPort(text, { defaultPort: 53 });
  if (isIP(server.hostname) === 0) {
    throw new RangeError(`Cannot use DNS server: current value "${text}" is not an IP address`);
  }
  return server;
}

function oneOf<T extends string>(choices: readonly T[], what: string): (text: string) => T {
  return (text) => {
    const value = choices.find((choice) => choice.toLowerCase() === text.toLowerCase());
    if (value === undefined) {
      throw new RangeError(
        `Cannot use ${what}: current value is "${text}", expected one of ${choices.join(", ")}`,
      );
    }
    return value;
  };
}

const HOSTS = listFlag(
  "dns.hosts",
  "host",
  "Names to resolve. A trailing dot makes a name absolute; without one the system path applies the search list",
  "kubernetes.default.svc.cluster.local.",
  parseDnsName,
);
const SERVERS = listFlag(
  "dns.servers",
  "ip[:port]",
  "Name servers to query directly (port 53 by default). Empty: resolve through the system resolver (resolv.conf)",
  "",
  parseServer,
);
const RECORD_TYPES_FLAG = listFlag(
  "dns.record-types",
  "type",
  "Record types to ask for: A, AAAA",
  "A",
  oneOf(RECORD_TYPES, "record type"),
);
const PROTOCOLS = listFlag(
  "dns.protocols",
  "protocol",
  "Transports for direct queries to --dns.servers: udp, tcp",
  "udp",
  oneOf(DNS_PROTOCOLS, "protocol"),
);
const PACING = pacingFlags("dns", {
  what: "lookup",
  interval: "15s",
  timeout: "2s",
  concurrency: 16,
  histogram: "dns_latency_seconds",
});

/** The DNS collector's flags. */
export const DNS_FLAGS: readonly Flag<unknown>[] = [
  HOSTS,
  SERVERS,
  RECORD_TYPES_FLAG,
  PROTOCOLS,
  ...PACING.flags,
];

/** Reads and checks the DNS flags together. */
export function configureDns(values: FlagValues): DnsConfig {
  const config: DnsConfig = {
    hosts: HOSTS.read(values),
    servers: SERVERS.read(values),
    recordTypes: RECORD_TYPES_FLAG.read(values),
    protocols: PROTOCOLS.read(values),
    ...PACING.read(values),
  };
  if (config.hosts.length === 0) {
    throw new FlagError(
      "Cannot probe DNS: current --dns.hosts is empty (turn the collector off with --no-collector.dns)",
    );
  }
  if (config.recordTypes.length === 0 || config.protocols.length === 0) {
    throw new FlagError("Cannot probe DNS: current --dns.record-types or --dns.protocols is empty");
  }
  return config;
}

/** Side effects of the DNS probes, injectable for tests. */
export interface DnsProbeDependencies {
  readonly direct?: DnsProbeOptions;
  readonly system?: SystemDnsProbeOptions;
}

/** Builds the lookups `config` asks for: host × type × (system | server × protocol). */
export function dnsTargets(
  config: DnsConfig,
  dependencies: DnsProbeDependencies = {},
): ProbeTarget[] {
  const targets: ProbeTarget[] = [];
  for (const host of config.hosts) {
    for (const recordType of config.recordTypes) {
      if (config.servers.length === 0) {
        const labels = { host, server: "system", record_type: recordType, protocol: "system" };
        targets.push({
          key: Object.values(labels).join("|"),
          title: `${host} ${recordType} via system`,
          labels,
          probe: (signal) =>
            probeSystemDns({ host, recordType }, dependencies.system ?? {}, signal),
        });
      }
      for (const server of config.servers) {
        for (const protocol of config.protocols) {
          const labels = {
            host,
            server: formatHostPort(server),
            record_type: recordType,
            protocol,
          };
          targets.push({
            key: Object.values(labels).join("|"),
            title: `${host} ${recordType} via ${labels.server}/${protocol}`,
            labels,
            probe: (signal) =>
              probeDns({ host, recordType, server, protocol }, dependencies.direct ?? {}, signal),
          });
        }
      }
    }
  }
  return targets;
}

/** The DNS collector: its lookups are fixed by its flags. */
export class DnsCollector extends ProbeCollector {
  constructor(
    config: DnsConfig,
    context: CollectorContext,
    dependencies: DnsProbeDependencies = {},
  ) {
    const { registry } = context.metrics;
    super(
      "dns",
      createProbeMetrics(context.metrics, {
        prefix: "dns",
        labelNames: ["host", "server", "record_type", "protocol"],
        buckets: config.buckets,
        measured: "DNS lookups, from query sent to answer received",
        errors: {
          name: "dns_resolve_error_total",
          help: "Failed DNS lookups by reason: nxdomain, servfail, refused, nodata, timeout, " +
            "notfound (system resolver, cause unknown), other.",
          reasons: DNS_ERROR_REASONS,
        },
        internalHelp: "Errors inside the exporter's DNS collector (not lookup failures).",
      }),
      config,
      context,
      // The system path has no stand-in: a warm-up lookup would ask the node's resolver.
      (signal) =>
        config.servers.length > 0 && !dependencies.direct
          ? warmUpDns(config.protocols, signal)
          : Promise.resolve(),
    );
    const strays = new client.Counter({
      name: "dns_stray_messages_total",
      help: "Messages that reached a lookup's socket but were not its answer, by reason: sender " +
        "(another address or port), malformed, id, not_response (QR=0), question (another name, " +
        "type or class). They are ignored; a rising rate means forged or misrouted DNS traffic.",
      labelNames: ["reason"],
      registers: [registry],
    });
    for (const reason of STRAY_REASONS) {
      strays.inc({ reason }, 0);
    }
    const direct: DnsProbeOptions = {
      onStray: (reason) => strays.inc({ reason }),
      ...dependencies.direct,
    };
    this.setTargets(dnsTargets(config, { ...dependencies, direct }));
  }
}
