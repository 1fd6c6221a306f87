/**
 * The exporter as a real process (`deno run main.ts serve ...`), for
 * end-to-end tests: started on a free loopback port, stopped with SIGTERM.
 * @module
 */

import denoJson from "../../deno.json" with { type: "json" };
import { CHILD_ENV } from "./requirements.ts";

/** A running exporter process. */
export interface ExporterProcess extends AsyncDisposable {
  /** Base URL, e.g. http://127.0.0.1:40123 */
  readonly url: string;
  readonly child: Deno.ChildProcess;
  /** Log lines written so far (JSON lines). */
  readonly logs: string[];
  /** Sends SIGTERM and waits; returns the exit code and how long it took. */
  stop(): Promise<{ code: number; ms: number }>;
}

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/**
 * The flags `deno task start` runs the exporter with (permissions, V8 flags),
 * read from deno.json so tests run exactly what users start.
 */
export const START_FLAGS: string[] = (() => {
  const start = (denoJson.tasks as Record<string, string>).start!;
  const match = /deno run (.*) main\.ts/.exec(start);
  if (!match) {
    throw new Error(`Cannot read the start task: current value is ${JSON.stringify(start)}`);
  }
  return match[1]!.split(" ");
})();

/**
 * Starts `main.ts serve` with `args` on `options.host` (default 127.0.0.1) and
 * `options.port` (default: a free one); resolves once it listens.
 * `options.command` replaces `deno run … main.ts` (e.g. to run it in a namespace).
 */
export async function startExporter(
  args: string[],
  options: { env?: Record<string, string>; command?: string[]; host?: string; port?: number } = {},
): Promise<ExporterProcess> {
  const host = options.host ?? "127.0.0.1";
  const command = options.command ?? [Deno.execPath(), "run", ...START_FLAGS, MAIN];
  const child = new Deno.Command(command[0]!, {
    args: [
      ...command.slice(1),
      "serve",
      `--web.listen-address=${host}:${options.port ?? 0}`,
      ...args,
    ],
    env: { ...CHILD_ENV, ...options.env },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const logs: string[] = [];
  let resolveAddress: (url: string) => void = () => {};
  const address = new Promise<string>((resolve) => (resolveAddress = resolve));
  const pump = (async () => {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of child.stderr) {
      buffered += decoder.decode(chunk, { stream: true });
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const line of lines) {
        logs.push(line);
        const match = /listening on \S+:(\d+)/.exec(line);
        if (match) resolveAddress(`http://${host}:${match[1]}`);
      }
    }
  })();
  const exited = child.status.then((status) => {
    resolveAddress("");
    return status;
  });
  const giveUp = setTimeout(() => resolveAddress(""), 30_000);
  const url = await address;
  clearTimeout(giveUp);
  let stopped: Promise<{ code: number; ms: number }> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      const startedAt = performance.now();
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      // A process that ignores SIGTERM is killed after 15 s; its exit code then says so (137).
      const killer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone meanwhile */ }
      }, 15_000);
      const status = await exited;
      clearTimeout(killer);
      await pump;
      return {
        code: status.signal === "SIGKILL" ? 137 : status.code,
        ms: performance.now() - startedAt,
      };
    })();
    return stopped;
  };
  if (url === "") {
    await stop();
    throw new Error(`Cannot start the exporter: it did not listen. Logs:\n${logs.join("\n")}`);
  }
  return { url, child, logs, stop, [Symbol.asyncDispose]: async () => void await stop() };
}

/** Polls `check` every 100 ms until it returns true or `ms` pass. */
export async function waitFor(
  check: () => Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
}

/** GETs `url` (giving up after 5 s) and returns status and body. */
export async function get(url: string): Promise<{ status: number; body: string }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  return { status: response.status, body: await response.text() };
}

/** Waits until the exporter's /readyz answers 200, at most `ms`. */
export function waitUntilReady(exporter: ExporterProcess, ms: number): Promise<void> {
  return waitFor(
    async () => (await get(`${exporter.url}/readyz`)).status === 200,
    ms,
    `${exporter.url} ready`,
  );
}

/** Runs `main.ts` with `args` to completion (at most 30 s), as `deno task start` would. */
export async function runProgram(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...START_FLAGS, MAIN, ...args],
    env: { ...CHILD_ENV, ...env },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  return {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr),
  };
}

/**
 * Starts the exporter behind the web config at `path`, probing nothing but a
 * closed loopback port; `https` is its URL with the https scheme.
 */
export async function startWebExporter(
  path: string,
): Promise<ExporterProcess & { readonly https: string }> {
  const exporter = await startExporter([
    "--no-collector.dns",
    "--network.targets=127.0.0.1:9",
    `--web.config.file=${path}`,
  ]);
  return Object.assign(exporter, { https: exporter.url.replace(/^http:/, "https:") });
}
