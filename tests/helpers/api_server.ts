/**
 * A stand-in Kubernetes API server for tests, speaking the real wire protocol
 * over HTTPS with a bearer token: paginated pod lists, chunked watch streams
 * of `{"type","object"}` lines with resourceVersions, bookmarks, ERROR events
 * with code 410, dropped connections, 503s and silent streams — each driven
 * by the test.
 * @module
 */

/** A pod as the API server returns it (the fields the exporter reads, and some it must ignore). */
export interface PodSpec {
  name: string;
  node: string;
  ips: string[];
  ready?: boolean;
  phase?: string;
  deleting?: boolean;
  labels?: Record<string, string>;
}

interface Watcher {
  controller: ReadableStreamDefaultController<Uint8Array>;
  labelSelector: string;
  silent: boolean;
  timer: ReturnType<typeof setTimeout>;
  closed: boolean;
}

/** A running stand-in API server. */
export interface TestApiServer extends AsyncDisposable {
  readonly url: string;
  readonly token: string;
  /** PEM of the CA that signed the server's certificate. */
  readonly caPem: string;
  /** "verb path" of every request, in order (verb is list or watch). */
  readonly requests: string[];
  /** Adds or replaces a pod, emitting ADDED or MODIFIED. */
  apply(pod: PodSpec): void;
  /** Deletes a pod, emitting DELETED. */
  remove(name: string): void;
  /** Sends a BOOKMARK to every open watch. */
  bookmark(): void;
  /** Sends an ERROR event with code 410 to every open watch and forgets the history. */
  expireWatches(): void;
  /** Cuts every open watch connection mid-stream. */
  dropWatches(): void;
  /** Forgets the event history silently: resuming an older watch then gets HTTP 410. */
  forgetHistory(): void;
  /** Answers every request with this status (e.g. 503) until set back to undefined. */
  failWith: number | undefined;
  /** New watches stay open and send nothing (a half-open connection). */
  silentWatches: boolean;
  /** Writes a kubeconfig for this server and returns its path (remove it with the returned cleanup). */
  writeKubeconfig(namespace: string): Promise<string>;
}

const encoder = new TextEncoder();

async function openssl(args: string[], cwd: string): Promise<void> {
  const output = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" })
    .output();
  if (!output.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
}

/** A CA and a server certificate for `hostname` (an IP) signed by it, made with openssl. */
async function makeCertificates(
  hostname: string,
): Promise<{ caPem: string; cert: string; key: string }> {
  const dir = await Deno.makeTempDir({ prefix: "api-server-tls-" });
  try {
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    await openssl([
      "req",
      "-x509",
      ...ec,
      "-keyout",
      "ca.key",
      "-out",
      "ca.crt",
      "-days",
      "2",
      "-subj",
      "/CN=test-ca",
    ], dir);
    await openssl([
      "req",
      ...ec,
      "-keyout",
      "server.key",
      "-out",
      "server.csr",
      "-subj",
      `/CN=${hostname}`,
    ], dir);
    await Deno.writeTextFile(
      `${dir}/ext.cnf`,
      `subjectAltName=IP:${hostname}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n`,
    );
    await openssl([
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.crt",
      "-days",
      "2",
      "-extfile",
      "ext.cnf",
    ], dir);
    return {
      caPem: await Deno.readTextFile(`${dir}/ca.crt`),
      cert: await Deno.readTextFile(`${dir}/server.crt`),
      key: await Deno.readTextFile(`${dir}/server.key`),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function podObject(spec: PodSpec, resourceVersion: number) {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: spec.name,
      namespace: "monitoring",
      uid: `uid-${spec.name}`,
      resourceVersion: String(resourceVersion),
      labels: spec.labels ?? { "app.kubernetes.io/name": "net-exporter" },
      ...(spec.deleting ? { deletionTimestamp: "2026-11-26T00:00:00Z" } : {}),
      // Weight the exporter must not keep in its cache.
      managedFields: [{
        manager: "kubelet",
        operation: "Update",
        fieldsV1: { "f:status": { ".": {}, "x": "y".repeat(2000) } },
      }],
    },
    spec: {
      nodeName: spec.node,
      containers: [{ name: "net-exporter", image: "net-exporter:test" }],
    },
    status: {
      phase: spec.phase ?? "Running",
      podIP: spec.ips[0],
      podIPs: spec.ips.map((ip) => ({ ip })),
      conditions: [{ type: "Ready", status: spec.ready === false ? "False" : "True" }],
    },
  };
}

function matches(labels: Record<string, string>, selector: string): boolean {
  return selector.split(",").filter((term) => term !== "").every((term) => {
    const [key, value] = term.split("=");
    return labels[key!] === value;
  });
}

/** Starts the server on `hostname` (default 127.0.0.1) and a free port. */
export async function startApiServer(
  options: { pageSize?: number; hostname?: string } = {},
): Promise<TestApiServer> {
  const hostname = options.hostname ?? "127.0.0.1";
  const { caPem, cert, key } = await makeCertificates(hostname);
  const token = crypto.randomUUID();
  const pods = new Map<string, PodSpec>();
  let resourceVersion = 100;
  /** Events since the oldest resourceVersion a watch may resume from. */
  let history: Array<{ rv: number; line: string; labels: Record<string, string> }> = [];
  let oldestResumable = resourceVersion;
  const watchers = new Set<Watcher>();
  const tempFiles: string[] = [];

  const closeWatcher = (watcher: Watcher, error?: Error) => {
    if (watcher.closed) return;
    watcher.closed = true;
    clearTimeout(watcher.timer);
    watchers.delete(watcher);
    try {
      if (error) watcher.controller.error(error);
      else watcher.controller.close();
    } catch { /* the client already went away */ }
  };

  const send = (watcher: Watcher, line: string) => {
    if (watcher.closed || watcher.silent) return;
    try {
      watcher.controller.enqueue(encoder.encode(line + "\n"));
    } catch {
      closeWatcher(watcher);
    }
  };

  const emit = (type: string, spec: PodSpec) => {
    resourceVersion++;
    const line = JSON.stringify({ type, object: podObject(spec, resourceVersion) });
    const labels = spec.labels ?? { "app.kubernetes.io/name": "net-exporter" };
    history.push({ rv: resourceVersion, line, labels });
    for (const watcher of watchers) if (matches(labels, watcher.labelSelector)) send(watcher, line);
  };

  const status = (code: number, reason: string, message: string) =>
    Response.json({ kind: "Status", apiVersion: "v1", status: "Failure", message, reason, code }, {
      status: code,
    });

  const server: TestApiServer = {
    url: "",
    token,
    caPem,
    requests: [],
    failWith: undefined,
    silentWatches: false,
    apply(spec) {
      const type = pods.has(spec.name) ? "MODIFIED" : "ADDED";
      pods.set(spec.name, spec);
      emit(type, spec);
    },
    remove(name) {
      const spec = pods.get(name);
      if (!spec) return;
      pods.delete(name);
      emit("DELETED", spec);
    },
    bookmark() {
      resourceVersion++;
      const line = JSON.stringify({
        type: "BOOKMARK",
        object: {
          kind: "Pod",
          apiVersion: "v1",
          metadata: { resourceVersion: String(resourceVersion) },
        },
      });
      for (const watcher of watchers) send(watcher, line);
    },
    expireWatches() {
      history = [];
      oldestResumable = resourceVersion + 1;
      const line = JSON.stringify({
        type: "ERROR",
        object: {
          kind: "Status",
          apiVersion: "v1",
          status: "Failure",
          message: "too old resource version",
          reason: "Expired",
          code: 410,
        },
      });
      for (const watcher of [...watchers]) {
        send(watcher, line);
        closeWatcher(watcher);
      }
    },
    dropWatches() {
      for (const watcher of [...watchers]) closeWatcher(watcher, new Error("connection dropped"));
    },
    forgetHistory() {
      history = [];
      oldestResumable = resourceVersion + 1;
    },
    async writeKubeconfig(namespace) {
      const path = await Deno.makeTempFile({ suffix: ".kubeconfig" });
      tempFiles.push(path);
      await Deno.writeTextFile(
        path,
        JSON.stringify({
          apiVersion: "v1",
          kind: "Config",
          clusters: [{
            name: "test",
            cluster: { server: server.url, "certificate-authority-data": btoa(caPem) },
          }],
          users: [{ name: "test", user: { token } }],
          contexts: [{ name: "test", context: { cluster: "test", user: "test", namespace } }],
          "current-context": "test",
        }),
      );
      return path;
    },
    async [Symbol.asyncDispose]() {
      for (const watcher of [...watchers]) closeWatcher(watcher);
      await http.shutdown();
      for (const path of tempFiles) await Deno.remove(path).catch(() => {});
    },
  };

  const handler = (request: Request): Response => {
    const url = new URL(request.url);
    const watch = url.searchParams.get("watch") === "1" || url.searchParams.get("watch") === "true";
    server.requests.push(`${watch ? "watch" : "list"} ${url.pathname}${url.search}`);
    if (request.headers.get("authorization") !== `Bearer ${token}`) {
      return status(401, "Unauthorized", "Unauthorized");
    }
    if (server.failWith !== undefined) {
      return status(server.failWith, "ServiceUnavailable", "stand-in outage");
    }
    if (!/^\/api\/v1\/namespaces\/[^/]+\/pods$/.test(url.pathname)) {
      return status(404, "NotFound", "not found");
    }
    const labelSelector = url.searchParams.get("labelSelector") ?? "";
    if (!watch) {
      const limit = Number(url.searchParams.get("limit") ?? options.pageSize ?? 500);
      const offset = Number(url.searchParams.get("continue") || 0);
      const all = [...pods.values()].filter((spec) =>
        matches(spec.labels ?? { "app.kubernetes.io/name": "net-exporter" }, labelSelector)
      );
      const page = all.slice(offset, offset + limit);
      const next = offset + limit < all.length ? String(offset + limit) : undefined;
      return Response.json({
        kind: "PodList",
        apiVersion: "v1",
        metadata: { resourceVersion: String(resourceVersion), ...(next ? { continue: next } : {}) },
        items: page.map((spec) => podObject(spec, resourceVersion)),
      });
    }
    const from = Number(url.searchParams.get("resourceVersion") ?? resourceVersion);
    if (from < oldestResumable - 1) return status(410, "Expired", "too old resource version");
    const timeoutSeconds = Number(url.searchParams.get("timeoutSeconds") ?? 1800);
    let watcher: Watcher;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        watcher = {
          controller,
          labelSelector,
          silent: server.silentWatches,
          closed: false,
          // A half-open connection never delivers the server's end of stream either.
          timer: setTimeout(() => watcher.silent || closeWatcher(watcher), timeoutSeconds * 1000),
        };
        watchers.add(watcher);
        for (const event of history) {
          if (event.rv > from && matches(event.labels, labelSelector)) send(watcher, event.line);
        }
      },
      cancel() {
        closeWatcher(watcher);
      },
    });
    return new Response(body, { headers: { "content-type": "application/json" } });
  };

  const http = Deno.serve({ hostname, port: 0, cert, key, onListen() {} }, handler);
  (server as { url: string }).url = `https://${hostname}:${http.addr.port}`;
  return server;
}
