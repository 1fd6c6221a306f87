/**
 * A process's memory and CPU time from /proc, read through `cat`: Deno
 * grants /proc only with every permission.
 * @module
 */

/** Resident memory (now and peak) and user + system CPU time of a process. */
export interface ProcessUsage {
  readonly rssBytes: number;
  /** The anonymous and the file-backed parts of `rssBytes` (shared memory aside). */
  readonly rssAnonBytes: number;
  readonly rssFileBytes: number;
  readonly peakRssBytes: number;
  readonly cpuSeconds: number;
  /** Threads of the process now. */
  readonly threads: number;
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** Usage of process `pid`; undefined once it has exited. */
export async function processUsage(pid: number): Promise<ProcessUsage | undefined> {
  const output = await new Deno.Command("cat", {
    args: [`/proc/${pid}/status`, `/proc/${pid}/stat`],
    stdout: "piped",
    stderr: "null",
  }).output();
  if (!output.success) return undefined;
  const text = new TextDecoder().decode(output.stdout);
  const kB = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(text)?.[1]);
  // stat: "pid (comm) state ..." — fields after the closing parenthesis; utime, stime are 14, 15.
  const stat = text.slice(text.lastIndexOf(")") + 2).split(" ");
  if (Number.isNaN(kB("VmRSS")) || stat.length < 13) return undefined;
  return {
    rssBytes: kB("VmRSS") * 1024,
    rssAnonBytes: kB("RssAnon") * 1024,
    rssFileBytes: kB("RssFile") * 1024,
    peakRssBytes: kB("VmHWM") * 1024,
    cpuSeconds: (Number(stat[11]) + Number(stat[12])) / CLOCK_TICKS,
    threads: Number(/Threads:\s+(\d+)/.exec(text)?.[1]),
  };
}

/** SIGTERM, then SIGKILL if the process has not exited within `graceMs`; resolves with its status. */
export async function stopChild(
  child: Deno.ChildProcess,
  graceMs: number,
): Promise<Deno.CommandStatus> {
  const signal = (name: Deno.Signal) => {
    try {
      child.kill(name);
    } catch { /* already gone */ }
  };
  signal("SIGTERM");
  const killer = setTimeout(() => signal("SIGKILL"), graceMs);
  try {
    return await child.status;
  } finally {
    clearTimeout(killer);
  }
}

/** Entries of this process's /proc directory `what`, listed by `ls` (Deno denies /proc/self to tests). */
export function procEntries(what: "fd" | "task"): number {
  const output = new Deno.Command("ls", { args: [`/proc/${Deno.pid}/${what}`] }).outputSync();
  return new TextDecoder().decode(output.stdout).trim().split("\n").length;
}
