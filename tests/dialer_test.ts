/**
 * The dialer thread: real handshakes on 127.0.0.1, timed where the main
 * thread's work cannot reach, failures classified as in-thread dials are.
 */

import { Dialer } from "../collectors/dialer.ts";
import { probeTcp } from "../collectors/probe_tcp.ts";
import { assert } from "./helpers/assert.ts";
import { closedPort, startBlackhole, startListener } from "./helpers/tcp.ts";
import { requires } from "./helpers/requirements.ts";

Deno.test("dialer: a handshake is timed on its own thread, true while the main thread is blocked", async () => {
  await using listener = startListener();
  const dialer = new Dialer();
  try {
    const port = Number(listener.address.split(":")[1]);
    await dialer.dial("127.0.0.1", port, new AbortController().signal); // thread warm
    const dial = dialer.dial("127.0.0.1", port, new AbortController().signal);
    const blockedUntil = performance.now() + 200;
    while (performance.now() < blockedUntil) { /* a 200 ms render, say */ }
    const { seconds, clock } = await dial;
    assert.equal(clock, "wall");
    assert.ok(seconds > 0 && seconds < 0.05, `loopback handshake read as ${seconds * 1000} ms`);
  } finally {
    dialer.close();
  }
});

Deno.test("dialer: refused and deadline are classified like in-thread dials; a cancellation is rethrown", async () => {
  const dialer = new Dialer();
  const dial = (hostname: string, port: number, signal: AbortSignal) =>
    dialer.dial(hostname, port, signal);
  try {
    const refused = await probeTcp(
      { hostname: "127.0.0.1", port: closedPort() },
      { dial },
      new AbortController().signal,
    );
    assert.equal(refused.ok ? "ok" : refused.reason, "refused");
    if (requires("dialer: deadline against a port that never answers", { commands: ["python3"] })) {
      await using blackhole = await startBlackhole();
      const [hostname, port] = blackhole.address.split(":") as [string, string];
      const timedOut = await probeTcp(
        { hostname, port: Number(port) },
        { dial },
        AbortSignal.timeout(200),
      );
      assert.equal(timedOut.ok ? "ok" : timedOut.reason, "timeout");
      const shutdown = new AbortController();
      const cancelled = probeTcp({ hostname, port: Number(port) }, { dial }, shutdown.signal);
      shutdown.abort(new DOMException("shutting down", "AbortError"));
      await assert.rejects(cancelled, /shutting down/);
    }
  } finally {
    dialer.close();
  }
});

Deno.test("dialer: closing fails what is still in flight", async () => {
  const dialer = new Dialer();
  const pending = dialer.dial("127.0.0.1", closedPort(), new AbortController().signal);
  dialer.close();
  await assert.rejects(pending, /dialer was closed/);
});
