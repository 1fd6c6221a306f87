/**
 * `deno task compare`: net-exporter beside the tools users run today
 * (compare.yaml), every one on every simulated node, through the same
 * scenarios in one run: accuracy at several injected delays against an
 * independent reference, detection of a cut node and of a silent or SERVFAIL
 * DNS server, a rolling restart, and load (many peers, a busy scraper).
 * Writes report.json and report.md.
 *
 * Usage (as root): deno task compare [--nodes=5] [--crowd=500] [--config=tests/sim/compare.yaml] [--out=compare-report]
 * @module
 */

import { parseArgs } from "node:util";
import { settleAll } from "../helpers/settle.ts";
import { rewriteDocsBlock } from "../helpers/docs.ts";
import { createForCommandLine, exitAfterTeardown, type SimCluster } from "./cluster.ts";
import { type CompareOptions, Fleet } from "./fleet.ts";
import { Recorder, ServiceDiscovery } from "./recording.ts";
import { markdown, round } from "./compare_report.ts";
import { scenarios } from "./compare_phases.ts";
import { loadTools, type ToolConfig } from "./tools.ts";

export { markdown };
export type { CompareOptions };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs every scenario for every tool on `cluster`; returns the report. */
export async function compare(
  cluster: SimCluster,
  tools: readonly ToolConfig[],
  options: CompareOptions,
): Promise<Record<string, unknown>> {
  const log = options.log ?? (() => {});
  const started = new Date().toISOString();
  const { intervalMs } = options;
  const discovery = new ServiceDiscovery(
    cluster.api.url,
    cluster.api.caPem,
    cluster.api.issueToken("prometheus"),
  );
  const fleets = tools.map((tool) => new Fleet(tool, cluster.api.issueToken(tool.name)));
  for (const fleet of fleets) {
    for (const node of cluster.nodes) {
      fleet.recorders.set(
        node,
        new Recorder(fleet.tool, node, { intervalMs, discovery, dnsServer: cluster.dns.address }),
      );
    }
  }
  const recorders = fleets.flatMap((fleet) => [...fleet.recorders.values()]);
  const runStartedAt = performance.now();
  try {
    log(`starting ${tools.map((tool) => tool.name).join(", ")} on ${cluster.nodes.length} nodes`);
    for (const node of cluster.nodes) cluster.applyPod(node, false);
    // A DaemonSet's pods start at different moments. Started together, every instance would
    // probe in step, all observers of a fault would share one phase, and a detection median
    // would rest on as many independent phases as there are trials.
    // Every start settles before a failure is thrown, so the cleanup below finds every instance.
    await settleAll(
      cluster.nodes.flatMap((node) =>
        fleets.map(async (fleet) => {
          await sleep(Math.random() * intervalMs);
          await fleet.startOn(node, cluster, options);
        })
      ),
    );
    for (const node of cluster.nodes) cluster.applyPod(node, true);
    await discovery.start();
    for (const recorder of recorders) recorder.start(Math.random() * intervalMs);
    const report = await scenarios(cluster, fleets, discovery, options, log);
    const minutes = (performance.now() - runStartedAt) / 60_000;
    for (const fleet of fleets) {
      const row = (report.tools as Record<string, Record<string, unknown>>)[fleet.tool.name]!;
      row.api_requests_per_minute_per_instance = round(
        cluster.api.requestsBy(fleet.tool.name) / cluster.nodes.length / minutes,
        1,
      );
    }
    return {
      started,
      machine: `${Deno.build.os}/${Deno.build.arch}, ${navigator.hardwareConcurrency} cores`,
      nodes: cluster.nodes.length,
      interval_ms: intervalMs,
      timeout_ms: options.timeoutMs,
      ...report,
    };
  } finally {
    await Promise.all(recorders.map((recorder) => recorder.stop()));
    await discovery.stop();
    await Promise.all(
      fleets.flatMap((fleet) => cluster.nodes.map((node) => fleet.stopOn(node))),
    );
  }
}

/**
 * The machine, and the TCP congestion control of a node's namespace (each
 * namespace takes the host's default): with BBR, a large answer is paced at
 * the rate BBR has measured on the emulated link, so its size shows in the
 * scrape figures under load.
 */
async function machine(netns: string): Promise<string> {
  const output = await new Deno.Command("sh", {
    args: ["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2; grep MemTotal /proc/meminfo"],
    stdout: "piped",
  }).output();
  const [cpu, memory] = new TextDecoder().decode(output.stdout).trim().split("\n");
  const gib = Number(/(\d+)/.exec(memory ?? "")?.[1] ?? 0) / 2 ** 20;
  const congestion = await new Deno.Command("ip", {
    args: ["netns", "exec", netns, "cat", "/proc/sys/net/ipv4/tcp_congestion_control"],
    stdout: "piped",
    stderr: "null",
  }).output();
  const control = new TextDecoder().decode(congestion.stdout).trim() || "unknown";
  return `${cpu?.trim()}, ${navigator.hardwareConcurrency} cores, ${
    Math.round(gib)
  } GiB, TCP congestion control ${control}`;
}

if (import.meta.main) {
  let tools: ToolConfig[];
  let nodes: number;
  let crowd: number;
  let out: string;
  let documented: boolean;
  try {
    const { values: args } = parseArgs({
      args: Deno.args,
      options: {
        nodes: { type: "string", default: "5" },
        crowd: { type: "string", default: "500" },
        config: { type: "string", default: new URL("./compare.yaml", import.meta.url).pathname },
        out: { type: "string", default: "compare-report" },
      },
    });
    nodes = Number(args.nodes);
    crowd = Number(args.crowd);
    out = args.out!;
    documented = args.nodes === "5" && args.crowd === "500" &&
      args.config === new URL("./compare.yaml", import.meta.url).pathname;
    // A cut node needs at least two others: observers, and healthy peers to count false alarms on.
    if (!Number.isInteger(nodes) || nodes < 3 || nodes > 200) {
      throw new Error(`Cannot compare: --nodes must be 3 to 200, current value is ${args.nodes}`);
    }
    if (!Number.isInteger(crowd) || crowd < 0 || crowd > 1000) {
      throw new Error(`Cannot compare: --crowd must be 0 to 1000, current value is ${args.crowd}`);
    }
    tools = await loadTools(args.config!);
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    Deno.exit(2);
  }
  const intervalMs = 1_000;
  const timeoutMs = 500;
  const cluster = await createForCommandLine({ nodes, intervalMs, timeoutMs, crowd });
  try {
    const report = await compare(cluster, tools, {
      intervalMs,
      timeoutMs,
      delaysMs: [0, 1, 5, 20, 100],
      windowIntervals: 20,
      trials: 24,
      crowd,
      log: (line) => console.error(line),
    });
    report.machine = await machine(cluster.nodes[0]!.netns);
    await Deno.mkdir(out, { recursive: true });
    await Deno.writeTextFile(`${out}/report.json`, JSON.stringify(report, null, 2) + "\n");
    await Deno.writeTextFile(`${out}/report.md`, markdown(report));
    console.log(markdown(report));
    // The shipped configuration at the documented size rewrites the document's results.
    if (documented) {
      console.error(
        `wrote ${await rewriteDocsBlock(
          "reports/comparison.md",
          "compare",
          "deno task compare",
          markdown(report),
        )}`,
      );
    }
  } catch (error) {
    console.error(error);
    await exitAfterTeardown(cluster, 1);
  }
  await exitAfterTeardown(cluster, 0);
}
