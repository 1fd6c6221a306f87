/**
 * The small simulation CI runs: three namespaces joined by the link
 * emulator, one exporter each, discovering the others through the stand-in
 * API server. One delay step (20 ms one way) checked against an independent
 * reference, and one cut node. The full run is `deno task sim`.
 */

import { assert } from "../helpers/assert.ts";
import { get, waitFor } from "../helpers/exporter_process.ts";
import { Exposition } from "../helpers/metrics.ts";
import { requires } from "../helpers/requirements.ts";
import { SimCluster } from "../sim/cluster.ts";
import {
  dialErrors,
  DialErrorTally,
  exporterSamples,
  median,
  scrape,
  timeUntilDialError,
} from "../sim/measure.ts";

const NAME =
  "simulation: 20 ms links never read faster than the link and land in their bucket; a cut node counted within interval + timeout; a rolling restart counts no error";
Deno.test({
  name: NAME,
  ignore: !requires(NAME, {
    root: true,
    commands: ["ip", "python3", "openssl"],
    devices: ["/dev/net/tun"],
  }),
  async fn() {
    const intervalMs = 1_000;
    const timeoutMs = 500;
    await using cluster = await SimCluster.create({ nodes: 3, intervalMs, timeoutMs });
    await cluster.startExporters();
    const [a, b, c] = cluster.nodes as [
      typeof cluster.nodes[0],
      typeof cluster.nodes[0],
      typeof cluster.nodes[0],
    ];
    for (const node of cluster.nodes) {
      await waitFor(
        async () => (await scrape(node)).value("net_exporter_peers", { state: "selected" }) === 2,
        10_000,
        `${node.name} selects 2 peers`,
      );
    }

    const floorMs = median(await cluster.reference(a, [b.address], 15));
    await cluster.setAllLinks({ delay_ms: 20 });
    await new Promise((resolve) => setTimeout(resolve, 2 * intervalMs));
    const before = await scrape(a);
    const exporter = await exporterSamples(a, b, 6, intervalMs);
    const reference = await cluster.reference(a, [b.address], 15);
    const after = await scrape(a);
    assert.ok(exporter.length >= 5, `exporter samples: ${exporter}`);
    // How close to the reference is a figure for the simulation's report (docs/reports/simulation.md), not
    // a bound a loaded machine may break: here, never faster than the link, and in its bucket.
    assert.ok(
      median(exporter) >= 40,
      `exporter median ${median(exporter).toFixed(3)} ms: at least the injected 40 ms round trip ` +
        `(reference ${median(reference).toFixed(3)} ms, floor ${floorMs.toFixed(3)} ms)`,
    );
    const delta = (le: string) =>
      after.value("network_latency_seconds_bucket", { target_node: b.name, le }) -
      before.value("network_latency_seconds_bucket", { target_node: b.name, le });
    assert.ok(delta("+Inf") >= 5);
    assert.equal(delta("0.04"), 0, "none at or below the link's own 40 ms");
    assert.equal(
      delta("0.056"),
      delta("+Inf"),
      "every new observation in the (40 ms, 56 ms] bucket",
    );
    // Timed by the kernel, and the path MTU it holds is the link's.
    assert.equal(after.value("network_handshake_clock_info", { clock: "kernel" }), 1);
    const tunMtu = Number(
      /mtu (\d+)/.exec(
        new TextDecoder().decode(
          (await new Deno.Command("ip", { args: ["-n", a.netns, "link", "show", "tun0"] }).output())
            .stdout,
        ),
      )![1],
    );
    assert.equal(after.value("network_path_mtu_bytes", { target_node: b.name }), tunMtu);

    await cluster.isolate(c, "cut");
    const detectedByPeer = await timeUntilDialError(a, c, "timeout", 5_000);
    assert.ok(detectedByPeer !== undefined, "a peer counts the cut node as timeouts");
    assert.ok(
      detectedByPeer <= intervalMs + timeoutMs + 200,
      `detected after ${detectedByPeer} ms`,
    );
    await waitFor(
      async () => dialErrors(await scrape(c), a, "timeout") > 0,
      intervalMs + timeoutMs + 500,
      "the cut node counts its peers unreachable",
    );

    // A rolling restart on healthy links: new pod names and IPs, no dial error, no stale series.
    await cluster.isolate(c, {});
    await new Promise((resolve) => setTimeout(resolve, 2 * intervalMs));
    const oldAddresses = cluster.nodes.map((node) => node.address);
    const tally = new DialErrorTally();
    await tally.sample(cluster.nodes);
    tally.counted = 0;
    for (const node of cluster.nodes) {
      await cluster.restart(node, () => tally.sample(cluster.nodes));
      await tally.sample(cluster.nodes);
      for (const peer of cluster.nodes) {
        await waitFor(
          async () => (await scrape(peer)).value("net_exporter_peers", { state: "selected" }) === 2,
          10_000,
          `${peer.name} sees every peer again`,
        );
      }
      await tally.sample(cluster.nodes);
    }
    await new Promise((resolve) => setTimeout(resolve, 2 * intervalMs));
    await tally.sample(cluster.nodes);
    assert.equal(tally.counted, 0, "no dial error counted during the rolling restart");
    for (const node of cluster.nodes) {
      const stale = (await scrape(node)).all.filter((sample) =>
        oldAddresses.some((address) => sample.labels.host?.startsWith(`${address}:`))
      );
      assert.deepEqual(stale, [], `${node.name} keeps no series of old pod IPs`);
    }

    // Loss on the handshake path: with every SYN from a to b dropped, an exporter whose deadline
    // outlasts the kernel's first SYN retransmission (1 s) counts the SYNs it had to resend.
    const patient = await cluster.startExtraExporter(a, 8002, [
      "--k8s.discovery=off",
      "--no-collector.dns",
      `--network.targets=${b.address}:8000`,
      "--network.interval=3s",
      "--network.timeout=2500ms",
    ]);
    const retransmits = async () =>
      new Exposition((await get(`${patient.url}/metrics`)).body).value(
        "network_syn_retransmits_total",
        { host: `${b.address}:8000` },
      );
    await waitFor(async () => (await get(`${patient.url}/readyz`)).status === 200, 10_000, "ready");
    assert.equal(await retransmits(), 0, "no SYN resent on a healthy link");
    await cluster.setLink(a, b, { syn_loss: 1 });
    await waitFor(async () => await retransmits() >= 1, 10_000, "a resent SYN counted");
    await cluster.setLink(a, b, {});
  },
});
