/**
 * The echo collector on a real (simulated) link: two exporters in two network
 * namespaces joined by the userspace link emulator, one echoing to the other
 * through `--echo.targets`. A clean link loses nothing; 5% loss each way
 * (9.75% a round trip) is counted as such; a link that silently drops every
 * packet over 1,400 bytes (an MTU black hole, MTU 1,500 on both ends) loses
 * the full-size echoes and not the small ones, while TCP handshakes to the
 * same peer count no error.
 */

import { assert } from "../helpers/assert.ts";
import { get, waitFor } from "../helpers/exporter_process.ts";
import { Exposition } from "../helpers/metrics.ts";
import { requires } from "../helpers/requirements.ts";
import { SimCluster } from "../sim/cluster.ts";

const PORT = 8010;
/** Rounds per measured window: 20 small datagrams each, one full-size. */
const ROUNDS = 25;
const INTERVAL_MS = 1_000;

const NAME =
  "echo: a clean link loses nothing; 5% loss each way counts 5-15% lost; an MTU black hole loses the full-size echoes only, and handshakes count no error";
Deno.test({
  name: NAME,
  ignore: !requires(NAME, {
    root: true,
    commands: ["ip", "python3", "openssl"],
    devices: ["/dev/net/tun"],
  }),
  async fn() {
    await using cluster = await SimCluster.create({
      nodes: 2,
      intervalMs: 2_000,
      timeoutMs: 1_000,
    });
    const [a, b] = cluster.nodes as [typeof cluster.nodes[0], typeof cluster.nodes[0]];
    const common = ["--k8s.discovery=off", "--no-collector.dns", "--no-collector.ntp"];
    // b answers (its own echo rounds have no target); a asks, and dials b's TCP port too.
    await cluster.startExtraExporter(b, PORT, [...common, "--no-collector.network"]);
    const asker = await cluster.startExtraExporter(a, PORT, [
      ...common,
      `--echo.targets=${b.address}:${PORT}`,
      `--echo.interval=${INTERVAL_MS}ms`,
      "--echo.timeout=600ms",
      "--echo.count=20",
      `--network.targets=${b.address}:${PORT}`,
      "--network.interval=500ms",
      "--network.timeout=400ms",
    ]);
    const host = `${b.address}:${PORT}`;
    const read = async () => {
      const metrics = new Exposition((await get(`${asker.url}/metrics`)).body);
      // A histogram's series appear with its first observation: absent reads as 0.
      const sum = (name: string, labels: Record<string, string>) =>
        metrics.samples(name, labels).reduce((total, sample) => total + sample.value, 0);
      const value = (name: string, size: string) => sum(name, { host, size });
      return {
        smallSent: value("echo_packets_sent_total", "small"),
        smallLost: value("echo_packets_lost_total", "small"),
        fullSent: value("echo_packets_sent_total", "full"),
        fullLost: value("echo_packets_lost_total", "full"),
        fullSize: sum("echo_full_size_bytes", { host }),
        dialErrors: sum("network_dial_error_total", { host }),
        handshakes: sum("network_latency_seconds_count", { host }),
      };
    };
    /** The counters' growth over `rounds` more rounds. */
    const window = async (rounds: number) => {
      const before = await read();
      await waitFor(
        async () => (await read()).fullSent - before.fullSent >= rounds,
        rounds * INTERVAL_MS * 3 + 10_000,
        `${rounds} rounds`,
      );
      const after = await read();
      return {
        smallSent: after.smallSent - before.smallSent,
        smallLost: after.smallLost - before.smallLost,
        fullSent: after.fullSent - before.fullSent,
        fullLost: after.fullLost - before.fullLost,
        fullSize: after.fullSize,
        dialErrors: after.dialErrors - before.dialErrors,
        handshakes: after.handshakes - before.handshakes,
      };
    };
    await waitFor(async () => (await read()).fullSent >= 2, 20_000, "the first rounds");

    const clean = await window(10);
    assert.equal(clean.smallLost, 0, JSON.stringify(clean));
    assert.equal(clean.fullLost, 0, JSON.stringify(clean));
    // The simulated nodes' TUN devices have MTU 1,500: 1,472 bytes of UDP payload fill it.
    assert.equal(clean.fullSize, 1_472);

    await cluster.setLink(a, b, { loss: 0.05 });
    await cluster.setLink(b, a, { loss: 0.05 });
    const lossy = await window(ROUNDS);
    const lossRatio = lossy.smallLost / lossy.smallSent;
    assert.ok(
      lossRatio >= 0.05 && lossRatio <= 0.15,
      `5% each way is 9.75% a round trip; counted ${lossy.smallLost}/${lossy.smallSent}`,
    );

    await cluster.setLink(a, b, { max_size: 1_400 });
    await cluster.setLink(b, a, { max_size: 1_400 });
    await window(2); // rounds in flight when the link changed
    const blackHole = await window(ROUNDS);
    assert.ok(
      blackHole.fullLost / blackHole.fullSent >= 0.9,
      `full-size echoes lost: ${blackHole.fullLost}/${blackHole.fullSent}`,
    );
    assert.ok(
      blackHole.smallLost / blackHole.smallSent <= 0.02,
      `small echoes lost: ${blackHole.smallLost}/${blackHole.smallSent}`,
    );
    console.error(
      `echo: clean ${clean.smallLost}/${clean.smallSent} small lost; 5% each way: ` +
        `${lossy.smallLost}/${lossy.smallSent} lost; black hole: full ${blackHole.fullLost}/` +
        `${blackHole.fullSent}, small ${blackHole.smallLost}/${blackHole.smallSent}, ` +
        `${blackHole.handshakes} handshakes, ${blackHole.dialErrors} dial errors`,
    );
    assert.equal(blackHole.dialErrors, 0, "handshakes to the same peer count no error");
    assert.ok(blackHole.handshakes > 0, "and were made");
    const status = await (await fetch(`${asker.url}/`, {
      headers: { accept: "application/json" },
      signal: AbortSignal.timeout(5_000),
    })).json();
    const row = status.targets.find((target: { collector: string }) => target.collector === "echo");
    assert.equal(row.state, "down");
    assert.equal(row.reason, "mtu");
    assert.match(row.message, /MTU: full-size lost/);
  },
});
