/**
 * `net-exporter serve`: start the collectors, serve HTTP, and on the stop
 * signal turn unready, stop probing, finish in-flight requests, and return.
 * @module
 */

import type { Collector } from "../collectors/collector.ts";
import { formatHostPort, type HostPort } from "./address.ts";
import type { CommonSettings } from "./cli.ts";
import { createHandler, type PeerView } from "./http.ts";
import { logger } from "./log.ts";
import { createExporterMetrics, type ExporterMetrics, VERSION } from "./metrics.ts";

/** A part that runs beside the collectors, e.g. Kubernetes discovery. */
export interface Companion {
  /** True once it has what it needs for the collectors to be trusted (e.g. first list synced). */
  readonly ready: boolean;
  /** Peers for the status page. */
  peers(): readonly PeerView[];
  stop(): Promise<void>;
}

/** Builds companions once the collectors exist (discovery feeds the network collector). */
export type CompanionFactory = (
  collectors: readonly Collector[],
  metrics: ExporterMetrics,
) => Companion | undefined;

/** What `serve` needs. */
export interface ServeOptions {
  readonly settings: CommonSettings;
  readonly listen: HostPort;
  readonly telemetryPath: string;
  /** Aborts to shut down (SIGTERM/SIGINT in main.ts). */
  readonly stop: AbortSignal;
  readonly companions?: readonly CompanionFactory[];
  /** Called with the bound address once listening. */
  readonly onListen?: (address: Deno.NetAddr) => void;
}

/** Runs the exporter until `options.stop` aborts; returns the exit code. */
export async function serve(options: ServeOptions): Promise<number> {
  const log = logger("serve");
  const metrics = createExporterMetrics();
  const collectors = options.settings.collectors.map(({ name, create }) =>
    create({ metrics, logger: logger(name) })
  );
  let shuttingDown = false;
  let companions: Companion[] = [];
  const handler = createHandler({
    registry: metrics.registry,
    telemetryPath: options.telemetryPath,
    alive: () => collectors.every((collector) => collector.alive),
    ready: () =>
      !shuttingDown && collectors.every((collector) => collector.ready) &&
      companions.every((companion) => companion.ready),
    status: () => {
      const peers = companions.flatMap((companion) => companion.peers());
      return {
        flags: options.settings.flags,
        targets: collectors.flatMap((collector) => collector.statuses()),
        ...(companions.length > 0 ? { peers } : {}),
      };
    },
  });

  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = listen(options.listen, handler, options.onListen);
  } catch (error) {
    const address = formatHostPort(options.listen);
    log.error(`Cannot listen on ${address}: ${error}`, { address, error: String(error) });
    return 1;
  }
  companions = (options.companions ?? []).flatMap((factory) => factory(collectors, metrics) ?? []);
  for (const collector of collectors) collector.start();
  const address = formatHostPort(server.addr);
  log.info(`net-exporter ${VERSION} listening on ${address}`, {
    version: VERSION,
    address,
    collectors: collectors.map((collector) => collector.name),
  });

  await new Promise<void>((resolve) => {
    if (options.stop.aborted) resolve();
    options.stop.addEventListener("abort", () => resolve(), { once: true });
  });
  shuttingDown = true;
  log.info("Shutting down");
  await Promise.all([
    ...companions.map((companion) => companion.stop()),
    ...collectors.map((collector) => collector.stop()),
  ]);
  await server.shutdown();
  return 0;
}

function listen(
  address: HostPort,
  handler: (request: Request) => Promise<Response>,
  onListen: ((address: Deno.NetAddr) => void) | undefined,
): Deno.HttpServer<Deno.NetAddr> {
  const options = (hostname: string) => ({
    hostname,
    port: address.port,
    onListen: (bound: Deno.NetAddr) => onListen?.(bound),
  });
  try {
    return Deno.serve(options(address.hostname), handler);
  } catch (error) {
    // "::" on a host without IPv6: every interface means every IPv4 one.
    if (address.hostname === "::" && error instanceof Deno.errors.AddrNotAvailable) {
      return Deno.serve(options("0.0.0.0"), handler);
    }
    throw error;
  }
}
