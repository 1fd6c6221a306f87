/**
 * Network collector: times a TCP handshake to each target — static ones from
 * `--network.targets`, and peers found by Kubernetes discovery.
 * @module
 */

import type { Logger } from "@logtape/logtape";
import type { Option } from "commander";
import client from "prom-client";
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
  type CollectorContext,
  type Pacing,
  ProbeCollector,
  type ProbeTarget,
} from "./collector.ts";
import { Dialer } from "./dialer.ts";
import { DIAL_ERROR_REASONS, probeTcp, type TcpProbeOptions, warmUpTcp } from "./probe_tcp.ts";

/** The network collector's settings, from its flags. */
export interface NetworkConfig extends Pacing {
  readonly targets: readonly HostPort[];
  readonly buckets: readonly number[];
}

/** An endpoint to dial; `node` names the peer's node (empty for static targets). */
export interface NetworkEndpoint extends HostPort {
  readonly node: string;
}

/** The network collector's flags. */
export function networkFlags(): Option[] {
  return [
    listFlag(
      "network.targets",
      "host:port",
      "Static targets to dial, e.g. 10.0.0.5:8000,[fd00::5]:8000",
      "",
      (item) => parseHostPort(item),
    ),
    durationFlag("network.interval", "How often each target is dialled", "15s"),
    durationFlag("network.timeout", "Deadline of one dial; must be below --network.interval", "5s"),
    integerFlag("network.concurrency", "Dials in flight at most", 100),
    bucketsFlag(
      "network.buckets",
      "Upper bounds of network_latency_seconds buckets",
      DEFAULT_BUCKETS,
    ),
  ];
}

/** Checks the network flags together. */
export function configureNetwork(values: FlagValues): NetworkConfig {
  const config: NetworkConfig = {
    targets: values.get("network.targets") as HostPort[],
    intervalMs: values.get("network.interval") as number,
    timeoutMs: values.get("network.timeout") as number,
    concurrency: values.get("network.concurrency") as number,
    buckets: values.get("network.buckets") as number[],
  };
  if (config.timeoutMs >= config.intervalMs) {
    throw new FlagError(
      `Cannot probe the network: current --network.timeout=${
        formatDuration(config.timeoutMs)
      } is not below --network.interval=${formatDuration(config.intervalMs)}`,
    );
  }
  return config;
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
    const registers = [context.metrics.registry];
    const labelNames = ["host", "target_node"];
    super(
      "network",
      {
        latency: new client.Histogram({
          name: "network_latency_seconds",
          help: "Time of successful TCP handshakes to a target (host is ip:port).",
          labelNames,
          buckets: [...config.buckets],
          registers,
        }),
        lastLatency: new client.Gauge({
          name: "network_last_latency_seconds",
          help: "Time of the last TCP handshake to a target (host is ip:port) while dials " +
            "succeed; absent while the last one failed.",
          labelNames,
          registers,
        }),
        success: new client.Gauge({
          name: "network_probe_success",
          help: "1 if the last dial to a target (host is ip:port) succeeded, 0 if it failed.",
          labelNames,
          registers,
        }),
        errors: new client.Counter({
          name: "network_dial_error_total",
          help: "Failed TCP dials by reason: timeout, refused, unreachable, reset, resolve, other.",
          labelNames: [...labelNames, "reason"],
          registers,
        }),
        internalErrors: new client.Counter({
          name: "network_error_total",
          help:
            "Errors inside the exporter's network collector and its discovery (not dial failures).",
          registers,
        }),
        reasons: DIAL_ERROR_REASONS,
      },
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
      labels,
      probe: (signal) => probeTcp(endpoint, this.#dialOptions ?? this.#probeOptions, signal),
    };
  }
}
