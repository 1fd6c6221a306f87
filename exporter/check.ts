/**
 * `net-exporter check`: one round of every enabled probe, printed as a table
 * or JSON; exit 0 when all succeeded, 1 when any failed, 2 when there is
 * nothing to probe. For an operator on a node, ad hoc.
 * @module
 */

import type { TargetStatus } from "../collectors/collector.ts";
import type { CommonSettings } from "./cli.ts";
import { describeError } from "../lib/errors.ts";
import { formatReadings, formatSeconds } from "./status_page.ts";
import { logger } from "./log.ts";
import { assemble } from "./assemble.ts";

/** A target's result as `check` prints it. */
export interface CheckRow {
  readonly collector: string;
  readonly target: string;
  readonly result: "ok" | "failed";
  readonly latency_seconds: number | null;
  readonly reason: string;
  readonly message: string;
  /**
   * Further figures of a success (an NTP server's clock offset, …); a name ending in "Seconds" is
   * seconds. In camelCase here; the JSON output writes them in snake_case.
   */
  readonly readings: Readonly<Record<string, number>>;
  readonly labels: Readonly<Record<string, string>>;
}

/** Turns statuses into printable rows. */
export function checkRows(statuses: readonly TargetStatus[]): CheckRow[] {
  return statuses.map((status) => ({
    collector: status.collector,
    target: status.title,
    result: status.state === "up" ? "ok" : "failed",
    latency_seconds: status.seconds ?? null,
    reason: status.reason ?? (status.state === "pending" ? "not probed" : ""),
    message: status.message ?? "",
    readings: status.readings ?? {},
    labels: status.labels,
  }));
}

/** What a row's DETAIL cell says: a success's further figures, or what a failure said. */
function detail(row: CheckRow): string {
  if (row.result === "failed") return row.message.replace(/\s+/g, " ").trim();
  return formatReadings(row.readings);
}

/**
 * Formats rows as an aligned text table, with a DETAIL column when any row
 * has something to say beyond its reason: a success's further figures, or a
 * failure's own message (e.g. "no AAAA record"), so the table alone explains it.
 */
export function formatTable(rows: readonly CheckRow[]): string {
  const detailed = rows.some((row) => detail(row) !== "");
  const cells = [
    ["COLLECTOR", "TARGET", "RESULT", "LATENCY", "REASON", ...(detailed ? ["DETAIL"] : [])],
    ...rows.map((row) => [
      row.collector,
      row.target,
      row.result,
      row.latency_seconds === null ? "-" : formatSeconds(row.latency_seconds),
      row.reason || "-",
      ...(detailed ? [detail(row) || "-"] : []),
    ]),
  ];
  const widths = cells[0]!.map((_, column) =>
    Math.max(...cells.map((line) => line[column]!.length))
  );
  return cells.map((line) =>
    line.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd()
  )
    .join("\n") + "\n";
}

/** `offsetSeconds` → `offset_seconds`: the JSON's keys are snake_case throughout, as the metrics' names. */
function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

/** The rows as `check --output=json` prints them: every key in snake_case. */
export function formatJson(rows: readonly CheckRow[]): string {
  const snake = rows.map((row) => ({
    ...row,
    readings: Object.fromEntries(
      Object.entries(row.readings).map(([name, value]) => [snakeCase(name), value]),
    ),
  }));
  return JSON.stringify(snake, null, 2) + "\n";
}

/** Runs the check; returns the exit code. */
export async function check(
  settings: CommonSettings,
  output: "table" | "json",
  write: (text: string) => void,
  signal: AbortSignal,
  writeErr: (text: string) => void = write,
): Promise<number> {
  // A failed target is in the results; its log line would say it twice.
  const { collectors, discovery } = assemble(settings, { targetChanges: "debug" });
  if (!discovery && collectors.every((collector) => collector.statuses().length === 0)) {
    await Promise.all(collectors.map((collector) => collector.stop()));
    writeErr(
      "error: Cannot check: current configuration has nothing to probe (give --network.targets, " +
        "--dns.hosts with the DNS collector on, --ntp.servers, or a Kubernetes configuration)\n",
    );
    return 2;
  }
  let statuses: TargetStatus[];
  try {
    if (discovery) {
      try {
        await discovery.syncOnce(signal);
      } catch (error) {
        logger("k8s").error(`Cannot list peers: ${describeError(error)}`);
        return 1;
      }
    }
    // Untimed first: a fresh process would otherwise time its own start-up into the first probes.
    await Promise.all(collectors.map((collector) => collector.warmUp(signal)));
    // One collector after another, as serve's spread-out schedule rarely runs them at once.
    statuses = [];
    for (const collector of collectors) statuses.push(...await collector.probeAll(signal));
  } finally {
    await Promise.all(collectors.map((collector) => collector.stop()));
  }
  const rows = checkRows(statuses);
  write(output === "json" ? formatJson(rows) : formatTable(rows));
  return rows.every((row) => row.result === "ok") ? 0 : 1;
}
