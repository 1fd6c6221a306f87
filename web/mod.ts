/**
 * The web layer, shaped like the Prometheus exporter-toolkit's `web`
 * package: the application hands it a `(Request) => Response` handler and
 * the `--web.config.file` it was given, and this module owns everything
 * between the socket and the handler: listening, TLS and client
 * certificates, basic and bearer authentication, the rate limit, security
 * headers, connection limits, deadlines, and draining on shutdown. It
 * imports nothing from the rest of the project. web/README.md lists every
 * limit and what happens at it.
 * @module
 */

import { dummyCostOf, guard, PasswordChecker } from "./auth.ts";
import { authenticates, type WebConfig } from "./config.ts";
import { ReloadingConfig } from "./reload.ts";
import { DEFAULT_LIMITS, HttpServer, type ServerLimits } from "./server.ts";
import { TlsConnection } from "./tls.ts";

export {
  authenticates,
  CLIENT_AUTH_TYPES,
  type ClientAuthType,
  loadWebConfig,
  parseGoDuration,
  type TlsSettings,
  type WebConfig,
} from "./config.ts";
export { DEFAULT_LIMITS, plain, type ServerLimits } from "./server.ts";

/** Paths served without credentials unless the web config names its own (`auth_excluded_paths`). */
export const DEFAULT_EXCLUDED_PATHS: readonly string[] = ["/healthz", "/readyz"];

/** Where the web layer reports; the application passes its logger's methods. */
export interface WebLog {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

/** What {@link listenAndServe} needs. */
export interface WebOptions extends ServerLimits {
  readonly hostname: string;
  readonly port: number;
  /** `--web.config.file` and what it held when the command line was checked; absent: plain HTTP, open. */
  readonly webConfig?: { readonly path: string; readonly config: WebConfig } | undefined;
  /** Paths open without credentials when the web config names none. */
  readonly excludedPaths?: readonly string[];
  /** Realm of `WWW-Authenticate`. */
  readonly realm?: string;
  /**
   * Descriptors the rest of the process may hold at once (probes in flight,
   * API connections, logs), for the check of the open-file limit at start.
   */
  readonly otherDescriptors?: number;
  readonly log?: WebLog;
}

/** A running server. */
export interface WebServer {
  /** The address bound. */
  readonly addr: Deno.NetAddr;
  readonly scheme: "http" | "https";
  /** Connections open now. */
  readonly connections: number;
  /** Stops accepting, answers what arrives within the grace, and resolves when all is closed. */
  shutdown(): Promise<void>;
}

const SILENT: WebLog = { info: () => {}, warn: () => {} };

/**
 * Listens on `hostname:port` and serves `handler` behind the web config.
 * @throws {Error} when the address cannot be bound (e.g. in use).
 */
export function listenAndServe(
  handler: (request: Request) => Promise<Response>,
  options: WebOptions,
): WebServer {
  const log = options.log ?? SILENT;
  const web = options.webConfig;
  const reloading = web
    ? new ReloadingConfig(
      web.path,
      web.config,
      (message, error) => log.warn(message, error === undefined ? {} : { error: String(error) }),
    )
    : undefined;
  const configNow = () => reloading!.current;
  const passwords = new PasswordChecker();
  const served = reloading
    ? guard(handler, {
      config: configNow,
      defaultExcludedPaths: options.excludedPaths ?? DEFAULT_EXCLUDED_PATHS,
      passwords,
      realm: options.realm ?? "net-exporter",
    })
    : handler;
  const listener = listen(options.hostname, options.port);
  const tls = web?.config.tls !== undefined;
  const server = new HttpServer(
    listener,
    reloading
      ? async (request) => {
        await reloading.refresh();
        return await served(request);
      }
      : served,
    {
      ...options,
      ...(tls ? { wrap: (raw) => new TlsConnection(raw, () => configNow().tls!) } : {}),
      onAccept: () => void reloading?.refresh(),
      onAcceptError: (error, retryInMs) =>
        log.warn(`Cannot accept a connection: ${error}; retrying in ${retryInMs} ms`, {
          error: String(error),
          retryInMs,
        }),
    },
  );
  if (web && web.config.users.size > 0) passwords.prepare(dummyCostOf(web.config));
  checkDescriptorBudget(options, log);
  return {
    addr: server.addr,
    scheme: tls ? "https" : "http",
    get connections() {
      return server.connections;
    },
    async shutdown() {
      await server.shutdown();
      passwords.close();
    },
  };
}

/** Binds the address; "::" on a host without IPv6 means every IPv4 interface. */
function listen(hostname: string, port: number): Deno.Listener<Deno.TcpConn, Deno.NetAddr> {
  try {
    return Deno.listen({ hostname, port, transport: "tcp" });
  } catch (error) {
    const noIpv6 = error instanceof Deno.errors.AddrNotAvailable ||
      (error as { code?: string } | undefined)?.code === "EADDRNOTAVAIL";
    if (hostname !== "::" || !noIpv6) throw error;
    return Deno.listen({ hostname: "0.0.0.0", port, transport: "tcp" });
  }
}

/** Whether the configuration at start asks for credentials (for the application's start-up line). */
export function asksCredentials(webConfig: WebOptions["webConfig"]): boolean {
  return webConfig !== undefined && authenticates(webConfig.config);
}

/**
 * Compares the open-file limit with what the server and the rest of the
 * process may hold at once: at the limit accepts and dials fail (and are
 * retried), so a shortfall is a warning. Deno 2.9 lets a program read
 * /proc/self/limits only with every permission; without them, one line says
 * the limit could not be checked.
 */
function checkDescriptorBudget(options: WebOptions, log: WebLog): void {
  const wanted = (options.maxConnections ?? DEFAULT_LIMITS.maxConnections) +
    (options.otherDescriptors ?? 0) + LISTENER_AND_RUNTIME_DESCRIPTORS;
  let limits: string;
  try {
    limits = Deno.readTextFileSync("/proc/self/limits");
  } catch (error) {
    // Not a missing permission of the compiled set: Deno 2.9 lets no narrower grant read this file.
    const why = error instanceof Deno.errors.NotCapable
      ? "Deno 2.9 reads /proc/self/limits only with every permission"
      : error instanceof Error
      ? error.message
      : String(error);
    log.info(
      `Cannot check the open-file limit against the ${wanted} descriptors this configuration may hold: ${why}`,
      { wanted },
    );
    return;
  }
  const soft = Number(/^Max open files\s+(\d+)/m.exec(limits)?.[1]);
  if (soft > 0 && soft < wanted) {
    log.warn(
      `The open-file limit is ${soft}, below the ${wanted} descriptors this configuration may hold at once; ` +
        "lower --web.max-connections or the concurrency flags, or raise the limit",
      { limit: soft, wanted },
    );
  }
}

/** The listener, standard streams, the runtime's own (event loop, V8 platform) and a margin. */
const LISTENER_AND_RUNTIME_DESCRIPTORS = 32;
