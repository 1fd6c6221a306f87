/**
 * Runs a program in namespaces of the test's own (`unshare`), after a setup
 * line (e.g. loopback up, a bind mount), and reads what it prints as JSON:
 * so a test can let a program do what must not reach the machine's network
 * or files.
 * @module
 */

import { CHILD_ENV } from "./requirements.ts";

/** What to run where; `command` is execed after `setup` (a shell line). */
export interface IsolatedRun {
  /** unshare's flags, e.g. ["--net"] or ["--mount", "--net", "--fork"]. */
  readonly unshare: readonly string[];
  readonly setup: string;
  readonly command: readonly string[];
  readonly timeoutMs?: number;
}

/**
 * The program's standard output, parsed as JSON.
 * @throws {Error} with its standard error when it fails.
 */
export async function runIsolatedJson(run: IsolatedRun): Promise<unknown> {
  const output = await new Deno.Command("unshare", {
    args: [...run.unshare, "sh", "-c", `${run.setup} && exec "$@"`, "sh", ...run.command],
    env: CHILD_ENV,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(run.timeoutMs ?? 60_000),
  }).output();
  if (!output.success) {
    throw new Error(
      `Cannot run ${run.command.join(" ")} isolated: it exited ${output.code}:\n${
        new TextDecoder().decode(output.stderr)
      }`,
    );
  }
  return JSON.parse(new TextDecoder().decode(output.stdout));
}
