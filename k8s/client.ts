/**
 * Talking to the API server: where it is, how to trust it, and who we are.
 *
 * From `@kubernetes/client-node` this takes the kubeconfig schema
 * (`config_types.js`: clusters, users, contexts) and the token-file
 * authenticator (`file_auth.js`, which re-reads a rotating service-account
 * token every 60 s, as client-go does); the schema and the YAML parser are
 * loaded only when a kubeconfig is used (about 3 MiB that an in-cluster pod
 * does not need). It does not load the package's entry
 * point: that pulls in the generated API client, undici and every auth
 * plugin, and raises the exporter's resident memory from about 60 MiB to
 * about 135 MiB (`deno task bench` before and after). Requests go through
 * `fetch` with a `Deno.HttpClient` holding the CA and client certificate.
 * @module
 */

import { dirname, isAbsolute, join } from "node:path";
import { isIP } from "../lib/ip.ts";
import type { Cluster, User } from "@kubernetes/client-node/dist/config_types.js";
import { FileAuth } from "@kubernetes/client-node/dist/file_auth.js";

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
    const user = {
      name: "in-cluster",
      authProvider: { name: "tokenFile", config: { tokenFile } },
    } as User;
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

async function loadKubeconfig(path: string): Promise<ClusterConfig> {
  const fail = (why: string): never => {
    throw new Error(`Cannot use kubeconfig: current value is "${path}" (${why})`);
  };
  const [{ parse: parseYaml }, { newClusters, newContexts, newUsers }] = await Promise.all([
    import("yaml"),
    import("@kubernetes/client-node/dist/config_types.js"),
  ]);
  let document: Record<string, unknown>;
  try {
    document = parseYaml(Deno.readTextFileSync(path)) as Record<string, unknown>;
  } catch (error) {
    return fail((error as Error).message);
  }
  if (document === null || typeof document !== "object") return fail("not a kubeconfig");
  const contexts = newContexts(document.contexts);
  const contextName = document["current-context"] as string | undefined;
  const context = contexts.find((candidate) => candidate.name === contextName) ?? contexts[0];
  if (!context) return fail("no context");
  const cluster: Cluster | undefined = newClusters(document.clusters).find((entry) =>
    entry.name === context.cluster
  );
  if (!cluster) return fail(`context ${context.name} names no known cluster`);
  const user: User | undefined = newUsers(document.users).find((entry) =>
    entry.name === context.user
  );
  if (cluster.skipTLSVerify) fail("insecure-skip-tls-verify is not supported");
  if (cluster.tlsServerName) fail("tls-server-name is not supported");
  if (user?.exec || user?.authProvider || user?.username) {
    fail(
      "exec, auth-provider and basic credentials are not supported; use a token or a client certificate",
    );
  }
  const base = dirname(path);
  const read = (file: string | undefined, data: string | undefined): string | undefined => {
    if (data) {
      return new TextDecoder().decode(Uint8Array.from(atob(data), (char) => char.charCodeAt(0)));
    }
    if (file) return Deno.readTextFileSync(isAbsolute(file) ? file : join(base, file));
    return undefined;
  };
  const cert = read(user?.certFile, user?.certData);
  const key = read(user?.keyFile, user?.keyData);
  return {
    source: "kubeconfig",
    server: cluster.server,
    caPem: read(cluster.caFile, cluster.caData),
    clientCert: cert && key ? { cert, key } : undefined,
    token: () => Promise.resolve(user?.token || undefined),
    namespace: context.namespace || undefined,
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
