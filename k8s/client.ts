/**
 * Talking to the API server. `@kubernetes/client-node` loads the
 * configuration (kubeconfig or in-cluster) and supplies credentials on every
 * request — including re-reading a rotating service-account token, as
 * client-go does; the requests themselves go through `fetch`, because
 * the library's generated API client costs about 80 MiB of resident memory
 * and its informer cannot be made to survive errors (see watcher.ts).
 * @module
 */

import type { RequestOptions } from "node:https";
import { KubeConfig } from "@kubernetes/client-node";

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

/** A loaded configuration and the namespace its context names, if any. */
export interface ClusterConfig {
  readonly source: ConfigSource;
  readonly kubeConfig: KubeConfig;
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
export function loadClusterConfig(
  kubeconfigPath: string | undefined,
  env: (name: string) => string | undefined,
): ClusterConfig | undefined {
  const kubeConfig = new KubeConfig();
  if (kubeconfigPath) {
    try {
      kubeConfig.loadFromFile(kubeconfigPath);
    } catch (error) {
      throw new Error(
        `Cannot read kubeconfig: current value is "${kubeconfigPath}" (${
          (error as Error).message
        })`,
      );
    }
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) {
      throw new Error(
        `Cannot use kubeconfig "${kubeconfigPath}": its current context names no cluster`,
      );
    }
    if (cluster.skipTLSVerify) {
      throw new Error(
        `Cannot use kubeconfig "${kubeconfigPath}": insecure-skip-tls-verify is not supported`,
      );
    }
    const context = kubeConfig.getContextObject(kubeConfig.getCurrentContext());
    return { source: "kubeconfig", kubeConfig, namespace: context?.namespace || undefined };
  }
  if (env("KUBERNETES_SERVICE_HOST") && exists(`${SERVICE_ACCOUNT_DIR}/token`)) {
    kubeConfig.loadFromCluster();
    return { source: "in-cluster", kubeConfig, namespace: undefined };
  }
  return undefined;
}

/** An {@link ApiClient} for a loaded configuration. */
export function createApiClient(config: ClusterConfig): ApiClient {
  const { kubeConfig } = config;
  const server = kubeConfig.getCurrentCluster()!.server.replace(/\/+$/, "");
  let cached: { key: string; client: Deno.HttpClient } | undefined;
  const httpClient = (options: RequestOptions): Deno.HttpClient => {
    const ca = pem(options.ca);
    const cert = pem(options.cert);
    const key = pem(options.key);
    const cacheKey = JSON.stringify([ca, cert, key]);
    if (cached?.key !== cacheKey) {
      cached?.client.close();
      cached = {
        key: cacheKey,
        client: Deno.createHttpClient({
          ...(ca ? { caCerts: [ca] } : {}),
          ...(cert && key ? { cert, key } : {}),
        }),
      };
    }
    return cached.client;
  };
  return {
    server,
    async get(pathAndQuery, signal) {
      const options: RequestOptions = {};
      // Fills in credentials, re-reading the service-account token as it rotates.
      await kubeConfig.applyToHTTPSOptions(options);
      const headers = new Headers({ accept: "application/json" });
      for (const [name, value] of Object.entries(options.headers ?? {})) {
        if (value !== undefined) headers.set(name, String(value));
      }
      return await fetch(`${server}${pathAndQuery}`, {
        headers,
        signal,
        client: httpClient(options),
      });
    },
    close() {
      cached?.client.close();
      cached = undefined;
    },
  };
}

function pem(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (Array.isArray(value)) return value.map((item) => pem(item)).join("\n");
  if (value instanceof Uint8Array) return new TextDecoder().decode(value);
  return String(value);
}
