/**
 * `net-exporter serve`: start the collectors, serve HTTP, and on the stop
 * signal turn unready, stop probing, finish in-flight requests, and return.
 * @module
 */

import { formatHostPort, type HostPort } from "../lib/address.ts";
import type { CommonSettings } from "./cli.ts";
import { describeError } from "../lib/errors.ts";
import { createHandler } from "./http.ts";
import { asksCredentials, listenAndServe, type WebConfig, type WebServer } from "../web/mod.ts";
import { logger } from "./log.ts";
import { assemble } from "./assemble.ts";
import { VERSION } from "./metrics.ts";

/**
 * With discovery on (in a cluster), how long the listener stays up after
 * SIGTERM, unready but answering: the API server tells the peers this pod is
 * being deleted at the same moment the kubelet signals it, and a peer that
 * dials before the news arrives must not be refused and count an error; and
 * Prometheus applies target changes at most every 5 s, so a scrape may still
 * come for a pod already removed from its Service's endpoints. Measured in a
 * real Prometheus over the simulated cluster: with 2 s, one pod of five in a
 * rolling restart had a failed scrape and `NetExporterDown` pending for two
 * evaluations; with 6 s, none.
 */
export const SHUTDOWN_LINGER_MS = 6_000;

/** What `serve` needs. */
export interface ServeOptions {
  readonly settings: CommonSettings;
  readonly listen: HostPort;
  readonly telemetryPath: string;
  /** HTTP connections held at once (`--web.max-connections`). */
  readonly maxConnections: number;
  /** TLS and basic authentication (`--web.config.file`), checked at parse time. */
  readonly webConfig?: { readonly path: string; readonly config: WebConfig } | undefined;
  /** Aborts to shut down (SIGTERM/SIGINT in main.ts). */
  readonly stop: AbortSignal;
  /** Called with the bound address once listening. */
  readonly onListen?: (address: Deno.NetAddr) => void;
}

/** Runs the exporter until `options.stop` aborts; returns the exit code. */
export async function serve(options: ServeOptions): Promise<number> {
  const log = logger("serve");
  const bound: { addr?: Deno.NetAddr } = {};
  const { metrics, collectors, discovery } = assemble(options.settings, {
    // The host asked for, and the port bound (with port 0, the one the system chose).
    listen: () => bound.addr && { hostname: options.listen.hostname, port: bound.addr.port },
  });
  let shuttingDown = false;
  const exposed = createHandler({
    registry: metrics.registry,
    telemetryPath: options.telemetryPath,
    alive: () => collectors.every((collector) => collector.alive),
    ready: () =>
      !shuttingDown && collectors.every((collector) => collector.ready) &&
      (discovery?.ready ?? true),
    status: () => ({
      flags: options.settings.flags,
      targets: collectors.flatMap((collector) => collector.statuses()),
      ...(discovery ? { peers: discovery.peers(), discovery: discovery.health() } : {}),
    }),
  });

  const report = (level: "info" | "warn") => (message: string, fields?: Record<string, unknown>) =>
    log[level](message, fields ?? {});
  let server: WebServer;
  try {
    server = listenAndServe(exposed, {
      hostname: options.listen.hostname,
      port: options.listen.port,
      webConfig: options.webConfig,
      maxConnections: options.maxConnections,
      otherDescriptors: DESCRIPTORS_BESIDES_HTTP +
        options.settings.collectors.reduce((sum, collector) => sum + collector.concurrency, 0),
      log: { info: report("info"), warn: report("warn") },
    });
  } catch (error) {
    const address = formatHostPort(options.listen);
    log.error(`Cannot listen on ${address}: ${describeError(error)}`, {
      address,
      error: describeError(error),
    });
    await Promise.all(collectors.map((collector) => collector.stop()));
    return 1;
  }
  bound.addr = server.addr;
  options.onListen?.(server.addr);
  if (options.settings.staticTargetsOnly) {
    log.info("No Kubernetes configuration found: probing static targets only");
  }
  try {
    for (const collector of collectors) collector.start();
  } catch (error) {
    // A port the echo collector cannot answer on, as a busy HTTP port: one line, exit 1.
    log.error(`Cannot start probing: ${describeError(error)}`, { error: describeError(error) });
    await Promise.all(collectors.map((collector) => collector.stop()));
    await server.shutdown();
    return 1;
  }
  discovery?.start();
  const address = formatHostPort(server.addr);
  const scheme = server.scheme;
  log.info(`net-exporter ${VERSION} listening on ${address} (${scheme})`, {
    version: VERSION,
    address,
    scheme,
    authentication: asksCredentials(options.webConfig),
    collectors: collectors.map((collector) => collector.name),
  });

  await new Promise<void>((resolve) => {
    if (options.stop.aborted) resolve();
    options.stop.addEventListener("abort", () => resolve(), { once: true });
  });
  shuttingDown = true;
  log.info("Shutting down");
  if (discovery) await new Promise((resolve) => setTimeout(resolve, SHUTDOWN_LINGER_MS));
  await Promise.all([discovery?.stop(), ...collectors.map((collector) => collector.stop())]);
  await server.shutdown();
  return 0;
}

/**
 * Descriptors the exporter may hold at once besides HTTP connections and
 * probes in flight: the API connections, the UDP sockets, logs.
 */
const DESCRIPTORS_BESIDES_HTTP = 64;
