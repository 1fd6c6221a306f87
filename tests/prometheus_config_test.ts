/**
 * The harness's translation of the chart's ServiceMonitor into a Prometheus
 * scrape job (tests/sim/prometheus.ts): what the chart renders decides what
 * Prometheus does, and Prometheus accepts the result.
 */

import { assert } from "./helpers/assert.ts";
import { prometheus3Bin, requiresPrometheus3 } from "./helpers/prometheus3.ts";
import { requires } from "./helpers/requirements.ts";
import {
  endpointTargets,
  renderMonitoring,
  sanitizeLabelName,
  scrapeJob,
} from "./sim/prometheus.ts";

const NAME =
  "prometheus config: the scrape job follows the rendered ServiceMonitor, and promtool accepts it";
Deno.test({
  name: NAME,
  ignore: !requires(NAME, { commands: ["helm", "promtool"] }),
  async fn() {
    const defaults = await renderMonitoring("net-exporter", "monitoring", {});
    const job = scrapeJob(defaults.serviceMonitor, defaults.service, { file: "/tmp/targets.json" });
    assert.equal(job.scrape_interval, "30s");
    assert.equal(job.scrape_timeout, "10s");
    assert.equal(job.metrics_path, "/metrics");
    assert.equal(job.scheme, "http");
    const relabel = job.relabel_configs as Array<Record<string, unknown>>;
    // The ServiceMonitor's own relabeling comes last: the node the pod runs on.
    assert.deepEqual(relabel.at(-1), {
      source_labels: ["__meta_kubernetes_pod_node_name"],
      target_label: "node",
    });
    // The Service is kept by every label of the ServiceMonitor's selector, the endpoint by port name.
    for (const [name, value] of Object.entries(defaults.serviceMonitor.spec.selector.matchLabels)) {
      assert.ok(
        relabel.some((rule) =>
          rule.action === "keep" &&
          (rule.source_labels as string[])[0] ===
            `__meta_kubernetes_service_label_${sanitizeLabelName(name)}` &&
          rule.regex === `(${value});true`
        ),
        `keeps ${name}=${value}`,
      );
    }
    assert.ok(relabel.some((rule) => rule.action === "keep" && rule.regex === "metrics"));

    // A change to the chart's values changes the job.
    const changed = await renderMonitoring("net-exporter", "monitoring", {
      "serviceMonitor.interval": "7s",
      "serviceMonitor.scrapeTimeout": "3s",
      "webConfig.scheme": "https",
    });
    const changedJob = scrapeJob(changed.serviceMonitor, changed.service, { file: "/tmp/t.json" });
    assert.equal(changedJob.scrape_interval, "7s");
    assert.equal(changedJob.scrape_timeout, "3s");
    assert.equal(changedJob.scheme, "https");

    // Histograms: classic by default (no field); native and both ask for protobuf and keep what
    // they say, spelled for each Prometheus.
    assert.equal(job.scrape_native_histograms, undefined);
    for (const [mode, classic] of [["native", undefined], ["both", true]] as const) {
      const rendered = await renderMonitoring("net-exporter", "monitoring", {
        "serviceMonitor.histograms": mode,
      });
      const v3 = scrapeJob(rendered.serviceMonitor, rendered.service, { file: "/t.json" }, 3);
      assert.equal(v3.scrape_native_histograms, true);
      assert.equal((v3.scrape_protocols as string[])[0], "PrometheusProto");
      assert.equal(v3.always_scrape_classic_histograms, classic);
      const v2 = scrapeJob(rendered.serviceMonitor, rendered.service, { file: "/t.json" }, 2);
      assert.equal(v2.scrape_classic_histograms, classic);
      assert.equal(v2.scrape_native_histograms, undefined, "2.x: a feature flag, not a field");
    }

    // Targets carry the meta labels the relabelings read; terminating pods are gone.
    const targets = endpointTargets(defaults.service, [
      {
        name: "p1",
        node: "node-a",
        ip: "10.0.0.1",
        ready: true,
        terminating: false,
        phase: "Running",
      },
      {
        name: "p2",
        node: "node-b",
        ip: "10.0.0.2",
        ready: false,
        terminating: false,
        phase: "Running",
      },
      {
        name: "p3",
        node: "node-c",
        ip: "10.0.0.3",
        ready: false,
        terminating: true,
        phase: "Running",
      },
    ]) as Array<{ targets: string[]; labels: Record<string, string> }>;
    assert.deepEqual(targets.map((group) => group.targets[0]), ["10.0.0.1:8000", "10.0.0.2:8000"]);
    assert.equal(targets[1]!.labels.__meta_kubernetes_pod_node_name, "node-b");
    assert.equal(targets[1]!.labels.__meta_kubernetes_endpoint_ready, "false");

    // Prometheus itself accepts the job and the rendered rules.
    const dir = await Deno.makeTempDir({ prefix: "prometheus-config-" });
    try {
      await Deno.writeTextFile(`${dir}/targets.json`, JSON.stringify(targets));
      await Deno.writeTextFile(`${dir}/rules.yml`, JSON.stringify({ groups: defaults.ruleGroups }));
      await Deno.writeTextFile(
        `${dir}/prometheus.yml`,
        JSON.stringify({
          rule_files: [`${dir}/rules.yml`],
          scrape_configs: [
            scrapeJob(defaults.serviceMonitor, defaults.service, { file: `${dir}/targets.json` }),
          ],
        }),
      );
      const output = await new Deno.Command("promtool", {
        args: ["check", "config", `${dir}/prometheus.yml`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(output.stdout) +
        new TextDecoder().decode(output.stderr);
      assert.ok(output.success, text);
      // Prometheus 3 accepts the job that asks for native and classic histograms.
      const promtool3 = prometheus3Bin("promtool");
      if (promtool3) {
        const both = await renderMonitoring("net-exporter", "monitoring", {
          "serviceMonitor.histograms": "both",
        });
        await Deno.writeTextFile(
          `${dir}/prometheus3.yml`,
          JSON.stringify({
            rule_files: [`${dir}/rules.yml`],
            scrape_configs: [
              scrapeJob(both.serviceMonitor, both.service, { file: `${dir}/targets.json` }, 3),
            ],
          }),
        );
        const checked = await new Deno.Command(promtool3, {
          args: ["check", "config", `${dir}/prometheus3.yml`],
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.ok(
          checked.success,
          new TextDecoder().decode(checked.stdout) + new TextDecoder().decode(checked.stderr),
        );
      } else {
        requiresPrometheus3("prometheus config: Prometheus 3 accepts the native-histogram job");
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
