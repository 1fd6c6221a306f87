/**
 * Reading what a simulated node's exporter reports: its exact last
 * handshake times from the status page, its histogram and counters.
 * @module
 */

export { median, quantile } from "../helpers/stats.ts";
import { Exposition } from "../helpers/metrics.ts";
import type { SimNode } from "./cluster.ts";

/** The exporter's metrics on `node`. */
export async function scrape(node: SimNode): Promise<Exposition> {
  return new Exposition(
    await (await fetch(`${node.exporter!.url}/metrics`, { signal: AbortSignal.timeout(5_000) }))
      .text(),
  );
}

interface StatusTarget {
  collector: string;
  labels: Record<string, string>;
  state: string;
  seconds?: number;
  at?: number;
  reason?: string;
}

/** Status page rows of `node`'s exporter. */
export async function statuses(node: SimNode): Promise<StatusTarget[]> {
  const response = await fetch(`${node.exporter!.url}/`, {
    headers: { accept: "application/json" },
    signal: AbortSignal.timeout(5_000),
  });
  return (await response.json()).targets as StatusTarget[];
}

/**
 * Collects `count` distinct last handshake times (ms) that `from` reports for
 * `to`, reading the status page as new probes land.
 */
export async function exporterSamples(
  from: SimNode,
  to: SimNode,
  count: number,
  intervalMs: number,
): Promise<number[]> {
  const seen = new Map<number, number>();
  const deadline = performance.now() + (count + 3) * intervalMs;
  while (seen.size < count && performance.now() < deadline) {
    const row = (await statuses(from)).find((status) =>
      status.collector === "network" && status.labels.target_node === to.name
    );
    if (row?.state === "up" && row.at !== undefined && row.seconds !== undefined) {
      seen.set(row.at, row.seconds * 1000);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs / 4));
  }
  return [...seen.values()];
}

/** Sum of `network_dial_error_total` from `from` to `to` for `reason`. */
export function dialErrors(metrics: Exposition, to: SimNode, reason: string): number {
  return metrics.samples("network_dial_error_total", { target_node: to.name, reason })
    .reduce((sum, sample) => sum + sample.value, 0);
}

/**
 * Milliseconds from now until `from` counts a `reason` dial error to `to`
 * (polling every 50 ms, at most `limitMs`); undefined when it never does.
 */
export async function timeUntilDialError(
  from: SimNode,
  to: SimNode,
  reason: string,
  limitMs: number,
): Promise<number | undefined> {
  const startedAt = performance.now();
  const before = dialErrors(await scrape(from), to, reason);
  while (performance.now() - startedAt < limitMs) {
    if (dialErrors(await scrape(from), to, reason) > before) return performance.now() - startedAt;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return undefined;
}

/**
 * Dial errors counted while it samples: series come and go (a leaving peer
 * takes its counters along), so totals are not monotonic; instead every
 * increase of every series of every process is added up, a new series
 * counting from 0.
 */
export class DialErrorTally {
  readonly #last = new Map<string, number>();
  counted = 0;

  /** Scrapes every node once and adds what each error counter grew by. */
  async sample(nodes: readonly SimNode[]): Promise<void> {
    for (const node of nodes) {
      if (!node.exporter) continue;
      let metrics: Exposition;
      try {
        metrics = await scrape(node);
      } catch {
        continue; // between processes
      }
      for (const series of metrics.samples("network_dial_error_total")) {
        const key = `${node.exporter.url} ${JSON.stringify(series.labels)}`;
        this.counted += Math.max(0, series.value - (this.#last.get(key) ?? 0));
        this.#last.set(key, series.value);
      }
    }
  }
}
