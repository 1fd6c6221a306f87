/**
 * `--web.config.file` in the Prometheus exporter-toolkit format, as
 * node_exporter and blackbox_exporter take it: `tls_server_config`,
 * `http_server_config` and `basic_auth_users` (bcrypt hashes). Unknown keys
 * are refused, as the toolkit refuses them.
 *
 * Client certificates (`client_auth_type`, `client_ca_file`) are asked for
 * through `node:tls` (see mutual_tls.ts). What Deno's TLS cannot do is
 * refused by name rather than ignored: TLS 1.3 only, and choosing cipher
 * suites or curves. Deno serves TLS 1.2 and 1.3 with rustls' defaults.
 * @module
 */

import { dirname, isAbsolute, join } from "node:path";
import { plain, type ServerTls } from "./http_server.ts";
import { CLIENT_AUTH_TYPES, type ClientAuthType } from "./mutual_tls.ts";

/** A checked web configuration. */
export interface WebConfig {
  /** PEM certificate chain and key, and what clients must show; absent: plain HTTP. */
  readonly tls: ServerTls | undefined;
  /** Headers added to every response. */
  readonly headers: Readonly<Record<string, string>>;
  /** User name → bcrypt hash; empty: no authentication. */
  readonly users: ReadonlyMap<string, string>;
}

/** Response headers the toolkit lets a configuration set. */
const SETTABLE_HEADERS = [
  "Strict-Transport-Security",
  "X-Content-Type-Options",
  "X-Frame-Options",
  "X-XSS-Protection",
  "Content-Security-Policy",
];

const TOP_KEYS = ["tls_server_config", "http_server_config", "basic_auth_users"];
const TLS_KEYS = [
  "cert_file",
  "key_file",
  "client_auth_type",
  "client_ca_file",
  "min_version",
  "max_version",
  "cipher_suites",
  "curve_preferences",
  "prefer_server_cipher_suites",
];
const HTTP_KEYS = ["headers", "http2"];

/**
 * Reads and checks the configuration at `path`; certificate and key paths
 * are relative to its folder, as in the toolkit.
 * @throws {Error} "Cannot use web config …" naming the key and the value.
 */
export async function loadWebConfig(path: string): Promise<WebConfig> {
  const fail = (why: string): never => {
    throw new Error(`Cannot use web config: current file "${path}" ${why}`);
  };
  let document: unknown;
  try {
    // Loaded on first use: most exporters run without a web config and need not carry a YAML parser.
    const { parse: parseYaml } = await import("yaml");
    document = parseYaml(await Deno.readTextFile(path)) ?? {};
  } catch (error) {
    return fail(`cannot be read: ${error instanceof Error ? error.message : error}`);
  }
  const top = objectAt(document, "the file", fail);
  refuseUnknown(top, TOP_KEYS, "", fail);
  const tlsSection = top.tls_server_config === undefined
    ? undefined
    : objectAt(top.tls_server_config, "tls_server_config", fail);
  const httpSection = top.http_server_config === undefined
    ? {}
    : objectAt(top.http_server_config, "http_server_config", fail);
  const usersSection = top.basic_auth_users === undefined || top.basic_auth_users === null
    ? {}
    : objectAt(top.basic_auth_users, "basic_auth_users", fail);
  refuseUnknown(httpSection, HTTP_KEYS, "http_server_config.", fail);

  let tls: WebConfig["tls"];
  if (tlsSection) {
    refuseUnknown(tlsSection, TLS_KEYS, "tls_server_config.", fail);
    const clientAuth = String(tlsSection.client_auth_type ?? "NoClientCert");
    if (!(CLIENT_AUTH_TYPES as readonly string[]).includes(clientAuth)) {
      fail(
        `sets tls_server_config.client_auth_type: ${clientAuth}; expected one of ${
          CLIENT_AUTH_TYPES.join(", ")
        }`,
      );
    }
    const verifies = clientAuth === "VerifyClientCertIfGiven" ||
      clientAuth === "RequireAndVerifyClientCert";
    if (verifies && tlsSection.client_ca_file === undefined) {
      fail(
        `sets client_auth_type: ${clientAuth} without tls_server_config.client_ca_file to verify against`,
      );
    }
    if (!verifies && tlsSection.client_ca_file !== undefined) {
      fail(
        `sets tls_server_config.client_ca_file, which client_auth_type: ${clientAuth} never uses`,
      );
    }
    for (const key of ["max_version", "cipher_suites", "curve_preferences"]) {
      if (tlsSection[key] !== undefined) {
        fail(
          `sets tls_server_config.${key}, which Deno's TLS server does not let a program choose`,
        );
      }
    }
    const minVersion = tlsSection.min_version ?? "TLS12";
    if (!["TLS10", "TLS11", "TLS12"].includes(String(minVersion))) {
      fail(
        `sets tls_server_config.min_version: ${minVersion}; this exporter serves TLS 1.2 and 1.3, so at most TLS12 can be asked`,
      );
    }
    const file = (key: "cert_file" | "key_file" | "client_ca_file") => {
      const value = tlsSection[key];
      if (typeof value !== "string" || value === "") fail(`has no tls_server_config.${key}`);
      return isAbsolute(value as string) ? value as string : join(dirname(path), value as string);
    };
    try {
      tls = {
        cert: await Deno.readTextFile(file("cert_file")),
        key: await Deno.readTextFile(file("key_file")),
        clientAuth: clientAuth as ClientAuthType,
        ...(verifies ? { clientCa: await Deno.readTextFile(file("client_ca_file")) } : {}),
      };
    } catch (error) {
      if (error instanceof Error && error.message.startsWith("Cannot use web config")) throw error;
      return fail(`names a certificate or key that cannot be read: ${error}`);
    }
  }

  const headers: Record<string, string> = {};
  if (httpSection.headers !== undefined) {
    const given = objectAt(httpSection.headers, "http_server_config.headers", fail);
    for (const [name, value] of Object.entries(given)) {
      const known = SETTABLE_HEADERS.find((header) => header.toLowerCase() === name.toLowerCase());
      if (!known) {
        fail(
          `sets the header ${name}; a web config may set ${SETTABLE_HEADERS.join(", ")}`,
        );
      }
      headers[known!] = String(value);
    }
  }

  const users = new Map<string, string>();
  for (const [user, hash] of Object.entries(usersSection)) {
    if (typeof hash !== "string" || !/^\$2[aby]?\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)) {
      fail(`gives basic_auth_users.${user} something that is not a bcrypt hash`);
    }
    users.set(user, hash as string);
  }
  return { tls, headers, users };
}

function objectAt(
  value: unknown,
  where: string,
  fail: (why: string) => never,
): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    fail(`has ${where} that is not a mapping`);
  }
  return value as Record<string, unknown>;
}

function refuseUnknown(
  section: Record<string, unknown>,
  known: readonly string[],
  prefix: string,
  fail: (why: string) => never,
): void {
  for (const key of Object.keys(section)) {
    if (!known.includes(key)) fail(`has an unknown key ${prefix}${key}`);
  }
}

/** How many verified credentials are remembered, so bcrypt runs once per client, not per scrape. */
const VERIFIED_CACHE = 64;

/**
 * Checks `Authorization: Basic` against the users' bcrypt hashes. A
 * successful pair is remembered (by a SHA-256 of user, password and hash),
 * as the toolkit does, since bcrypt takes tens of milliseconds by design.
 */
export class BasicAuth {
  readonly #users: ReadonlyMap<string, string>;
  readonly #verified = new Set<string>();

  constructor(users: ReadonlyMap<string, string>) {
    this.#users = users;
  }

  /** True when the request carries a known user and that user's password. */
  async allows(request: Request): Promise<boolean> {
    const header = request.headers.get("authorization") ?? "";
    const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header);
    if (!match) return false;
    let decoded: string;
    try {
      decoded = new TextDecoder().decode(Uint8Array.from(atob(match[1]!), (c) => c.charCodeAt(0)));
    } catch {
      return false;
    }
    const colon = decoded.indexOf(":");
    if (colon === -1) return false;
    const [user, password] = [decoded.slice(0, colon), decoded.slice(colon + 1)];
    const hash = this.#users.get(user);
    if (hash === undefined) return false;
    const key = new Uint8Array(
      await crypto.subtle.digest(
        "SHA-256",
        new TextEncoder().encode(`${user}\0${password}\0${hash}`),
      ),
    ).join(",");
    if (this.#verified.has(key)) return true;
    // Loaded on first use, as only a configuration with users needs it.
    const { default: bcrypt } = await import("bcryptjs");
    if (!(await bcrypt.compare(password, hash))) return false;
    if (this.#verified.size >= VERIFIED_CACHE) this.#verified.clear();
    this.#verified.add(key);
    return true;
  }
}

/**
 * Wraps a handler with the configuration as it stands at each request: basic
 * authentication (except on `open` paths, e.g. the kubelet's probes) and the
 * configured headers.
 */
export function withWebConfig(
  handler: (request: Request) => Promise<Response>,
  configNow: () => Promise<WebConfig>,
  open: readonly string[],
): (request: Request) => Promise<Response> {
  const auths = new WeakMap<WebConfig, BasicAuth>();
  return async (request) => {
    const config = await configNow();
    let auth = auths.get(config);
    if (!auth && config.users.size > 0) auths.set(config, auth = new BasicAuth(config.users));
    let response: Response;
    if (auth && !open.includes(new URL(request.url).pathname) && !(await auth.allows(request))) {
      response = plain(401, "Unauthorized", { "www-authenticate": 'Basic realm="net-exporter"' });
    } else {
      response = await handler(request);
    }
    for (const [name, value] of Object.entries(config.headers)) response.headers.set(name, value);
    return response;
  };
}

/** How often, at most, the file is looked at again for changes. */
const RECHECK_MS = 1_000;

/**
 * The configuration as it stands: the file is looked at again (at most once
 * a second) and re-read when it changed, so users and headers change without
 * a restart, as with the toolkit. The TLS certificate is read at start. A
 * change that does not load keeps the last good configuration, reported to
 * `onError`.
 */
export function reloadingWebConfig(
  path: string,
  initial: WebConfig,
  onError: (error: unknown) => void,
): () => Promise<WebConfig> {
  let current = initial;
  let checkedAt = performance.now();
  let modified = Deno.statSync(path).mtime?.getTime();
  return async () => {
    if (performance.now() - checkedAt < RECHECK_MS) return current;
    checkedAt = performance.now();
    try {
      const now = (await Deno.stat(path)).mtime?.getTime();
      if (now !== modified) {
        current = await loadWebConfig(path);
        modified = now;
      }
    } catch (error) {
      onError(error);
    }
    return current;
  };
}
