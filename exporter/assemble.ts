/**
 * Builds what `serve` and `check` both run: the exporter's metrics, the
 * enabled collectors, and discovery feeding the collector that takes peers.
 * @module
 */

import type { Collector } from "../collectors/collector.ts";
import type { PeerReceiver } from "../collectors/mod.ts";
import { createDiscoveryMetrics, Discovery } from "../k8s/discovery.ts";
import type { CommonSettings } from "./cli.ts";
import { logger } from "./log.ts";
import { createExporterMetrics, type ExporterMetrics } from "./metrics.ts";

/** The parts of a running exporter. */
export interface Assembly {
  readonly metrics: ExporterMetrics;
  readonly collectors: readonly Collector[];
  /** Present when discovery is configured and a collector that takes peers runs. */
  readonly discovery: Discovery | undefined;
}

/**
 * Creates metrics, collectors and discovery from checked settings; starts
 * nothing. `targetChanges: "debug"` logs targets going down and up at debug
 * only (for `check`, whose results say it).
 */
export function assemble(
  settings: CommonSettings,
  options: {
    readonly targetChanges?: "logged" | "debug";
    /** The HTTP address once bound (serve), for collectors that answer their peers. */
    readonly listen?: () => { readonly hostname: string; readonly port: number } | undefined;
  } = {},
): Assembly {
  const metrics = createExporterMetrics(settings.nativeHistograms);
  const peerReceivers: PeerReceiver[] = [];
  const collectors = settings.collectors.map((configured) => {
    const context = {
      metrics,
      logger: logger(configured.name),
      targetChanges: options.targetChanges ?? "logged",
      peersFromDiscovery: settings.discovery !== undefined,
      ...(options.listen ? { listen: options.listen } : {}),
    };
    if (configured.peers === undefined) return configured.create(context);
    const collector = configured.create(context);
    peerReceivers.push(collector);
    return collector;
  });
  const discovery = settings.discovery && peerReceivers.length > 0
    ? new Discovery(settings.discovery, {
      network: fanOut(peerReceivers),
      metrics: createDiscoveryMetrics(metrics.registry),
      logger: logger("k8s"),
    })
    : undefined;
  return { metrics, collectors, discovery };
}

/**
 * One receiver for discovery that hands the peers to every collector that
 * probes them (network, echo); a discovery failure is counted once, by the
 * first (`network_error_total` when the network collector runs).
 */
function fanOut(receivers: readonly PeerReceiver[]): PeerReceiver {
  return {
    setPeers: (peers) => receivers.forEach((receiver) => receiver.setPeers(peers)),
    countInternalError: () => receivers[0]!.countInternalError(),
    setKnownAddresses: (addresses) =>
      receivers.forEach((receiver) => receiver.setKnownAddresses?.(addresses)),
  };
}
