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
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
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
      "ServiceAccount",
    ]);
    const daemonSet = only(manifests, "DaemonSet");
    const pod = daemonSet.spec.template.spec;
    assert.deepEqual(pod.tolerations, [{ operator: "Exists" }], "tolerates every taint");
    // None by default: a critical class outside kube-system gets no pod on quota-limited clusters.
    assert.equal(pod.priorityClassName, undefined);
    const critical = only(
      await render("--set", "priorityClassName=system-node-critical"),
      "DaemonSet",
    ) as { spec: { template: { spec: { priorityClassName?: string } } } };
    assert.equal(critical.spec.template.spec.priorityClassName, "system-node-critical");
    assert.equal(daemonSet.spec.updateStrategy.type, "RollingUpdate");
    assert.equal(daemonSet.spec.updateStrategy.rollingUpdate.maxUnavailable, 1);
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
    assert.deepEqual(container.ports, [{ name: "metrics", containerPort: 8000, protocol: "TCP" }]);
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
      "updateStrategy.maxUnavailable=25%",
      "--set-json",
      'ntp.servers=["169.254.169.123","time.example:1123"]',
      "--set",
      "ntp.interval=2m",
      "--set",
      "ntp.timeout=3s",
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
      ]
    ) {
      assert.ok(args.includes(flag), `${flag} in ${args.join(" ")}`);
    }
    assert.equal(pod.hostNetwork, true);
    assert.equal(pod.dnsPolicy, "ClusterFirstWithHostNet");
    assert.equal(pod.containers[0].ports[0].containerPort, 9100);
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
    assert.equal(only(manifests, "Service").spec.clusterIP, "None");
    const rule = only(manifests, "PrometheusRule");
    const alerts = rule.spec.groups[0].rules.filter((entry: { alert?: string }) => entry.alert)
      .map((entry: { alert: string; annotations: { runbook?: string } }) => {
        assert.ok(entry.annotations.runbook, `${entry.alert} has a runbook line`);
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
    assert.equal(
      policy.spec.ingress[0].from.length,
      2,
      "from the monitoring namespace and from peers",
    );
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
      "prometheusRule.latencyP95Seconds=0.25",
      "--set",
      "prometheusRule.quorum=0.5",
    ]);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /0\.25/);
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

const PANELS = "chart: every dashboard query is valid PromQL (promtool check rules)";
Deno.test({
  name: PANELS,
  ignore: !requires(PANELS, { commands: ["promtool"] }),
  async fn() {
    const dashboard = JSON.parse(
      await Deno.readTextFile(new URL("../chart/dashboards/net-exporter.json", import.meta.url)),
    );
    // Grafana's variables, replaced by what they stand for.
    const exprs = (dashboard.panels as Array<{ targets?: Array<{ expr: string }> }>)
      .flatMap((panel) => panel.targets ?? []).map((target) =>
        target.expr.replaceAll("$__rate_interval", "5m").replace(/\$\w+/g, ".*")
      );
    assert.ok(exprs.length >= 6, `queries: ${exprs.length}`);
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
