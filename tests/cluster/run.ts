/**
 * `deno task cluster`: a real control plane (etcd, kube-apiserver,
 * kube-controller-manager, kube-scheduler, built from Go modules on first use)
 * over the simulated nodes, `helm install` of chart/, and every scenario of
 * scenarios.ts. Writes report.json and report.md, and (with the default node
 * count) the results block of docs/reports/cluster.md. Exits 1 when a scenario's
 * figure is not what it must be.
 *
 * Usage (as root, with Debian's etcd-server and etcd-client, Go and helm):
 *   deno task cluster [--nodes=5] [--out=cluster-report]
 * Everything it starts and makes is removed at the end, also on failure and
 * on Ctrl-C.
 */

import { parseArgs } from "node:util";
import { rewriteDocsBlock } from "../helpers/docs.ts";
import { RealCluster, tearDownOnSignal } from "./cluster.ts";
import { type ClusterReport, judge, markdown, runAll } from "./report.ts";

const DEFAULT_NODES = "5";
const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    nodes: { type: "string", default: DEFAULT_NODES },
    out: { type: "string", default: "cluster-report" },
  },
});
const nodes = Number(args.nodes);
if (!Number.isInteger(nodes) || nodes < 3 || nodes > 30) {
  console.error(
    `error: Cannot build a cluster: current --nodes=${args.nodes} is not a whole number from 3 to 30`,
  );
  Deno.exit(2);
}

let cluster: RealCluster | undefined;
const stopping = tearDownOnSignal(() => cluster);

let code = 1;
try {
  cluster = await RealCluster.create({ nodes, spareNodes: 1 });
  // A window longer than one watch (5 min): each pod renews its watch once in it.
  const report: ClusterReport = await runAll(cluster, { discoveryWindowMs: 330_000 });
  await Deno.mkdir(args.out!, { recursive: true });
  await Deno.writeTextFile(`${args.out}/report.json`, JSON.stringify(report, null, 2) + "\n");
  await Deno.writeTextFile(`${args.out}/report.md`, markdown(report));
  console.log(markdown(report));
  const problems = judge(report);
  for (const problem of problems) console.error(`not as it must be: ${problem}`);
  code = problems.length === 0 ? 0 : 1;
  if (args.nodes === DEFAULT_NODES) {
    console.error(
      `wrote ${await rewriteDocsBlock(
        "reports/cluster.md",
        "cluster",
        "deno task cluster",
        markdown(report),
      )}`,
    );
  }
} catch (error) {
  console.error(error);
} finally {
  if (!stopping.aborted) await cluster?.[Symbol.asyncDispose]();
}
Deno.exit(code);
