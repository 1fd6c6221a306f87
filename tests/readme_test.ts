/**
 * The README's flag and metric tables, and the chart README's values table,
 * match the code; the README stays a five-minute read and its links resolve.
 */

import { getLogger } from "@logtape/logtape";
import { parseCommandLine } from "../exporter/cli.ts";
import { createExporterMetrics } from "../exporter/metrics.ts";
import { COLLECTORS } from "../collectors/mod.ts";
import { createDiscoveryMetrics } from "../k8s/discovery.ts";
import { parse } from "yaml";
import { assert } from "./helpers/assert.ts";
import { runIsolatedJson } from "./helpers/namespaces.ts";
import { requires } from "./helpers/requirements.ts";

const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
const chartReadme = await Deno.readTextFile(new URL("../chart/README.md", import.meta.url));

function section(name: string, text = readme): string {
  const match = new RegExp(`<!-- ${name}:start -->([\\s\\S]*?)<!-- ${name}:end -->`).exec(text);
  assert.ok(match, `has a ${name} table`);
  return match[1]!;
}

async function helpFlags(argv: string[]): Promise<Set<string>> {
  let text = "";
  await parseCommandLine(argv, {
    output: { writeOut: (out) => (text += out), writeErr: () => {} },
    env: () => undefined,
  });
  return new Set([...text.matchAll(/--(?!no-|help)([a-z][a-z0-9.-]*)/g)].map((match) => match[1]!));
}

Deno.test("readme: the flags table lists exactly the flags of serve and check", async () => {
  const documented = new Set(
    section("flags").split("\n").filter((line) => line.startsWith("| `--"))
      .map((line) => /^\| `--([a-z0-9.-]+)`/.exec(line)![1]!),
  );
  const actual = new Set([
    ...await helpFlags(["serve", "--help"]),
    ...await helpFlags(["check", "--help"]),
  ]);
  assert.deepEqual([...documented].sort(), [...actual].sort());
});

Deno.test("readme: the metrics table lists exactly the metrics the exporter serves", async () => {
  const documented = section("metrics").split("\n").filter((line) => line.startsWith("| `"))
    .map((line) => /^\| `([a-z_]+)`/.exec(line)![1]!);
  const metrics = createExporterMetrics();
  // Build every collector to register its metrics.
  let text = "";
  const invocation = await parseCommandLine([
    "check",
    "--dns.servers=127.0.0.1",
    "--ntp.servers=127.0.0.1",
  ], {
    output: { writeOut: (out) => (text += out), writeErr: (out) => (text += out) },
    env: () => undefined,
  });
  assert.ok(invocation.command === "check", text);
  for (const collector of invocation.settings.collectors) {
    const built = collector.create({ metrics, logger: getLogger(["test"]) });
    await built.stop();
  }
  assert.equal(invocation.settings.collectors.length, COLLECTORS.length);
  createDiscoveryMetrics(metrics.registry);
  const served = (await metrics.registry.getMetricsAsJSON()).map((metric) => metric.name);
  assert.deepEqual([...documented].sort(), [...served].sort());
});

Deno.test("readme: the chart values table lists exactly the values the schema allows, with their defaults", async () => {
  const schema = JSON.parse(
    await Deno.readTextFile(new URL("../chart/values.schema.json", import.meta.url)),
  );
  const values = parse(await Deno.readTextFile(new URL("../chart/values.yaml", import.meta.url)));
  // deno-lint-ignore no-explicit-any
  const leaves = (node: any, prefix: string): string[] =>
    Object.entries(node.properties ?? {}).flatMap(([key, child]) =>
      // deno-lint-ignore no-explicit-any
      (child as any).properties ? leaves(child, `${prefix}${key}.`) : [`${prefix}${key}`]
    );
  const rows = section("values", chartReadme).split("\n").filter((line) => line.startsWith("| `"))
    .map((line) => /^\|\s*`([^`]+)`\s*\|\s*`([^`]*)`\s*\|/.exec(line)!);
  assert.deepEqual(rows.map((row) => row[1]).sort(), leaves(schema, "").sort());
  for (const [, path, documented] of rows) {
    // deno-lint-ignore no-explicit-any
    const actual = path!.split(".").reduce((node: any, key) => node[key], values);
    const shown = typeof actual === "string"
      ? (actual === "" ? '""' : actual)
      : JSON.stringify(actual).replaceAll(",", ", ").replaceAll(":", ": ");
    assert.equal(documented, shown, path!);
  }
});

Deno.test("readme: at most 25 KB, and every relative link of the documents names a file that exists", async () => {
  assert.ok(readme.length <= 25 * 1024, `README is ${readme.length} bytes`);
  const documents = ["README.md", "chart/README.md", "CONTRIBUTING.md"];
  for (const folder of ["docs", "docs/reports"]) {
    for await (const entry of Deno.readDir(new URL(`../${folder}/`, import.meta.url))) {
      if (entry.name.endsWith(".md")) documents.push(`${folder}/${entry.name}`);
    }
  }
  for (const file of documents) {
    const text = await Deno.readTextFile(new URL(`../${file}`, import.meta.url));
    const base = new URL(`../${file}`, import.meta.url);
    for (const [, target] of text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
      if (/^[a-z]+:/.test(target!)) continue;
      const stat = await Deno.stat(new URL(target!, base)).catch(() => undefined);
      assert.ok(stat, `${file} links to ${target}, which does not exist`);
    }
  }
});

const FIRST = "readme: the first command runs on a fresh machine as written";
Deno.test({
  name: `${FIRST}, and both its probes succeed`,
  ignore: !requires(FIRST, { root: true, commands: ["unshare", "ip"] }),
  async fn() {
    const line = readme.split("\n").find((text) => text.startsWith("deno task start "));
    assert.ok(line, "the README opens with deno task start");
    const flags = line!.slice("deno task start ".length).split(" ").filter((word) => word !== "");
    // In a network namespace of its own with only loopback up: nothing can leave the machine.
    const report = await runIsolatedJson({
      unshare: ["--net"],
      setup: "ip link set lo up",
      command: [
        Deno.execPath(),
        "run",
        "--allow-all",
        new URL("./fixtures/first_command.ts", import.meta.url).pathname,
        ...flags,
      ],
    }) as { dns: number[]; network: number[] };
    assert.deepEqual(report.dns, [1], "localhost. resolved");
    assert.deepEqual(report.network, [1], "its own port answered");
  },
});

Deno.test("readme: the project files a user looks for exist: the full licence, a changelog, a security policy", async () => {
  const text = (path: string) => Deno.readTextFile(new URL(`../${path}`, import.meta.url));
  const license = await text("LICENSE");
  assert.match(license, /TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION/);
  assert.match(
    license,
    /9\. Accepting Warranty or Additional Liability/,
    "the whole text, not a notice",
  );
  assert.match(await text("CHANGELOG.md"), /^## \[Unreleased\]$/m);
  assert.match(await text("SECURITY.md"), /Report a vulnerability/);
  for (const guide of ["check", "queries", "migration", "runbooks"]) {
    assert.ok((await text(`docs/${guide}.md`)).length > 1_000, `docs/${guide}.md`);
  }
  // Each report opens with what was measured, on what, and what it means.
  for await (const entry of Deno.readDir(new URL("../docs/reports/", import.meta.url))) {
    const report = await text(`docs/reports/${entry.name}`);
    assert.match(
      report,
      /^# .*\n\n> \*\*In short\.\*\*/,
      `docs/reports/${entry.name} opens with its summary`,
    );
  }
});
