/**
 * A stand-in Kubernetes API server for tests, speaking the real wire protocol
 * over HTTPS with bearer tokens: paginated pod lists and gets with label and
 * field selectors, chunked watch streams of `{"type","object"}` lines with
 * resourceVersions, bookmarks, ERROR events with code 410, dropped
 * connections, 503s and silent streams — each driven by the test. It also
 * lists what DaemonSet exporters commonly ask for besides pods: services
 * (with a clusterIP) and `discovery.k8s.io/v1` EndpointSlices derived from
 * the pods a service selects (lists and gets only; watching those answers 405).
 * @module
 */

import { caAndLeaf, serverExtensions } from "./pki.ts";

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

/** A service; with a `selector` it gets an EndpointSlice of the Ready pods it selects. */
export interface ServiceSpec {
  namespace: string;
  name: string;
  clusterIP: string;
  ports: Array<{ name: string; port: number; protocol?: "TCP" | "UDP"; targetPort?: number }>;
  selector?: Record<string, string>;
}

const POD_NAMESPACE = "monitoring";
const DEFAULT_LABELS = { "app.kubernetes.io/name": "net-exporter" };

interface Watcher {
  controller: ReadableStreamDefaultController<Uint8Array>;
  selects: (pod: PodSpec) => boolean;
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
  /** "verb path" of every request, in order (verb is list, get or watch). */
  readonly requests: string[];
  /** Issues a further valid token; requests made with it are counted under `client`. */
  issueToken(client: string): string;
  /** Requests made so far with `client`'s token ("default" for `token`). */
  requestsBy(client: string): number;
  /** Adds or replaces a service. */
  applyService(service: ServiceSpec): void;
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

/** A CA and a server certificate for `hostname` (an IP) signed by it, made with openssl. */
export function makeCertificates(
  hostname: string,
): Promise<{ caPem: string; cert: string; key: string }> {
  return caAndLeaf("test-ca", `/CN=${hostname}`, serverExtensions([`IP:${hostname}`]));
}

function podObject(spec: PodSpec, resourceVersion: number) {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: spec.name,
      namespace: POD_NAMESPACE,
      uid: `uid-${spec.name}`,
      resourceVersion: String(resourceVersion),
      labels: spec.labels ?? DEFAULT_LABELS,
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

/** Equality-based selector terms (`a=b`, `a==b`, `a!=b`, comma-separated) against `fields`. */
function matches(fields: Record<string, string | undefined>, selector: string): boolean {
  return selector.split(",").filter((term) => term !== "").every((term) => {
    const match = /^([^!=]+)(!=|==|=)(.*)$/.exec(term);
    if (!match) return false;
    const [, key, operator, value] = match;
    return operator === "!=" ? fields[key!] !== value : fields[key!] === value;
  });
}

/** The fields of a pod that field selectors can name. */
function podFields(spec: PodSpec): Record<string, string | undefined> {
  return {
    "metadata.name": spec.name,
    "metadata.namespace": POD_NAMESPACE,
    "spec.nodeName": spec.node,
    "status.podIP": spec.ips[0],
    "status.phase": spec.phase ?? "Running",
  };
}

function serviceObject(service: ServiceSpec, resourceVersion: number) {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name: service.name,
      namespace: service.namespace,
      uid: `uid-svc-${service.namespace}-${service.name}`,
      resourceVersion: String(resourceVersion),
    },
    spec: {
      type: "ClusterIP",
      clusterIP: service.clusterIP,
      clusterIPs: [service.clusterIP],
      ports: service.ports.map((port) => ({
        name: port.name,
        port: port.port,
        protocol: port.protocol ?? "TCP",
        targetPort: port.targetPort ?? port.port,
      })),
      ...(service.selector ? { selector: service.selector } : {}),
    },
  };
}

function endpointSliceObject(service: ServiceSpec, pods: PodSpec[], resourceVersion: number) {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: `${service.name}-stand`,
      namespace: service.namespace,
      resourceVersion: String(resourceVersion),
      labels: {
        "kubernetes.io/service-name": service.name,
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
      },
    },
    addressType: "IPv4",
    endpoints: pods.map((pod) => {
      const ready = pod.ready !== false && !pod.deleting;
      return {
        addresses: [pod.ips[0]],
        conditions: { ready, serving: pod.ready !== false, terminating: pod.deleting === true },
        nodeName: pod.node,
        targetRef: {
          kind: "Pod",
          namespace: POD_NAMESPACE,
          name: pod.name,
          uid: `uid-${pod.name}`,
        },
      };
    }),
    ports: service.ports.map((port) => ({
      name: port.name,
      port: port.targetPort ?? port.port,
      protocol: port.protocol ?? "TCP",
    })),
  };
}

/** One change of a pod, kept for watches that resume from before it. */
interface PodEvent {
  readonly rv: number;
  readonly type: "ADDED" | "MODIFIED" | "DELETED";
  /** The pod object after the change, serialised once. */
  readonly object: string;
  readonly pod: PodSpec;
  /** The pod before a MODIFIED change. */
  readonly previous: PodSpec | undefined;
}

/** Starts the server on `hostname` (default 127.0.0.1) and a free port. */
export async function startApiServer(
  options: { pageSize?: number; hostname?: string } = {},
): Promise<TestApiServer> {
  const hostname = options.hostname ?? "127.0.0.1";
  const { caPem, cert, key } = await makeCertificates(hostname);
  const token = crypto.randomUUID();
  const clients = new Map<string, string>([[token, "default"]]);
  const requestCounts = new Map<string, number>();
  const pods = new Map<string, PodSpec>();
  const services = new Map<string, ServiceSpec>();
  let resourceVersion = 100;
  /** Events since the oldest resourceVersion a watch may resume from. */
  let history: PodEvent[] = [];
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

  const emit = (type: "ADDED" | "MODIFIED" | "DELETED", spec: PodSpec, previous?: PodSpec) => {
    resourceVersion++;
    const event: PodEvent = {
      rv: resourceVersion,
      type,
      object: JSON.stringify(podObject(spec, resourceVersion)),
      pod: spec,
      previous,
    };
    history.push(event);
    for (const watcher of watchers) deliver(watcher, event);
  };

  /**
   * Sends `event` as `watcher`'s selectors see it, as the API server's watch cache does: a pod
   * that starts to match arrives as ADDED, one that stops matching leaves as DELETED (with its new
   * state), and a change on either side of the selector is not sent.
   */
  const deliver = (watcher: Watcher, event: PodEvent) => {
    const now = watcher.selects(event.pod);
    const before = event.type === "MODIFIED" && event.previous !== undefined
      ? watcher.selects(event.previous)
      : now;
    const type = now && before ? event.type : now ? "ADDED" : before ? "DELETED" : undefined;
    if (type !== undefined) send(watcher, `{"type":"${type}","object":${event.object}}`);
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
    issueToken(client) {
      const issued = crypto.randomUUID();
      clients.set(issued, client);
      return issued;
    },
    requestsBy(client) {
      return requestCounts.get(client) ?? 0;
    },
    applyService(service) {
      resourceVersion++;
      services.set(`${service.namespace}/${service.name}`, service);
    },
    apply(spec) {
      const previous = pods.get(spec.name);
      pods.set(spec.name, spec);
      emit(previous ? "MODIFIED" : "ADDED", spec, previous);
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

  const selectedPods = (url: URL, namespace: string | undefined) => {
    const labelSelector = url.searchParams.get("labelSelector") ?? "";
    const fieldSelector = url.searchParams.get("fieldSelector") ?? "";
    return (pod: PodSpec) =>
      (namespace === undefined || namespace === POD_NAMESPACE) &&
      matches(pod.labels ?? DEFAULT_LABELS, labelSelector) &&
      matches(podFields(pod), fieldSelector);
  };

  const list = (url: URL, kind: string, apiVersion: string, items: unknown[]) => {
    const limit = Number(url.searchParams.get("limit") || options.pageSize || 500);
    const offset = Number(url.searchParams.get("continue") || 0);
    const next = offset + limit < items.length ? String(offset + limit) : undefined;
    return Response.json({
      kind,
      apiVersion,
      metadata: { resourceVersion: String(resourceVersion), ...(next ? { continue: next } : {}) },
      items: items.slice(offset, offset + limit),
    });
  };

  const watchPods = (url: URL, selects: (pod: PodSpec) => boolean): Response => {
    const from = Number(url.searchParams.get("resourceVersion") ?? resourceVersion);
    if (from < oldestResumable - 1) return status(410, "Expired", "too old resource version");
    const timeoutSeconds = Number(url.searchParams.get("timeoutSeconds") ?? 1800);
    let watcher: Watcher;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        watcher = {
          controller,
          selects,
          silent: server.silentWatches,
          closed: false,
          // A half-open connection never delivers the server's end of stream either.
          timer: setTimeout(() => watcher.silent || closeWatcher(watcher), timeoutSeconds * 1000),
        };
        watchers.add(watcher);
        for (const event of history) if (event.rv > from) deliver(watcher, event);
      },
      cancel() {
        closeWatcher(watcher);
      },
    });
    return new Response(body, { headers: { "content-type": "application/json" } });
  };

  const servicesIn = (namespace: string | undefined) =>
    [...services.values()].filter((service) =>
      namespace === undefined || service.namespace === namespace
    );

  const handler = (request: Request): Response => {
    const url = new URL(request.url);
    const watch = url.searchParams.get("watch") === "1" || url.searchParams.get("watch") === "true";
    const route =
      /^\/(?:api\/v1|apis\/discovery\.k8s\.io\/v1)(?:\/namespaces\/([^/]+))?\/(pods|services|endpointslices)(?:\/([^/]+))?$/
        .exec(url.pathname);
    const verb = watch ? "watch" : route?.[3] ? "get" : "list";
    server.requests.push(`${verb} ${url.pathname}${url.search}`);
    const client = clients.get(request.headers.get("authorization")?.replace(/^Bearer /, "") ?? "");
    if (client === undefined) return status(401, "Unauthorized", "Unauthorized");
    requestCounts.set(client, (requestCounts.get(client) ?? 0) + 1);
    if (server.failWith !== undefined) {
      return status(server.failWith, "ServiceUnavailable", "stand-in outage");
    }
    const [, namespace, resource, name] = route ?? [];
    const group = url.pathname.startsWith("/apis/") ? "discovery.k8s.io" : "";
    if (!route || (resource === "endpointslices") !== (group === "discovery.k8s.io")) {
      return status(404, "NotFound", "not found");
    }
    if (watch && resource !== "pods") {
      return status(405, "MethodNotAllowed", `the stand-in does not watch ${resource}`);
    }
    if (resource === "pods") {
      const selects = selectedPods(url, namespace);
      if (watch) return watchPods(url, selects);
      return answer(
        url,
        name,
        "Pod",
        "v1",
        [...pods.values()].filter(selects).map((pod) => ({
          name: pod.name,
          object: podObject(pod, resourceVersion),
        })),
      );
    }
    const inScope = servicesIn(namespace);
    if (resource === "services") {
      return answer(
        url,
        name,
        "Service",
        "v1",
        inScope.map((service) => ({
          name: service.name,
          object: serviceObject(service, resourceVersion),
        })),
      );
    }
    const labelSelector = url.searchParams.get("labelSelector") ?? "";
    const slices = inScope.filter((service) => service.selector).map((service) =>
      endpointSliceObject(
        service,
        [...pods.values()].filter((pod) =>
          matches(
            pod.labels ?? DEFAULT_LABELS,
            Object.entries(service.selector!).map(([k, v]) => `${k}=${v}`).join(","),
          )
        ),
        resourceVersion,
      )
    ).filter((slice) => matches(slice.metadata.labels, labelSelector));
    return answer(
      url,
      name,
      "EndpointSlice",
      "discovery.k8s.io/v1",
      slices.map((slice) => ({ name: slice.metadata.name, object: slice })),
    );
  };

  /** A get of `name` among `items`, or (no name) a paginated list of them. */
  const answer = (
    url: URL,
    name: string | undefined,
    kind: string,
    apiVersion: string,
    items: Array<{ name: string; object: unknown }>,
  ): Response => {
    if (name === undefined) return list(url, `${kind}List`, apiVersion, items.map((i) => i.object));
    const item = items.find((candidate) => candidate.name === name);
    return item
      ? Response.json(item.object)
      : status(404, "NotFound", `${kind.toLowerCase()}s "${name}" not found`);
  };

  const http = Deno.serve({ hostname, port: 0, cert, key, onListen() {} }, handler);
  (server as { url: string }).url = `https://${hostname}:${http.addr.port}`;
  return server;
}
