/**
 * A real Kubernetes control plane on one machine: Debian's etcd, and
 * kube-apiserver, kube-controller-manager and kube-scheduler from the binary
 * `build.ts` makes. TLS from a CA generated for the run, the RBAC and Node
 * authorizers, service-account tokens signed with a key of the run's own, an
 * audit log of every request by a service account, and an admin credential
 * (a client certificate in group system:masters) for the harness only.
 *
 * The API server listens on the simulated cluster's control point, where the
 * pods in the node namespaces reach it; etcd and the other components talk on
 * 127.0.0.1. Everything lives in a temporary directory removed on dispose.
 * @module
 */

import { CLIENT_EXTENSIONS, makeCa, serverExtensions, signLeaf } from "../helpers/pki.ts";
import { stopChild } from "../helpers/proc.ts";
import { CHILD_ENV } from "../helpers/requirements.ts";
import { closedPort } from "../helpers/tcp.ts";

/** A running child with its log, stopped with SIGTERM, then SIGKILL. */
interface Component {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  readonly logs: string[];
  stop(): Promise<void>;
}

function spawn(name: string, command: string, args: string[]): Component {
  const child = new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: CHILD_ENV,
  }).spawn();
  const logs: string[] = [];
  const keep = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      for (const line of chunk.split("\n")) {
        if (line === "") continue;
        logs.push(line);
        // The last lines are what explains a failure; the rest is noise on a long run.
        if (logs.length > 2_000) logs.splice(0, 1_000);
      }
    }
  };
  const pumps = Promise.all([keep(child.stdout), keep(child.stderr)]);
  let stopped: Promise<void> | undefined;
  return {
    name,
    child,
    logs,
    stop: () =>
      stopped ??= (async () => {
        await stopChild(child, 10_000);
        await pumps;
      })(),
  };
}

/** The CA, the API server's certificate, the harness's admin certificate and the service-account keys. */
async function makePki(dir: string, address: string): Promise<void> {
  await makeCa(dir, "net-exporter-sim-cluster-ca");
  await signLeaf(
    dir,
    "apiserver",
    "/CN=kube-apiserver",
    serverExtensions([
      `IP:${address}`,
      "IP:127.0.0.1",
      "IP:10.96.0.1",
      "DNS:kubernetes",
      "DNS:kubernetes.default",
      "DNS:kubernetes.default.svc",
      "DNS:kubernetes.default.svc.cluster.local",
    ]),
  );
  await signLeaf(dir, "admin", "/O=system:masters/CN=net-exporter-harness", CLIENT_EXTENSIONS);
  // Service-account tokens are signed with RSA, which every client of the API verifies.
  for (
    const args of [["genrsa", "-out", "sa.key", "2048"], [
      "rsa",
      "-in",
      "sa.key",
      "-pubout",
      "-out",
      "sa.pub",
    ]]
  ) {
    const output = await new Deno.Command("openssl", {
      args,
      cwd: dir,
      stdout: "null",
      stderr: "piped",
      env: CHILD_ENV,
    })
      .output();
    if (!output.success) {
      throw new Error(
        `Cannot make the service-account key: ${new TextDecoder().decode(output.stderr)}`,
      );
    }
  }
}

/**
 * Audit policy: every request made by a service account of `namespace`, at
 * Metadata level (who, verb, resource, code, and for bound tokens the pod).
 */
function auditPolicy(namespace: string): string {
  return JSON.stringify({
    apiVersion: "audit.k8s.io/v1",
    kind: "Policy",
    omitStages: ["RequestReceived"],
    rules: [
      { level: "Metadata", userGroups: [`system:serviceaccounts:${namespace}`] },
      { level: "None" },
    ],
  });
}

/**
 * The ResourceQuota admission configuration GKE applies by default: pods with
 * a critical priority class are admitted only in namespaces holding a quota
 * that matches that scope.
 */
const CRITICAL_PRIORITY_ADMISSION = JSON.stringify({
  apiVersion: "apiserver.config.k8s.io/v1",
  kind: "AdmissionConfiguration",
  plugins: [{
    name: "ResourceQuota",
    configuration: {
      apiVersion: "apiserver.config.k8s.io/v1",
      kind: "ResourceQuotaConfiguration",
      limitedResources: [{
        resource: "pods",
        matchScopes: [{
          scopeName: "PriorityClass",
          operator: "In",
          values: ["system-node-critical", "system-cluster-critical"],
        }],
      }],
    },
  }],
});

/** One audited request, as the API server logged it. */
export interface AuditEvent {
  readonly auditID: string;
  readonly stage: string;
  readonly requestReceivedTimestamp: string;
  readonly verb: string;
  readonly requestURI: string;
  readonly user: { username: string; extra?: Record<string, string[]> };
  readonly objectRef?: { resource?: string; namespace?: string };
  readonly responseStatus?: { code?: number };
  readonly stageTimestamp?: string;
}

/** A running control plane. */
export class ControlPlane implements AsyncDisposable {
  readonly components = new Map<string, Component>();
  #client!: Deno.HttpClient;
  apiUrl = "";
  caPem = "";
  #etcdUrl = "";
  #apiPort = 0;

  private constructor(
    readonly binary: string,
    readonly address: string,
    readonly dir: string,
    readonly nodeGracePeriod: string | undefined,
  ) {}

  /** The admin kubeconfig: for the harness and helm only, never for a pod. */
  get adminKubeconfig(): string {
    return `${this.dir}/admin.kubeconfig`;
  }

  get auditLog(): string {
    return `${this.dir}/audit.log`;
  }

  /**
   * Starts etcd, the API server (on `address`), the controller manager and
   * the scheduler, and waits until the API server is ready and the default
   * service account exists in `default`.
   */
  static async start(
    binary: string,
    address: string,
    options: {
      /**
       * How long a node's lease may go unrenewed before it is Unknown (kube-controller-manager's
       * `--node-monitor-grace-period`); default: Kubernetes' own.
       */
      nodeGracePeriod?: string;
    } = {},
  ): Promise<ControlPlane> {
    const dir = await Deno.makeTempDir({ prefix: "net-exporter-cluster-" });
    const plane = new ControlPlane(binary, address, dir, options.nodeGracePeriod);
    try {
      await plane.#start();
    } catch (error) {
      const logs = [...plane.components.values()].map((component) =>
        `--- ${component.name}\n${component.logs.slice(-30).join("\n")}`
      ).join("\n");
      await plane[Symbol.asyncDispose]();
      throw new Error(`Cannot start the control plane: ${(error as Error).message}\n${logs}`, {
        cause: error,
      });
    }
    return plane;
  }

  async #start(): Promise<void> {
    const { dir, address } = this;
    await makePki(dir, address);
    this.caPem = await Deno.readTextFile(`${dir}/ca.crt`);
    await Deno.writeTextFile(`${dir}/audit-policy.json`, auditPolicy("monitoring"));
    await Deno.writeTextFile(`${dir}/admission.json`, CRITICAL_PRIORITY_ADMISSION);
    const clientPort = closedPort();
    const peerPort = closedPort();
    this.#etcdUrl = `http://127.0.0.1:${clientPort}`;
    this.components.set(
      "etcd",
      spawn("etcd", "etcd", [
        `--data-dir=${dir}/etcd`,
        "--name=default",
        `--listen-client-urls=${this.#etcdUrl}`,
        `--advertise-client-urls=${this.#etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=default=http://127.0.0.1:${peerPort}`,
        "--logger=zap",
        "--log-level=warn",
      ]),
    );
    await this.#waitFor(
      async () => (await fetch(`${this.#etcdUrl}/health`)).ok,
      30_000,
      "etcd healthy",
    );
    this.#apiPort = closedPort(address);
    this.apiUrl = `https://${address}:${this.#apiPort}`;
    this.#startApiServer();
    this.#client = Deno.createHttpClient({
      caCerts: [this.caPem],
      cert: await Deno.readTextFile(`${dir}/admin.crt`),
      key: await Deno.readTextFile(`${dir}/admin.key`),
    });
    await this.waitUntilReady();
    await Deno.writeTextFile(this.adminKubeconfig, this.#kubeconfig(), { mode: 0o600 });
    // Both reach the API server as the harness and serve their own health on loopback only.
    const component = (name: string, own: string[]) =>
      this.components.set(
        name,
        spawn(name, this.binary, [
          name,
          `--kubeconfig=${this.adminKubeconfig}`,
          `--authentication-kubeconfig=${this.adminKubeconfig}`,
          `--authorization-kubeconfig=${this.adminKubeconfig}`,
          "--bind-address=127.0.0.1",
          `--secure-port=${closedPort()}`,
          `--cert-dir=${dir}/${name}-certs`,
          "--leader-elect=false",
          "--v=1",
          ...own,
        ]),
      );
    component("kube-controller-manager", [
      "--use-service-account-credentials=true",
      `--service-account-private-key-file=${dir}/sa.key`,
      `--root-ca-file=${dir}/ca.crt`,
      "--controllers=*",
      ...(this.nodeGracePeriod ? [`--node-monitor-grace-period=${this.nodeGracePeriod}`] : []),
    ]);
    component("kube-scheduler", []);
    // The service-account controller runs: the default service account appears.
    await this.#waitFor(
      async () =>
        (await this.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")).status ===
          200,
      60_000,
      "the default service account",
    );
  }

  #startApiServer(): void {
    const { dir, address } = this;
    this.components.set(
      "kube-apiserver",
      spawn("kube-apiserver", this.binary, [
        "kube-apiserver",
        `--etcd-servers=${this.#etcdUrl}`,
        `--bind-address=${address}`,
        `--advertise-address=${address}`,
        `--secure-port=${this.#apiPort}`,
        `--tls-cert-file=${dir}/apiserver.crt`,
        `--tls-private-key-file=${dir}/apiserver.key`,
        `--client-ca-file=${dir}/ca.crt`,
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        `--service-account-key-file=${dir}/sa.pub`,
        `--service-account-signing-key-file=${dir}/sa.key`,
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        `--admission-control-config-file=${dir}/admission.json`,
        "--service-cluster-ip-range=10.96.0.0/24",
        `--audit-log-path=${dir}/audit.log`,
        `--audit-policy-file=${dir}/audit-policy.json`,
        "--audit-log-format=json",
        "--audit-log-mode=batch",
        "--audit-log-batch-max-wait=1s",
        "--profiling=false",
        "--v=1",
      ]),
    );
  }

  #kubeconfig(): string {
    const base64 = (text: string) => btoa(text);
    return JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{
        name: "sim",
        cluster: { server: this.apiUrl, "certificate-authority-data": base64(this.caPem) },
      }],
      users: [{
        name: "harness",
        user: {
          "client-certificate": `${this.dir}/admin.crt`,
          "client-key": `${this.dir}/admin.key`,
        },
      }],
      contexts: [{ name: "sim", context: { cluster: "sim", user: "harness" } }],
      "current-context": "sim",
    });
  }

  async #waitFor(
    condition: () => Promise<boolean>,
    timeoutMs: number,
    what: string,
  ): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      for (const component of this.components.values()) {
        const status = await Promise.race([component.child.status, Promise.resolve(undefined)]);
        if (status !== undefined) {
          throw new Error(`${component.name} exited (${status.code}) while waiting for ${what}`);
        }
      }
      if (await condition().catch(() => false)) return;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
  }

  /** Waits until the API server answers /readyz. */
  waitUntilReady(timeoutMs = 90_000): Promise<void> {
    return this.#waitFor(
      async () => (await this.request("GET", "/readyz")).status === 200,
      timeoutMs,
      "kube-apiserver ready",
    );
  }

  /**
   * One request as the harness's admin (or with `token` as a bearer
   * instead), with a deadline; the body is read.
   */
  async request(
    method: string,
    path: string,
    options: { body?: unknown; token?: string; contentType?: string } = {},
    // deno-lint-ignore no-explicit-any
  ): Promise<{ status: number; json: any; text: string }> {
    const client = options.token ? Deno.createHttpClient({ caCerts: [this.caPem] }) : this.#client;
    try {
      const response = await fetch(`${this.apiUrl}${path}`, {
        method,
        client,
        headers: {
          ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
          ...(options.body === undefined
            ? {}
            : { "content-type": options.contentType ?? "application/json" }),
          accept: "application/json",
        },
        ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
        signal: AbortSignal.timeout(30_000),
      });
      const text = await response.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: response.status, json, text };
    } finally {
      if (options.token) client.close();
    }
  }

  /**
   * A long-lived request as the harness's admin (a watch), ended by `signal`; the caller reads
   * the body. With `client` (from {@link adminClient}) it has a connection of its own.
   */
  watch(path: string, signal: AbortSignal, client = this.#client): Promise<Response> {
    return fetch(`${this.apiUrl}${path}`, { client, signal });
  }

  /** A new HTTP client with the harness's admin credential: a connection of its own. */
  async adminClient(): Promise<Deno.HttpClient> {
    return Deno.createHttpClient({
      caCerts: [this.caPem],
      cert: await Deno.readTextFile(`${this.dir}/admin.crt`),
      key: await Deno.readTextFile(`${this.dir}/admin.key`),
    });
  }

  /** Like {@link request}, but throws unless the status is 2xx. */
  // deno-lint-ignore no-explicit-any
  async ok(method: string, path: string, body?: unknown, contentType?: string): Promise<any> {
    const response = await this.request(method, path, {
      body,
      ...(contentType === undefined ? {} : { contentType }),
    });
    if (response.status < 200 || response.status > 299) {
      throw new Error(
        `Cannot ${method} ${path}: the API server answered ${response.status}: ${
          response.text.slice(0, 500)
        }`,
      );
    }
    return response.json;
  }

  /** Stops the API server and starts it again on the same port and etcd. */
  async restartApiServer(): Promise<void> {
    await this.components.get("kube-apiserver")!.stop();
    this.#startApiServer();
    await this.waitUntilReady();
  }

  /**
   * A token of service account `serviceAccount` in `namespace` from the TokenRequest API, valid
   * `seconds`; bound to `pod` (as a kubelet projects it) when one is given.
   */
  async serviceAccountToken(
    namespace: string,
    serviceAccount: string,
    seconds: number,
    pod?: { readonly name: string; readonly uid: string },
  ): Promise<string> {
    const answer = await this.ok(
      "POST",
      `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`,
      {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenRequest",
        spec: {
          expirationSeconds: seconds,
          ...(pod
            ? { boundObjectRef: { kind: "Pod", apiVersion: "v1", name: pod.name, uid: pod.uid } }
            : {}),
        },
      },
    );
    return answer.status.token as string;
  }

  /**
   * A stopped pod's terminal status, as a kubelet (1.27 and later) reports it before the final
   * delete: phase Succeeded (every container exited 0) or Failed, not ready, its containers
   * terminated. Watchers of running pods see the pod leave here. A pod already gone (404) is not
   * an error.
   */
  async reportTerminated(
    pod: {
      metadata: { namespace: string; name: string };
      spec: { containers: Array<{ name: string; image: string }> };
    },
    exitCode: number,
  ): Promise<void> {
    const time = secondTime();
    const answer = await this.request(
      "PATCH",
      `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}/status`,
      {
        contentType: "application/merge-patch+json",
        body: {
          status: {
            phase: exitCode === 0 ? "Succeeded" : "Failed",
            conditions: [
              { type: "PodScheduled", status: "True", lastTransitionTime: time },
              { type: "Initialized", status: "True", lastTransitionTime: time },
              { type: "ContainersReady", status: "False", lastTransitionTime: time },
              { type: "Ready", status: "False", lastTransitionTime: time },
            ],
            containerStatuses: pod.spec.containers.map((container) => ({
              name: container.name,
              image: container.image,
              imageID: "",
              ready: false,
              started: false,
              restartCount: 0,
              state: {
                terminated: {
                  exitCode,
                  reason: exitCode === 0 ? "Completed" : "Error",
                  finishedAt: time,
                },
              },
            })),
          },
        },
      },
    );
    if (answer.status !== 200 && answer.status !== 404) {
      throw new Error(`terminal status answered ${answer.status}: ${answer.text.slice(0, 200)}`);
    }
  }

  /**
   * A pod's final delete, as a kubelet makes it once the pod's processes are gone: grace 0, for
   * this uid only. A pod already gone (404) or replaced (409) is not an error.
   */
  async finalDelete(
    pod: { metadata: { namespace: string; name: string; uid: string } },
  ): Promise<void> {
    const gone = await this.request(
      "DELETE",
      `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`,
      {
        body: {
          kind: "DeleteOptions",
          apiVersion: "v1",
          gracePeriodSeconds: 0,
          preconditions: { uid: pod.metadata.uid },
        },
      },
    );
    if (gone.status !== 200 && gone.status !== 404 && gone.status !== 409) {
      throw new Error(`final delete answered ${gone.status}: ${gone.text.slice(0, 200)}`);
    }
  }

  /** etcd's own /metrics (Prometheus text). */
  async etcdMetrics(): Promise<string> {
    const response = await fetch(`${this.#etcdUrl}/metrics`, {
      signal: AbortSignal.timeout(10_000),
    });
    return await response.text();
  }

  /** The process id of a running component ("kube-apiserver", "etcd", …). */
  pid(name: string): number {
    const component = this.components.get(name);
    if (!component) throw new Error(`Cannot find component ${name}: current run has no such one`);
    return component.child.pid;
  }

  /** `etcdctl` against the run's etcd. */
  async etcdctl(...args: string[]): Promise<string> {
    const output = await new Deno.Command("etcdctl", {
      args: [`--endpoints=${this.#etcdUrl}`, ...args],
      stdout: "piped",
      stderr: "piped",
      env: { ...CHILD_ENV, ETCDCTL_API: "3" },
    }).output();
    const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
    if (!output.success) throw new Error(`Cannot run etcdctl ${args.join(" ")}: ${text}`);
    return text;
  }

  /**
   * The requests audited so far, one event each: a watch is logged when it
   * starts and when it ends, and the last stage seen (with the final code)
   * stands for it.
   */
  async audit(): Promise<AuditEvent[]> {
    const text = await Deno.readTextFile(this.auditLog).catch(() => "");
    const byId = new Map<string, AuditEvent>();
    for (const line of text.split("\n")) {
      if (!line.startsWith("{")) continue;
      const event = JSON.parse(line) as AuditEvent;
      byId.set(event.auditID, event);
    }
    return [...byId.values()];
  }

  async [Symbol.asyncDispose](): Promise<void> {
    // The API server's clients first, etcd last.
    for (const name of ["kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]) {
      await this.components.get(name)?.stop().catch(() => {});
    }
    try {
      this.#client?.close();
    } catch { /* never opened */ }
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** True when a pod object's Ready condition is True. */
export function isPodReady(
  pod: { status?: { conditions?: ReadonlyArray<{ type: string; status: string }> } },
): boolean {
  return (pod.status?.conditions ?? []).some((condition) =>
    condition.type === "Ready" && condition.status === "True"
  );
}

/**
 * True when a pod object's phase is terminal (Succeeded or Failed). The agents write it only
 * just before a pod's final delete (`reportTerminated`), so a terminal pod marked for deletion is
 * one whose final delete was already made.
 */
export function isPodTerminal(pod: { status?: { phase?: string } }): boolean {
  return pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed";
}

/**
 * Now as most API times are written (a condition's lastTransitionTime, a pod's startTime): RFC
 * 3339 in whole seconds.
 */
export function secondTime(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, "Z");
}

/** Now as a Lease's renewTime wants it: RFC 3339 with microseconds. */
export function microTime(): string {
  return new Date().toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}
