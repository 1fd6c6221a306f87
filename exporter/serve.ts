/**
 * `net-exporter serve`: start the collectors, serve HTTP, and on the stop
 * signal turn unready, stop probing, finish in-flight requests, and return.
 * @module
 */

import { formatHostPort, type HostPort } from "../lib/address.ts";
import type { CommonSettings } from "./cli.ts";
import type { Logger } from "@logtape/logtape";
import { describeError } from "../lib/errors.ts";
import { createHandler } from "./http.ts";
import {
  type HttpServer,
  type HttpServerOptions,
  serveHttp,
  type ServerTls,
} from "../lib/http_server.ts";
import { reloadingWebConfig, type WebConfig, withWebConfig } from "../lib/web_config.ts";
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
  const { metrics, collectors, discovery } = assemble(options.settings);
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

  const web = options.webConfig;
  // The kubelet's probes reach health and readiness without credentials; they say only ok/ready.
  const handler = web
    ? withWebConfig(
      exposed,
      reloadingWebConfig(web.path, web.config, (error) =>
        log.warn(
          `Cannot reload the web config: ${describeError(error)}; keeping the last good one`,
          {
            error: describeError(error),
          },
        )),
      ["/healthz", "/readyz"],
    )
    : exposed;
  let server: HttpServer;
  try {
    server = await listen(options.listen, handler, options.onListen, {
      ...(web?.config.tls ? { tls: web.config.tls } : {}),
      maxConnections: options.maxConnections,
      onAcceptError: (error, retryInMs) =>
        log.warn(
          `Cannot accept a connection: ${describeError(error)}; retrying in ${retryInMs} ms`,
          {
            error: describeError(error),
            retryInMs,
          },
        ),
    });
  } catch (error) {
    const address = formatHostPort(options.listen);
    log.error(`Cannot listen on ${address}: ${error}`, { address, error: String(error) });
    await Promise.all(collectors.map((collector) => collector.stop()));
    return 1;
  }
  if (options.settings.staticTargetsOnly) {
    log.info("No Kubernetes configuration found: probing static targets only");
  }
  warnIfFewDescriptors(options, log);
  discovery?.start();
  for (const collector of collectors) collector.start();
  const address = formatHostPort(server.addr);
  const scheme = web?.config.tls ? "https" : "http";
  log.info(`net-exporter ${VERSION} listening on ${address} (${scheme})`, {
    version: VERSION,
    address,
    scheme,
    basicAuth: (web?.config.users.size ?? 0) > 0,
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

async function listen(
  address: HostPort,
  handler: (request: Request) => Promise<Response>,
  onListen: ((address: Deno.NetAddr) => void) | undefined,
  options: HttpServerOptions & { readonly tls?: ServerTls },
): Promise<HttpServer> {
  let server: HttpServer;
  try {
    server = await serveHttp(address, handler, options);
  } catch (error) {
    // "::" on a host without IPv6: every interface means every IPv4 one.
    const noIpv6 = error instanceof Deno.errors.AddrNotAvailable ||
      (error as { code?: string } | undefined)?.code === "EADDRNOTAVAIL";
    if (address.hostname !== "::" || !noIpv6) throw error;
    server = await serveHttp({ ...address, hostname: "0.0.0.0" }, handler, options);
  }
  onListen?.(server.addr);
  return server;
}

/**
 * Descriptors the exporter may hold at once besides HTTP connections:
 * dials, lookups, the API connections, the listener, logs and the runtime.
 */
const DESCRIPTORS_BESIDES_HTTP = 64;

/**
 * Warns when the soft limit on open files is below what the configuration
 * can hold at once. Deno cannot raise it (setrlimit needs FFI); at the limit
 * accepts and dials fail and are retried, so this is a warning, not an error.
 */
function warnIfFewDescriptors(options: ServeOptions, log: Logger): void {
  let limits: string;
  try {
    limits = Deno.readTextFileSync("/proc/self/limits");
  } catch {
    return; // not Linux, or not permitted: nothing to compare with
  }
  const soft = Number(/^Max open files\s+(\d+)/m.exec(limits)?.[1]);
  const wanted = options.maxConnections + DESCRIPTORS_BESIDES_HTTP +
    options.settings.collectors.reduce((sum, collector) => sum + collector.concurrency, 0);
  if (soft > 0 && soft < wanted) {
    log.warn(
      `The open-file limit is ${soft}, below the ${wanted} this configuration may hold at once; ` +
        "lower --web.max-connections or the concurrency flags, or raise the limit",
      { limit: soft, wanted },
    );
  }
}
