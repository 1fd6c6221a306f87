/**
 * `deno task bench` (its memory part): where a pod's resident memory goes.
 * Every row is a process of its own, run as the exporter ships — bundled (as
 * `deno compile --bundle` embeds it) and started under the compile task's V8
 * flags with `--no-code-cache` — and read from /proc: resident memory once it
 * answers, and steady (the median of 5 readings after 90 s of probing every
 * second, scraped every second), split into anonymous memory (heap, stacks,
 * malloc) and file-backed pages (the parts of Deno's own executable that the
 * process touched: its code, its snapshot, the sources of the Node
 * compatibility modules).
 *
 * Dependencies: a script that imports one of them and serves one route with
 * Deno.serve, against the same script importing nothing. Subsystems: the
 * exporter, each configuration adding one to the one above. Everything on
 * 127.0.0.0/8, with a DNS server and an API server of the bench's own.
 *
 * Usage: deno run … tests/bench/memory.ts [--quick]  (--quick: two rows of
 * each kind, 5 s steady, nothing written; the test suite runs it)
 * @module
 */

import { startApiServer } from "../helpers/api_server.ts";
import { bundleModule, bundleProgram, COMPILED_RUN_FLAGS } from "../helpers/bundle.ts";
import { startDnsServer } from "../helpers/dns_server.ts";
import { get, START_FLAGS, startExporter, waitUntilReady } from "../helpers/exporter_process.ts";
import { Exposition } from "../helpers/metrics.ts";
import { rewriteDocsBlock } from "../helpers/docs.ts";
import { processUsage } from "../helpers/proc.ts";
import { CHILD_ENV } from "../helpers/requirements.ts";
import { median } from "../helpers/stats.ts";
import { closedPort, startListener, type TestListener } from "../helpers/tcp.ts";

const QUICK = Deno.args.includes("--quick");
/**
 * An exporter's steady reading starts this long after it answers. Its memory
 * still grows for the first minute or so (V8 compiles the hot code and the
 * heap settles); a 20 s window read 4–5 MiB less than the same process at
 * two and a half minutes.
 */
const STEADY_AFTER_MS = QUICK ? 5_000 : 90_000;
/** A script that only serves one route is steady as soon as it answers. */
const SCRIPT_STEADY_AFTER_MS = QUICK ? 1_000 : 5_000;
const READINGS = 5;
const REPO = new URL("../../", import.meta.url);

/** Resident memory of one process, in MiB. */
export interface Residency {
  rss: number;
  anon: number;
  file: number;
}

/** One row of the table. */
export interface MemoryRow {
  kind: "dependency" | "subsystem";
  what: string;
  start: Residency;
  steady: Residency;
  /** Steady RSS over the row it is compared with (the runtime alone, or the row above). */
  overMiB: number;
  /** V8 heap in use, steady (exporter rows only). */
  heapMiB?: number;
  /** CPU seconds per 1,000 probes over the steady window (exporter rows only). */
  cpuPer1000Probes?: number;
}

const mib = (bytes: number) => +(bytes / 2 ** 20).toFixed(1);

/** RSS, anonymous and file-backed resident memory of `pid`, or undefined once gone. */
async function residency(pid: number): Promise<Residency | undefined> {
  const usage = await processUsage(pid);
  return usage &&
    { rss: mib(usage.rssBytes), anon: mib(usage.rssAnonBytes), file: mib(usage.rssFileBytes) };
}

async function cpuSeconds(pid: number): Promise<number> {
  const usage = await processUsage(pid);
  if (!usage) throw new Error(`Cannot read the CPU time of process ${pid}: it has exited`);
  return usage.cpuSeconds;
}

/** The median of `READINGS` readings a second apart, field by field. */
async function steadyResidency(pid: number): Promise<Residency> {
  const readings: Residency[] = [];
  for (let i = 0; i < READINGS; i++) {
    const reading = await residency(pid);
    if (!reading) throw new Error(`Cannot read the memory of process ${pid}: it has exited`);
    readings.push(reading);
    await sleep(1_000);
  }
  const pick = (field: keyof Residency) => median(readings.map((reading) => reading[field]))!;
  return { rss: pick("rss"), anon: pick("anon"), file: pick("file") };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What the dependency rows import, each alone. */
const DEPENDENCIES: Array<{ what: string; imports: string[] }> = [
  { what: "Deno runtime alone, serving one route (Deno.serve)", imports: [] },
  {
    what: "prom-client: the four classes the exporter loads (lib/prom_client.ts)",
    imports: [new URL("lib/prom_client.ts", REPO).href],
  },
  {
    what: "prom-client: the whole package (its index: cluster, Pushgateway, default metrics)",
    imports: ["prom-client"],
  },
  { what: "commander (flags)", imports: ["commander"] },
  { what: "@logtape/logtape (logs)", imports: ["@logtape/logtape"] },
  { what: "dns-packet (DNS messages; node:buffer)", imports: ["dns-packet"] },
  {
    what: "@kubernetes/client-node: kubeconfig types and token-file authenticator",
    imports: [
      "@kubernetes/client-node/dist/config_types.js",
      "@kubernetes/client-node/dist/file_auth.js",
    ],
  },
  { what: "node:net (the exporter uses isIP)", imports: ["node:net"] },
  { what: "node:zlib (gzip of large scrapes)", imports: ["node:zlib"] },
  { what: "node:tls — loaded only for client certificates", imports: ["node:tls"] },
  { what: "yaml and bcryptjs — loaded only with a web config", imports: ["yaml", "bcryptjs"] },
  {
    what: "every module the exporter loads at start (main.ts imported, not run)",
    imports: [new URL("main.ts", REPO).href],
  },
];

async function measureScript(dir: string, index: number, imports: string[]): Promise<Residency[]> {
  const source = `${dir}/dependency-${index}.ts`;
  await Deno.writeTextFile(
    source,
    imports.map((specifier) => `import ${JSON.stringify(specifier)};\n`).join("") +
      `Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() { console.log("ready"); } }, ` +
      `() => new Response("ok"));\n`,
  );
  const bundle = await bundleModule(source, `${dir}/dependency-${index}.js`);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...runFlags(), bundle],
    env: CHILD_ENV,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    const reader = child.stdout.getReader();
    await reader.read(); // "ready"
    reader.releaseLock();
    await sleep(1_000);
    const start = await residency(child.pid);
    await sleep(SCRIPT_STEADY_AFTER_MS);
    const steady = await steadyResidency(child.pid);
    if (!start) throw new Error(`Cannot read the memory of ${source}: it exited`);
    return [start, steady];
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await child.stdout.cancel().catch(() => {});
  }
}

/** The compiled flags, reading and environment opened up (the bench's files are not the pod's). */
function runFlags(): string[] {
  return [
    ...COMPILED_RUN_FLAGS.filter((flag) =>
      !flag.startsWith("--allow-read") && !flag.startsWith("--allow-env")
    ),
    "--allow-read",
    "--allow-env",
  ];
}

/** The bundle under the compiled flags with one more V8 flag. */
function withV8Flag(v8Flag: string, bundle: string): string[] {
  const flags = runFlags().map((flag) =>
    flag.startsWith("--v8-flags=") ? `${flag},${v8Flag}` : flag
  );
  return [Deno.execPath(), "run", ...flags, bundle];
}

interface Fixtures {
  dnsAddress: string;
  kubeconfig: string;
  peerPort: number;
  staticTargets: string[];
}

/** The exporter configurations, each adding one subsystem to the one above. */
function subsystems(fixtures: Fixtures, bundle: string) {
  const http = ["--no-collector.dns", "--no-collector.network", "--k8s.discovery=off"];
  const network = [
    "--no-collector.dns",
    "--k8s.discovery=off",
    "--network.interval=1s",
    "--network.timeout=500ms",
    `--network.targets=${fixtures.staticTargets.slice(0, 10).join(",")}`,
  ];
  const dns = [
    `--dns.servers=${fixtures.dnsAddress}`,
    "--dns.hosts=ok.test.",
    "--dns.interval=1s",
    "--dns.timeout=500ms",
  ];
  const discovery = [
    `--k8s.kubeconfig=${fixtures.kubeconfig}`,
    `--network.port=${fixtures.peerPort}`,
    "--network.interval=1s",
    "--network.timeout=500ms",
  ];
  const compiled = [Deno.execPath(), "run", ...runFlags(), bundle];
  return [
    { what: "HTTP server and the exporter's own metrics (collectors off)", args: http, compiled },
    { what: "+ network collector: 10 static targets (scheduler, handshakes)", args: network },
    {
      what: "+ DNS collector: one name, asked of a server directly (UDP)",
      args: [...dns, ...network.slice(1)],
    },
    {
      what: "discovery: the 10 peers from the API server over TLS (list + watch), not static",
      args: [...dns, ...discovery],
    },
    {
      what: "+ 150 static targets: past 100, handshakes move to the dialer thread",
      args: [...dns, ...discovery, `--network.targets=${fixtures.staticTargets.join(",")}`],
    },
    {
      what: "discovery + DNS as above, V8 with `--max-opt=2` (Maglev, no Turbofan)",
      args: [...dns, ...discovery],
      command: withV8Flag("--max-opt=2", bundle),
    },
    {
      what: "discovery + DNS as above, V8 with `--max-opt=1` (interpreter and Sparkplug only)",
      args: [...dns, ...discovery],
      command: withV8Flag("--max-opt=1", bundle),
    },
    {
      what: "discovery + DNS as above, V8 in `--lite-mode` (interpreter only)",
      args: [...dns, ...discovery],
      command: withV8Flag("--lite-mode", bundle),
    },
    {
      what: "discovery + DNS as above, run from source (`deno task start`: main.ts, code cache)",
      args: [...dns, ...discovery],
      command: [Deno.execPath(), "run", ...START_FLAGS, new URL("main.ts", REPO).pathname],
    },
  ].map((row) => ({ ...row, command: row.command ?? compiled }));
}

function probeCount(metrics: Exposition): number {
  let count = 0;
  for (const name of ["network_latency_seconds_count", "dns_latency_seconds_count"]) {
    for (const sample of metrics.samples(name)) count += sample.value;
  }
  for (const name of ["network_dial_error_total", "dns_resolve_error_total"]) {
    for (const sample of metrics.samples(name)) count += sample.value;
  }
  return count;
}

async function measureExporter(
  command: string[],
  args: string[],
): Promise<Omit<MemoryRow, "kind" | "what" | "overMiB">> {
  await using exporter = await startExporter(args, {
    command,
    env: { POD_NAME: "net-exporter-0", NODE_NAME: "node-0", POD_IP: "127.0.0.20" },
  });
  const pid = exporter.child.pid;
  await waitUntilReady(exporter, 10_000);
  await sleep(1_000);
  const start = await residency(pid);
  if (!start) throw new Error(`Cannot read the exporter's memory: it exited`);
  // Scraped every second, as a Prometheus with a 1 s interval would.
  let scraping = true;
  const scrapes = (async () => {
    while (scraping) {
      await get(`${exporter.url}/metrics`);
      await sleep(1_000);
    }
  })();
  try {
    await sleep(STEADY_AFTER_MS / 2);
    const before = new Exposition((await get(`${exporter.url}/metrics`)).body);
    const cpuBefore = await cpuSeconds(pid);
    await sleep(STEADY_AFTER_MS / 2);
    const steady = await steadyResidency(pid);
    const cpuAfter = await cpuSeconds(pid);
    const after = new Exposition((await get(`${exporter.url}/metrics`)).body);
    const probes = probeCount(after) - probeCount(before);
    return {
      start,
      steady,
      heapMiB: +(after.value("process_heap_bytes") / 2 ** 20).toFixed(1),
      cpuPer1000Probes: +((cpuAfter - cpuBefore) / probes * 1000).toFixed(3),
    };
  } finally {
    scraping = false;
    await scrapes;
  }
}

/** Measures every row; `quick` measures two of each kind. `onRow` hears of each row as it is measured. */
export async function measureMemory(
  quick: boolean,
  onRow: (row: MemoryRow) => void = () => {},
): Promise<MemoryRow[]> {
  const dir = await Deno.makeTempDir({ prefix: "bench-memory-" });
  const listeners: TestListener[] = [];
  try {
    await using dns = await startDnsServer();
    await using api = await startApiServer();
    const peerPort = closedPort("127.0.0.20");
    for (let i = 0; i <= 10; i++) {
      const ip = `127.0.0.${20 + i}`;
      listeners.push(startListener(ip, peerPort));
      api.apply({ name: `net-exporter-${i}`, node: `node-${i}`, ips: [ip] });
    }
    const staticTargets = Array.from({ length: 150 }, () => {
      const listener = startListener();
      listeners.push(listener);
      return listener.address;
    });
    const kubeconfig = await api.writeKubeconfig("monitoring");
    const fixtures = { dnsAddress: dns.address, kubeconfig, peerPort, staticTargets };
    const rows: MemoryRow[] = [];

    const dependencies = quick ? [DEPENDENCIES[0]!, DEPENDENCIES[1]!] : DEPENDENCIES;
    for (const [index, dependency] of dependencies.entries()) {
      const [start, steady] = await measureScript(dir, index, dependency.imports);
      const runtime = rows[0]?.steady.rss ?? steady!.rss;
      rows.push({
        kind: "dependency",
        what: dependency.what,
        start: start!,
        steady: steady!,
        overMiB: +(steady!.rss - runtime).toFixed(1),
      });
      onRow(rows.at(-1)!);
    }

    const bundle = await bundleProgram(`${dir}/net-exporter.js`);
    const configurations = subsystems(fixtures, bundle);
    let above: number | undefined;
    for (const configuration of quick ? configurations.slice(0, 2) : configurations) {
      const figures = await measureExporter(configuration.command, configuration.args);
      // The V8 flag rows and the source are compared with the bundled row of the same configuration.
      const reference = configuration.what.includes("as above")
        ? rows.find((row) => row.what.startsWith("discovery"))?.steady.rss
        : above;
      rows.push({
        kind: "subsystem",
        what: configuration.what,
        ...figures,
        overMiB: +(figures.steady.rss - (reference ?? rows[0]!.steady.rss)).toFixed(1),
      });
      above = figures.steady.rss;
      onRow(rows.at(-1)!);
    }
    return rows;
  } finally {
    for (const listener of listeners) await listener[Symbol.asyncDispose]();
    await Deno.remove(dir, { recursive: true });
  }
}

/** The two Markdown tables. */
export function memoryMarkdown(rows: MemoryRow[]): string {
  const residencyCells = (row: MemoryRow) =>
    `${row.start.rss} | ${row.steady.rss} | ${row.steady.anon} | ${row.steady.file}`;
  const dependencies = rows.filter((row) => row.kind === "dependency");
  const subsystemRows = rows.filter((row) => row.kind === "subsystem");
  return [
    "| a script that imports … and serves one route | RSS at start (MiB) | RSS steady (MiB) | anonymous | file-backed | over the runtime alone (MiB) |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
    ...dependencies.map((row) =>
      `| ${row.what} | ${residencyCells(row)} | ${row === dependencies[0] ? "—" : row.overMiB} |`
    ),
    "",
    "| the exporter, bundled as it ships | RSS at start (MiB) | RSS steady (MiB) | anonymous | file-backed | V8 heap in use (MiB) | CPU s / 1,000 probes | over the row it adds to (MiB) |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...subsystemRows.map((row) =>
      `| ${row.what} | ${residencyCells(row)} | ${row.heapMiB} | ${
        Number.isFinite(row.cpuPer1000Probes) ? row.cpuPer1000Probes : "—"
      } | ${row === subsystemRows[0] ? "—" : row.overMiB} |`
    ),
  ].join("\n");
}

if (import.meta.main) {
  const rows = await measureMemory(QUICK, (row) => console.error(JSON.stringify(row)));
  const markdown = memoryMarkdown(rows);
  console.log(markdown);
  if (!QUICK) {
    const written = await rewriteDocsBlock(
      "reports/benchmark.md",
      "memory",
      "deno task bench",
      markdown,
    );
    console.error(`wrote ${written}`);
  }
}
