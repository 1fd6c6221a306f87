/**
 * `net-exporter serve`: start the collectors, serve HTTP, and on the stop
 * signal turn unready, stop probing, finish in-flight requests, and return.
 * @module
 */

import { formatHostPort, type HostPort } from "./address.ts";
import type { CommonSettings } from "./cli.ts";
import { createHandler } from "./http.ts";
import { logger } from "./log.ts";
import { assemble } from "./assemble.ts";
import { VERSION } from "./metrics.ts";

/**
 * With discovery on, how long the listener stays up after SIGTERM: the API
 * server tells the peers this pod is being deleted at the same moment the
 * kubelet signals it, and a peer that dials before the news arrives must not
 * be refused and count an error.
 */
export const SHUTDOWN_LINGER_MS = 2_000;

/** What `serve` needs. */
export interface ServeOptions {
  readonly settings: CommonSettings;
  readonly listen: HostPort;
  readonly telemetryPath: string;
  /** Aborts to shut down (SIGTERM/SIGINT in main.ts). */
  readonly stop: AbortSignal;
  /** Called with the bound address once listening. */
  readonly onListen?: (address: Deno.NetAddr) => void;
}

/** Runs the exporter until `options.stop` aborts; returns the exit code. */
export async function serve(options: ServeOptions): Promise<number> {
  const log = logger("serve");
  const { metrics, collectors, discovery } = assemble(options.settings);
  let shuttingDown = false;
  const handler = createHandler({
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

  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = listen(options.listen, handler, options.onListen);
  } catch (error) {
    const address = formatHostPort(options.listen);
    log.error(`Cannot listen on ${address}: ${error}`, { address, error: String(error) });
    await Promise.all(collectors.map((collector) => collector.stop()));
    return 1;
  }
  const networkOn = options.settings.values.get("collector.network") === true;
  if (networkOn && !discovery && options.settings.values.get("k8s.discovery") === "auto") {
    log.info("No Kubernetes configuration found: probing static targets only");
  }
  discovery?.start();
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
  if (discovery) await new Promise((resolve) => setTimeout(resolve, SHUTDOWN_LINGER_MS));
  await Promise.all([discovery?.stop(), ...collectors.map((collector) => collector.stop())]);
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
