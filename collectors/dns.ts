/**
 * DNS collector: for each host and record type, a lookup through the system
 * resolver (no `--dns.servers`) or straight to each listed server and protocol.
 * @module
 */

import { isIP } from "node:net";
import client from "prom-client";
import type { Option } from "commander";
import { formatHostPort, type HostPort, parseHostPort } from "../exporter/address.ts";
import { formatDuration } from "../exporter/duration.ts";
import {
  bucketsFlag,
  durationFlag,
  FlagError,
  type FlagValues,
  integerFlag,
  listFlag,
} from "../exporter/flags.ts";
import { DEFAULT_BUCKETS } from "../exporter/metrics.ts";
import {
  type Collector,
  type CollectorContext,
  type Pacing,
  ProbeCollector,
  type ProbeTarget,
} from "./collector.ts";
import {
  DNS_ERROR_REASONS,
  DNS_PROTOCOLS,
  type DnsProbeOptions,
  type DnsProtocol,
  probeDns,
  RECORD_TYPES,
  type RecordType,
  warmUpDns,
} from "./probe_dns.ts";
import { probeSystemDns, type SystemDnsProbeOptions } from "./probe_dns_system.ts";

/** The DNS collector's settings, from its flags. */
export interface DnsConfig extends Pacing {
  readonly hosts: readonly string[];
  readonly servers: readonly HostPort[];
  readonly recordTypes: readonly RecordType[];
  readonly protocols: readonly DnsProtocol[];
  readonly buckets: readonly number[];
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

/** The DNS collector's flags. */
export function dnsFlags(): Option[] {
  return [
    listFlag(
      "dns.hosts",
      "host",
      "Names to resolve. A trailing dot makes a name absolute; without one the system path applies the search list",
      "kubernetes.default.svc.cluster.local.",
      parseDnsName,
    ),
    listFlag(
      "dns.servers",
      "ip[:port]",
      "Name servers to query directly (port 53 by default). Empty: resolve through the system resolver (resolv.conf)",
      "",
      parseServer,
    ),
    listFlag(
      "dns.record-types",
      "type",
      "Record types to ask for: A, AAAA",
      "A",
      oneOf(RECORD_TYPES, "record type"),
    ),
    listFlag(
      "dns.protocols",
      "protocol",
      "Transports for direct queries to --dns.servers: udp, tcp",
      "udp",
      oneOf(DNS_PROTOCOLS, "protocol"),
    ),
    durationFlag("dns.interval", "How often each lookup runs", "15s"),
    durationFlag("dns.timeout", "Deadline of one lookup; must be below --dns.interval", "2s"),
    integerFlag("dns.concurrency", "Lookups in flight at most", 16),
    bucketsFlag("dns.buckets", "Upper bounds of dns_latency_seconds buckets", DEFAULT_BUCKETS),
  ];
}

/** Checks the DNS flags together. */
export function configureDns(values: FlagValues): DnsConfig {
  const config: DnsConfig = {
    hosts: values.get("dns.hosts") as string[],
    servers: values.get("dns.servers") as HostPort[],
    recordTypes: values.get("dns.record-types") as RecordType[],
    protocols: values.get("dns.protocols") as DnsProtocol[],
    intervalMs: values.get("dns.interval") as number,
    timeoutMs: values.get("dns.timeout") as number,
    concurrency: values.get("dns.concurrency") as number,
    buckets: values.get("dns.buckets") as number[],
  };
  if (config.hosts.length === 0) {
    throw new FlagError(
      "Cannot probe DNS: current --dns.hosts is empty (turn the collector off with --no-collector.dns)",
    );
  }
  if (config.recordTypes.length === 0 || config.protocols.length === 0) {
    throw new FlagError("Cannot probe DNS: current --dns.record-types or --dns.protocols is empty");
  }
  if (config.timeoutMs >= config.intervalMs) {
    throw new FlagError(
      `Cannot probe DNS: current --dns.timeout=${
        formatDuration(config.timeoutMs)
      } is not below --dns.interval=${formatDuration(config.intervalMs)}`,
    );
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

/** Creates the DNS collector with its metrics in `context.metrics.registry`. */
export function createDnsCollector(
  config: DnsConfig,
  context: CollectorContext,
  dependencies: DnsProbeDependencies = {},
): Collector {
  const registers = [context.metrics.registry];
  const labelNames = ["host", "server", "record_type", "protocol"];
  const collector = new ProbeCollector(
    "dns",
    {
      latency: new client.Histogram({
        name: "dns_latency_seconds",
        help: "Time of successful DNS lookups, from query sent to answer received.",
        labelNames,
        buckets: [...config.buckets],
        registers,
      }),
      lastLatency: new client.Gauge({
        name: "dns_last_latency_seconds",
        help: "Time of the last DNS lookup, from query sent to answer received, while lookups " +
          "succeed; absent while the last one failed.",
        labelNames,
        registers,
      }),
      success: new client.Gauge({
        name: "dns_probe_success",
        help: "1 if the last DNS lookup succeeded, 0 if it failed.",
        labelNames,
        registers,
      }),
      errors: new client.Counter({
        name: "dns_resolve_error_total",
        help: "Failed DNS lookups by reason: nxdomain, servfail, refused, nodata, timeout, " +
          "notfound (system resolver, cause unknown), other.",
        labelNames: [...labelNames, "reason"],
        registers,
      }),
      internalErrors: new client.Counter({
        name: "dns_error_total",
        help: "Errors inside the exporter's DNS collector (not lookup failures).",
        registers,
      }),
      reasons: DNS_ERROR_REASONS,
    },
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
    registers,
  });
  for (const reason of ["sender", "malformed", "id", "not_response", "question"]) {
    strays.inc({ reason }, 0);
  }
  const direct: DnsProbeOptions = {
    onStray: (reason) => strays.inc({ reason }),
    ...dependencies.direct,
  };
  collector.setTargets(dnsTargets(config, { ...dependencies, direct }));
  return collector;
}
