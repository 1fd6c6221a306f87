/**
 * The scale run's projection (tests/cluster/scale_report.ts): the API
 * server's load at N nodes from the per-unit costs a run measured, for
 * net-exporter, the original and goldpinger, and the judgement of a run.
 */

import { assert } from "./helpers/assert.ts";
import type { PlaneUsage, SizeResult } from "./cluster/scale.ts";
import {
  bytes,
  count,
  judge,
  markdown,
  project,
  rolloutFit,
  type ScaleReport,
} from "./cluster/scale_report.ts";

const usage: PlaneUsage = {
  seconds: 60,
  apiserver_cpu_seconds: 6,
  apiserver_cores: 0.1,
  apiserver_rss_mib_max: 400,
  etcd_cpu_seconds: 1.2,
  etcd_cores: 0.02,
  etcd_rss_mib_max: 60,
};

/** A 1,000-node run: 5 changes per pod replaced, 8 KB per event and per listed pod. */
function size(overrides: Partial<SizeResult> = {}): SizeResult {
  return {
    nodes: 1_000,
    real: 10,
    baseline: usage,
    install: { seconds: 100, usage },
    steady: {
      usage,
      real_lists_per_pod_per_hour: 0,
      real_watches_per_pod_per_hour: 12,
      lists_per_pod_per_hour: 0,
      watches_per_pod_per_hour: 12,
      requests_peak_per_second: 40,
      events_per_exporter_per_minute: 1,
      bytes_per_exporter_per_minute: 200,
      pod_changes_in_window: 0,
      real_rss_mib: { min: 80, max: 90 },
      real_heap_mib_max: 30,
      real_cores_max: 0.02,
      real_discovered_min: 999,
      real_selected: [10],
    },
    lists: {
      pods: 1_000,
      bytes: 8_000_000,
      etcd_ms: 200,
      etcd_apiserver_cpu_ms: 150,
      etcd_etcd_cpu_ms: 40,
      cache_ms: 100,
      cache_apiserver_cpu_ms: 80,
      cache_etcd_cpu_ms: 0,
    },
    endpoints_bytes: 150_000,
    endpoints_addresses: 1_000,
    service_bytes: 1_000,
    upgrade: {
      max_unavailable: "chart default",
      pods_replaced: 1_000,
      seconds: 300,
      max_unavailable_seen: 100,
      usage,
      dial_errors_counted: 0,
      stale_series: 0,
      changes_per_pod_replaced: 5,
      events_per_change_per_exporter: 1,
      bytes_per_event: 8_000,
      apiserver_events_per_change: 1_003,
      lists_by_new_exporters: 990,
      list_bytes_per_pod: 8_000,
      real_seconds_to_peer_list: [0.5, 0.9],
      hollow_failures: 0,
      agent_watch_restarts: 0,
      hollow_watches_open: { average: 900, max: 990 },
    },
    restart: {
      restart_seconds: 10,
      seconds_to_every_real_current: 12,
      relists_real: 10,
      relists_hollow: 990,
      rewatches_hollow: 990,
      usage,
    },
    uninstall_seconds: 60,
    ...overrides,
  };
}

Deno.test("scale projection: a rollout's watch traffic grows with the square of the nodes, its time with the nodes", () => {
  const at1000 = project(size(), 1_000);
  const at5000 = project(size(), 5_000);
  // Every pod replaced makes 5 changes, each sent to every one of N exporters.
  assert.equal(at1000.rollout_events, 5 * 1_000 * 1_000);
  assert.equal(at5000.rollout_events, 5 * 5_000 * 5_000);
  assert.equal(at5000.rollout_event_bytes, 5 * 5_000 * 5_000 * 8_000);
  // Every new pod lists every pod.
  assert.equal(at5000.rollout_list_bytes, 5_000 * 5_000 * 8_000);
  assert.equal(at1000.rollout_minutes, 5);
  assert.equal(at5000.rollout_minutes, 25);
  assert.equal(at5000.rollout_events_per_second, at5000.rollout_events / (25 * 60));
  // Steady: 12 watches per pod per hour, 1 bookmark a minute each.
  assert.equal(at5000.steady_requests_per_second, 5_000 * 12 / 3600);
  assert.equal(at5000.steady_events_per_second, 5_000 / 60);

  // Exporters that are sent only some of the changes (running pods only) cost that share.
  const filtered = project(
    size({ upgrade: { ...size().upgrade, events_per_change_per_exporter: 0.6 } }),
    5_000,
  );
  assert.equal(filtered.rollout_events, 3 * 5_000 * 5_000);
  assert.equal(filtered.rollout_event_bytes, 3 * 5_000 * 5_000 * 8_000);
});

Deno.test("scale projection: the original GETs its Service and Endpoints per scrape, capped at 1,000 addresses; goldpinger lists every pod every 30 s", () => {
  const at300 = project(size(), 300);
  const at5000 = project(size(), 5_000);
  assert.equal(at300.original_requests_per_second, 2 * 300 / 30);
  assert.equal(at300.original_bytes_per_second, 300 / 30 * (1_000 + 150 * 300));
  // Kubernetes truncates Endpoints at 1,000 addresses: the bytes per GET stop growing.
  assert.equal(at5000.original_bytes_per_second, 5_000 / 30 * (1_000 + 150 * 1_000));
  assert.equal(at5000.goldpinger_requests_per_second, 5_000 / 30);
  assert.equal(at5000.goldpinger_bytes_per_second, 5_000 / 30 * 5_000 * 8_000);
});

Deno.test("scale report: figures in words, and a run judged by what it must show", () => {
  assert.equal(bytes(950), "950 B");
  assert.equal(bytes(8_100), "8.1 KB");
  assert.equal(bytes(1.2e12), "1.2 TB");
  assert.equal(count(153_800_000), "153.8 M");
  assert.equal(count(1_039), "1,039");
  assert.equal(count(0.5), "0.5");
  const report: ScaleReport = {
    started: "2026-12-05T17:00Z",
    machine: "linux/x86_64, 2 cores",
    kubernetes: "v1.34.2",
    etcd: "3.4.23",
    real: 10,
    sizes: [size()],
    chart_max_unavailable: "10%",
    agent_errors: [],
    hollow_errors: [],
    hollow_failure_samples: [],
  };
  const text = markdown(report);
  assert.match(text, /\| 1000 nodes \| 5000 nodes \|/);
  assert.match(text, /maxUnavailable` is 10%/);
  assert.deepEqual(judge(report), []);
  const bad = judge({
    ...report,
    sizes: [size({
      upgrade: { ...size().upgrade, dial_errors_counted: 3, stale_series: 2, seconds: 700 },
    })],
  });
  assert.equal(bad.length, 3, bad.join("\n"));
});

Deno.test("scale projection: an upgrade's length from a straight line through the sizes measured", () => {
  const fit = rolloutFit([
    size({ nodes: 100, upgrade: { ...size().upgrade, seconds: 70 } }),
    size({ nodes: 300, upgrade: { ...size().upgrade, seconds: 90 } }),
    size({ nodes: 1_000, upgrade: { ...size().upgrade, seconds: 160 } }),
  ]);
  // 60 s of fixed waits and 0.1 s a pod.
  assert.ok(Math.abs(fit(5_000) - 560) < 1e-6, String(fit(5_000)));
  const at5000 = project(size(), 5_000, fit);
  assert.ok(Math.abs(at5000.rollout_minutes - 560 / 60) < 1e-6);
  // From one size: proportional to the nodes.
  assert.equal(rolloutFit([size()])(5_000), 1_500);
});
