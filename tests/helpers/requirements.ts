/**
 * Tests that need root (namespaces) or an outside tool run where it is there
 * (CI provides both) and are skipped elsewhere with a visible notice.
 * @module
 */

function hasCommand(name: string): boolean {
  try {
    return new Deno.Command("sh", {
      args: ["-c", `command -v ${name}`],
      stdout: "null",
      stderr: "null",
    })
      .outputSync().success;
  } catch {
    return false;
  }
}

/** Asked of `test -c`: Deno grants paths under /dev only with every permission. */
function isCharacterDevice(path: string): boolean {
  return new Deno.Command("test", { args: ["-c", path], stdout: "null", stderr: "null" })
    .outputSync().success;
}

function isRoot(): boolean {
  const output = new Deno.Command("id", { args: ["-u"], stdout: "piped", stderr: "null" })
    .outputSync();
  return new TextDecoder().decode(output.stdout).trim() === "0";
}

/**
 * Returns true when every requirement is met; otherwise prints which is
 * missing and returns false (pass it as a test's `ignore`, negated).
 */
export function requires(
  test: string,
  needs: { root?: boolean; commands?: string[]; devices?: string[] },
): boolean {
  const missing = [
    ...(needs.root && !isRoot() ? ["root"] : []),
    ...(needs.commands ?? []).filter((command) => !hasCommand(command)),
    ...(needs.devices ?? []).filter((device) => !isCharacterDevice(device)),
  ];
  if (missing.length > 0) {
    console.warn(`NOTICE: skipping "${test}": needs ${missing.join(", ")}`);
    return false;
  }
  return true;
}

/** Environment for child Deno processes: no update check, which would look up Deno's site. */
export const CHILD_ENV: Record<string, string> = { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" };
