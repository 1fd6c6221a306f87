/**
 * One tool of a comparison running on every simulated node: its instances,
 * their scrapers, and what the run asks of it.
 * @module
 */

import type { ProcessUsage } from "../helpers/proc.ts";
import type { SimCluster, SimNode } from "./cluster.ts";
import type { Recorder } from "./recording.ts";
import { type ToolConfig, ToolInstance } from "./tools.ts";

/** What to run. */
export interface CompareOptions {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /** One-way delays (ms) of the accuracy steps. */
  readonly delaysMs: readonly number[];
  /** Intervals each accuracy step records for. */
  readonly windowIntervals: number;
  /** Cut-node trials (each cuts another node), and DNS trials of each kind. */
  readonly trials: number;
  /** Crowd pods for the load phase; 0 skips it. */
  readonly crowd: number;
  readonly log?: (line: string) => void;
}

/** One tool running on every node, scraped. */
export class Fleet {
  readonly tool: ToolConfig;
  readonly token: string;
  readonly recorders = new Map<SimNode, Recorder>();
  readonly instances = new Map<SimNode, ToolInstance>();
  /** Usage of processes that have exited, so totals survive restarts. */
  retiredCpuSeconds = 0;

  constructor(tool: ToolConfig, token: string) {
    this.tool = tool;
    this.token = token;
  }

  async startOn(
    node: SimNode,
    cluster: SimCluster,
    options: CompareOptions,
    extraArgs: readonly string[] = [],
  ): Promise<void> {
    const instance = await ToolInstance.start(this.tool, node, cluster, this.token, {
      intervalMs: options.intervalMs,
      timeoutMs: options.timeoutMs,
      extraArgs,
    });
    this.instances.set(node, instance);
    this.recorders.get(node)!.instance = instance;
  }

  async stopOn(node: SimNode): Promise<void> {
    const instance = this.instances.get(node);
    if (!instance) return;
    this.retiredCpuSeconds += (await instance.usage())?.cpuSeconds ?? 0;
    this.recorders.get(node)!.instance = undefined;
    this.instances.delete(node);
    await instance.stop();
  }

  /** Every node's scrapes, in time order. */
  recordings() {
    return [...this.recorders.values()].flatMap((recorder) => recorder.recordings);
  }

  async usage(node: SimNode): Promise<ProcessUsage | undefined> {
    return await this.instances.get(node)?.usage();
  }
}
