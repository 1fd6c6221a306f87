/**
 * Discovery end to end: the real exporter process, a stand-in API server over
 * HTTPS, and peer pods listening on 127.0.0.11–15 so real handshakes happen.
 */

import { type PodSpec, startApiServer } from "./helpers/api_server.ts";
import { assert } from "./helpers/assert.ts";
import {
  get,
  runProgram,
  startExporter,
  waitFor,
  waitUntilReady,
} from "./helpers/exporter_process.ts";
import { Exposition } from "./helpers/metrics.ts";
import { requires } from "./helpers/requirements.ts";
import { startListener, type TestListener } from "./helpers/tcp.ts";

/** Listeners on 127.0.0.11… sharing one port, as pods of a DaemonSet share theirs. */
async function peerListeners(
  count: number,
): Promise<{ port: number; listeners: TestListener[] } & AsyncDisposable> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const first = startListener("127.0.0.11");
    const listeners = [first];
    try {
      for (let i = 1; i < count; i++) {
        listeners.push(startListener(`127.0.0.${11 + i}`, first.port));
      }
      return {
        port: first.port,
        listeners,
        async [Symbol.asyncDispose]() {
          for (const listener of listeners) await listener[Symbol.asyncDispose]();
        },
      };
    } catch {
      for (const listener of listeners) await listener[Symbol.asyncDispose]();
    }
  }
  throw new Error("Cannot find a port free on 127.0.0.11-15");
}

const pod = (index: number, extra: Partial<PodSpec> = {}): PodSpec => ({
  name: `net-exporter-${index}`,
  node: `node-${index}`,
  ips: [`127.0.0.${10 + index}`],
  ...extra,
});

async function scrape(url: string): Promise<Exposition> {
  return new Exposition((await get(`${url}/metrics`)).body);
}

function probedHosts(metrics: Exposition): string[] {
  return metrics.samples("network_latency_seconds_count").map((sample) =>
    `${sample.labels.host}@${sample.labels.target_node}`
  )
    .sort();
}

const FLOW =
  "discovery: probes exactly the other pods, follows deletes, adds, deleting and not-ready pods";
Deno.test({
  name: FLOW,
  ignore: !requires(FLOW, { commands: ["openssl"] }),
  async fn() {
    await using peers = await peerListeners(5);
    await using api = await startApiServer();
    for (const index of [1, 2, 3]) api.apply(pod(index));
    await using exporter = await startExporter(
      [
        "--no-collector.dns",
        "--k8s.discovery=on",
        `--k8s.kubeconfig=${await api.writeKubeconfig("monitoring")}`,
        `--network.port=${peers.port}`,
        "--network.interval=1s",
        "--network.timeout=500ms",
      ],
      { env: { POD_NAME: "net-exporter-1", NODE_NAME: "node-1", POD_IP: "127.0.0.11" } },
    );
    const host = (index: number) => `127.0.0.${10 + index}:${peers.port}@node-${index}`;
    await waitUntilReady(exporter, 5_000);
    await waitFor(
      async () => probedHosts(await scrape(exporter.url)).length === 2,
      5_000,
      "two peers probed",
    );
    let metrics = await scrape(exporter.url);
    assert.deepEqual(probedHosts(metrics), [host(2), host(3)]);
    assert.equal(metrics.value("net_exporter_peers", { state: "discovered" }), 2);
    assert.equal(metrics.value("net_exporter_peers", { state: "selected" }), 2);
    assert.ok(
      metrics.value("net_exporter_discovery_last_sync_timestamp_seconds") > Date.now() / 1000 - 10,
    );

    api.remove("net-exporter-3");
    await waitFor(
      async () => !probedHosts(await scrape(exporter.url)).includes(host(3)),
      5_000,
      "deleted pod's series gone",
    );
    metrics = await scrape(exporter.url);
    assert.deepEqual(
      metrics.samples("network_dial_error_total", { host: `127.0.0.13:${peers.port}` }),
      [],
    );

    api.apply(pod(4));
    await waitFor(
      async () => probedHosts(await scrape(exporter.url)).includes(host(4)),
      5_000,
      "added pod probed",
    );

    api.apply(pod(2, { deleting: true }));
    api.apply(pod(4, { ready: false }));
    api.apply(pod(5, { phase: "Pending", ips: [] }));
    await waitFor(
      async () => probedHosts(await scrape(exporter.url)).length === 0,
      5_000,
      "deleting and not-ready pods dropped",
    );

    metrics = await scrape(exporter.url);
    const dialErrors = metrics.samples("network_dial_error_total").reduce(
      (sum, sample) => sum + sample.value,
      0,
    );
    assert.equal(dialErrors, 0, "no dial error counted through all of it");
    assert.equal(metrics.value("network_error_total"), 0);
    const verbs = api.requests.map((request) => request.split(" ")[0]);
    assert.deepEqual(verbs, ["list", "watch"], "one list, then one watch: no polling");

    const page =
      await (await fetch(`${exporter.url}/`, { headers: { accept: "application/json" } })).json();
    assert.deepEqual(page.peers, [], "status page lists the discovered peers (none left)");
  },
});

const OUTAGE =
  "discovery: readiness waits for the first list; an outage of 503s keeps the known peers probed";
Deno.test({
  name: OUTAGE,
  ignore: !requires(OUTAGE, { commands: ["openssl"] }),
  async fn() {
    await using peers = await peerListeners(3);
    await using api = await startApiServer();
    for (const index of [1, 2, 3]) api.apply(pod(index));
    api.failWith = 503;
    await using exporter = await startExporter(
      [
        "--no-collector.dns",
        // The peers here are TCP listeners standing in for pods, not net-exporters: no echo.
        "--no-collector.echo",
        `--k8s.kubeconfig=${await api.writeKubeconfig("monitoring")}`,
        `--network.port=${peers.port}`,
        "--network.interval=200ms",
        "--network.timeout=100ms",
      ],
      { env: { POD_NAME: "net-exporter-1", NODE_NAME: "node-1", POD_IP: "127.0.0.11" } },
    );
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    assert.equal(
      (await get(`${exporter.url}/readyz`)).status,
      503,
      "not ready before the first list",
    );
    api.failWith = undefined;
    await waitUntilReady(exporter, 10_000);
    await waitFor(
      async () => probedHosts(await scrape(exporter.url)).length === 2,
      5_000,
      "peers probed",
    );

    api.failWith = 503;
    api.dropWatches();
    const before = await scrape(exporter.url);
    const lastSync = before.value("net_exporter_discovery_last_sync_timestamp_seconds");
    // Ten seconds at a probe every 200 ms: fifty rounds, as a minute at the default 1 s would be
    // sixty; the API's retries back off through 0.5, 1, 2 and 4 s meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    const during = await scrape(exporter.url);
    assert.equal(probedHosts(during).length, 2, "known peers kept through the outage");
    for (const sample of during.samples("network_latency_seconds_count")) {
      const earlier = before.value("network_latency_seconds_count", sample.labels);
      assert.ok(
        sample.value - earlier >= 45,
        `${sample.labels.host} probed ${sample.value - earlier} times in 10 s`,
      );
    }
    assert.ok(during.value("network_error_total") >= 3, "API failures counted");
    assert.equal(during.value("net_exporter_discovery_last_sync_timestamp_seconds"), lastSync);
    assert.equal((await get(`${exporter.url}/readyz`)).status, 200, "still ready: peers are known");

    api.remove("net-exporter-3");
    api.failWith = undefined;
    await waitFor(
      async () => probedHosts(await scrape(exporter.url)).length === 1,
      20_000,
      "caught up after the outage",
    );
    const after = await scrape(exporter.url);
    assert.ok(after.value("net_exporter_discovery_last_sync_timestamp_seconds") > lastSync);
  },
});

const CHECK = "discovery: check lists the peers once and shows their node names";
Deno.test({
  name: CHECK,
  ignore: !requires(CHECK, { commands: ["openssl"] }),
  async fn() {
    await using peers = await peerListeners(3);
    await using api = await startApiServer();
    for (const index of [1, 2, 3]) api.apply(pod(index));
    const { code, stdout, stderr } = await runProgram(
      [
        "check",
        "--no-collector.dns",
        // The peers here are TCP listeners standing in for pods, not net-exporters: no echo.
        "--no-collector.echo",
        `--k8s.kubeconfig=${await api.writeKubeconfig("monitoring")}`,
        `--network.port=${peers.port}`,
      ],
      { POD_NAME: "net-exporter-2", NODE_NAME: "node-2", POD_IP: "127.0.0.12" },
    );
    assert.equal(code, 0, stdout + stderr);
    assert.match(stdout, new RegExp(`127\\.0\\.0\\.11:${peers.port} \\(node-1\\)\\s+ok`));
    assert.match(stdout, new RegExp(`127\\.0\\.0\\.13:${peers.port} \\(node-3\\)\\s+ok`));
    assert.doesNotMatch(stdout, /127\.0\.0\.12/, "never itself");
    assert.deepEqual(api.requests.map((request) => request.split(" ")[0]), ["list"]);
  },
});

/**
 * A TCP relay in front of the API server that, while `blackHole` is set,
 * accepts connections and never answers (a stuck load balancer).
 */
function startRelay(target: number): AsyncDisposable & { port: number; blackHole: boolean } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held = new Set<Deno.Conn>();
  const relay = {
    port: (listener.addr as Deno.NetAddr).port,
    blackHole: true,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of held) {
        try {
          conn.close();
        } catch { /* closed by its pipe */ }
      }
      await loop;
    },
  };
  const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
    try {
      await from.readable.pipeTo(to.writable);
    } catch { /* either side closed */ }
  };
  const loop = (async () => {
    try {
      for await (const conn of listener) {
        held.add(conn);
        if (relay.blackHole) continue;
        const upstream = await Deno.connect({ hostname: "127.0.0.1", port: target });
        held.add(upstream);
        pipe(conn, upstream);
        pipe(upstream, conn);
      }
    } catch { /* closed */ }
  })();
  return relay;
}

const BLACK_HOLE = "discovery: a black-holed API server is counted and logged within the deadline";
Deno.test({
  name: `${BLACK_HOLE}; the exporter stays alive and is ready once it answers`,
  ignore: !requires(BLACK_HOLE, { commands: ["openssl"] }),
  async fn() {
    await using peers = await peerListeners(2);
    await using api = await startApiServer();
    for (const index of [1, 2]) api.apply(pod(index));
    await using relay = startRelay(Number(new URL(api.url).port));
    const kubeconfig = await api.writeKubeconfig("monitoring");
    const config = JSON.parse(await Deno.readTextFile(kubeconfig));
    config.clusters[0].cluster.server = `https://127.0.0.1:${relay.port}`;
    await Deno.writeTextFile(kubeconfig, JSON.stringify(config));
    await using exporter = await startExporter(
      [
        "--no-collector.dns",
        `--k8s.kubeconfig=${kubeconfig}`,
        "--k8s.request-timeout=1s",
        `--network.port=${peers.port}`,
        "--network.interval=1s",
        "--network.timeout=500ms",
      ],
      { env: { POD_NAME: "net-exporter-1", NODE_NAME: "node-1", POD_IP: "127.0.0.11" } },
    );
    await waitFor(
      () =>
        Promise.resolve(exporter.logs.some((line) => /no complete answer within 1s/.test(line))),
      5_000,
      "the black hole logged with its deadline",
    );
    const during = await scrape(exporter.url);
    assert.ok(
      during.value("net_exporter_kubernetes_requests_total", { verb: "list", code: "error" }) >= 1,
    );
    assert.ok(during.value("network_error_total") >= 1);
    assert.equal((await get(`${exporter.url}/healthz`)).status, 200, "alive");
    assert.equal((await get(`${exporter.url}/readyz`)).status, 503, "not ready without peers");
    const page = await get(`${exporter.url}/`);
    assert.match(page.body, /failing for .*no complete answer within 1s/);

    relay.blackHole = false;
    await waitUntilReady(exporter, 20_000);
    await waitFor(
      async () => probedHosts(await scrape(exporter.url)).length === 1,
      10_000,
      "the peer probed once the API answers",
    );
    const warnings = exporter.logs.filter((line) => /"level":"WARN"/.test(line));
    assert.equal(
      warnings.filter((line) => /no complete answer/.test(line)).length,
      1,
      "one warning for the outage, however many retries",
    );
  },
});
