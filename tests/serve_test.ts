/**
 * End to end: the real program, real sockets, a DNS server and TCP peers of
 * the test's own on loopback.
 */

import { assert } from "./helpers/assert.ts";
import { startDnsServer } from "./helpers/dns_server.ts";
import { get, startExporter, waitUntilReady } from "./helpers/exporter_process.ts";
import { Exposition } from "./helpers/metrics.ts";
import { requires } from "./helpers/requirements.ts";
import { closedPort, startBlackhole, startListener } from "./helpers/tcp.ts";

const NAME = "serve: true latencies, every failure under its own reason, clean shutdown";

Deno.test({
  name: NAME,
  ignore: !requires(NAME, { commands: ["python3"] }),
  async fn() {
    await using dns = await startDnsServer({
      behaviour: (name) => {
        if (name === "slow.test") return { delayMs: 40, a: ["10.3.0.1"] };
        if (name === "nx.test") return { rcode: "NXDOMAIN" };
        if (name === "fail.test") return { rcode: "SERVFAIL" };
        if (name === "silent.test") return { silent: true };
        return { a: ["10.3.0.2"] };
      },
    });
    await using listener = startListener();
    await using blackhole = await startBlackhole();
    const refused = `127.0.0.1:${closedPort()}`;
    await using exporter = await startExporter([
      `--dns.servers=${dns.address}`,
      "--dns.hosts=slow.test.,nx.test.,fail.test.,silent.test.",
      "--dns.protocols=udp,tcp",
      "--dns.interval=1s",
      "--dns.timeout=500ms",
      `--network.targets=${listener.address},${refused},${blackhole.address}`,
      "--network.interval=1s",
      "--network.timeout=500ms",
    ]);
    await waitUntilReady(exporter, 5_000);
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const { status, body } = await get(`${exporter.url}/metrics`);
    assert.equal(status, 200);
    const metrics = new Exposition(body);

    for (const protocol of ["udp", "tcp"]) {
      const slow = metrics.histogram("dns_latency_seconds", {
        host: "slow.test.",
        server: dns.address,
        protocol,
      });
      assert.ok(slow.count >= 3, `${protocol}: ${slow.count} lookups`);
      // The server holds each answer 40 ms: the mean cannot be lower, and a straggler on a busy
      // machine may lift it a little; the bucket check below pins the median.
      const mean = slow.sum / slow.count;
      assert.ok(mean >= 0.039 && mean < 0.060, `${protocol} mean dns_latency_seconds ${mean}`);
      assert.equal(slow.buckets.get("0.028"), 0);
      // The median lands in the (28 ms, 56 ms] buckets; a busy machine may push a straggler past.
      assert.ok(
        slow.buckets.get("0.056")! > slow.count / 2,
        "40 ms lands in the (28 ms, 56 ms] buckets",
      );
      const errors = (host: string, reason: string) =>
        metrics.value("dns_resolve_error_total", {
          host,
          server: dns.address,
          protocol,
          record_type: "A",
          reason,
        });
      assert.ok(errors("nx.test.", "nxdomain") >= 3);
      assert.ok(errors("fail.test.", "servfail") >= 3);
      assert.ok(errors("silent.test.", "timeout") >= 3);
      assert.equal(errors("slow.test.", "timeout"), 0, "every reason exists at 0");
    }
    const dial = (host: string, reason: string) =>
      metrics.value("network_dial_error_total", { host, target_node: "", reason });
    assert.ok(metrics.histogram("network_latency_seconds", { host: listener.address }).count >= 3);
    assert.ok(dial(refused, "refused") >= 3);
    assert.ok(dial(blackhole.address, "timeout") >= 3);
    assert.equal(dial(listener.address, "refused"), 0);
    assert.equal(metrics.value("net_exporter_targets", { collector: "dns" }), 8);
    assert.equal(metrics.value("net_exporter_targets", { collector: "network" }), 3);
    assert.ok(metrics.value("process_resident_memory_bytes") > 10_000_000, "real resident memory");
    assert.equal(metrics.value("dns_error_total"), 0);
    assert.equal(metrics.value("network_error_total"), 0);

    const page = await get(`${exporter.url}/`);
    assert.match(
      page.body,
      /slow\.test\. A via 127\.0\.0\.1:\d+\/udp<\/td><td class="state">up<\/td><td>[^<]*<\/td><td class="num">4\d\.\d{3} ms/,
    );

    // State changes are logged once each, not once per probe.
    const downs = exporter.logs.filter((line) =>
      line.includes("target down") && line.includes(refused)
    );
    assert.equal(downs.length, 1, downs.join("\n"));

    const { code, ms } = await exporter.stop();
    assert.equal(code, 0);
    assert.ok(ms < 5_000, `shutdown took ${ms} ms`);
  },
});

const PROMTOOL = "serve: promtool check metrics passes on real output";
Deno.test({
  name: PROMTOOL,
  ignore: !requires(PROMTOOL, { commands: ["promtool"] }),
  async fn() {
    await using dns = await startDnsServer();
    await using listener = startListener();
    await using exporter = await startExporter([
      `--dns.servers=${dns.address}`,
      "--dns.hosts=ok.test.",
      "--dns.interval=1s",
      "--dns.timeout=500ms",
      `--network.targets=${listener.address},[::1]:${closedPort("::1")}`,
      "--network.interval=1s",
      "--network.timeout=500ms",
    ]);
    await waitUntilReady(exporter, 5_000);
    const { body } = await get(`${exporter.url}/metrics`);
    const promtool = new Deno.Command("promtool", {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    })
      .spawn();
    const writer = promtool.stdin.getWriter();
    await writer.write(new TextEncoder().encode(body));
    await writer.close();
    const result = await promtool.output();
    const report = new TextDecoder().decode(result.stdout) +
      new TextDecoder().decode(result.stderr);
    assert.ok(result.success, report);
    assert.equal(report.trim(), "", `promtool lint findings:\n${report}`);
  },
});
