/**
 * The Helm chart, rendered by the real `helm` and read as YAML (not grepped).
 *
 * What cannot be checked here: server-side validation against a real API
 * server (admission, CRD schemas of ServiceMonitor and PrometheusRule, RBAC
 * evaluation) — no API server runs on these machines. `helm lint`, the
 * chart's values schema, and the assertions below are what is checked.
 */

import { parseAllDocuments } from "yaml";
import { assert } from "./helpers/assert.ts";
import { requires } from "./helpers/requirements.ts";
import { prometheus3Bin, requiresPrometheus3 } from "./helpers/prometheus3.ts";

const CHART = new URL("../chart", import.meta.url).pathname;
// helm built with `go install` reports Kubernetes v1.20 as the cluster's version; the chart needs 1.23+.
const KUBE_VERSION = "1.30.0";

interface Manifest {
  kind: string;
  apiVersion: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  // deno-lint-ignore no-explicit-any
  spec?: any;
  // deno-lint-ignore no-explicit-any
  [key: string]: any;
}

async function helm(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command("helm", { args, stdout: "piped", stderr: "piped" })
    .output();
  return {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr),
  };
}

async function render(...setArgs: string[]): Promise<Manifest[]> {
  const { code, stdout, stderr } = await helm([
    "template",
    "net",
    CHART,
    "--namespace",
    "monitoring",
    "--kube-version",
    KUBE_VERSION,
    ...setArgs,
  ]);
  assert.equal(code, 0, stderr);
  return parseAllDocuments(stdout).map((document) => document.toJS() as Manifest).filter(Boolean);
}

function only(manifests: Manifest[], kind: string): Manifest {
  const found = manifests.filter((manifest) => manifest.kind === kind);
  assert.equal(found.length, 1, `one ${kind}, found ${found.length}`);
  return found[0]!;
}

const HELM = { commands: ["helm"] };

Deno.test({
  name: "chart: helm lint passes",
  ignore: !requires("chart: helm lint", HELM),
  async fn() {
    const { code, stdout, stderr } = await helm([
      "lint",
      CHART,
      "--strict",
      "--kube-version",
      KUBE_VERSION,
    ]);
    assert.equal(code, 0, stdout + stderr);
    // helm lint's recommendations come as [INFO] lines (an icon, for one); there are none.
    assert.doesNotMatch(stdout + stderr, /\[(INFO|WARNING)\]/, stdout + stderr);
  },
});

Deno.test({
  name: "chart: default values render a hardened DaemonSet on every node and a pods-only Role",
  ignore: !requires("chart: defaults", HELM),
  async fn() {
    const manifests = await render();
    assert.deepEqual(manifests.map((manifest) => manifest.kind).sort(), [
      "DaemonSet",
      "Role",
      "RoleBinding",
      "Service",
      "ServiceAccount",
    ]);
    const daemonSet = only(manifests, "DaemonSet");
    const pod = daemonSet.spec.template.spec;
    // Kubernetes' recommended labels on every object and on the pods.
    for (
      const labels of [
        ...manifests.map((m) => m.metadata.labels),
        daemonSet.spec.template.metadata.labels,
      ]
    ) {
      assert.equal(labels!["app.kubernetes.io/name"], "net-exporter");
      assert.equal(labels!["app.kubernetes.io/instance"], "net");
      assert.equal(labels!["app.kubernetes.io/version"], "0.1.0");
      assert.equal(labels!["helm.sh/chart"], "net-exporter-0.1.0");
    }
    assert.equal(daemonSet.spec.revisionHistoryLimit, 10);
    assert.equal(pod.automountServiceAccountToken, true, "discovery reads pods with the token");
    assert.equal(pod.containers[0].image, "ghcr.io/net-exporter/net-exporter:0.1.0");
    assert.deepEqual(pod.tolerations, [{ operator: "Exists" }], "tolerates every taint");
    // None by default: a critical class outside kube-system gets no pod on quota-limited clusters.
    assert.equal(pod.priorityClassName, undefined);
    const critical = only(
      await render("--set", "priorityClassName=system-node-critical"),
      "DaemonSet",
    ) as { spec: { template: { spec: { priorityClassName?: string } } } };
    assert.equal(critical.spec.template.spec.priorityClassName, "system-node-critical");
    assert.equal(daemonSet.spec.updateStrategy.type, "RollingUpdate");
    // A percentage: an upgrade of 1,000 nodes in minutes, not hours (docs/scale.md).
    assert.equal(daemonSet.spec.updateStrategy.rollingUpdate.maxUnavailable, "10%");
    assert.ok(
      pod.terminationGracePeriodSeconds >= 15,
      "covers the 6 s linger and in-flight probes",
    );
    assert.equal(pod.hostNetwork, false);
    assert.equal(pod.serviceAccountName, "net-net-exporter");
    assert.deepEqual(pod.securityContext, {
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      seccompProfile: { type: "RuntimeDefault" },
    });
    const container = pod.containers[0];
    assert.deepEqual(container.securityContext, {
      allowPrivilegeEscalation: false,
      privileged: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    });
    assert.deepEqual(container.ports, [
      { name: "metrics", containerPort: 8000, protocol: "TCP" },
      { name: "echo", containerPort: 8000, protocol: "UDP" },
    ], "the echo collector answers on the same port number, over UDP");
    assert.equal(container.livenessProbe.httpGet.path, "/healthz");
    assert.equal(container.readinessProbe.httpGet.path, "/readyz");
    assert.equal(
      container.resources.limits.cpu,
      undefined,
      "no CPU limit: throttling distorts latency",
    );
    assert.ok(container.resources.requests.memory);
    const env = Object.fromEntries(
      container.env.map((
        variable: { name: string; valueFrom: { fieldRef: { fieldPath: string } } },
      ) => [
        variable.name,
        variable.valueFrom.fieldRef.fieldPath,
      ]),
    );
    assert.deepEqual(env, {
      POD_NAME: "metadata.name",
      POD_NAMESPACE: "metadata.namespace",
      POD_IP: "status.podIP",
      POD_IPS: "status.podIPs",
      NODE_NAME: "spec.nodeName",
    });
    assert.ok(
      container.args.includes(
        "--k8s.label-selector=app.kubernetes.io/name=net-exporter,app.kubernetes.io/instance=net",
      ),
    );
    assert.ok(container.args.includes("--network.max-peers=10"));
    assert.ok(container.args.includes("--web.listen-address=:8000"));
    // No NTP server by default: the exporter sends no NTP traffic.
    assert.ok(!container.args.some((arg: string) => arg.startsWith("--ntp.servers")));

    const role = only(manifests, "Role");
    assert.equal(role.metadata.namespace, "monitoring");
    assert.deepEqual(role.rules, [{
      apiGroups: [""],
      resources: ["pods"],
      verbs: ["get", "list", "watch"],
    }]);
    const binding = only(manifests, "RoleBinding");
    assert.deepEqual(binding.roleRef, {
      apiGroup: "rbac.authorization.k8s.io",
      kind: "Role",
      name: role.metadata.name,
    });
    assert.ok(
      !manifests.some((manifest) => manifest.kind.startsWith("Cluster")),
      "nothing cluster-wide",
    );
  },
});

Deno.test({
  name: "chart: every value reaches its flag",
  ignore: !requires("chart: values to flags", HELM),
  async fn() {
    const manifests = await render(
      "--set",
      "port=9100",
      "--set",
      "collectors.dns=false",
      "--set-json",
      'dns.hosts=["a.example.","b.example."]',
      "--set-json",
      'dns.servers=["10.96.0.10","[fd00::10]:53"]',
      "--set-json",
      'dns.recordTypes=["A","AAAA"]',
      "--set-json",
      'dns.protocols=["udp","tcp"]',
      "--set",
      "dns.interval=30s",
      "--set",
      "dns.timeout=1s",
      "--set",
      "dns.concurrency=4",
      "--set-json",
      "dns.buckets=[0.001,0.01,0.1]",
      "--set-json",
      'network.targets=["10.0.0.5:80"]',
      "--set",
      "network.interval=20s",
      "--set",
      "network.timeout=3s",
      "--set",
      "network.concurrency=50",
      "--set",
      "network.maxPeers=0",
      "--set-json",
      "network.buckets=[0.001,0.1,1]",
      "--set",
      "discovery.mode=auto",
      "--set",
      "log.level=debug",
      "--set",
      "log.format=text",
      "--set-json",
      'extraArgs=["--web.telemetry-path=/m"]',
      "--set",
      "hostNetwork=true",
      "--set",
      "updateStrategy.rollingUpdate.maxUnavailable=25%",
      "--set-json",
      'ntp.servers=["169.254.169.123","time.example:1123"]',
      "--set",
      "ntp.interval=2m",
      "--set",
      "ntp.timeout=3s",
      "--set-json",
      'echo.targets=["10.0.0.9:8000"]',
      "--set",
      "echo.interval=30s",
      "--set",
      "echo.timeout=3s",
      "--set",
      "echo.count=20",
      "--set",
      "echo.fullSize=1400",
      "--set",
      "echo.rateLimit=500",
      "--set",
      "echo.concurrency=8",
      "--set-json",
      "echo.buckets=[0.001,0.01]",
    );
    const pod = only(manifests, "DaemonSet").spec.template.spec;
    const args: string[] = pod.containers[0].args;
    for (
      const flag of [
        "--web.listen-address=:9100",
        "--network.port=9100",
        "--no-collector.dns",
        "--collector.network",
        "--dns.hosts=a.example.,b.example.",
        "--dns.servers=10.96.0.10,[fd00::10]:53",
        "--dns.record-types=A,AAAA",
        "--dns.protocols=udp,tcp",
        "--dns.interval=30s",
        "--dns.timeout=1s",
        "--dns.concurrency=4",
        "--dns.buckets=0.001,0.01,0.1",
        "--network.targets=10.0.0.5:80",
        "--network.interval=20s",
        "--network.timeout=3s",
        "--network.concurrency=50",
        "--network.max-peers=0",
        "--network.buckets=0.001,0.1,1",
        "--k8s.discovery=auto",
        "--log.level=debug",
        "--log.format=text",
        "--web.telemetry-path=/m",
        "--collector.ntp",
        "--ntp.servers=169.254.169.123,time.example:1123",
        "--ntp.interval=2m",
        "--ntp.timeout=3s",
        "--collector.echo",
        "--echo.targets=10.0.0.9:8000",
        "--echo.interval=30s",
        "--echo.timeout=3s",
        "--echo.count=20",
        "--echo.full-size=1400",
        "--echo.rate-limit=500",
        "--echo.concurrency=8",
        "--echo.buckets=0.001,0.01",
      ]
    ) {
      assert.ok(args.includes(flag), `${flag} in ${args.join(" ")}`);
    }
    assert.equal(pod.hostNetwork, true);
    assert.equal(pod.dnsPolicy, "ClusterFirstWithHostNet");
    assert.equal(pod.containers[0].ports[0].containerPort, 9100);
    assert.equal(
      only(manifests, "DaemonSet").spec.updateStrategy.rollingUpdate.maxUnavailable,
      "25%",
    );
  },
});

Deno.test({
  name: "chart: discovery off drops the Role",
  ignore: !requires("chart: discovery off", HELM),
  async fn() {
    const manifests = await render("--set", "discovery.mode=off");
    assert.ok(
      !manifests.some((manifest) => manifest.kind === "Role" || manifest.kind === "RoleBinding"),
    );
  },
});

Deno.test({
  name: "chart: monitoring objects and the network policy, each switched on by its value",
  ignore: !requires("chart: monitoring objects", HELM),
  async fn() {
    const manifests = await render(
      "--set",
      "serviceMonitor.enabled=true",
      "--set",
      "prometheusRule.enabled=true",
      "--set",
      "dashboard.enabled=true",
      "--set",
      "networkPolicy.enabled=true",
      "--set",
      "serviceMonitor.labels.release=kube-prometheus",
    );
    const monitor = only(manifests, "ServiceMonitor");
    assert.equal(monitor.metadata.labels!.release, "kube-prometheus");
    assert.deepEqual(monitor.spec.endpoints[0].relabelings, [
      { sourceLabels: ["__meta_kubernetes_pod_node_name"], targetLabel: "node" },
    ]);
    assert.equal(monitor.spec.jobLabel, "app.kubernetes.io/name");
    assert.equal(only(manifests, "Service").spec.clusterIP, "None");
    const rule = only(manifests, "PrometheusRule");
    const runbooks = await Deno.readTextFile(new URL("../docs/runbooks.md", import.meta.url));
    const anchors = new Set([...runbooks.matchAll(/^## (\w+)$/gm)].map((m) => m[1]!.toLowerCase()));
    for (const entry of rule.spec.groups[0].rules as Array<{ expr: string }>) {
      // Every series selector names the job, so another exporter's same-named series never mix in.
      const selectors = [
        ...entry.expr.matchAll(/\b([a-z_][a-z0-9_:]*)(\{[^}]*\})?(\[|\)| [=!<>])/g),
      ].filter((match) => /^(network|dns|ntp|echo|net_exporter|up)(_|:|$)/.test(match[1]!));
      assert.ok(selectors.length > 0, entry.expr);
      for (const selector of selectors) {
        assert.match(selector[2] ?? "", /job="net-exporter"/, `${selector[0]} in ${entry.expr}`);
      }
    }
    const alerts = rule.spec.groups[0].rules.filter((entry: { alert?: string }) => entry.alert)
      .map((entry: { alert: string; annotations: { runbook_url?: string } }) => {
        assert.equal(
          entry.annotations.runbook_url,
          `https://github.com/net-exporter/net-exporter/blob/main/docs/runbooks.md#${entry.alert.toLowerCase()}`,
        );
        assert.ok(anchors.has(entry.alert.toLowerCase()), `docs/runbooks.md has ${entry.alert}`);
        return entry.alert;
      });
    assert.deepEqual(alerts, [
      "NetExporterTargetUnreachable",
      "NetExporterObserverFailing",
      "NetExporterHighNetworkLatency",
      "NetExporterDNSErrors",
      "NetExporterClockSkew",
      "NetExporterDown",
      "NetExporterAbsent",
      "NetExporterProbesDelayed",
      "NetExporterDiscoveryStale",
      "NetExporterPacketLoss",
      "NetExporterMTUBlackhole",
    ]);
    const dashboard = only(manifests, "ConfigMap");
    assert.equal(dashboard.metadata.labels!.grafana_dashboard, "1");
    const json = JSON.parse(dashboard.data["net-exporter.json"]);
    const panelTypes = json.panels.map((panel: { type: string; title: string }) =>
      `${panel.type}: ${panel.title}`
    );
    assert.ok(panelTypes.some((title: string) => title.startsWith("heatmap")), "latency heatmap");
    assert.ok(
      json.panels.some((panel: { transformations?: Array<{ id: string }> }) =>
        panel.transformations?.some((transformation) => transformation.id === "groupingToMatrix")
      ),
      "source × target matrix",
    );
    assert.ok(panelTypes.some((title: string) => /errors by reason/i.test(title)));
    const policy = only(manifests, "NetworkPolicy");
    assert.deepEqual(policy.spec.ingress[0].ports, [{ port: "metrics", protocol: "TCP" }]);
    assert.deepEqual(policy.spec.ingress[1].ports, [{ port: 8000, protocol: "UDP" }], "echo");
    assert.equal(policy.spec.ingress[1].from.length, 1, "echo from the peers only");
    assert.equal(
      policy.spec.ingress[0].from.length,
      2,
      "from the monitoring namespace and from peers",
    );
  },
});

Deno.test({
  name: "chart: the knobs of prometheus-community's charts each render what they ask",
  ignore: !requires("chart: community knobs", HELM),
  async fn() {
    // An umbrella chart's globals are accepted; the two the chart reads are used.
    const globals = await render(
      "--set",
      "global.x=1",
      "--set",
      "global.imageRegistry=registry.example",
      "--set-json",
      'global.imagePullSecrets=[{"name":"shared"}]',
      "--set-json",
      'imagePullSecrets=[{"name":"own"}]',
    );
    const globalPod = only(globals, "DaemonSet").spec.template.spec;
    assert.equal(globalPod.containers[0].image, "registry.example/net-exporter/net-exporter:0.1.0");
    assert.deepEqual(globalPod.imagePullSecrets, [{ name: "own" }, { name: "shared" }]);

    const manifests = await render(
      "--set",
      "nameOverride=netx",
      "--set",
      "fullnameOverride=probe-mesh",
      "--set",
      "commonLabels.team=a",
      "--set",
      "rbac.create=false",
      "--set",
      "serviceAccount.create=false",
      "--set",
      "serviceAccount.name=shared-sa",
      "--set",
      "securityContext.runAsUser=null",
      "--set",
      "securityContext.runAsGroup=null",
      "--set",
      "securityContext.fsGroup=1000700000",
      "--set",
      "containerSecurityContext.runAsNonRoot=true",
      "--set",
      "image.registry=registry.example:5000",
      "--set",
      "image.repository=team/net-exporter",
      "--set",
      `image.digest=sha256:${"a".repeat(64)}`,
      "--set",
      "podMonitor.enabled=true",
      "--set",
      "podMonitor.namespace=prometheus",
      "--set",
      "podMonitor.labels.release=kps",
      "--set-json",
      'podMonitor.relabelings=[{"targetLabel":"cluster","replacement":"eu-1"}]',
      "--set-json",
      'podMonitor.metricRelabelings=[{"action":"drop","sourceLabels":["__name__"],"regex":"process_.*"}]',
      "--set",
      "podMonitor.attachMetadata.node=true",
      "--set",
      "prometheusRule.enabled=true",
      "--set",
      "prometheusRule.alerts.NetExporterClockSkew.enabled=false",
      "--set",
      "service.annotations.team=a",
      "--set-json",
      'extraEnv=[{"name":"NET_EXPORTER_LOG_LEVEL","value":"debug"}]',
      "--set-json",
      'extraVolumes=[{"name":"ca","configMap":{"name":"ca"}}]',
      "--set-json",
      'extraVolumeMounts=[{"name":"ca","mountPath":"/etc/ca"}]',
      "--set-json",
      'dnsConfig={"options":[{"name":"ndots","value":"1"}]}',
      "--set",
      "readinessProbe.periodSeconds=20",
      "--set",
      "revisionHistoryLimit=3",
    );
    const kinds = manifests.map((manifest) => manifest.kind).sort();
    assert.deepEqual(kinds, ["DaemonSet", "PodMonitor", "PrometheusRule", "Service"]);
    for (const manifest of manifests) {
      assert.equal(manifest.metadata.labels!.team, "a", `${manifest.kind} has commonLabels`);
      assert.equal(manifest.metadata.labels!["app.kubernetes.io/name"], "netx");
      if (manifest.kind !== "PodMonitor" && manifest.kind !== "PrometheusRule") {
        assert.equal(manifest.metadata.name, "probe-mesh");
      }
    }
    const daemonSet = only(manifests, "DaemonSet");
    const pod = daemonSet.spec.template.spec;
    assert.equal(daemonSet.spec.template.metadata.labels.team, "a");
    assert.equal(daemonSet.spec.revisionHistoryLimit, 3);
    assert.equal(pod.serviceAccountName, "shared-sa");
    assert.deepEqual(pod.securityContext, {
      runAsNonRoot: true,
      fsGroup: 1000700000,
      seccompProfile: { type: "RuntimeDefault" },
    }, "OpenShift's restricted SCC picks the UID");
    const container = pod.containers[0];
    assert.equal(container.securityContext.runAsNonRoot, true);
    assert.equal(container.securityContext.readOnlyRootFilesystem, true, "defaults stay");
    assert.equal(
      container.image,
      `registry.example:5000/team/net-exporter@sha256:${"a".repeat(64)}`,
    );
    assert.ok(
      container.args.includes(
        "--k8s.label-selector=app.kubernetes.io/name=netx,app.kubernetes.io/instance=net",
      ),
      "discovery selects the renamed pods",
    );
    assert.deepEqual(container.env.at(-1), { name: "NET_EXPORTER_LOG_LEVEL", value: "debug" });
    assert.deepEqual(container.volumeMounts, [{ name: "ca", mountPath: "/etc/ca" }]);
    assert.deepEqual(pod.volumes, [{ name: "ca", configMap: { name: "ca" } }]);
    assert.deepEqual(pod.dnsConfig, { options: [{ name: "ndots", value: "1" }] });
    assert.equal(container.readinessProbe.periodSeconds, 20);
    assert.equal(container.readinessProbe.httpGet.path, "/readyz");
    assert.equal(only(manifests, "Service").metadata.annotations!.team, "a");

    const monitor = only(manifests, "PodMonitor");
    assert.equal(monitor.metadata.namespace, "prometheus");
    assert.equal(monitor.metadata.labels!.release, "kps");
    assert.deepEqual(monitor.spec.namespaceSelector, { matchNames: ["monitoring"] });
    assert.deepEqual(monitor.spec.attachMetadata, { node: true });
    assert.equal(monitor.spec.jobLabel, "app.kubernetes.io/name");
    const endpoint = monitor.spec.podMetricsEndpoints[0];
    assert.equal(endpoint.port, "metrics");
    assert.deepEqual(endpoint.relabelings, [
      { sourceLabels: ["__meta_kubernetes_pod_node_name"], targetLabel: "node" },
      { targetLabel: "cluster", replacement: "eu-1" },
    ], "the chart's node label first, then the user's");
    assert.deepEqual(endpoint.metricRelabelings, [
      { action: "drop", sourceLabels: ["__name__"], regex: "process_.*" },
    ]);

    const rules = only(manifests, "PrometheusRule").spec.groups[0].rules as Array<
      { alert?: string; expr: string }
    >;
    assert.ok(!rules.some((rule) => rule.alert === "NetExporterClockSkew"), "turned off alone");
    assert.ok(rules.some((rule) => rule.alert === "NetExporterDown"));
    for (const rule of rules) assert.match(rule.expr, /job="netx"/, "the renamed job");

    // A ServiceMonitor in another namespace still finds the Service, and takes the same knobs.
    const service = await render(
      "--set",
      "serviceMonitor.enabled=true",
      "--set",
      "serviceMonitor.namespace=prometheus",
      "--set-json",
      'serviceMonitor.relabelings=[{"targetLabel":"cluster","replacement":"eu-1"}]',
      "--set",
      "serviceMonitor.jobLabel=app.kubernetes.io/instance",
      "--set",
      "prometheusRule.enabled=true",
    );
    const serviceMonitor = only(service, "ServiceMonitor");
    assert.equal(serviceMonitor.metadata.namespace, "prometheus");
    assert.deepEqual(serviceMonitor.spec.namespaceSelector, { matchNames: ["monitoring"] });
    assert.equal(serviceMonitor.spec.endpoints[0].relabelings.length, 2);
    for (const rule of only(service, "PrometheusRule").spec.groups[0].rules) {
      assert.match(rule.expr, /job="net"/, "the job follows the jobLabel: the instance label");
    }

    // Without a Service or an account of its own the chart renders neither; both monitors at once,
    // or a ServiceMonitor without its Service, are refused in one line.
    const bare = await render(
      "--set",
      "service.enabled=false",
      "--set",
      "serviceAccount.create=false",
    );
    assert.ok(!bare.some((m) => m.kind === "Service" || m.kind === "ServiceAccount"));
    assert.equal(only(bare, "DaemonSet").spec.template.spec.serviceAccountName, "default");
    for (
      const [args, pattern] of [
        [["--set", "serviceMonitor.enabled=true", "--set", "podMonitor.enabled=true"], /both true/],
        [
          ["--set", "serviceMonitor.enabled=true", "--set", "service.enabled=false"],
          /needs service/,
        ],
        [[
          "--set",
          "serviceMonitor.enabled=true",
          "--set",
          "serviceMonitor.jobLabel=tier",
          "--set",
          "prometheusRule.enabled=true",
        ], /jobLabel "tier"/],
      ] as const
    ) {
      const { code, stderr } = await helm([
        "template",
        "net",
        CHART,
        "--kube-version",
        KUBE_VERSION,
        ...args,
      ]);
      assert.notEqual(code, 0, args.join(" "));
      assert.match(stderr.trim().split("\n")[0]!, pattern);
    }
  },
});

Deno.test({
  name: "chart: NOTES.txt says when the placeholder image is still in use",
  ignore: !requires("chart: notes", HELM),
  async fn() {
    // helm renders NOTES.txt only on install, which needs a cluster: a copy of the chart with the
    // notes as an ordinary template renders them with `helm template --show-only`.
    const dir = await Deno.makeTempDir({ prefix: "chart-notes-" });
    try {
      await new Deno.Command("cp", { args: ["-r", CHART, `${dir}/chart`] }).output();
      const notesTemplate = `${dir}/chart/templates/NOTES.txt`;
      await Deno.writeTextFile(
        `${dir}/chart/templates/notes.yaml`,
        `{{- define "notes-under-test" }}${await Deno.readTextFile(notesTemplate)}{{ end }}\n` +
          `notes: {{ include "notes-under-test" . | toJson }}\n`,
      );
      await Deno.remove(notesTemplate);
      const notes = async (...args: string[]) => {
        const { code, stdout, stderr } = await helm([
          "template",
          "net",
          `${dir}/chart`,
          "--kube-version",
          KUBE_VERSION,
          "--show-only",
          "templates/notes.yaml",
          ...args,
        ]);
        assert.equal(code, 0, stderr);
        const { notes } = parseAllDocuments(stdout)[0]!.toJS() as { notes: string };
        assert.match(notes, /runs on every node/);
        return notes;
      };
      assert.match(await notes(), /placeholder/);
      assert.doesNotMatch(
        await notes("--set", "image.repository=team/net-exporter", "--set", "image.tag=0.1.0"),
        /placeholder/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "chart: the schema rejects wrong types and unknown keys; the rule rejects a threshold no bucket can express",
  ignore: !requires("chart: schema", HELM),
  async fn() {
    // Helm's schema errors are worded by its JSON-schema library, which changed in helm 3.18:
    // the test checks that the value is refused and named, not helm's sentence.
    const schema = /schema/i;
    const cases: Array<[string[], RegExp[]]> = [
      [["--set", "port=http"], [schema, /port/]],
      [["--set", "bogus=1"], [schema, /bogus/]],
      [["--set", "dns.bogus=1"], [schema, /bogus/]],
      [["--set", "dns.interval=soon"], [schema, /interval/]],
      [["--set", "network.maxPeers=-1"], [schema, /maxPeers/]],
      [["--set", "discovery.mode=maybe"], [schema, /mode/]],
      [["--set", "serviceMonitor.enabled=yes"], [schema, /enabled/]],
      [[
        "--set",
        "prometheusRule.enabled=true",
        "--set-json",
        "prometheusRule.latencyP95Seconds=0.3",
      ], [/not a bucket edge/]],
      // What the exporter would refuse at start is refused at render time, naming both values.
      [["--set", "network.timeout=20s"], [
        /network\.timeout=20s is not below network\.interval=15s/,
      ]],
      [["--set", "dns.interval=1s", "--set", "dns.timeout=1000ms"], [/dns\.timeout=1000ms/]],
      [["--set", "ntp.timeout=60s"], [/ntp\.timeout=60s is not below ntp\.interval=60s/]],
      // --set gives a float as text: it is read as the number it spells, and checked as one.
      [["--set", "prometheusRule.enabled=true", "--set", "prometheusRule.quorum=1.5"], [
        /prometheusRule\.quorum=1\.5 must be above 0 and at most 1/,
      ]],
    ];
    for (const [args, message] of cases) {
      const { code, stderr } = await helm([
        "template",
        "net",
        CHART,
        "--kube-version",
        KUBE_VERSION,
        ...args,
      ]);
      assert.notEqual(code, 0, args.join(" "));
      for (const pattern of message) assert.match(stderr, pattern, args.join(" "));
      // The chart's own refusals say everything in helm's one error line (helm adds a hint
      // after it); schema errors come as helm's list.
      if (!message.includes(schema)) {
        const first = stderr.trim().split("\n")[0]!;
        for (const pattern of message) assert.match(first, pattern, `one line: ${stderr}`);
      }
    }
    // Floats from --set (text) pass where they are valid.
    const { code, stdout, stderr } = await helm([
      "template",
      "net",
      CHART,
      "--kube-version",
      KUBE_VERSION,
      "--set",
      "prometheusRule.enabled=true",
      "--set",
      "prometheusRule.latencyP95Seconds=0.28",
      "--set",
      "prometheusRule.quorum=0.5",
    ]);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /0\.28/);
  },
});

/**
 * The chart's PrometheusRule rendered with the defaults into `rules.yaml` of a
 * new directory, with the named alert tests (tests/alerts/) copied beside it.
 */
async function renderedRules(prefix: string, tests: readonly string[]): Promise<string> {
  const rule = only(
    await render("--namespace", "default", "--set", "prometheusRule.enabled=true"),
    "PrometheusRule",
  );
  const dir = await Deno.makeTempDir({ prefix });
  await Deno.writeTextFile(`${dir}/rules.yaml`, JSON.stringify(rule.spec));
  for (const file of tests) {
    await Deno.copyFile(new URL(`./alerts/${file}`, import.meta.url).pathname, `${dir}/${file}`);
  }
  return dir;
}

/** Runs `promtool` (a path or Debian's on the PATH) in `dir`; it must succeed and say SUCCESS. */
async function assertPromtool(promtool: string, args: readonly string[], dir: string) {
  const output = await new Deno.Command(promtool, {
    args: [...args],
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const report = new TextDecoder().decode(output.stdout) +
    new TextDecoder().decode(output.stderr);
  assert.ok(output.success, `${promtool} ${args.join(" ")}:\n${report}`);
  assert.match(report, /SUCCESS/);
}

const RULES = "chart: the alert rules pass promtool check rules and their own promtool test rules";
Deno.test({
  name: RULES,
  ignore: !requires(RULES, { commands: ["helm", "promtool"] }),
  async fn() {
    const dir = await renderedRules("rules-", ["net-exporter.rules.test.yaml"]);
    try {
      await assertPromtool("promtool", ["check", "rules", "rules.yaml"], dir);
      await assertPromtool("promtool", ["test", "rules", "net-exporter.rules.test.yaml"], dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const NATIVE_RULES =
  "chart: the rules answer from native histograms alone (promtool 3 test rules, native input)";
Deno.test({
  name: NATIVE_RULES,
  ignore: !requires(NATIVE_RULES, { commands: ["helm"] }) ||
    !requiresPrometheus3(NATIVE_RULES),
  async fn() {
    const tests = ["net-exporter.native.test.yaml", "net-exporter.rules.test.yaml"];
    const dir = await renderedRules("native-rules-", tests);
    try {
      // The classic tests too: Prometheus 3's promtool and engine must agree with 2.42's.
      for (const file of tests) {
        await assertPromtool(prometheus3Bin("promtool")!, ["test", "rules", file], dir);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const PANELS =
  "chart: every dashboard query, and every query of docs/queries.md, is valid PromQL (promtool check rules)";
Deno.test({
  name: PANELS,
  ignore: !requires(PANELS, { commands: ["promtool"] }),
  async fn() {
    const dashboard = JSON.parse(
      await Deno.readTextFile(new URL("../chart/dashboards/net-exporter.json", import.meta.url)),
    );
    // Grafana's variables, replaced by what they stand for.
    const panels = (dashboard.panels as Array<{ targets?: Array<{ expr: string }> }>)
      .flatMap((panel) => panel.targets ?? []).map((target) =>
        target.expr.replaceAll("$__rate_interval", "5m").replace(/\$\w+/g, ".*")
      );
    assert.ok(panels.length >= 6, `queries: ${panels.length}`);
    // The PromQL of docs/queries.md, each ```promql block, is checked the same way.
    const guide = await Deno.readTextFile(new URL("../docs/queries.md", import.meta.url));
    const documented = [...guide.matchAll(/```promql\n([\s\S]*?)```/g)].map((match) => match[1]!);
    assert.ok(documented.length >= 10, `documented queries: ${documented.length}`);
    const exprs = [...panels, ...documented];
    const dir = await Deno.makeTempDir({ prefix: "panels-" });
    try {
      const rules = exprs.map((expr, index) => ({ record: `panel:query${index}`, expr }));
      await Deno.writeTextFile(
        `${dir}/panels.yaml`,
        JSON.stringify({ groups: [{ name: "panels", rules }] }),
      );
      const output = await new Deno.Command("promtool", {
        args: ["check", "rules", `${dir}/panels.yaml`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const report = new TextDecoder().decode(output.stdout) +
        new TextDecoder().decode(output.stderr);
      assert.ok(output.success, report);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "chart: a web config Secret turns on TLS and basic auth, and the probes and ServiceMonitor follow",
  ignore: !requires("chart: web config", HELM),
  async fn() {
    const manifests = await render(
      "--set",
      "webConfig.secretName=net-exporter-web",
      "--set",
      "webConfig.scheme=https",
      "--set",
      "serviceMonitor.enabled=true",
      "--set",
      "serviceMonitor.tlsConfig.serverName=net-exporter",
      "--set",
      "serviceMonitor.basicAuth.username.name=net-exporter-web",
      "--set",
      "serviceMonitor.basicAuth.username.key=user",
    );
    // deno-lint-ignore no-explicit-any
    const pod = (only(manifests, "DaemonSet") as any).spec.template.spec;
    const container = pod.containers[0];
    assert.ok(container.args.includes("--web.config.file=/etc/net-exporter/web/web.yml"));
    assert.deepEqual(container.volumeMounts, [
      { name: "web-config", mountPath: "/etc/net-exporter/web", readOnly: true },
    ]);
    assert.deepEqual(pod.volumes, [
      { name: "web-config", secret: { secretName: "net-exporter-web" } },
    ]);
    assert.equal(container.livenessProbe.httpGet.scheme, "HTTPS");
    assert.equal(container.readinessProbe.httpGet.scheme, "HTTPS");
    // deno-lint-ignore no-explicit-any
    const endpoint = (only(manifests, "ServiceMonitor") as any).spec.endpoints[0];
    assert.equal(endpoint.scheme, "https");
    assert.deepEqual(endpoint.tlsConfig, { serverName: "net-exporter" });
    assert.deepEqual(endpoint.basicAuth, { username: { name: "net-exporter-web", key: "user" } });

    // Without it: plain HTTP, nothing mounted.
    // deno-lint-ignore no-explicit-any
    const plain = (only(await render(), "DaemonSet") as any).spec.template.spec;
    assert.equal(plain.volumes, undefined);
    assert.ok(!plain.containers[0].args.some((arg: string) => arg.startsWith("--web.config")));
    assert.equal(plain.containers[0].livenessProbe.httpGet.scheme, "HTTP");

    // Client certificates required: the kubelet has none, so the probes only open the port.
    const mutual = (only(
      await render(
        "--set",
        "webConfig.secretName=w",
        "--set",
        "webConfig.scheme=https",
        "--set",
        "webConfig.tcpProbes=true",
      ),
      "DaemonSet",
      // deno-lint-ignore no-explicit-any
    ) as any).spec.template.spec.containers[0];
    assert.deepEqual(mutual.livenessProbe.tcpSocket, { port: "metrics" });
    assert.deepEqual(mutual.readinessProbe.tcpSocket, { port: "metrics" });
    assert.equal(mutual.readinessProbe.httpGet, undefined);
  },
});
