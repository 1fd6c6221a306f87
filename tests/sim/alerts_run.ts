/**
 * `deno task sim:alerts`: every alert scenario against a real Prometheus
 * watching the simulated cluster, and every dashboard query. Writes
 * report.json and report.md, and (with the default node count) the results
 * block of docs/reports/alerts.md. Exits 1 when any scenario or panel fails.
 *
 * Usage (as root, with Debian's prometheus and helm on the PATH):
 *   deno task sim:alerts [--nodes=5] [--out=alerts-report]
 * Every namespace, TUN device and process it makes is removed at the end,
 * also on failure and on Ctrl-C.
 */

import { parseArgs } from "node:util";
import { createForCommandLine, exitAfterTeardown } from "./cluster.ts";
import {
  AlertHarness,
  dashboardQueries,
  markdown,
  PROBE_INTERVAL_MS,
  PROBE_TIMEOUT_MS,
  runScenario,
  type ScenarioResult,
  SCENARIOS,
} from "./alerts.ts";
import { rewriteDocsBlock } from "../helpers/docs.ts";

const DEFAULT_NODES = "5";
const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    nodes: { type: "string", default: DEFAULT_NODES },
    out: { type: "string", default: "alerts-report" },
  },
});
const nodes = Number(args.nodes);
if (!Number.isInteger(nodes) || nodes < 3 || nodes > 50) {
  console.error(
    `error: Cannot simulate: current --nodes=${args.nodes} is not a whole number from 3 to 50`,
  );
  Deno.exit(2);
}

const cluster = await createForCommandLine({
  nodes,
  intervalMs: PROBE_INTERVAL_MS,
  timeoutMs: PROBE_TIMEOUT_MS,
});
let ok = false;
try {
  const started = new Date().toISOString().slice(0, 16) + "Z";
  await using harness = await AlertHarness.create(cluster);
  const scenarios: ScenarioResult[] = [];
  let panels: Awaited<ReturnType<typeof dashboardQueries>> = [];
  for (const [index, scenario] of SCENARIOS.entries()) {
    scenarios.push(await runScenario(harness, scenario));
    // After the cut and the restart: minutes of traffic, errors of every kind seen, all pods up.
    if (index === 1) panels = await dashboardQueries(harness.prometheus);
  }
  const report = {
    started,
    machine: `${Deno.build.os}/${Deno.build.arch}, ${navigator.hardwareConcurrency} cores`,
    nodes,
    scenarios,
    panels,
  };
  await Deno.mkdir(args.out!, { recursive: true });
  await Deno.writeTextFile(`${args.out}/report.json`, JSON.stringify(report, null, 2) + "\n");
  await Deno.writeTextFile(`${args.out}/report.md`, markdown(report));
  console.log(markdown(report));
  ok = scenarios.every((scenario) => scenario.ok) && panels.every((panel) => panel.series > 0);
  if (args.nodes === DEFAULT_NODES) {
    console.error(
      `wrote ${await rewriteDocsBlock(
        "reports/alerts.md",
        "alerts",
        "deno task sim:alerts",
        markdown(report),
      )}`,
    );
  }
} catch (error) {
  console.error(error);
  await exitAfterTeardown(cluster, 1);
}
await exitAfterTeardown(cluster, ok ? 0 : 1);
