/**
 * The program as it ships: `deno compile --bundle` embeds one bundled module
 * and runs it with the compile task's flags. `deno compile` itself cannot run
 * here (it downloads its runtime), so tests and benchmarks bundle main.ts the
 * same way and run the bundle under those flags.
 * @module
 */

import denoJson from "../../deno.json" with { type: "json" };
import { CHILD_ENV } from "./requirements.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

/** The compile task as deno.json has it: its command, then `||` and advice for a failed download. */
export const COMPILE_TASK: string = (denoJson.tasks as Record<string, string>).compile!;

/**
 * The flags of the compile task that the binary runs with: permissions,
 * unstable APIs, V8 flags, and `--no-code-cache` (the image's root filesystem
 * is read-only, so the binary compiles its code at every start).
 */
export const COMPILED_RUN_FLAGS: string[] = COMPILE_TASK.split(" || ")[0]!.split(" ").filter(
  (word) =>
    word.startsWith("--allow-") || word.startsWith("--unstable-") ||
    word.startsWith("--v8-flags=") || word === "--no-code-cache",
);

/**
 * Bundles `entry` (resolved with the repository's import map) to `path` and
 * has Deno analyse the new file once (`deno cache`) before anything runs it:
 * a compiled binary never analyses its module, and a process that is the
 * first to load a new file keeps what the analysis allocated (13 MiB for the
 * exporter's bundle) for the rest of its life.
 * @throws {Error} "Cannot bundle …" with deno's own message.
 */
export async function bundleModule(entry: string, path: string): Promise<string> {
  for (
    const args of [["bundle", "--quiet", "--config", CONFIG, entry, "-o", path], ["cache", path]]
  ) {
    const output = await new Deno.Command(Deno.execPath(), {
      args,
      env: CHILD_ENV,
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!output.success) {
      throw new Error(
        `Cannot bundle ${entry} (deno ${args[0]}): ${
          new TextDecoder().decode(output.stderr).trim()
        }`,
      );
    }
  }
  return path;
}

/** Bundles main.ts to `path`, as {@link bundleModule} does. */
export function bundleProgram(path: string): Promise<string> {
  return bundleModule(MAIN, path);
}

let shared: Promise<string> | undefined;

/**
 * One bundle for the whole process, made on first use in a temporary folder
 * that is removed when the process exits.
 */
export function sharedBundle(): Promise<string> {
  shared ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "net-exporter-bundle-" });
    globalThis.addEventListener("unload", () => {
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch { /* already gone */ }
    });
    return await bundleProgram(`${dir}/net-exporter.js`);
  })();
  return shared;
}

/**
 * The command that runs `bundle` under the compiled permissions in a mount
 * namespace of its own, after `setup` (a shell script run as root there, e.g.
 * mounting a tmpfs where a pod has its service account or web config). No
 * --fork: unshare execs the shell, which execs Deno, so SIGTERM reaches the
 * exporter.
 */
export function inMountNamespace(setup: string, bundle: string): string[] {
  return [
    "unshare",
    "--mount",
    "sh",
    "-c",
    `${setup} && exec "$@"`,
    "sh",
    Deno.execPath(),
    "run",
    ...COMPILED_RUN_FLAGS,
    bundle,
  ];
}
