/**
 * The pod watcher against a stand-in API server over real HTTPS with a bearer
 * token: sync, events, bookmarks, 410s, drops, outages and silent streams.
 */

import FakeTimers from "@sinonjs/fake-timers";
import { createApiClient, loadClusterConfig } from "../k8s/client.ts";
import type { PodRecord } from "../k8s/pods.ts";
import { PodWatcher, watchTimeout } from "../k8s/watcher.ts";
import { type PodSpec, startApiServer, type TestApiServer } from "./helpers/api_server.ts";
import { assert } from "./helpers/assert.ts";
import { waitFor } from "./helpers/exporter_process.ts";
import { requires } from "./helpers/requirements.ts";

const NEEDS = { commands: ["openssl"] };

interface Harness extends AsyncDisposable {
  server: TestApiServer;
  watcher: PodWatcher;
  pods(): ReadonlyMap<string, PodRecord>;
  failures: string[];
  names(): string[];
}

async function harness(
  initial: PodSpec[],
  options: { pageSize?: number; watchTimeoutSeconds?: number; silenceSlackMs?: number } = {},
): Promise<Harness> {
  const server = await startApiServer();
  for (const spec of initial) server.apply(spec);
  const kubeconfig = await server.writeKubeconfig("monitoring");
  const config = (await loadClusterConfig(kubeconfig, () => undefined))!;
  let latest: ReadonlyMap<string, PodRecord> = new Map();
  const failures: string[] = [];
  const client = createApiClient(config);
  const watcher = new PodWatcher(
    {
      client,
      namespace: "monitoring",
      labelSelector: "app.kubernetes.io/name=net-exporter",
      pageSize: options.pageSize ?? 500,
      watchTimeoutSeconds: options.watchTimeoutSeconds ?? 30,
      silenceSlackMs: options.silenceSlackMs ?? 5_000,
      backoffInitialMs: 50,
      backoffMaxMs: 200,
    },
    {
      onPods: (pods) => (latest = new Map(pods)),
      onFailure: (error) => failures.push(error.message),
      onRequest: () => {},
      onSynced: () => {},
    },
  );
  return {
    server,
    watcher,
    pods: () => latest,
    failures,
    names: () => [...latest.values()].map((pod) => pod.name).sort(),
    async [Symbol.asyncDispose]() {
      await watcher.stop();
      client.close();
      await server[Symbol.asyncDispose]();
    },
  };
}

const pod = (name: string, extra: Partial<PodSpec> = {}): PodSpec => ({
  name,
  node: `node-${name}`,
  ips: [`127.0.0.${10 + Number(name.replace(/\D/g, "") || 0)}`],
  ...extra,
});

const verbs = (server: TestApiServer) => server.requests.map((request) => request.split(" ")[0]);

Deno.test({
  name: "watcher: paginated first list, then add, modify, delete — one list, then only watches",
  ignore: !requires("watcher: first list and events", NEEDS),
  async fn() {
    await using h = await harness([pod("p1"), pod("p2"), pod("p3"), pod("p4"), pod("p5")], {
      pageSize: 2,
    });
    h.watcher.start();
    await waitFor(
      () => Promise.resolve(h.watcher.synced && h.names().length === 5),
      5_000,
      "first list",
    );
    assert.deepEqual(verbs(h.server).slice(0, 3), ["list", "list", "list"], "three pages of two");
    assert.ok(h.server.requests[1]!.includes("continue=2"));
    // The first list is served from the API server's watch cache; its further pages carry only
    // the continue token (the API server refuses a version beside it).
    assert.match(h.server.requests[0]!, /resourceVersion=0(&|$)/);
    assert.ok(!h.server.requests[1]!.includes("resourceVersion"));
    await waitFor(() => Promise.resolve(verbs(h.server).includes("watch")), 5_000, "watch");
    const watch = h.server.requests.find((request) => request.startsWith("watch"))!;
    assert.match(watch, /allowWatchBookmarks=true/);
    // 30 s spread up to a fifth more, so pods started together do not renew together.
    const timeout = Number(/timeoutSeconds=(\d+)/.exec(watch)![1]);
    assert.ok(timeout >= 30 && timeout <= 36, watch);
    assert.match(watch, /resourceVersion=\d+/);

    h.server.apply(pod("p6"));
    await waitFor(() => Promise.resolve(h.names().includes("p6")), 5_000, "ADDED");
    h.server.apply(pod("p2", { ready: false }));
    await waitFor(
      () => Promise.resolve([...h.pods().values()].find((p) => p.name === "p2")?.ready === false),
      5_000,
      "MODIFIED",
    );
    h.server.apply(pod("p3", { deleting: true }));
    await waitFor(
      () => Promise.resolve([...h.pods().values()].find((p) => p.name === "p3")?.deleting === true),
      5_000,
      "deleting",
    );
    h.server.remove("p1");
    await waitFor(() => Promise.resolve(!h.names().includes("p1")), 5_000, "DELETED");
    assert.deepEqual(verbs(h.server), ["list", "list", "list", "watch"], "no polling");
    assert.deepEqual(h.failures, []);
  },
});

Deno.test({
  name:
    "watcher: only running pods are listed and watched — a pod arrives when it runs and leaves when it stops",
  ignore: !requires("watcher: running pods only", NEEDS),
  async fn() {
    await using h = await harness([pod("p1"), pod("p2", { phase: "Pending", ips: [] })]);
    h.watcher.start();
    await waitFor(() => Promise.resolve(verbs(h.server).includes("watch")), 5_000, "watch");
    assert.deepEqual(h.names(), ["p1"], "the pending pod is not listed");
    for (const request of h.server.requests) {
      assert.match(request, /fieldSelector=status.phase%3DRunning(&|$)/, request);
    }

    // A new pod's creation and pending status are never sent; it arrives once it runs.
    h.server.apply(pod("p3", { phase: "Pending", ips: [] }));
    h.server.apply(pod("p4"));
    await waitFor(() => Promise.resolve(h.names().includes("p4")), 5_000, "p4 running");
    assert.deepEqual(h.names(), ["p1", "p4"]);
    h.server.apply(pod("p3"));
    await waitFor(() => Promise.resolve(h.names().includes("p3")), 5_000, "p3 running");

    // A pod that stops running (a kubelet's terminal status before the final delete) leaves.
    h.server.apply(pod("p1", { phase: "Succeeded" }));
    await waitFor(() => Promise.resolve(!h.names().includes("p1")), 5_000, "p1 stopped");
    assert.deepEqual(h.names(), ["p3", "p4"]);
    assert.deepEqual(verbs(h.server), ["list", "watch"], "no relist");
    assert.deepEqual(h.failures, []);
  },
});

Deno.test({
  name:
    "watcher: a dropped connection resumes from the last resourceVersion (bookmarks count), no relist",
  ignore: !requires("watcher: drop", NEEDS),
  async fn() {
    await using h = await harness([pod("p1")]);
    h.watcher.start();
    await waitFor(() => Promise.resolve(verbs(h.server).includes("watch")), 5_000, "watch");
    h.server.apply(pod("p2"));
    await waitFor(() => Promise.resolve(h.names().includes("p2")), 5_000, "p2");
    h.server.bookmark();
    await new Promise((resolve) => setTimeout(resolve, 200));
    h.server.dropWatches();
    await waitFor(
      () => Promise.resolve(verbs(h.server).filter((verb) => verb === "watch").length === 2),
      5_000,
      "re-watch",
    );
    const [first, second] = h.server.requests.filter((request) => request.startsWith("watch"));
    const version = (request: string) => Number(/resourceVersion=(\d+)/.exec(request)![1]);
    assert.equal(
      version(second!),
      version(first!) + 2,
      `resumed after the event and the bookmark: ${h.server.requests.join(" | ")}`,
    );
    assert.equal(verbs(h.server).filter((verb) => verb === "list").length, 1);
    h.server.apply(pod("p3"));
    await waitFor(() => Promise.resolve(h.names().includes("p3")), 5_000, "events after resume");
    assert.equal(h.failures.length, 1, "the drop is counted once");
  },
});

Deno.test({
  name: "watcher: 410 as an ERROR event and as an HTTP status both lead to a fresh list",
  ignore: !requires("watcher: 410", NEEDS),
  async fn() {
    await using h = await harness([pod("p1")]);
    h.watcher.start();
    await waitFor(() => Promise.resolve(verbs(h.server).includes("watch")), 5_000, "watch");
    h.server.expireWatches();
    await waitFor(
      () => Promise.resolve(verbs(h.server).filter((verb) => verb === "list").length === 2),
      5_000,
      "relist after ERROR 410",
    );
    await waitFor(
      () => Promise.resolve(verbs(h.server).filter((verb) => verb === "watch").length === 2),
      5_000,
      "watch again",
    );

    h.server.apply(pod("p2"));
    await waitFor(() => Promise.resolve(h.names().includes("p2")), 5_000, "p2");
    h.server.dropWatches();
    h.server.remove("p1"); // happens while the watcher is cut off…
    h.server.forgetHistory(); // …and falls out of the server's history
    await waitFor(
      () => Promise.resolve(verbs(h.server).filter((verb) => verb === "list").length === 3),
      5_000,
      "relist after HTTP 410",
    );
    await waitFor(
      () => Promise.resolve(!h.names().includes("p1")),
      5_000,
      "the relist shows the deletion",
    );
    assert.deepEqual(h.names(), ["p2"]);
    // Relists ask for the current state, never the watch cache's (which may be behind).
    const lists = h.server.requests.filter((request) => request.startsWith("list"));
    assert.ok(
      lists.slice(1).every((request) => !request.includes("resourceVersion")),
      lists.join("\n"),
    );
  },
});

Deno.test({
  name: "watcher: an outage (503) keeps the last pods, is counted, and is caught up on",
  ignore: !requires("watcher: outage", NEEDS),
  async fn() {
    await using h = await harness([pod("p1"), pod("p2")]);
    h.watcher.start();
    await waitFor(() => Promise.resolve(verbs(h.server).includes("watch")), 5_000, "watch");
    h.server.failWith = 503;
    h.server.dropWatches();
    await waitFor(
      () => Promise.resolve(h.failures.length >= 4),
      5_000,
      "failures during the outage",
    );
    assert.ok(h.failures.some((failure) => failure.includes("503")), h.failures.join("\n"));
    assert.deepEqual(h.names(), ["p1", "p2"], "last known pods kept");
    h.server.apply(pod("p3"));
    h.server.failWith = undefined;
    await waitFor(() => Promise.resolve(h.names().includes("p3")), 5_000, "caught up");
  },
});

Deno.test({
  name: "watcher: a silent stream is cut after the server's timeout and resumed",
  ignore: !requires("watcher: silent stream", NEEDS),
  async fn() {
    await using h = await harness([pod("p1")], { watchTimeoutSeconds: 1, silenceSlackMs: 300 });
    h.server.silentWatches = true;
    h.watcher.start();
    await waitFor(
      () => Promise.resolve(h.failures.some((failure) => failure.includes("silent"))),
      5_000,
      "silence detected",
    );
    h.server.silentWatches = false;
    h.server.apply(pod("p2"));
    await waitFor(
      () => Promise.resolve(h.names().includes("p2")),
      5_000,
      "events after the silent stream",
    );
    assert.equal(
      verbs(h.server).filter((verb) => verb === "list").length,
      1,
      "resumed, not relisted",
    );
  },
});

Deno.test({
  name: "watcher: a wrong token is a counted failure, not a crash",
  ignore: !requires("watcher: 401", NEEDS),
  async fn() {
    await using server = await startApiServer();
    const kubeconfig = await server.writeKubeconfig("monitoring");
    await Deno.writeTextFile(
      kubeconfig,
      (await Deno.readTextFile(kubeconfig)).replace(server.token, "wrong"),
    );
    const failures: string[] = [];
    const client = createApiClient((await loadClusterConfig(kubeconfig, () => undefined))!);
    const watcher = new PodWatcher(
      {
        client,
        namespace: "monitoring",
        labelSelector: "",
        backoffInitialMs: 20,
        backoffMaxMs: 50,
      },
      {
        onPods: () => {},
        onFailure: (error) => failures.push(error.message),
        onRequest: () => {},
        onSynced: () => {},
      },
    );
    watcher.start();
    await waitFor(() => Promise.resolve(failures.length >= 2), 5_000, "failures");
    await watcher.stop();
    client.close();
    assert.match(failures[0]!, /Cannot list pods: API server answered 401/);
    assert.equal(watcher.synced, false);
  },
});

Deno.test({
  name:
    "in-cluster configuration: service-account token and CA; the token is re-read as it rotates",
  ignore: !requires("in-cluster configuration", NEEDS),
  async fn() {
    await using server = await startApiServer();
    server.apply(pod("p1"));
    const dir = await Deno.makeTempDir({ prefix: "serviceaccount-" });
    const clock = FakeTimers.install({ toFake: ["Date"], now: Date.now() });
    try {
      await Deno.writeTextFile(`${dir}/token`, "stale-token");
      await Deno.writeTextFile(`${dir}/ca.crt`, server.caPem);
      const port = new URL(server.url).port;
      const env = (name: string) =>
        ({ KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: port })[name];
      assert.equal(
        await loadClusterConfig(undefined, () => undefined, dir),
        undefined,
        "no host: not in a cluster",
      );
      const config = (await loadClusterConfig(undefined, env, dir))!;
      assert.equal(config.source, "in-cluster");
      assert.equal(config.server, `https://127.0.0.1:${port}`);
      const client = createApiClient(config);
      try {
        const list = () =>
          client.get("/api/v1/namespaces/monitoring/pods", AbortSignal.timeout(5_000));
        const denied = await list();
        await denied.body?.cancel();
        assert.equal(denied.status, 401, "the stale token is refused");
        await Deno.writeTextFile(`${dir}/token`, server.token); // the kubelet rotates the token
        clock.tick(61_000);
        const allowed = await list();
        assert.equal(allowed.status, 200);
        assert.equal((await allowed.json()).items.length, 1);
      } finally {
        client.close();
      }
    } finally {
      clock.uninstall();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("kubeconfig: unsupported settings are refused with the reason", async () => {
  const path = await Deno.makeTempFile({ suffix: ".kubeconfig" });
  try {
    await Deno.writeTextFile(
      path,
      `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: ns}}]
current-context: x
`,
    );
    await assert.rejects(
      loadClusterConfig(path, () => undefined),
      /insecure-skip-tls-verify is not supported/,
    );
    await Deno.writeTextFile(path, "clusters: [");
    await assert.rejects(
      loadClusterConfig(path, () => undefined),
      /Cannot use kubeconfig: current value is/,
    );
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("watcher: each watch's timeout is spread up to a fifth above the base, so pods started together renew apart", () => {
  assert.equal(watchTimeout(300, () => 0), 300);
  assert.equal(watchTimeout(300, () => 0.5), 330);
  assert.equal(watchTimeout(300, () => 0.9999), 360);
  // 1,000 pods whose watches start in the same second: their renewals spread over a minute.
  let seed = 1;
  const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
  const perSecond = new Map<number, number>();
  for (let pod = 0; pod < 1_000; pod++) {
    const second = watchTimeout(300, random);
    perSecond.set(second, (perSecond.get(second) ?? 0) + 1);
  }
  assert.ok(perSecond.size >= 55, `${perSecond.size} distinct seconds`);
  assert.ok(
    Math.max(...perSecond.values()) < 40,
    `${Math.max(...perSecond.values())} in one second`,
  );
});
