/**
 * The watcher and discovery against a hostile or broken API server: one that
 * never answers, lists forever, streams a line that never ends, or ends every
 * watch at once. Each costs bounded memory, is counted and logged with its
 * cause, and is retried with backoff.
 */

import { getLogger, type Logger } from "@logtape/logtape";
import { NetworkCollector } from "../collectors/network.ts";
import type { ApiClient } from "../k8s/client.ts";
import { createDiscoveryMetrics, Discovery } from "../k8s/discovery.ts";
import { PodWatcher, type WatcherOptions } from "../k8s/watcher.ts";
import { createExporterMetrics } from "../exporter/metrics.ts";
import { DEFAULT_BUCKETS } from "../collectors/pacing.ts";
import { assert } from "./helpers/assert.ts";
import { waitFor } from "./helpers/exporter_process.ts";
import { Exposition } from "./helpers/metrics.ts";

type Handler = (path: string, signal: AbortSignal) => Promise<Response>;

/** An {@link ApiClient} whose answers the test writes; `handler` can be swapped at any time. */
function fakeClient(handler: Handler): ApiClient & { handler: Handler; paths: string[] } {
  const client = {
    server: "https://fake",
    handler,
    paths: [] as string[],
    get(path: string, signal: AbortSignal) {
      client.paths.push(path);
      return client.handler(path, signal);
    },
    close() {},
  };
  return client;
}

/** Never answers: the request ends only when its signal aborts, as `fetch` does. */
const blackHole: Handler = (_path, signal) =>
  new Promise((_resolve, reject) => signal.addEventListener("abort", () => reject(signal.reason)));

const pod = (name: string) => ({
  metadata: { name, uid: `uid-${name}`, resourceVersion: "5" },
  spec: { nodeName: `node-${name}` },
  status: {
    phase: "Running",
    podIPs: [{ ip: "10.0.0.5" }],
    conditions: [{ type: "Ready", status: "True" }],
  },
});

/** Discovery of the pods labelled app=x in "monitoring", as the pod "self" on node-self. */
const DISCOVERY_SETTINGS = {
  cluster: {} as never,
  namespace: "monitoring",
  labelSelector: "app=x",
  port: 8000,
  maxPeers: 10,
  requestTimeoutMs: 1_000,
  identity: { podName: "self", podIPs: ["10.0.0.1"], node: "node-self" },
};

const listAnswer = (items = [pod("a")], more = "") =>
  Response.json({ metadata: { resourceVersion: "5", continue: more }, items });

/**
 * A body that never ends: 64 KiB of `byte` each time it is read, each chunk
 * reported to `onChunk` so a test can tell how much was taken.
 */
function endlessBody(byte: number, onChunk: (bytes: number) => void): Response {
  return new Response(
    new ReadableStream({
      pull(controller) {
        onChunk(65_536);
        controller.enqueue(new Uint8Array(65_536).fill(byte));
      },
    }),
  );
}

const isWatch = (path: string) => path.includes("watch=1");

function watcherWith(client: ApiClient, options: Partial<WatcherOptions> = {}) {
  const failures: Array<{ message: string; retryInMs: number }> = [];
  const requests: string[] = [];
  let synced = 0;
  const watcher = new PodWatcher(
    {
      client,
      namespace: "monitoring",
      labelSelector: "app=x",
      backoffInitialMs: 40,
      backoffMaxMs: 320,
      random: () => 0,
      ...options,
    },
    {
      onPods: () => {},
      onFailure: (error, retryInMs) => failures.push({ message: error.message, retryInMs }),
      onRequest: (verb, code) => requests.push(`${verb} ${code}`),
      onSynced: () => synced++,
    },
  );
  return { watcher, failures, requests, synced: () => synced };
}

Deno.test("hostile API: a black-holed list is abandoned at its deadline, counted, and retried", async () => {
  const client = fakeClient(blackHole);
  const { watcher, failures, requests } = watcherWith(client, { listTimeoutMs: 150 });
  watcher.start();
  try {
    await waitFor(() => Promise.resolve(failures.length >= 1), 5_000, "first failure");
    assert.match(failures[0]!.message, /no complete answer within 150ms/);
    assert.equal(requests[0], "list error");
    // It answers again: the watcher lists and is synced.
    client.handler = (path, signal) =>
      isWatch(path) ? blackHole(path, signal) : Promise.resolve(listAnswer());
    await waitFor(() => Promise.resolve(watcher.synced), 5_000, "synced after the black hole");
  } finally {
    await watcher.stop();
  }
});

Deno.test("hostile API: a watch that never answers is cut at its open deadline", async () => {
  const client = fakeClient((path, signal) =>
    isWatch(path) ? blackHole(path, signal) : Promise.resolve(listAnswer())
  );
  const { watcher, failures } = watcherWith(client, { watchOpenTimeoutMs: 150 });
  watcher.start();
  try {
    await waitFor(() => Promise.resolve(failures.length >= 1), 5_000, "watch failure");
    assert.match(failures[0]!.message, /no answer within 150ms/);
  } finally {
    await watcher.stop();
  }
});

Deno.test("hostile API: a list whose continue never ends is given up after its page cap", async () => {
  let pages = 0;
  const client = fakeClient((path, signal) => {
    if (isWatch(path)) return blackHole(path, signal);
    pages++;
    return Promise.resolve(listAnswer([pod(`p${pages}`)], `token-${pages}`));
  });
  const { watcher, failures } = watcherWith(client, { maxListPages: 5 });
  watcher.start();
  try {
    await waitFor(() => Promise.resolve(failures.length >= 2), 5_000, "two failed lists");
    assert.match(failures[0]!.message, /past 5 pages/);
    assert.ok(pages <= 10 + 5, `${pages} pages read for two or three lists`);
    assert.equal(watcher.synced, false);
  } finally {
    await watcher.stop();
  }
});

Deno.test("hostile API: a page larger than its cap is not read to the end", async () => {
  let served = 0;
  const client = fakeClient((path, signal) => {
    if (isWatch(path)) return blackHole(path, signal);
    return Promise.resolve(endlessBody(0x20, (bytes) => (served += bytes)));
  });
  const { watcher, failures } = watcherWith(client, { maxPageBytes: 1_000_000 });
  watcher.start();
  try {
    await waitFor(() => Promise.resolve(failures.length >= 1), 5_000, "page too large");
    assert.match(failures[0]!.message, /larger than 1000000 bytes/);
    assert.ok(served < 4_000_000, `${served} bytes served for one list`);
  } finally {
    await watcher.stop();
  }
});

Deno.test("hostile API: a watch line that never ends is cut at its cap, then the pods are listed again", async () => {
  const streamed: number[] = [];
  const client = fakeClient((path) => {
    if (!isWatch(path)) return Promise.resolve(listAnswer());
    const stream = streamed.push(0) - 1;
    return Promise.resolve(endlessBody(0x78, (bytes) => (streamed[stream]! += bytes)));
  });
  const { watcher, failures } = watcherWith(client, { maxLineBytes: 1_000_000 });
  watcher.start();
  try {
    await waitFor(() => Promise.resolve(failures.length >= 1), 5_000, "line too long");
    assert.match(failures[0]!.message, /longer than 1000000 bytes; listing again/);
    await waitFor(
      () => Promise.resolve(client.paths.filter((path) => !isWatch(path)).length >= 2),
      5_000,
      "a second list",
    );
    assert.ok(streamed[0]! < 4_000_000, `${streamed[0]} bytes streamed for one line`);
  } finally {
    await watcher.stop();
  }
});

Deno.test("hostile API: watches that end at once with nothing wait their backoff; junk refreshes nothing", async () => {
  const client = fakeClient((path) =>
    Promise.resolve(isWatch(path) ? new Response("junk without a newline") : listAnswer())
  );
  const { watcher, failures, synced } = watcherWith(client);
  watcher.start();
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  await watcher.stop();
  const watches = client.paths.filter(isWatch).length;
  // Backoff 20, 40, 80, 160, 160… ms: about 8 watches in a second, not hundreds.
  assert.ok(watches >= 2 && watches <= 15, `${watches} watches in 1 s`);
  assert.match(failures[0]!.message, /ended after .* with no event/);
  assert.equal(synced(), 1, "only the list counts as a sync");
});

Deno.test("hostile API: a good list resets the backoff", async () => {
  let answer = 503;
  const client = fakeClient((path, signal) => {
    if (isWatch(path)) {
      return answer === 200
        ? blackHole(path, signal)
        : Promise.resolve(new Response("", { status: 503 }));
    }
    return Promise.resolve(answer === 503 ? new Response("{}", { status: 503 }) : listAnswer());
  });
  const { watcher, failures } = watcherWith(client, { watchOpenTimeoutMs: 100 });
  watcher.start();
  try {
    await waitFor(() => Promise.resolve(failures.length >= 4), 5_000, "four failed lists");
    answer = 200;
    const before = failures.length;
    await waitFor(
      () => Promise.resolve(failures.length > before),
      5_000,
      "a failed watch after the list",
    );
    const waits = failures.map((failure) => failure.retryInMs);
    assert.deepEqual(waits.slice(0, 4), [20, 40, 80, 160], "exponential while the list fails");
    assert.equal(waits[before], 20, "the first failure after a good list waits the shortest time");
  } finally {
    await watcher.stop();
  }
});

Deno.test("discovery: an outage is one warning with its cause, another kind of failure another, recovery one line", async () => {
  const lines: Array<[string, string]> = [];
  const record = (level: string) => (message: string) => void lines.push([level, message]);
  const logger = {
    ...getLogger(["test"]),
    debug: record("debug"),
    info: record("info"),
    warn: record("warn"),
    error: record("error"),
  } as unknown as Logger;
  const metrics = createExporterMetrics();
  const network = new NetworkCollector(
    {
      targets: [],
      intervalMs: 1_000,
      timeoutMs: 500,
      concurrency: 1,
      buckets: DEFAULT_BUCKETS,
      clock: "wall",
    },
    { metrics, logger },
  );
  let mode: "refused" | "503" | "ok" = "refused";
  const client = fakeClient((path, signal) => {
    if (mode === "refused") {
      return Promise.reject(
        new TypeError("fetch failed", {
          cause: new Error("tcp connect error: Connection refused"),
        }),
      );
    }
    if (mode === "503") return Promise.resolve(new Response("{}", { status: 503 }));
    return isWatch(path) ? blackHole(path, signal) : Promise.resolve(listAnswer());
  });
  const discovery = new Discovery(
    DISCOVERY_SETTINGS,
    {
      network,
      metrics: createDiscoveryMetrics(metrics.registry),
      logger,
      client,
      watcher: { backoffInitialMs: 20, backoffMaxMs: 40 },
    },
  );
  discovery.start();
  try {
    const listed = async (code: string) =>
      new Exposition(await metrics.registry.metrics()).samples(
        "net_exporter_kubernetes_requests_total",
        { verb: "list", code },
      )[0]?.value ?? 0;
    await waitFor(async () => (await listed("error")) >= 5, 5_000, "five refused lists");
    assert.equal(discovery.health().state, "failing");
    assert.match(discovery.health().error!, /fetch failed: tcp connect error: Connection refused/);
    mode = "503";
    await waitFor(async () => (await listed("503")) >= 5, 5_000, "five 503s");
    mode = "ok";
    await waitFor(() => Promise.resolve(discovery.ready), 5_000, "synced");
    const warnings = lines.filter(([level]) => level === "warn").map(([, message]) => message);
    assert.equal(warnings.length, 2, warnings.join("\n"));
    assert.match(warnings[0]!, /Connection refused/);
    assert.match(warnings[1]!, /503/);
    assert.ok(
      lines.some(([level, message]) => level === "info" && /reachable again/.test(message)),
    );
    // Every failure counted: as an internal error and as a request by its status.
    const exposition = new Exposition(await metrics.registry.metrics());
    assert.ok(exposition.value("network_error_total", {}) >= 10);
    assert.equal(discovery.health().state, "current");
  } finally {
    await discovery.stop();
    await network.stop();
  }
});

Deno.test("hostile API: a watch that answers and then stays quiet past the open deadline is kept (a real API server does this until its first bookmark)", async () => {
  const client = fakeClient((path, signal) => {
    if (!isWatch(path)) return Promise.resolve(listAnswer());
    // Headers at once, then nothing for three open deadlines, then a bookmark; open until cancelled.
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        signal.addEventListener("abort", () => controller.error(signal.reason), { once: true });
        await new Promise((resolve) => setTimeout(resolve, 450));
        if (signal.aborted) return;
        controller.enqueue(
          new TextEncoder().encode(
            JSON.stringify({ type: "BOOKMARK", object: { metadata: { resourceVersion: "9" } } }) +
              "\n",
          ),
        );
      },
    });
    return Promise.resolve(new Response(body, { status: 200 }));
  });
  const { watcher, failures, synced } = watcherWith(client, { watchOpenTimeoutMs: 150 });
  watcher.start();
  try {
    await waitFor(
      () => Promise.resolve(synced() >= 2),
      5_000,
      "the bookmark after the quiet spell",
    );
    assert.deepEqual(failures, [], "a quiet watch is not a failure");
  } finally {
    await watcher.stop();
  }
});

Deno.test("discovery: every pod of the release with an address may echo, ready or not; only ready ones are probed", async () => {
  const starting = {
    ...pod("b"),
    status: {
      phase: "Running",
      podIPs: [{ ip: "10.0.0.6" }],
      conditions: [{ type: "Ready", status: "False" }],
    },
  };
  let known: readonly string[] = [];
  let peers: readonly string[] = [];
  const sink = {
    setPeers: (endpoints: readonly { hostname: string }[]) =>
      void (peers = endpoints.map((endpoint) => endpoint.hostname)),
    setKnownAddresses: (addresses: readonly string[]) => void (known = addresses),
    countInternalError: () => {},
  };
  const metrics = createExporterMetrics();
  const client = fakeClient((path, signal) =>
    isWatch(path) ? blackHole(path, signal) : Promise.resolve(listAnswer([pod("a"), starting]))
  );
  const discovery = new Discovery(
    DISCOVERY_SETTINGS,
    {
      network: sink,
      metrics: createDiscoveryMetrics(metrics.registry),
      logger: getLogger(["test"]),
      client,
    },
  );
  discovery.start();
  try {
    await waitFor(() => Promise.resolve(discovery.ready), 5_000, "synced");
    assert.deepEqual(peers, ["10.0.0.5"], "the starting pod is not probed yet");
    assert.deepEqual([...known].sort(), ["10.0.0.5", "10.0.0.6"], "but it may echo already");
  } finally {
    await discovery.stop();
  }
});
