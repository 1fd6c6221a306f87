/**
 * Talking to the API server: where it is, how to trust it, and who we are.
 *
 * A kubeconfig is read with a schema (valibot) of the part this needs; the
 * YAML parser is loaded only when a kubeconfig is used. From
 * `@kubernetes/client-node` this takes the token-file authenticator
 * (`file_auth.js`, which re-reads a rotating service-account token every
 * 60 s, as client-go does). It does not load the package's entry
 * point: that pulls in the generated API client, undici and every auth
 * plugin, and raises the exporter's resident memory from about 60 MiB to
 * about 135 MiB (`deno task bench` before and after). Requests go through
 * `fetch` with a `Deno.HttpClient` holding the CA and client certificate.
 * @module
 */

import { dirname, isAbsolute, join } from "node:path";
import { isIP } from "../lib/ip.ts";
import { FileAuth } from "@kubernetes/client-node/dist/file_auth.js";
import * as v from "valibot";

/** What the watcher needs from the API server: GET with a signal. */
export interface ApiClient {
  /** The server's base URL, for logs. */
  readonly server: string;
  /** GETs `pathAndQuery` (e.g. "/api/v1/namespaces/x/pods?watch=1"). */
  get(pathAndQuery: string, signal: AbortSignal): Promise<Response>;
  /** Closes the connections it holds. */
  close(): void;
}

/** Where the configuration came from. */
export type ConfigSource = "kubeconfig" | "in-cluster";

/** A resolved way to reach the API server. */
export interface ClusterConfig {
  readonly source: ConfigSource;
  readonly server: string;
  /** PEM of the CA to trust; the system's roots when absent. */
  readonly caPem: string | undefined;
  /** PEM client certificate and key, for kubeconfigs that authenticate with one. */
  readonly clientCert: { readonly cert: string; readonly key: string } | undefined;
  /** The bearer token for the next request (re-read from its file as it rotates). */
  readonly token: () => Promise<string | undefined>;
  /** The namespace the kubeconfig context names, if any. */
  readonly namespace: string | undefined;
}

/** The service-account directory every pod gets. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Finds a configuration: `kubeconfigPath` (the flag, else `$KUBECONFIG`),
 * else in-cluster when `KUBERNETES_SERVICE_HOST` and the service-account
 * token exist. `undefined` when there is neither.
 * @throws {Error} when a named kubeconfig cannot be read or used.
 */
export async function loadClusterConfig(
  kubeconfigPath: string | undefined,
  env: (name: string) => string | undefined,
  serviceAccountDir = SERVICE_ACCOUNT_DIR,
): Promise<ClusterConfig | undefined> {
  if (kubeconfigPath) return await loadKubeconfig(kubeconfigPath);
  const host = env("KUBERNETES_SERVICE_HOST");
  if (host && exists(`${serviceAccountDir}/token`)) {
    const port = env("KUBERNETES_SERVICE_PORT") || "443";
    const tokenFile = `${serviceAccountDir}/token`;
    const auth = new FileAuth();
    const user = { name: "in-cluster", authProvider: { name: "tokenFile", config: { tokenFile } } };
    return {
      source: "in-cluster",
      server: `https://${isIP(host) === 6 ? `[${host}]` : host}:${port}`,
      caPem: Deno.readTextFileSync(`${serviceAccountDir}/ca.crt`),
      clientCert: undefined,
      token: async () => {
        const options: { headers: Record<string, string> } = { headers: {} };
        await auth.applyAuthentication(user, options);
        return options.headers.Authorization?.replace(/^Bearer /, "").trim();
      },
      namespace: undefined,
    };
  }
  return undefined;
}

/**
 * The part of a kubeconfig this reads, as kubectl writes it. Other keys
 * (extensions, preferences, proxy settings a cluster does not need here)
 * are let through, as kubectl lets them through.
 */
const KUBECONFIG = v.looseObject({
  "current-context": v.optional(v.string()),
  clusters: v.optional(
    v.array(v.looseObject({
      name: v.string(),
      cluster: v.looseObject({
        server: v.pipe(v.string(), v.url("is not a URL")),
        "certificate-authority": v.optional(v.string()),
        "certificate-authority-data": v.optional(v.string()),
        "insecure-skip-tls-verify": v.optional(v.boolean()),
        "tls-server-name": v.optional(v.string()),
      }),
    })),
    [],
  ),
  users: v.optional(
    v.array(v.looseObject({
      name: v.string(),
      user: v.optional(
        v.looseObject({
          token: v.optional(v.string()),
          tokenFile: v.optional(v.string()),
          "client-certificate": v.optional(v.string()),
          "client-certificate-data": v.optional(v.string()),
          "client-key": v.optional(v.string()),
          "client-key-data": v.optional(v.string()),
          exec: v.optional(v.unknown()),
          "auth-provider": v.optional(v.unknown()),
          username: v.optional(v.string()),
          password: v.optional(v.string()),
        }),
        {},
      ),
    })),
    [],
  ),
  contexts: v.optional(
    v.array(v.looseObject({
      name: v.string(),
      context: v.looseObject({
        cluster: v.string(),
        user: v.optional(v.string()),
        namespace: v.optional(v.string()),
      }),
    })),
    [],
  ),
});

async function loadKubeconfig(path: string): Promise<ClusterConfig> {
  const fail = (why: string, cause?: unknown): never => {
    throw new Error(`Cannot use kubeconfig: current value is "${path}" (${why})`, { cause });
  };
  // Loaded on first use: an in-cluster pod never reads a kubeconfig and need not carry a YAML parser.
  const { parse: parseYaml } = await import("yaml");
  let document: unknown;
  try {
    document = parseYaml(Deno.readTextFileSync(path));
  } catch (error) {
    return fail(error instanceof Error ? error.message : String(error), error);
  }
  if (typeof document !== "object" || document === null || Array.isArray(document)) {
    return fail("the document is not a mapping");
  }
  const parsed = v.safeParse(KUBECONFIG, document);
  if (!parsed.success) {
    const issue = parsed.issues[0]!;
    return fail(`${v.getDotPath(issue) || "the document"} ${issue.message}`);
  }
  const config = parsed.output;
  const context =
    config.contexts.find((candidate) => candidate.name === config["current-context"]) ??
      config.contexts[0];
  if (!context) return fail("no context");
  const cluster = config.clusters.find((entry) => entry.name === context.context.cluster)?.cluster;
  if (!cluster) return fail(`context ${context.name} names no known cluster`);
  const user = config.users.find((entry) => entry.name === context.context.user)?.user ?? {};
  if (cluster["insecure-skip-tls-verify"]) fail("insecure-skip-tls-verify is not supported");
  if (cluster["tls-server-name"]) fail("tls-server-name is not supported");
  if (user.exec !== undefined || user["auth-provider"] !== undefined || user.username) {
    fail(
      "exec, auth-provider and basic credentials are not supported; use a token or a client certificate",
    );
  }
  const base = dirname(path);
  const fileAt = (file: string) => isAbsolute(file) ? file : join(base, file);
  const read = (file: string | undefined, data: string | undefined): string | undefined => {
    if (data) {
      return new TextDecoder().decode(Uint8Array.from(atob(data), (char) => char.charCodeAt(0)));
    }
    if (file) return Deno.readTextFileSync(fileAt(file));
    return undefined;
  };
  const cert = read(user["client-certificate"], user["client-certificate-data"]);
  const key = read(user["client-key"], user["client-key-data"]);
  const tokenFile = user.tokenFile;
  return {
    source: "kubeconfig",
    server: cluster.server,
    caPem: read(cluster["certificate-authority"], cluster["certificate-authority-data"]),
    clientCert: cert && key ? { cert, key } : undefined,
    // A token file is read at each request, so a rotated token counts at once.
    token: tokenFile
      ? async () => (await Deno.readTextFile(fileAt(tokenFile))).trim() || undefined
      : () => Promise.resolve(user.token || undefined),
    namespace: context.context.namespace || undefined,
  };
}

/** An {@link ApiClient} for a resolved configuration. */
export function createApiClient(config: ClusterConfig): ApiClient {
  const server = config.server.replace(/\/+$/, "");
  let client: Deno.HttpClient | undefined;
  return {
    server,
    async get(pathAndQuery, signal) {
      client ??= Deno.createHttpClient({
        ...(config.caPem ? { caCerts: [config.caPem] } : {}),
        ...(config.clientCert ?? {}),
      });
      const headers = new Headers({ accept: "application/json" });
      const token = await config.token();
      if (token) headers.set("authorization", `Bearer ${token}`);
      return await fetch(`${server}${pathAndQuery}`, { headers, signal, client });
    },
    close() {
      client?.close();
      client = undefined;
    },
  };
}
