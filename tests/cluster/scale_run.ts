/**
 * `deno task cluster:scale`: the real control plane (see run.ts) with a
 * handful of real nodes and hollow ones (hollow.ts) up to 1,000 in all,
 * measured at each size of `--sizes` (scale.ts). Writes scale.json and
 * scale.md into `--out`, and, with the default sizes, the results block of
 * docs/scale.md. Exits 1 when a figure is not what it must be.
 *
 * Usage (as root, with Debian's etcd-server and etcd-client, Go and helm):
 *   deno task cluster:scale [--sizes=100,300,1000] [--real=10] [--steady=380]
 *     [--baseline=60] [--pace=90] [--out=scale-report]
 *   deno task cluster:scale --from=scale-report/scale.json   (render a run's report again)
 *   deno task cluster:scale --sizes=1000 --with=earlier/scale.json   (the largest size again)
 * What limits the size: the hollow pods' addresses (a run's /21 of the
 * simulated range holds 999 for them) and this machine's 2 cores, which
 * carry the control plane, the hollow exporters' watches and the real
 * exporters at once. Everything it starts and makes is removed at the end,
 * also on failure and on Ctrl-C.
 */

import { parseArgs } from "node:util";
import { rewriteDocsBlock } from "../helpers/docs.ts";
import { KUBERNETES_VERSION } from "./build.ts";
import { RealCluster, tearDownOnSignal } from "./cluster.ts";
import { measureSize, type SizeResult } from "./scale.ts";
import { judge, markdown, type ScaleReport } from "./scale_report.ts";
import { parse as parseYaml } from "yaml";

const DEFAULT_SIZES = "100,300,1000";
const MAX_HOLLOW = 999;
function fail(message: string): never {
  console.error(`error: ${message}`);
  Deno.exit(2);
}

/** A scale.json written by an earlier run, or one line and exit 2. */
async function readReport(path: string, flag = "from"): Promise<ScaleReport> {
  let report: ScaleReport;
  try {
    report = JSON.parse(await Deno.readTextFile(path)) as ScaleReport;
  } catch (error) {
    fail(`Cannot read --${flag}=${path}: ${(error as Error).message}`);
  }
  if (!Array.isArray(report?.sizes)) fail(`Cannot read --${flag}=${path}: it has no sizes`);
  return report;
}

const { values: args } = (() => {
  try {
    return parseCommandLine();
  } catch (error) {
    fail(`Cannot run: ${(error as Error).message}`);
  }
})();

function parseCommandLine() {
  return parseArgs({
    args: Deno.args,
    options: {
      sizes: { type: "string", default: DEFAULT_SIZES },
      real: { type: "string", default: "10" },
      steady: { type: "string", default: "380" },
      baseline: { type: "string", default: "60" },
      pace: { type: "string", default: "90" },
      out: { type: "string", default: "scale-report" },
      /** Renders the report of an earlier run (its scale.json) again, measuring nothing. */
      from: { type: "string" },
      /**
       * An earlier run's scale.json whose sizes (all below this run's) go into this run's report
       * before its own, with both runs' start times: for measuring the largest size again alone.
       */
      with: { type: "string" },
    },
  });
}

if (args.from !== undefined) {
  const report = await readReport(args.from);
  console.log(markdown(report));
  const problems = judge(report);
  for (const problem of problems) console.error(`not as it must be: ${problem}`);
  // A run of the documented sizes (all of them, or those it finished) writes the docs' block.
  const documented = DEFAULT_SIZES.split(",");
  if (report.real === 10 && report.sizes.every((size) => documented.includes(String(size.nodes)))) {
    console.error(
      `wrote ${await rewriteDocsBlock(
        "scale.md",
        "scale",
        "deno task cluster:scale",
        markdown(report),
      )}`,
    );
  }
  Deno.exit(problems.length === 0 ? 0 : 1);
}

const real = Number(args.real);
if (!Number.isInteger(real) || real < 2 || real > 30) {
  fail(`Cannot run: current --real=${args.real} is not a whole number from 2 to 30`);
}
const sizes = args.sizes!.split(",").map(Number);
if (
  sizes.some((size, index) =>
    !Number.isInteger(size) || size <= real || size - real > MAX_HOLLOW ||
    (index > 0 && size <= sizes[index - 1]!)
  )
) {
  fail(
    `Cannot run: current --sizes=${args.sizes} is not a rising list of node counts above --real (${real}) and at most ${
      real + MAX_HOLLOW
    }`,
  );
}
const seconds = (name: "steady" | "baseline" | "pace") => {
  const value = Number(args[name]);
  if (!Number.isFinite(value) || value < 0 || value > 3600) {
    fail(`Cannot run: current --${name}=${args[name]} is not a number of seconds from 0 to 3600`);
  }
  return value * 1000;
};
const options = {
  steadyMs: seconds("steady"),
  baselineMs: seconds("baseline"),
  paceSampleMs: seconds("pace"),
  log: (line: string) => console.error(`${new Date().toISOString().slice(11, 19)} ${line}`),
};

/** An earlier run's report whose smaller sizes go before this run's, read before anything starts. */
async function readEarlier(path: string): Promise<ScaleReport> {
  const earlier = await readReport(path, "with");
  if (earlier.real !== real || earlier.sizes.some((size) => size.nodes >= sizes[0]!)) {
    fail(
      `Cannot add the sizes of --with=${path}: current sizes ${
        earlier.sizes.map((size) => size.nodes).join(",")
      } with --real=${earlier.real} must all be below --sizes (${args.sizes}), with --real=${real}`,
    );
  }
  return earlier;
}
const earlier = args.with === undefined ? undefined : await readEarlier(args.with);

let cluster: RealCluster | undefined;
const stopping = tearDownOnSignal(() => cluster);

async function etcdVersion(): Promise<string> {
  const output = await new Deno.Command("etcd", { args: ["--version"], stdout: "piped" }).output();
  return /etcd Version: (\S+)/.exec(new TextDecoder().decode(output.stdout))?.[1] ?? "unknown";
}

async function chartMaxUnavailable(): Promise<string> {
  const values = parseYaml(
    await Deno.readTextFile(new URL("../../chart/values.yaml", import.meta.url)),
  ) as { updateStrategy?: { rollingUpdate?: { maxUnavailable?: unknown } } };
  return String(values.updateStrategy?.rollingUpdate?.maxUnavailable);
}

let code = 1;
try {
  const started = new Date().toISOString().slice(0, 16) + "Z";
  cluster = await RealCluster.create({
    nodes: real,
    hollowAddresses: sizes[sizes.length - 1]! - real,
    log: options.log,
  });
  const results: SizeResult[] = [...(earlier?.sizes ?? [])];
  const report = (): ScaleReport => ({
    started: earlier
      ? `${earlier.started} (${
        earlier.sizes.map((size) => size.nodes).join(", ")
      } nodes) and ${started} (${sizes.join(", ")} nodes)`
      : started,
    machine: `${Deno.build.os}/${Deno.build.arch}, ${navigator.hardwareConcurrency} cores`,
    kubernetes: KUBERNETES_VERSION,
    etcd,
    real,
    sizes: results,
    chart_max_unavailable: maxUnavailable,
    agent_errors: [
      ...(earlier?.agent_errors ?? []),
      ...cluster!.agents.flatMap((agent) => agent.errors),
    ],
    hollow_errors: [...(earlier?.hollow_errors ?? []), ...(cluster!.hollow?.errors ?? [])],
    hollow_failure_samples: cluster!.hollow?.failureSamples ?? [],
  });
  const etcd = await etcdVersion();
  const maxUnavailable = await chartMaxUnavailable();
  await Deno.mkdir(args.out!, { recursive: true });
  for (const size of sizes) {
    results.push(await measureSize(cluster, size, options));
    // Written after every size, so a run stopped later keeps what it measured.
    await Deno.writeTextFile(`${args.out}/scale.json`, JSON.stringify(report(), null, 2) + "\n");
    await Deno.writeTextFile(`${args.out}/scale.md`, markdown(report()));
  }
  console.log(markdown(report()));
  const problems = judge(report());
  for (const problem of problems) console.error(`not as it must be: ${problem}`);
  code = problems.length === 0 ? 0 : 1;
  const measured = results.map((size) => size.nodes).join(",");
  if (measured === DEFAULT_SIZES && args.real === "10") {
    console.error(
      `wrote ${await rewriteDocsBlock(
        "scale.md",
        "scale",
        "deno task cluster:scale",
        markdown(report()),
      )}`,
    );
  }
} catch (error) {
  console.error(error);
} finally {
  if (!stopping.aborted) await cluster?.[Symbol.asyncDispose]();
}
Deno.exit(code);
