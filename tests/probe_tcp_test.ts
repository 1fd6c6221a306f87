import { classifyDialError, probeTcp } from "../collectors/probe_tcp.ts";
import { assert } from "./helpers/assert.ts";
import { closedPort, startBlackhole, startListener } from "./helpers/tcp.ts";
import { requires } from "./helpers/requirements.ts";

/** Open file descriptors of this process, counted by the kernel (Deno denies /proc/self to tests). */
function openFds(): number {
  const output = new Deno.Command("ls", { args: [`/proc/${Deno.pid}/fd`] }).outputSync();
  return new TextDecoder().decode(output.stdout).trim().split("\n").length;
}

Deno.test("tcp probe: handshake to a listener on 127.0.0.1 and ::1, connection closed", async () => {
  for (const hostname of ["127.0.0.1", "::1"]) {
    await using listener = startListener(hostname);
    const result = await probeTcp({ hostname, port: listener.port }, {}, AbortSignal.timeout(1000));
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(result.address, hostname);
    assert.ok(result.seconds > 0 && result.seconds < 1);
  }
});

Deno.test("tcp probe: refused port", async () => {
  const result = await probeTcp(
    { hostname: "127.0.0.1", port: closedPort() },
    {},
    AbortSignal.timeout(1000),
  );
  assert.equal(result.ok ? "ok" : result.reason, "refused");
});

const BLACKHOLE = "tcp probe: unanswered SYNs run into the deadline";
Deno.test({
  name: BLACKHOLE,
  ignore: !requires(BLACKHOLE, { commands: ["python3"] }),
  async fn() {
    await using blackhole = await startBlackhole();
    const startedAt = performance.now();
    const result = await probeTcp(
      { hostname: "127.0.0.1", port: blackhole.port },
      {},
      AbortSignal.timeout(300),
    );
    assert.equal(result.ok ? "ok" : result.reason, "timeout");
    assert.ok(performance.now() - startedAt < 1000);
  },
});

Deno.test("tcp probe: a name is resolved before the clock starts", async () => {
  await using listener = startListener();
  let clock = 0;
  const result = await probeTcp(
    { hostname: "peer.test", port: listener.port },
    {
      now: () => clock,
      resolve: (name) => {
        assert.equal(name, "peer.test");
        clock += 5000; // a slow resolution must not count as handshake time
        return Promise.resolve("127.0.0.1");
      },
      connect: async (options) => {
        clock += 7;
        return await Deno.connect(options);
      },
    },
    AbortSignal.timeout(1000),
  );
  assert.ok(result.ok);
  assert.equal(result.seconds, 0.007);
  assert.equal(result.address, "127.0.0.1");
});

Deno.test("tcp probe: a name that does not resolve is reason resolve", async () => {
  const result = await probeTcp(
    { hostname: "missing.test", port: 80 },
    { resolve: () => Promise.reject(new Deno.errors.NotFound("no such name")) },
    AbortSignal.timeout(1000),
  );
  assert.equal(result.ok ? "ok" : result.reason, "resolve");
});

Deno.test("tcp probe: error codes map to reasons", () => {
  const live = new AbortController().signal;
  const withCode = (code: string) => Object.assign(new Error(code), { code });
  assert.equal(classifyDialError(withCode("ECONNREFUSED"), live), "refused");
  assert.equal(classifyDialError(withCode("EHOSTUNREACH"), live), "unreachable");
  assert.equal(classifyDialError(withCode("ENETUNREACH"), live), "unreachable");
  assert.equal(classifyDialError(withCode("ECONNRESET"), live), "reset");
  assert.equal(classifyDialError(withCode("ETIMEDOUT"), live), "timeout");
  assert.equal(classifyDialError(withCode("EWHATEVER"), live), "other");
  assert.equal(
    classifyDialError(
      new Error("no code"),
      AbortSignal.abort(new DOMException("t", "TimeoutError")),
    ),
    "timeout",
  );
});

const CANCEL = "tcp probe: cancellation is rethrown, not counted";
Deno.test({
  name: CANCEL,
  ignore: !requires(CANCEL, { commands: ["python3"] }),
  async fn() {
    await using blackhole = await startBlackhole();
    const controller = new AbortController();
    const pending = probeTcp(
      { hostname: "127.0.0.1", port: blackhole.port },
      {},
      controller.signal,
    );
    controller.abort(new DOMException("shutdown", "AbortError"));
    await assert.rejects(pending, { name: "AbortError" });
  },
});

Deno.test("tcp probe: 500 dials of every kind leak no file descriptor", async () => {
  await using listener = startListener();
  const refused = closedPort();
  const dialBoth = async (times: number) => {
    for (let i = 0; i < times; i++) {
      await probeTcp({ hostname: "127.0.0.1", port: listener.port }, {}, AbortSignal.timeout(1000));
      await probeTcp({ hostname: "127.0.0.1", port: refused }, {}, AbortSignal.timeout(1000));
    }
  };
  await dialBoth(10); // the runtime opens a few descriptors of its own on first use
  const before = openFds();
  await dialBoth(250);
  // A leak would be one descriptor per dial (hundreds); allow the runtime's own few.
  const grown = openFds() - before;
  assert.ok(grown <= 3, `${grown} descriptors more after 500 dials`);
  assert.ok(listener.accepted >= 250);
});
