/**
 * A real Prometheus (Debian's) watching a simulated cluster the way the
 * chart tells the Prometheus Operator to: the scrape job is translated from
 * the rendered ServiceMonitor and its Service, the rules are the rendered
 * PrometheusRule's groups, and the targets come from the API server's pod
 * list as the endpoints controller would publish them.
 *
 * Targets reach Prometheus through `file_sd_configs` carrying the meta labels
 * that `kubernetes_sd_configs` (role `endpoints`) would give, so the
 * operator's relabelings and the ServiceMonitor's own run as written. Where a
 * real API server runs, the same job takes `kubernetes_sd_configs` instead.
 * @module
 */

import { parseAllDocuments } from "yaml";
import { stopChild } from "../helpers/proc.ts";
import { CHILD_ENV } from "../helpers/requirements.ts";
import { closedPort } from "../helpers/tcp.ts";

const CHART = new URL("../../chart/", import.meta.url).pathname;

/** A Kubernetes object as rendered, loosely typed. */
export type Manifest = {
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  // deno-lint-ignore no-explicit-any
  spec: any;
};

/** The monitoring objects of one rendering of the chart. */
export interface Monitoring {
  readonly service: Manifest;
  readonly serviceMonitor: Manifest;
  /** The PrometheusRule's `spec.groups`, as a Prometheus rule file holds them. */
  readonly ruleGroups: unknown[];
  /** The DaemonSet's container args. */
  readonly args: string[];
}

/**
 * Renders `chart/` with the ServiceMonitor and PrometheusRule on and `values`
 * (`--set` pairs), and picks out what Prometheus needs.
 */
export async function renderMonitoring(
  release: string,
  namespace: string,
  values: Readonly<Record<string, string>>,
): Promise<Monitoring> {
  const args = [
    "template",
    release,
    CHART,
    "--namespace",
    namespace,
    // A helm built from Go modules reports Kubernetes 1.20 unless told.
    "--kube-version",
    "1.34.2",
    "--set",
    "serviceMonitor.enabled=true",
    "--set",
    "prometheusRule.enabled=true",
    ...Object.entries(values).flatMap(([key, value]) => ["--set", `${key}=${value}`]),
  ];
  const output = await new Deno.Command("helm", {
    args,
    stdout: "piped",
    stderr: "piped",
    env: CHILD_ENV,
  })
    .output();
  if (!output.success) {
    throw new Error(
      `Cannot render the chart: helm said ${new TextDecoder().decode(output.stderr)}`,
    );
  }
  const manifests = parseAllDocuments(new TextDecoder().decode(output.stdout))
    .map((document) => document.toJS() as Manifest | null)
    .filter((manifest): manifest is Manifest => manifest !== null);
  const one = (kind: string) => {
    const found = manifests.filter((manifest) => manifest.kind === kind);
    if (found.length !== 1) {
      throw new Error(
        `Cannot use the rendered chart: current rendering has ${found.length} ${kind}`,
      );
    }
    return found[0]!;
  };
  return {
    service: one("Service"),
    serviceMonitor: one("ServiceMonitor"),
    ruleGroups: one("PrometheusRule").spec.groups,
    args: one("DaemonSet").spec.template.spec.containers[0].args,
  };
}

/** A label name as Prometheus's Kubernetes discovery writes it (`app.kubernetes.io/name` → `app_kubernetes_io_name`). */
export function sanitizeLabelName(name: string): string {
  return name.replace(/[^a-zA-Z0-9_]/g, "_");
}

/** The ServiceMonitor's relabelings (camelCase) as Prometheus relabel_configs (snake_case). */
function relabelConfig(relabeling: Record<string, unknown>): Record<string, unknown> {
  const names: Record<string, string> = {
    sourceLabels: "source_labels",
    targetLabel: "target_label",
    separator: "separator",
    regex: "regex",
    replacement: "replacement",
    action: "action",
    modulus: "modulus",
  };
  return Object.fromEntries(
    Object.entries(relabeling).map(([key, value]) => {
      const name = names[key];
      if (name === undefined) {
        throw new Error(
          `Cannot translate relabeling: current key "${key}" is not one Prometheus knows`,
        );
      }
      return [name, key === "action" ? String(value).toLowerCase() : value];
    }),
  );
}

/** How Prometheus finds the targets of a scrape job. */
export type Discovery =
  | { readonly file: string }
  | { readonly kubernetes: { apiServer: string; caFile: string; tokenFile: string } };

/**
 * The scrape job the Prometheus Operator generates for the first endpoint of
 * `serviceMonitor` (its relabelings as of operator v0.7x, for role
 * `endpoints`): keep the Service by the ServiceMonitor's selector and the
 * endpoint by port name; set namespace, service, pod, container, job (from
 * `jobLabel`) and endpoint; then the ServiceMonitor's own relabelings.
 */
export function scrapeJob(
  serviceMonitor: Manifest,
  service: Manifest,
  discovery: Discovery,
  /** The Prometheus the job is for: the histogram fields are spelled per major version. */
  prometheusMajor: 2 | 3 = 2,
): Record<string, unknown> {
  const endpoints = serviceMonitor.spec.endpoints as Array<Record<string, unknown>>;
  if (endpoints.length !== 1) {
    throw new Error(
      `Cannot translate the ServiceMonitor: current endpoints number ${endpoints.length}, expected 1`,
    );
  }
  const endpoint = endpoints[0]!;
  const ports = service.spec.ports as Array<{ name: string }>;
  if (!ports.some((port) => port.name === endpoint.port)) {
    throw new Error(
      `Cannot translate the ServiceMonitor: current endpoint port "${endpoint.port}" is not a port of Service ${service.metadata.name}`,
    );
  }
  const namespace = serviceMonitor.metadata.namespace!;
  const selector = serviceMonitor.spec.selector.matchLabels as Record<string, string>;
  const meta = (name: string) => `__meta_kubernetes_service_label_${sanitizeLabelName(name)}`;
  const present = (name: string) =>
    `__meta_kubernetes_service_labelpresent_${sanitizeLabelName(name)}`;
  const jobLabel = serviceMonitor.spec.jobLabel as string | undefined;
  const relabel_configs: Record<string, unknown>[] = [
    { source_labels: ["job"], target_label: "__tmp_prometheus_job_name" },
    ...Object.entries(selector).map(([name, value]) => ({
      action: "keep",
      source_labels: [meta(name), present(name)],
      regex: `(${value});true`,
    })),
    {
      action: "keep",
      source_labels: ["__meta_kubernetes_endpoint_port_name"],
      regex: endpoint.port,
    },
    {
      source_labels: [
        "__meta_kubernetes_endpoint_address_target_kind",
        "__meta_kubernetes_endpoint_address_target_name",
      ],
      separator: ";",
      regex: "Pod;(.*)",
      replacement: "${1}",
      target_label: "pod",
    },
    { source_labels: ["__meta_kubernetes_namespace"], target_label: "namespace" },
    { source_labels: ["__meta_kubernetes_service_name"], target_label: "service" },
    { source_labels: ["__meta_kubernetes_pod_name"], target_label: "pod" },
    { source_labels: ["__meta_kubernetes_pod_container_name"], target_label: "container" },
    { action: "drop", source_labels: ["__meta_kubernetes_pod_phase"], regex: "(Failed|Succeeded)" },
    { source_labels: ["__meta_kubernetes_service_name"], target_label: "job", replacement: "${1}" },
    ...(jobLabel
      ? [{
        source_labels: [meta(jobLabel)],
        target_label: "job",
        regex: "(.+)",
        replacement: "${1}",
      }]
      : []),
    { target_label: "endpoint", replacement: String(endpoint.port) },
    ...((endpoint.relabelings ?? []) as Record<string, unknown>[]).map(relabelConfig),
  ];
  const sd = "file" in discovery
    ? { file_sd_configs: [{ files: [discovery.file], refresh_interval: "5s" }] }
    : {
      kubernetes_sd_configs: [{
        role: "endpoints",
        api_server: discovery.kubernetes.apiServer,
        namespaces: {
          names: (serviceMonitor.spec.namespaceSelector?.matchNames as string[] | undefined) ??
            [namespace],
        },
        tls_config: { ca_file: discovery.kubernetes.caFile },
        authorization: { credentials_file: discovery.kubernetes.tokenFile },
      }],
    };
  // The Operator's histogram fields. Prometheus 2.x asks for protobuf (and keeps native
  // histograms) only with --enable-feature=native-histograms, which the caller passes; 3.x reads
  // them from the job.
  const spec = serviceMonitor.spec as Record<string, unknown>;
  const histograms: Record<string, unknown> = {};
  if (prometheusMajor === 3) {
    if (spec.scrapeProtocols) histograms.scrape_protocols = spec.scrapeProtocols;
    if (spec.scrapeNativeHistograms !== undefined) {
      histograms.scrape_native_histograms = spec.scrapeNativeHistograms;
    }
    if (spec.scrapeClassicHistograms !== undefined) {
      histograms.always_scrape_classic_histograms = spec.scrapeClassicHistograms;
    }
  } else if (spec.scrapeClassicHistograms !== undefined) {
    histograms.scrape_classic_histograms = spec.scrapeClassicHistograms;
  }
  return {
    job_name: `serviceMonitor/${namespace}/${serviceMonitor.metadata.name}/0`,
    honor_labels: false,
    ...histograms,
    scrape_interval: endpoint.interval,
    scrape_timeout: endpoint.scrapeTimeout,
    metrics_path: endpoint.path ?? "/metrics",
    scheme: endpoint.scheme ?? "http",
    ...sd,
    relabel_configs,
    ...(endpoint.metricRelabelings
      ? {
        metric_relabel_configs: (endpoint.metricRelabelings as Record<string, unknown>[]).map(
          relabelConfig,
        ),
      }
      : {}),
  };
}

/** A pod as the endpoints controller sees it. */
export interface EndpointPod {
  readonly name: string;
  readonly node: string;
  readonly ip: string;
  readonly ready: boolean;
  readonly terminating: boolean;
  readonly phase: string;
}

/**
 * The file_sd target groups for `pods` behind `service`: one target per pod
 * and Service port, with the meta labels of `kubernetes_sd_configs` role
 * `endpoints`. Terminating pods are left out, as the endpoints controller
 * removes them; not-ready pods stay, with `endpoint_ready="false"`, as the
 * operator's jobs scrape them too.
 */
export function endpointTargets(service: Manifest, pods: readonly EndpointPod[]): unknown[] {
  const ports = service.spec.ports as Array<{ name: string; port: number }>;
  const serviceLabels = Object.fromEntries(
    Object.entries(service.metadata.labels ?? {}).flatMap(([name, value]) => [
      [`__meta_kubernetes_service_label_${sanitizeLabelName(name)}`, value],
      [`__meta_kubernetes_service_labelpresent_${sanitizeLabelName(name)}`, "true"],
    ]),
  );
  return pods.filter((pod) => !pod.terminating && pod.ip !== "").flatMap((pod) =>
    ports.map((port) => ({
      targets: [`${pod.ip}:${port.port}`],
      labels: {
        __meta_kubernetes_namespace: service.metadata.namespace!,
        __meta_kubernetes_service_name: service.metadata.name,
        ...serviceLabels,
        __meta_kubernetes_endpoint_port_name: port.name,
        __meta_kubernetes_endpoint_ready: String(pod.ready),
        __meta_kubernetes_endpoint_address_target_kind: "Pod",
        __meta_kubernetes_endpoint_address_target_name: pod.name,
        __meta_kubernetes_endpoint_node_name: pod.node,
        __meta_kubernetes_pod_name: pod.name,
        __meta_kubernetes_pod_node_name: pod.node,
        __meta_kubernetes_pod_ip: pod.ip,
        __meta_kubernetes_pod_ready: String(pod.ready),
        __meta_kubernetes_pod_phase: pod.phase,
        __meta_kubernetes_pod_container_name: "net-exporter",
      },
    }))
  );
}

/** One alert as Prometheus's /api/v1/alerts lists it. */
export interface ActiveAlert {
  readonly labels: Record<string, string>;
  readonly state: "pending" | "firing";
  readonly activeAt: string;
  readonly value: string;
}

/** A Prometheus server of the run's own, on loopback. */
export interface PrometheusServer extends AsyncDisposable {
  readonly url: string;
  readonly logs: string[];
  /** An instant query; the result vector or matrix. */
  query(expr: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>>;
  alerts(): Promise<ActiveAlert[]>;
}

/**
 * Starts `prometheus` with one scrape job and the rule groups, evaluated every
 * `evaluationInterval`, storing in a temporary directory removed on dispose.
 */
export async function startPrometheus(options: {
  readonly job: Record<string, unknown>;
  /** Further scrape jobs. */
  readonly moreJobs?: readonly Record<string, unknown>[];
  readonly ruleGroups: unknown[];
  readonly evaluationInterval: string;
  readonly dir: string;
  /** The server to run: Debian's `prometheus` unless given (e.g. a Prometheus 3 build). */
  readonly binary?: string;
  /** Further command-line flags, e.g. `--enable-feature=native-histograms`. */
  readonly flags?: readonly string[];
}): Promise<PrometheusServer> {
  const { dir } = options;
  await Deno.writeTextFile(
    `${dir}/rules.yml`,
    JSON.stringify({ groups: options.ruleGroups }, null, 2),
  );
  await Deno.writeTextFile(
    `${dir}/prometheus.yml`,
    JSON.stringify(
      {
        global: { evaluation_interval: options.evaluationInterval },
        rule_files: [`${dir}/rules.yml`],
        scrape_configs: [options.job, ...options.moreJobs ?? []],
      },
      null,
      2,
    ),
  );
  const port = closedPort();
  const child = new Deno.Command(options.binary ?? "prometheus", {
    args: [
      `--config.file=${dir}/prometheus.yml`,
      `--storage.tsdb.path=${dir}/data`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--storage.tsdb.retention.time=2h",
      "--log.level=warn",
      ...options.flags ?? [],
    ],
    stdout: "null",
    stderr: "piped",
    env: CHILD_ENV,
  }).spawn();
  const logs: string[] = [];
  const pump = (async () => {
    for await (const line of child.stderr.pipeThrough(new TextDecoderStream())) {
      logs.push(...line.split("\n").filter((text) => text !== ""));
    }
  })();
  const url = `http://127.0.0.1:${port}`;
  const api = async (path: string) => {
    const response = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(10_000) });
    const body = await response.json();
    if (body.status !== "success") {
      throw new Error(`Cannot ask Prometheus ${path}: it said ${body.error ?? response.status}`);
    }
    return body.data;
  };
  const server: PrometheusServer = {
    url,
    logs,
    query: async (expr) => (await api(`/api/v1/query?query=${encodeURIComponent(expr)}`)).result,
    alerts: async () => (await api("/api/v1/alerts")).alerts,
    async [Symbol.asyncDispose]() {
      await stopChild(child, 10_000);
      await pump;
    },
  };
  for (let attempt = 0; attempt < 100; attempt++) {
    const ready = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1_000) })
      .then((response) => response.body?.cancel().then(() => response.ok) ?? response.ok)
      .catch(() => false);
    if (ready) return server;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  await server[Symbol.asyncDispose]();
  throw new Error(`Cannot start Prometheus: not ready after 20 s. Logs:\n${logs.join("\n")}`);
}

/** A state change of one alert, as the recorder saw it. */
export interface AlertEvent {
  /** Milliseconds since the recorder started. */
  readonly at: number;
  readonly alert: string;
  readonly labels: Record<string, string>;
  readonly state: "pending" | "firing" | "resolved";
}

/** The alert's identity: its name and labels, sorted. */
export function alertKey(labels: Record<string, string>): string {
  return Object.entries(labels).sort(([a], [b]) => a.localeCompare(b))
    .map(([name, value]) => `${name}=${value}`).join(",");
}

/**
 * Polls Prometheus's alerts every `periodMs` and keeps every state change
 * (pending, firing, resolved) with its time, for the report's timelines.
 */
export class AlertRecorder implements AsyncDisposable {
  readonly events: AlertEvent[] = [];
  readonly #started = performance.now();
  readonly #states = new Map<
    string,
    { labels: Record<string, string>; state: "pending" | "firing" }
  >();
  readonly #timer: ReturnType<typeof setInterval>;
  #polling: Promise<void> = Promise.resolve();
  errors = 0;

  constructor(readonly prometheus: PrometheusServer, periodMs = 1_000) {
    this.#timer = setInterval(() => {
      this.#polling = this.#polling.then(() => this.#poll());
    }, periodMs);
  }

  /** Milliseconds since the recorder started. */
  now(): number {
    return performance.now() - this.#started;
  }

  /** The alerts active now (pending or firing). */
  active(): Array<{ labels: Record<string, string>; state: "pending" | "firing" }> {
    return [...this.#states.values()];
  }

  async #poll(): Promise<void> {
    let alerts: ActiveAlert[];
    try {
      alerts = await this.prometheus.alerts();
    } catch {
      this.errors++;
      return;
    }
    const at = this.now();
    const seen = new Set<string>();
    for (const alert of alerts) {
      const key = alertKey(alert.labels);
      seen.add(key);
      const before = this.#states.get(key);
      if (before?.state !== alert.state) {
        this.#states.set(key, { labels: alert.labels, state: alert.state });
        this.events.push({
          at,
          alert: alert.labels.alertname!,
          labels: alert.labels,
          state: alert.state,
        });
      }
    }
    for (const [key, { labels }] of this.#states) {
      if (!seen.has(key)) {
        this.#states.delete(key);
        this.events.push({ at, alert: labels.alertname!, labels, state: "resolved" });
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    clearInterval(this.#timer);
    await this.#polling;
  }
}

/**
 * Publishes the pods of `service` as scrape targets the way the endpoints
 * controller and Prometheus's discovery would: lists them from the API server
 * every `periodMs` and rewrites the file_sd file when they change (written
 * aside and renamed, so Prometheus never reads half a file).
 */
export class EndpointsMirror implements AsyncDisposable {
  readonly #client: Deno.HttpClient;
  readonly #timer: ReturnType<typeof setInterval>;
  #syncing: Promise<void> = Promise.resolve();
  #last = "";
  errors = 0;

  constructor(
    readonly api: { readonly url: string; readonly token: string; readonly caPem: string },
    readonly service: Manifest,
    readonly file: string,
    periodMs = 500,
  ) {
    this.#client = Deno.createHttpClient({ caCerts: [api.caPem] });
    this.#timer = setInterval(() => {
      this.#syncing = this.#syncing.then(() => this.sync().catch(() => void this.errors++));
    }, periodMs);
  }

  /** Lists the pods now and rewrites the file if they changed. */
  async sync(): Promise<void> {
    const namespace = this.service.metadata.namespace!;
    const selector = Object.entries(this.service.spec.selector as Record<string, string>)
      .map(([name, value]) => `${name}=${value}`).join(",");
    const response = await fetch(
      `${this.api.url}/api/v1/namespaces/${namespace}/pods?labelSelector=${
        encodeURIComponent(selector)
      }`,
      {
        client: this.#client,
        headers: { authorization: `Bearer ${this.api.token}` },
        signal: AbortSignal.timeout(5_000),
      },
    );
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(`Cannot list pods: API server answered ${response.status}`);
    }
    // deno-lint-ignore no-explicit-any
    const list = await response.json() as { items: any[] };
    const pods: EndpointPod[] = list.items.map((pod) => ({
      name: pod.metadata.name,
      node: pod.spec.nodeName ?? "",
      ip: pod.status?.podIP ?? "",
      ready: (pod.status?.conditions ?? []).some(
        (condition: { type: string; status: string }) =>
          condition.type === "Ready" && condition.status === "True",
      ),
      terminating: pod.metadata.deletionTimestamp !== undefined,
      phase: pod.status?.phase ?? "Running",
    }));
    const text = JSON.stringify(endpointTargets(this.service, pods), null, 2);
    if (text === this.#last) return;
    await Deno.writeTextFile(`${this.file}.new`, text);
    await Deno.rename(`${this.file}.new`, this.file);
    this.#last = text;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    clearInterval(this.#timer);
    await this.#syncing;
    this.#client.close();
  }
}
