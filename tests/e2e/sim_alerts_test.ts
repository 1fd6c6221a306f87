/**
 * The small version of `deno task sim:alerts` that CI runs: three simulated
 * nodes watched by a real Prometheus (Debian's) with the chart's rendered
 * ServiceMonitor and rules; a cut node fires the alerts it should and no
 * other, a rolling restart of every pod fires nothing, and every dashboard
 * query returns data.
 */

import { assert } from "../helpers/assert.ts";
import { requires } from "../helpers/requirements.ts";
import { SimCluster } from "../sim/cluster.ts";
import {
  AlertHarness,
  dashboardQueries,
  PROBE_INTERVAL_MS,
  PROBE_TIMEOUT_MS,
  runScenario,
  SCENARIOS,
} from "../sim/alerts.ts";

const NAME =
  "alerts in a real Prometheus: a cut node fires for that node only, a rolling restart fires nothing, every dashboard query has data";
Deno.test({
  name: NAME,
  ignore: !requires(NAME, {
    root: true,
    commands: ["ip", "python3", "openssl", "helm", "prometheus"],
    devices: ["/dev/net/tun"],
  }),
  async fn() {
    await using cluster = await SimCluster.create({
      nodes: 3,
      intervalMs: PROBE_INTERVAL_MS,
      timeoutMs: PROBE_TIMEOUT_MS,
    });
    await using harness = await AlertHarness.create(cluster);
    for (
      const name of ["a node cut off from every other node", "a full rolling restart of every pod"]
    ) {
      const scenario = SCENARIOS.find((candidate) => candidate.name === name)!;
      const result = await runScenario(harness, scenario);
      assert.ok(result.ok, JSON.stringify(result, null, 2));
    }
    const panels = await dashboardQueries(harness.prometheus);
    const blank = panels.filter((panel) => panel.series === 0);
    assert.deepEqual(blank, [], "every dashboard query returns data");
    assert.ok(panels.length >= 9, `${panels.length} queries`);
  },
});
