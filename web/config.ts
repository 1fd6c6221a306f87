/**
 * `--web.config.file` in the Prometheus exporter-toolkit format, read with a
 * schema (valibot) as strictly as the toolkit reads it (`UnmarshalStrict`:
 * an unknown key is an error):
 *
 * - `tls_server_config`: `cert_file`/`key_file` or inline `cert`/`key`,
 *   `client_auth_type`, `client_ca_file` or inline `client_ca`,
 *   `client_allowed_sans`, `min_version`, `max_version`,
 *   `prefer_server_cipher_suites`;
 * - `http_server_config`: `headers` (the toolkit's five, with its value
 *   checks), `http2` (accepted; this server speaks HTTP/1.1);
 * - `basic_auth_users` (bcrypt hashes), `bearer_auth_tokens`,
 *   `auth_excluded_paths`, `rate_limit` (`interval`, `burst`).
 *
 * Refused by name, since Deno's TLS (rustls) does not let a program choose
 * them: `cipher_suites`, `curve_preferences`, `min_version: TLS13`, a
 * `max_version` below TLS13; and `ip_socket_config` (TTL and DSCP of
 * accepted sockets), which Deno cannot set. A certificate whose key does not
 * match is refused here, at start, as Go's `LoadX509KeyPair` refuses it.
 * @module
 */

import * as v from "valibot";
import { dirname, isAbsolute, join } from "node:path";

/** The exporter-toolkit's (Go's) client authentication policies. */
export const CLIENT_AUTH_TYPES = [
  "NoClientCert",
  "RequestClientCert",
  "RequireAnyClientCert",
  "VerifyClientCertIfGiven",
  "RequireAndVerifyClientCert",
] as const;
/** One of {@link CLIENT_AUTH_TYPES}. */
export type ClientAuthType = typeof CLIENT_AUTH_TYPES[number];

/** What the TLS side of the server needs. */
export interface TlsSettings {
  /** PEM chain and key. */
  readonly cert: string;
  readonly key: string;
  readonly clientAuth: ClientAuthType;
  /** PEM CAs of client certificates; absent: the system's roots (as Go). */
  readonly clientCa?: string;
  /** A client certificate must carry one of these SANs (DNS, e-mail, IP or URI). */
  readonly allowedSans?: readonly string[];
  readonly minVersion?: "TLSv1.2";
}

/** A checked web configuration. */
export interface WebConfig {
  /** Absent: plain HTTP. */
  readonly tls: TlsSettings | undefined;
  /** Headers added to every response. */
  readonly headers: Readonly<Record<string, string>>;
  /** User name → bcrypt hash. */
  readonly users: ReadonlyMap<string, string>;
  /** Bearer tokens accepted in `Authorization: Bearer …`. */
  readonly tokens: readonly string[];
  /** Paths served without credentials; absent: the application's default. */
  readonly excludedPaths: readonly string[] | undefined;
  /** At most `burst` requests at once, refilled one per `intervalMs`; absent: no limit. */
  readonly rateLimit: { readonly intervalMs: number; readonly burst: number } | undefined;
  /** SHA-256 of the file's bytes, in hex: how a reload tells a change. */
  readonly digest: string;
}

/** Whether the configuration asks for credentials on any path. */
export function authenticates(config: WebConfig): boolean {
  return config.users.size > 0 || config.tokens.length > 0;
}

/** Response headers the toolkit lets a configuration set, with the values it allows. */
const SETTABLE_HEADERS: Readonly<Record<string, RegExp | undefined>> = {
  "Strict-Transport-Security": undefined,
  "X-Content-Type-Options": /^nosniff$/i,
  "X-Frame-Options": /^(deny|sameorigin)$/i,
  "X-XSS-Protection": undefined,
  "Content-Security-Policy": undefined,
};

const BCRYPT_HASH = /^\$2[aby]?\$\d\d\$[./A-Za-z0-9]{53}$/;
const TLS_VERSIONS = ["TLS10", "TLS11", "TLS12", "TLS13"] as const;

const text = v.string();
/** A YAML mapping (valibot's record alone would take a list too). */
const mapping = <T extends v.GenericSchema>(value: T) =>
  v.pipe(
    v.custom<Record<string, unknown>>(
      (input) => typeof input === "object" && input !== null && !Array.isArray(input),
      "is not a mapping",
    ),
    v.record(v.string(), value),
  );
const strings = v.nullish(v.array(v.string()));

const SCHEMA = v.strictObject({
  tls_server_config: v.nullish(v.strictObject({
    cert: v.optional(text),
    key: v.optional(text),
    client_ca: v.optional(text),
    cert_file: v.optional(text),
    key_file: v.optional(text),
    client_auth_type: v.optional(v.picklist([...CLIENT_AUTH_TYPES, "RequireClientCert", ""])),
    client_ca_file: v.optional(text),
    cipher_suites: strings,
    curve_preferences: strings,
    min_version: v.optional(v.picklist(TLS_VERSIONS)),
    max_version: v.optional(v.picklist(TLS_VERSIONS)),
    prefer_server_cipher_suites: v.optional(v.boolean()),
    client_allowed_sans: strings,
  })),
  http_server_config: v.nullish(v.strictObject({
    http2: v.optional(v.boolean()),
    headers: v.nullish(mapping(v.string())),
  })),
  rate_limit: v.nullish(v.strictObject({
    interval: v.optional(v.union([v.string(), v.literal(0)])),
    burst: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
  })),
  basic_auth_users: v.nullish(
    mapping(v.pipe(v.string(), v.regex(BCRYPT_HASH, "is not a bcrypt hash"))),
  ),
  bearer_auth_tokens: v.nullish(v.array(v.pipe(v.string(), v.minLength(1, "is empty")))),
  auth_excluded_paths: v.nullish(
    v.array(v.pipe(v.string(), v.startsWith("/", "does not start with /"))),
  ),
  ip_socket_config: v.optional(v.unknown()),
});

/**
 * Reads and checks the configuration at `path`; file paths in it are
 * relative to its folder, as in the toolkit.
 * @throws {Error} "Cannot use web config: current file … " naming the key and value.
 */
export async function loadWebConfig(path: string): Promise<WebConfig> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    throw new Error(`Cannot use web config: current file "${path}" cannot be read: ${error}`, {
      cause: error,
    });
  }
  return await parseWebConfig(bytes, path);
}

/** As {@link loadWebConfig}, from the file's bytes. */
export async function parseWebConfig(bytes: Uint8Array, path: string): Promise<WebConfig> {
  const fail = (why: string, cause?: unknown): never => {
    throw new Error(`Cannot use web config: current file "${path}" ${why}`, { cause });
  };
  let document: unknown;
  try {
    // Loaded on first use: most exporters run without a web config and need not carry a YAML parser.
    const { parse } = await import("yaml");
    document = parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes)) ?? {};
  } catch (error) {
    return fail(`is not YAML: ${error instanceof Error ? error.message : error}`, error);
  }
  if (typeof document !== "object" || Array.isArray(document)) {
    fail(`holds ${describeInput(document)}, which is not a mapping of settings`);
  }
  const parsed = v.safeParse(SCHEMA, document);
  if (!parsed.success) {
    const issue = parsed.issues[0]!;
    const where = v.getDotPath(issue) || "the top level";
    const unknownKey = issue.type === "strict_object" && issue.input !== undefined;
    return fail(
      unknownKey
        ? `has an unknown key ${where}`
        : `has ${where}: ${describeInput(issue.input)}, which ${
          issue.message.replace(/^Invalid \w+: /, "is not valid: ")
        }`,
    );
  }
  const config = parsed.output;
  if (config.ip_socket_config !== undefined) {
    fail("sets ip_socket_config, which Deno cannot apply to accepted sockets (TTL, DSCP)");
  }

  const tls = config.tls_server_config
    ? await tlsSettings(config.tls_server_config, path, fail)
    : undefined;

  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(config.http_server_config?.headers ?? {})) {
    const known = Object.keys(SETTABLE_HEADERS).find((header) =>
      header.toLowerCase() === name.toLowerCase()
    );
    if (!known) {
      fail(
        `sets the header ${name}; a web config may set ${Object.keys(SETTABLE_HEADERS).join(", ")}`,
      );
    }
    const allowed = SETTABLE_HEADERS[known!];
    if (allowed && !allowed.test(value)) {
      fail(`sets the header ${known}: ${value}, which is not a value it takes (${allowed.source})`);
    }
    headers[known!] = value;
  }

  let rateLimit: WebConfig["rateLimit"];
  const interval = config.rate_limit?.interval;
  if (interval !== undefined && interval !== 0 && interval !== "0" && interval !== "0s") {
    const intervalMs = parseGoDuration(interval);
    if (intervalMs === undefined) {
      fail(`has rate_limit.interval: ${interval}, which is not a duration such as 1s or 100ms`);
    }
    rateLimit = { intervalMs: intervalMs!, burst: config.rate_limit?.burst ?? 0 };
  }

  const digest = await sha256Hex(bytes);
  return {
    tls,
    headers,
    users: new Map(Object.entries(config.basic_auth_users ?? {})),
    tokens: config.bearer_auth_tokens ?? [],
    excludedPaths: config.auth_excluded_paths ?? undefined,
    rateLimit,
    digest,
  };
}

type TlsSection = NonNullable<v.InferOutput<typeof SCHEMA>["tls_server_config"]>;

async function tlsSettings(
  section: TlsSection,
  path: string,
  fail: (why: string, cause?: unknown) => never,
): Promise<TlsSettings> {
  const given = (key: keyof TlsSection) => section[key] !== undefined && section[key] !== "";
  // Unlike the toolkit, a section that names no certificate is refused rather than read as plain
  // HTTP: whoever wrote it meant TLS, and an exporter must not fall back to serving in the clear.
  for (const key of ["cipher_suites", "curve_preferences"] as const) {
    if ((section[key]?.length ?? 0) > 0) {
      fail(`sets tls_server_config.${key}, which Deno's TLS server does not let a program choose`);
    }
  }
  if (section.min_version === "TLS13") {
    fail(
      "sets tls_server_config.min_version: TLS13; Deno's TLS server offers TLS 1.2 and 1.3 and cannot turn 1.2 off",
    );
  }
  if (section.max_version !== undefined && section.max_version !== "TLS13") {
    fail(
      `sets tls_server_config.max_version: ${section.max_version}; Deno's TLS server always offers TLS 1.3`,
    );
  }
  const clientAuth: ClientAuthType = section.client_auth_type === "RequireClientCert"
    ? "RequireAnyClientCert" // the toolkit keeps this old name for RequireAny
    : section.client_auth_type || "NoClientCert";
  const read = async (inline: keyof TlsSection, file: keyof TlsSection) => {
    if (given(file)) {
      const name = section[file] as string;
      try {
        return await Deno.readTextFile(isAbsolute(name) ? name : join(dirname(path), name));
      } catch (error) {
        return fail(
          `names tls_server_config.${file}: ${name}, which cannot be read: ${error}`,
          error,
        );
      }
    }
    return given(inline) ? section[inline] as string : undefined;
  };
  const cert = await read("cert", "cert_file");
  const key = await read("key", "key_file");
  if (cert === undefined) fail("has TLS settings but neither tls_server_config.cert nor cert_file");
  if (key === undefined) fail("has TLS settings but neither tls_server_config.key nor key_file");
  const clientCa = await read("client_ca", "client_ca_file");
  if (clientCa !== undefined && clientAuth === "NoClientCert") {
    fail("gives a client CA without a client_auth_type that asks for client certificates");
  }
  const allowedSans = section.client_allowed_sans ?? undefined;
  if (
    allowedSans !== undefined && clientAuth !== "RequireAnyClientCert" &&
    clientAuth !== "RequireAndVerifyClientCert"
  ) {
    fail(
      `sets client_allowed_sans with client_auth_type: ${clientAuth}; it needs RequireAnyClientCert or RequireAndVerifyClientCert`,
    );
  }
  await checkKeyPair(cert!, key!, clientCa, fail);
  return {
    cert: cert!,
    key: key!,
    clientAuth,
    ...(clientCa !== undefined ? { clientCa } : {}),
    ...(allowedSans !== undefined ? { allowedSans } : {}),
  };
}

/** Refuses, as Go's `tls.X509KeyPair` does, a certificate or key that does not parse or match. */
async function checkKeyPair(
  cert: string,
  key: string,
  clientCa: string | undefined,
  fail: (why: string, cause?: unknown) => never,
): Promise<void> {
  const { X509Certificate, createPrivateKey } = await import("node:crypto");
  let certificate: InstanceType<typeof X509Certificate>;
  try {
    certificate = new X509Certificate(cert);
  } catch (error) {
    return fail(`has a TLS certificate that does not parse: ${error}`, error);
  }
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    return fail(`has a TLS key that does not parse: ${error}`, error);
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    fail(`has a TLS key that does not match its certificate (subject ${certificate.subject})`);
  }
  if (clientCa !== undefined) {
    const blocks = clientCa.match(/-----BEGIN CERTIFICATE-----[^]*?-----END CERTIFICATE-----/g);
    if (!blocks) fail("has a client CA with no PEM certificate in it");
    for (const block of blocks!) {
      try {
        new X509Certificate(block);
      } catch (error) {
        fail(`has a client CA certificate that does not parse: ${error}`, error);
      }
    }
  }
}

/** SHA-256 of `data` (UTF-8 for a string), in hex. */
export async function sha256Hex(data: string | Uint8Array): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>),
  );
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function describeInput(input: unknown): string {
  const shown = typeof input === "string" ? input : JSON.stringify(input);
  return shown === undefined ? "nothing" : shown.length > 60 ? `${shown.slice(0, 57)}...` : shown;
}

const DURATION_UNITS_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
};

/** Go's `time.ParseDuration` for positive durations, in milliseconds; undefined when it does not parse. */
export function parseGoDuration(text: string): number | undefined {
  if (!/^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/.test(text)) return undefined;
  let total = 0;
  for (const [, amount, , unit] of text.matchAll(/([0-9]+(\.[0-9]+)?)(ns|us|µs|ms|s|m|h)/g)) {
    total += Number(amount) * DURATION_UNITS_MS[unit!]!;
  }
  return total > 0 ? total : undefined;
}
