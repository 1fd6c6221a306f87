/**
 * The kernel-timed dialer: real handshakes on 127.0.0.1 and ::1 through
 * libc, each failure classified from errno, and nothing left behind — no
 * descriptor, no thread — after thousands of dials ending every way a dial
 * can end.
 */

import assert from "node:assert/strict";
import { KernelDialer } from "../collectors/kernel_dialer.ts";
import { probeTcp, type TcpProbeOptions } from "../collectors/probe_tcp.ts";
import { openLibc } from "../lib/libc.ts";
import { get, START_FLAGS, startExporter, waitUntilReady } from "./helpers/exporter_process.ts";
import { Exposition } from "./helpers/metrics.ts";
import { requires } from "./helpers/requirements.ts";
import { closedPort, startBlackhole, startListener } from "./helpers/tcp.ts";
import { procEntries } from "./helpers/proc.ts";

function kernelOptions(dialer: KernelDialer): TcpProbeOptions {
  return { dial: (hostname, port, signal) => dialer.dial(hostname, port, signal) };
}

const openDescriptors = () => procEntries("fd");
const threads = () => procEntries("task");

const never = new AbortController().signal;

Deno.test("kernel dialer: a handshake on 127.0.0.1 and ::1 is timed by the kernel, with its MTU and no SYN resent", async () => {
  await using listener = startListener();
  const dialer = new KernelDialer();
  try {
    const v4 = await probeTcp(
      { hostname: "127.0.0.1", port: listener.port },
      kernelOptions(dialer),
      never,
    );
    assert.ok(v4.ok, JSON.stringify(v4));
    assert.equal(v4.clock, "kernel");
    assert.ok(v4.seconds > 0 && v4.seconds < 1, `a loopback round trip: ${v4.seconds}`);
    assert.ok(v4.wallSeconds !== undefined && v4.wallSeconds > 0);
    assert.equal(v4.synRetransmits, 0);
    // Loopback's MTU (65536) less nothing: the kernel holds the device's MTU as the path's.
    // Read by `cat`: Deno asks for every permission to read /sys.
    const loMtu = Number(
      new TextDecoder().decode(
        new Deno.Command("cat", { args: ["/sys/class/net/lo/mtu"] }).outputSync().stdout,
      ).trim(),
    );
    assert.ok(v4.pathMtu! > 60_000 && v4.pathMtu! <= loMtu, `path MTU ${v4.pathMtu}`);

    await using v6listener = startListener("::1");
    const v6 = await probeTcp(
      { hostname: "::1", port: v6listener.port },
      kernelOptions(dialer),
      never,
    );
    assert.ok(v6.ok, JSON.stringify(v6));
    assert.equal(v6.clock, "kernel");
  } finally {
    await dialer.close();
  }
});

Deno.test("kernel dialer: refused and unreachable come from errno; a deadline is a timeout, a cancellation is rethrown", async () => {
  const dialer = new KernelDialer();
  try {
    const refused = await probeTcp(
      { hostname: "127.0.0.1", port: closedPort() },
      kernelOptions(dialer),
      never,
    );
    assert.equal(refused.ok ? "ok" : refused.reason, "refused");
    assert.match(refused.ok ? "" : refused.message, /ECONNREFUSED/);
    // An IPv6 address with a zone that names no interface: the kernel refuses at connect().
    const noRoute = await probeTcp(
      { hostname: "fe80::1%0", port: 9 },
      kernelOptions(dialer),
      never,
    );
    assert.ok(!noRoute.ok);
    assert.notEqual(noRoute.reason, "timeout", "refused at once, not after a deadline");
    if (
      requires("kernel dialer: deadline against a port that never answers", {
        commands: ["python3"],
      })
    ) {
      await using blackhole = await startBlackhole();
      const timedOut = await probeTcp(
        { hostname: "127.0.0.1", port: blackhole.port },
        kernelOptions(dialer),
        AbortSignal.timeout(100),
      );
      assert.equal(timedOut.ok ? "ok" : timedOut.reason, "timeout");
      const shutdown = new AbortController();
      const cancelled = probeTcp(
        { hostname: "127.0.0.1", port: blackhole.port },
        kernelOptions(dialer),
        shutdown.signal,
      );
      shutdown.abort(new DOMException("shutting down", "AbortError"));
      await assert.rejects(cancelled, /shutting down/);
      assert.equal(dialer.pending, 0);
    }
  } finally {
    await dialer.close();
  }
});

Deno.test("kernel dialer: a SYN the peer drops is resent by the kernel, and the dial says how many", async () => {
  if (!requires("kernel dialer: SYN retransmissions", { commands: ["python3"] })) return;
  await using blackhole = await startBlackhole();
  const dialer = new KernelDialer();
  try {
    // Linux resends an unanswered SYN after its initial RTO of 1 s.
    const result = await probeTcp(
      { hostname: "127.0.0.1", port: blackhole.port },
      kernelOptions(dialer),
      AbortSignal.timeout(1_600),
    );
    assert.ok(!result.ok);
    assert.equal(result.reason, "timeout");
    assert.ok((result.synRetransmits ?? 0) >= 1, JSON.stringify(result));
  } finally {
    await dialer.close();
  }
});

Deno.test("kernel dialer: 10,000 dials — successes, refusals, deadlines, and a close mid-dial — leave no descriptor and no thread", async () => {
  await using listener = startListener();
  const refusedPort = closedPort();
  await using blackhole =
    requires("kernel dialer: deadlines in the soak", { commands: ["python3"] })
      ? await startBlackhole()
      : undefined;
  const dialer = new KernelDialer();
  // Warm: Deno's blocking pool starts its thread on the first wait.
  await dialer.dial("127.0.0.1", listener.port, never);
  const descriptorsBefore = openDescriptors();
  const threadsBefore = threads();
  let peakThreads = threadsBefore;
  const counts = { ok: 0, refused: 0, timeout: 0, other: 0 };
  const BATCH = 200;
  for (let round = 0; round < 10_000 / BATCH; round++) {
    const batch = Array.from({ length: BATCH }, (_, i) => {
      const kind = i % 10;
      if (kind === 0 && blackhole) {
        return probeTcp(
          { hostname: "127.0.0.1", port: blackhole.port },
          kernelOptions(dialer),
          AbortSignal.timeout(5),
        );
      }
      const port = kind < 5 ? listener.port : refusedPort;
      return probeTcp({ hostname: "127.0.0.1", port }, kernelOptions(dialer), never);
    });
    peakThreads = Math.max(peakThreads, threads());
    for (const result of await Promise.all(batch)) {
      if (result.ok) counts.ok++;
      else if (result.reason in counts) counts[result.reason as keyof typeof counts]++;
      else counts.other++;
    }
  }
  assert.equal(counts.ok + counts.refused + counts.timeout + counts.other, 10_000);
  assert.ok(counts.ok >= 4_000 && counts.refused >= 4_000, JSON.stringify(counts));
  if (blackhole) assert.equal(counts.timeout, 1_000, JSON.stringify(counts));
  // Closed with dials in flight: each rejects, and their sockets close with them.
  const inFlight = Array.from(
    { length: 50 },
    () =>
      dialer.dial("127.0.0.1", blackhole?.port ?? listener.port, never).then(
        () => "done",
        () => "rejected",
      ),
  );
  await dialer.close();
  for (const outcome of await Promise.all(inFlight)) {
    if (blackhole) assert.equal(outcome, "rejected");
  }
  // 200 dials in flight at a time: a thread per dial would show here as +200. Deno's blocking
  // pool may start one more thread while the last wait's thread is being returned to it, and the
  // test's own `ls` children take one for a moment.
  assert.ok(peakThreads <= threadsBefore + 3, `threads ${threadsBefore} → peak ${peakThreads}`);
  // The dialer's own epoll and eventfd were open before; close() took them too. The test's own
  // listener closes what it accepted on its own schedule: give it a moment (a leak never settles).
  let descriptorsAfter = openDescriptors();
  for (let i = 0; i < 20 && descriptorsAfter > descriptorsBefore - 2; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    descriptorsAfter = openDescriptors();
  }
  assert.ok(
    descriptorsAfter <= descriptorsBefore - 2,
    `descriptors ${descriptorsBefore} → ${descriptorsAfter}`,
  );
});

Deno.test("kernel dialer: without --allow-ffi, libc does not open and says why in one line", async () => {
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(
    script,
    `import { openLibc } from ${JSON.stringify(new URL("../lib/libc.ts", import.meta.url).href)};
try { openLibc(); console.log("opened"); } catch (error) { console.log(error.name + ": " + error.message); }`,
  );
  const output = await new Deno.Command(Deno.execPath(), {
    // Every permission but FFI.
    args: ["run", "--no-config", "--allow-read", "--allow-net", "--allow-env", script],
    env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  await Deno.remove(script);
  const line = new TextDecoder().decode(output.stdout).trim();
  assert.match(line, /^LibcUnavailable: Cannot open libc/);
  // This process has it: the same call opens libc.
  openLibc().close();
});

Deno.test("network collector: the exporter run without --allow-ffi times handshakes by its own clock, says so once, and exports which clock", async () => {
  await using target = startListener();
  const withoutFfi = START_FLAGS.filter((flag) => !flag.startsWith("--allow-ffi"));
  const main = new URL("../main.ts", import.meta.url).pathname;
  for (const [flags, clock] of [[withoutFfi, "wall"], [START_FLAGS, "kernel"]] as const) {
    await using exporter = await startExporter(
      [`--network.targets=${target.address}`, "--network.interval=1s", "--network.timeout=500ms"],
      { command: [Deno.execPath(), "run", ...flags, main] },
    );
    await waitUntilReady(exporter, 10_000);
    const metrics = new Exposition((await get(`${exporter.url}/metrics`)).body);
    assert.equal(metrics.value("network_handshake_clock_info", { clock }), 1);
    assert.ok(metrics.histogram("network_latency_seconds", { host: target.address }).count >= 1);
    const clockLines = exporter.logs.filter((line) => line.includes("handshakes timed by"));
    assert.equal(clockLines.length, 1, clockLines.join("\n"));
    if (clock === "wall") assert.match(clockLines[0]!, /Cannot open libc/);
    assert.equal((await exporter.stop()).code, 0);
  }
});
