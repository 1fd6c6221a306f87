/**
 * The tools a comparison runs, described by configuration (compare.yaml):
 * how to start one on a simulated node, how to scrape it, and which of its
 * metrics carry DNS latency, dial latency and errors. Starting an instance
 * gives it what an in-cluster program expects: its own network namespace
 * (the node's), a mount namespace with a service-account directory (its own
 * token, the stand-in API server's CA, the namespace), the
 * `KUBERNETES_SERVICE_*` variables and the downward-API ones.
 * @module
 */

import { parse as parseYaml } from "yaml";
import { COMPILED_RUN_FLAGS, sharedBundle } from "../helpers/bundle.ts";
import { START_FLAGS } from "../helpers/exporter_process.ts";
import { type ProcessUsage, processUsage } from "../helpers/proc.ts";
import { CHILD_ENV } from "../helpers/requirements.ts";
import { type SimCluster, type SimNode } from "./cluster.ts";

/** A metric of a tool, and how to read it. */
export interface MetricRef {
  readonly metric: string;
  readonly type: "histogram" | "gauge" | "counter";
  /** Only series carrying these labels. */
  readonly labels?: Readonly<Record<string, string>>;
  /** For a gauge that says whether a probe failed (e.g. probe_success): the failing value. */
  readonly failed_when?: number;
}

/** What a tool reports for one kind of probe. */
export interface ProbeMapping {
  readonly latency: MetricRef;
  readonly errors: MetricRef;
  /** A counter of successes (background tools), so probes can be counted. */
  readonly successes?: MetricRef;
}

/** A background prober: probes on its own, a scrape reads every target at once. */
export interface BackgroundScrape {
  readonly mode: "background";
  readonly path: string;
}

/** A prober that probes only when scraped, one target per request (blackbox_exporter). */
export interface PerTargetScrape {
  readonly mode: "per_target";
  /** Its own metrics (what a busy scraper hits). */
  readonly path: string;
  /** Request path of one dial probe; `{peer_ip}` and `{port}` are filled in. */
  readonly dial_path: string;
  /** Request path of one DNS probe; `{dns_server}` is filled in. */
  readonly dns_path: string;
}

/** One compared tool. */
export interface ToolConfig {
  readonly name: string;
  /** The port it listens on, on the pod's IP; peers are dialled on the same port. */
  readonly port: number;
  /** argv; `{placeholders}` are filled per node (see docs/reports/comparison.md). */
  readonly command: readonly string[];
  /** Files written to `{config_dir}` (placeholders filled), e.g. a config file. */
  readonly files?: Readonly<Record<string, string>>;
  /** Extra environment variables. */
  readonly env?: Readonly<Record<string, string>>;
  /** Path that answers 200 once the tool is ready. */
  readonly ready_path: string;
  readonly scrape: BackgroundScrape | PerTargetScrape;
  /** Extra arguments for the instance under load (background tools: e.g. probe every peer). */
  readonly load_args?: readonly string[];
  /**
   * The longest one of its probes can take, in ms, where that is not the
   * harness's `{timeout}` (a DNS timeout of its own, say): detection trials
   * are spaced past it, so a probe of one trial never fails into the next.
   */
  readonly probe_timeout_ms?: number;
  readonly dial: ProbeMapping & {
    /** Background tools: the label naming the dialled peer and its value (e.g. `{peer_ip}:{port}`). */
    readonly target?: { readonly label: string; readonly value: string };
  };
  readonly dns: ProbeMapping;
}

/** Values placeholders take for one instance. */
export type Placeholders = Readonly<Record<string, string | readonly string[]>>;

/** True when a tool's command, files or environment name `{bundle}` (the program bundled as it ships). */
function needsBundle(tool: ToolConfig): boolean {
  return JSON.stringify(tool).includes("{bundle}");
}

/** Fills `{name}` placeholders in `text`; a list joins with commas. */
export function fill(text: string, values: Placeholders): string {
  return text.replace(/\{([a-z_]+)\}/g, (whole, name: string) => {
    const value = values[name];
    if (value === undefined) {
      throw new Error(`Cannot fill ${whole}: no such placeholder in ${JSON.stringify(text)}`);
    }
    return typeof value === "string" ? value : value.join(",");
  });
}

/** Fills an argv: an element that is exactly a list placeholder spreads into several. */
export function fillArgv(argv: readonly string[], values: Placeholders): string[] {
  return argv.flatMap((arg) => {
    const whole = /^\{([a-z_]+)\}$/.exec(arg);
    const value = whole ? values[whole[1]!] : undefined;
    return Array.isArray(value) ? [...value] : [fill(arg, values)];
  });
}

const METRIC_TYPES = ["histogram", "gauge", "counter"];

/** Checks a parsed comparison configuration; throws one line naming the first problem. */
export function validateTools(config: unknown): ToolConfig[] {
  const fail = (where: string, problem: string): never => {
    throw new Error(`Cannot use the comparison configuration: ${where} ${problem}`);
  };
  const tools = (config as { tools?: unknown })?.tools;
  if (!Array.isArray(tools) || tools.length === 0) fail("tools", "must be a non-empty list");
  const names = new Set<string>();
  (tools as unknown[]).forEach((tool, index) => {
    const at = `tools[${index}]`;
    const t = tool as Record<string, unknown>;
    if (typeof t.name !== "string" || t.name === "") fail(`${at}.name`, "must be a string");
    if (names.has(t.name as string)) fail(`${at}.name`, `repeats ${JSON.stringify(t.name)}`);
    names.add(t.name as string);
    if (!Number.isInteger(t.port) || (t.port as number) < 1 || (t.port as number) > 65535) {
      fail(`${at}.port`, `must be a port number: current value is ${JSON.stringify(t.port)}`);
    }
    if (
      !Array.isArray(t.command) || t.command.length === 0 ||
      !t.command.every((arg) => typeof arg === "string")
    ) fail(`${at}.command`, "must be a non-empty list of strings");
    if (typeof t.ready_path !== "string" || !t.ready_path.startsWith("/")) {
      fail(`${at}.ready_path`, "must be a path starting with /");
    }
    const scrape = t.scrape as Record<string, unknown> | undefined;
    if (scrape?.mode !== "background" && scrape?.mode !== "per_target") {
      fail(
        `${at}.scrape.mode`,
        `must be background or per_target: current value is ${JSON.stringify(scrape?.mode)}`,
      );
    }
    const paths = scrape!.mode === "background" ? ["path"] : ["path", "dial_path", "dns_path"];
    for (const key of paths) {
      if (typeof scrape![key] !== "string" || !(scrape![key] as string).startsWith("/")) {
        fail(`${at}.scrape.${key}`, "must be a path starting with /");
      }
    }
    for (const kind of ["dial", "dns"]) {
      const mapping = t[kind] as Record<string, unknown> | undefined;
      for (const role of ["latency", "errors", "successes"]) {
        const ref = mapping?.[role] as Record<string, unknown> | undefined;
        if (ref === undefined && role === "successes") {
          if (scrape!.mode === "background") {
            fail(`${at}.${kind}.successes`, "is needed by background tools to count probes");
          }
          continue;
        }
        if (typeof ref?.metric !== "string") fail(`${at}.${kind}.${role}.metric`, "is missing");
        if (!METRIC_TYPES.includes(ref!.type as string)) {
          fail(
            `${at}.${kind}.${role}.type`,
            `must be histogram, gauge or counter: current value is ${JSON.stringify(ref!.type)}`,
          );
        }
        if (role === "errors" && ref!.type === "gauge" && typeof ref!.failed_when !== "number") {
          fail(`${at}.${kind}.errors.failed_when`, "is needed for a gauge");
        }
      }
    }
    if (
      t.probe_timeout_ms !== undefined &&
      !(Number.isInteger(t.probe_timeout_ms) && (t.probe_timeout_ms as number) > 0)
    ) {
      fail(
        `${at}.probe_timeout_ms`,
        `must be a positive integer: current value is ${JSON.stringify(t.probe_timeout_ms)}`,
      );
    }
    const target = (t.dial as Record<string, unknown>).target as
      | Record<string, unknown>
      | undefined;
    if (
      scrape!.mode === "background" &&
      (typeof target?.label !== "string" || typeof target?.value !== "string")
    ) fail(`${at}.dial.target`, "needs label and value for a background tool");
  });
  return tools as ToolConfig[];
}

/** The longest any tool's probe can take: the harness's timeout, or a tool's own if longer. */
export function longestProbeMs(tools: readonly ToolConfig[], timeoutMs: number): number {
  return Math.max(timeoutMs, ...tools.map((tool) => tool.probe_timeout_ms ?? 0));
}

/** Reads and checks a comparison configuration (YAML or JSON). */
export async function loadTools(path: string): Promise<ToolConfig[]> {
  let parsed: unknown;
  try {
    parsed = parseYaml(await Deno.readTextFile(path));
  } catch (error) {
    throw new Error(
      `Cannot read the comparison configuration: current value is ${path} (${
        error instanceof Error ? error.message : String(error)
      })`,
    );
  }
  return validateTools(parsed);
}

// Runs in the instance's own mount namespace: the service-account files where a pod has them.
const IN_POD = 'mount -t tmpfs tmpfs /var/run && mkdir -p "$SA" && cp "$SECRETS"/* "$SA"/ && ' +
  'unset SA SECRETS && exec "$@"';
const SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount";

/** One running process of a tool on a node. */
export class ToolInstance {
  readonly tool: ToolConfig;
  readonly node: SimNode;
  /** The pod IP it was started on (the node's address moves on a restart). */
  readonly address: string;
  readonly url: string;
  readonly #child: Deno.ChildProcess;
  readonly #dir: string;
  readonly #logs: string[] = [];
  readonly #exited: Promise<Deno.CommandStatus>;
  #stopped: Promise<void> | undefined;

  private constructor(
    tool: ToolConfig,
    node: SimNode,
    child: Deno.ChildProcess,
    dir: string,
  ) {
    this.tool = tool;
    this.node = node;
    this.address = node.address;
    this.url = `http://${node.address}:${tool.port}`;
    this.#child = child;
    this.#dir = dir;
    this.#exited = child.status;
    (async () => {
      const decoder = new TextDecoderStream();
      for await (const chunk of child.stderr.pipeThrough(decoder)) {
        this.#logs.push(...chunk.split("\n").filter((line) => line !== ""));
        this.#logs.splice(0, Math.max(0, this.#logs.length - 40));
      }
    })().catch(() => {});
  }

  /**
   * Starts `tool` on `node` (in its namespace, as pod `node.podName`) and
   * resolves once its ready path answers 200, at most 30 s.
   */
  static async start(
    tool: ToolConfig,
    node: SimNode,
    cluster: SimCluster,
    token: string,
    options: { intervalMs: number; timeoutMs: number; extraArgs?: readonly string[] },
  ): Promise<ToolInstance> {
    const dir = await Deno.makeTempDir({ prefix: `compare-${tool.name}-` });
    try {
      return await ToolInstance.#startIn(dir, [tool, node, cluster, token, options]);
    } catch (error) {
      // A start that failed before its process took the folder over leaves nothing behind.
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw error;
    }
  }

  static async #startIn(
    dir: string,
    [tool, node, cluster, token, options]: Parameters<typeof ToolInstance.start>,
  ): Promise<ToolInstance> {
    await Deno.mkdir(`${dir}/secrets`);
    await Deno.mkdir(`${dir}/config`);
    await Deno.writeTextFile(`${dir}/secrets/token`, token);
    await Deno.writeTextFile(`${dir}/secrets/ca.crt`, cluster.api.caPem);
    await Deno.writeTextFile(`${dir}/secrets/namespace`, "monitoring");
    const repo = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
    const values: Placeholders = {
      deno: Deno.execPath(),
      start_flags: START_FLAGS,
      compiled_flags: COMPILED_RUN_FLAGS,
      ...(needsBundle(tool) ? { bundle: await sharedBundle() } : {}),
      repo,
      pod_ip: node.address,
      pod_name: node.podName,
      node_name: node.name,
      namespace: "monitoring",
      port: String(tool.port),
      interval: `${options.intervalMs}ms`,
      interval_ms: String(options.intervalMs),
      timeout: `${options.timeoutMs}ms`,
      timeout_ms: String(options.timeoutMs),
      dns_server: cluster.dns.address,
      config_dir: `${dir}/config`,
    };
    for (const [name, content] of Object.entries(tool.files ?? {})) {
      await Deno.writeTextFile(`${dir}/config/${name}`, fill(content, values));
    }
    const argv = [...fillArgv(tool.command, values), ...(options.extraArgs ?? [])];
    const apiPort = new URL(cluster.api.url).port;
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", node.netns, "unshare", "--mount", "sh", "-c", IN_POD, "sh", ...argv],
      env: {
        ...CHILD_ENV,
        ...Object.fromEntries(
          Object.entries(tool.env ?? {}).map(([key, value]) => [key, fill(value, values)]),
        ),
        SA: SERVICE_ACCOUNT,
        SECRETS: `${dir}/secrets`,
        KUBERNETES_SERVICE_HOST: cluster.controlAddress,
        KUBERNETES_SERVICE_PORT: apiPort,
        POD_NAME: node.podName,
        POD_NAMESPACE: "monitoring",
        POD_IP: node.address,
        POD_IPS: node.address,
        NODE_NAME: node.name,
        HOST_IP: node.address,
      },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const instance = new ToolInstance(tool, node, child, dir);
    const deadline = performance.now() + 30_000;
    let exited = false;
    instance.#exited.then(() => (exited = true));
    while (!exited && performance.now() < deadline) {
      try {
        const response = await fetch(`${instance.url}${tool.ready_path}`, {
          signal: AbortSignal.timeout(2_000),
        });
        await response.body?.cancel();
        if (response.status === 200) return instance;
      } catch { /* not listening yet */ }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const logs = instance.logs();
    await instance.stop();
    throw new Error(
      `Cannot start ${tool.name} on ${node.name}: ${
        exited ? "it exited" : "not ready after 30 s"
      }. Last log lines:\n${logs.join("\n")}`,
    );
  }

  /** Its last stderr lines. */
  logs(): string[] {
    return [...this.#logs];
  }

  /** Resident memory and CPU time so far; undefined once it has exited. */
  usage(): Promise<ProcessUsage | undefined> {
    return processUsage(this.#child.pid);
  }

  /** SIGTERM, then SIGKILL after 10 s; removes its files. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      try {
        this.#child.kill("SIGTERM");
      } catch { /* already gone */ }
      const killer = setTimeout(() => {
        try {
          this.#child.kill("SIGKILL");
        } catch { /* gone meanwhile */ }
      }, 10_000);
      await this.#exited;
      clearTimeout(killer);
      await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
    })();
    return this.#stopped;
  }
}
