/**
 * Memory of the pod cache: 5,000 peer pods listed through the real watcher
 * (from an in-memory API client, with managedFields as real pods carry),
 * V8 heap after a full GC, against an empty cache. Also the time one
 * reconcile (peer selection over 5,000 pods) takes.
 *
 * Run: deno run --v8-flags=--expose-gc tests/bench/pod_cache.ts [pods]
 */

import { selectPeers } from "../../k8s/discovery.ts";
import { rewriteDocsBlock } from "../helpers/docs.ts";
import type { ApiClient } from "../../k8s/client.ts";
import type { PodRecord } from "../../k8s/pods.ts";
import { PodWatcher } from "../../k8s/watcher.ts";

const count = Number(Deno.args[0] ?? 5_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("Cannot measure: run with --v8-flags=--expose-gc");

function podJson(index: number): unknown {
  return {
    metadata: {
      name: `net-exporter-${index.toString(36)}`,
      uid: crypto.randomUUID(),
      resourceVersion: String(1000 + index),
      labels: { "app.kubernetes.io/name": "net-exporter" },
      managedFields: [{
        manager: "kubelet",
        fieldsV1: { "f:status": { "f:conditions": "x".repeat(3000) } },
      }],
    },
    spec: {
      nodeName: `node-${index}`,
      containers: [{ name: "net-exporter", image: "net-exporter:bench" }],
    },
    status: {
      phase: "Running",
      podIP: `10.${index >> 16 & 255}.${index >> 8 & 255}.${index & 255}`,
      podIPs: [{ ip: `10.${index >> 16 & 255}.${index >> 8 & 255}.${index & 255}` }, {
        ip: `fd00::${index.toString(16)}`,
      }],
      conditions: [{ type: "Ready", status: "True" }],
    },
  };
}

function client(pods: number): ApiClient {
  return {
    server: "memory",
    get: (path) => {
      const url = new URL(path, "http://memory");
      const limit = Number(url.searchParams.get("limit"));
      const offset = Number(url.searchParams.get("continue") || 0);
      const items = Array.from(
        { length: Math.max(0, Math.min(limit, pods - offset)) },
        (_, i) => podJson(offset + i),
      );
      const next = offset + limit < pods ? String(offset + limit) : undefined;
      return Promise.resolve(
        Response.json({
          metadata: { resourceVersion: "1", ...(next ? { continue: next } : {}) },
          items,
        }),
      );
    },
    close() {},
  };
}

async function cachedHeap(
  pods: number,
): Promise<{ bytes: number; cache: ReadonlyMap<string, PodRecord> }> {
  let cache: ReadonlyMap<string, PodRecord> = new Map();
  const watcher = new PodWatcher(
    { client: client(pods), namespace: "bench", labelSelector: "" },
    {
      onPods: (records) => (cache = records),
      onFailure: () => {},
      onRequest: () => {},
      onSynced: () => {},
    },
  );
  await watcher.listOnce(new AbortController().signal);
  for (let i = 0; i < 3; i++) {
    gc!();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { bytes: Deno.memoryUsage().heapUsed, cache };
}

const empty = await cachedHeap(0);
const full = await cachedHeap(count);
const perPod = (full.bytes - empty.bytes) / count;
const startedAt = performance.now();
const selection = selectPeers(full.cache.values(), {
  podName: undefined,
  podIPs: [],
  node: "node-0",
}, 10);
const reconcileMs = performance.now() - startedAt;
if (selection.selected.length !== 10 || full.cache.size !== count) {
  throw new Error("bench did not cache what it listed");
}
const table = [
  `| pods | heap over empty cache (MiB) | per pod (bytes) | peer selection (ms) |`,
  `|---:|---:|---:|---:|`,
  `| ${count} | ${((full.bytes - empty.bytes) / 2 ** 20).toFixed(2)} | ${perPod.toFixed(0)} | ${
    reconcileMs.toFixed(1)
  } |`,
].join("\n");
console.log(table);
console.error(
  `wrote ${await rewriteDocsBlock("reports/benchmark.md", "pod-cache", "deno task bench", table)}`,
);
