/**
 * The small version of `deno task cluster:scale` that CI runs: the real
 * control plane with three real nodes and ten hollow ones (kubemark-like,
 * tests/cluster/hollow.ts), every phase of one size at short windows. It
 * proves the harness itself on a fresh machine (hollow nodes registered and
 * kept Ready, their pods placed by the real DaemonSet controller and
 * scheduler, hollow exporters listing and watching as the exporter does)
 * and the claims the 1,000-node run rests on: an upgrade at the chart's
 * defaults with no dial error and no series left for pods gone, no list in
 * steady state, every real exporter current after an API server restart.
 */

import { assert } from "../helpers/assert.ts";
import { requires } from "../helpers/requirements.ts";
import { RealCluster } from "../cluster/cluster.ts";
import { measureSize } from "../cluster/scale.ts";
import { judge, markdown, type ScaleReport } from "../cluster/scale_report.ts";

const NAME =
  "hollow nodes on the real control plane: pods placed and Ready, hollow exporters list and watch, an upgrade at the chart's defaults without a dial error, an API server restart";
Deno.test({
  name: NAME,
  ignore: !requires(NAME, {
    root: true,
    commands: ["ip", "python3", "openssl", "helm", "go", "etcd", "etcdctl", "unshare"],
    devices: ["/dev/net/tun"],
  }),
  async fn() {
    const real = 3;
    await using cluster = await RealCluster.create({ nodes: real, hollowAddresses: 12 });
    const size = await measureSize(cluster, 13, {
      baselineMs: 5_000,
      steadyMs: 20_000,
      paceSampleMs: 0,
      log: (line) => console.error(line),
    });
    const report: ScaleReport = {
      started: new Date().toISOString(),
      machine: "ci",
      kubernetes: "",
      etcd: "",
      real,
      sizes: [size],
      chart_max_unavailable: "",
      agent_errors: cluster.agents.flatMap((agent) => agent.errors),
      hollow_errors: cluster.hollow!.errors,
      hollow_failure_samples: cluster.hollow!.failureSamples,
    };
    console.log(markdown(report));
    assert.deepEqual(judge(report), []);
    assert.deepEqual(report.hollow_errors, []);
    // Every hollow pod of the release listed once at its start and watched.
    assert.ok(
      size.upgrade.lists_by_new_exporters >= 10,
      `${size.upgrade.lists_by_new_exporters} lists`,
    );
    // Only running pods are watched: of a replaced pod's changes (creation, binding, statuses,
    // deletion), each exporter is sent its start (ADDED), its deletion mark and its stop
    // (DELETED), and a real pod's readiness: 3 to 4, not every change.
    const { changes_per_pod_replaced: changes, events_per_change_per_exporter: share } =
      size.upgrade;
    assert.ok(changes >= 6, `${changes} pod changes per pod replaced`);
    assert.ok(
      changes * share >= 2.5 && changes * share <= 4.5,
      `${changes * share} events per pod replaced per exporter`,
    );
    assert.ok(size.lists.bytes > 0 && size.endpoints_addresses === 13);
    // Every real exporter's process is read from /proc: its peak is at least what it holds now.
    const processes = size.steady.real_processes ?? [];
    assert.equal(processes.length, real, JSON.stringify(processes));
    for (const process of processes) {
      assert.ok(process.peak_rss >= process.rss && process.anon_rss > 0, JSON.stringify(process));
    }
  },
});
