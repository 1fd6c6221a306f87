import { deadline } from "../lib/clock.ts";
import { assert, assertNear } from "./helpers/assert.ts";
import { probeDns } from "../collectors/probe_dns.ts";
import { closedPort } from "./helpers/tcp.ts";
import { startDnsServer } from "./helpers/dns_server.ts";

const behaviours = (name: string) => {
  const label = name.split(".")[0];
  switch (label) {
    case "slow":
      return { delayMs: 40, a: ["10.1.0.1"] };
    case "nx":
      return { rcode: "NXDOMAIN" as const };
    case "fail":
      return { rcode: "SERVFAIL" as const };
    case "refuse":
      return { rcode: "REFUSED" as const };
    case "silent":
      return { silent: true };
    case "v4only":
      return { a: ["10.1.0.2"] };
    default:
      return { a: ["10.1.0.3"], aaaa: ["fd00::3"] };
  }
};

for (const protocol of ["udp", "tcp"] as const) {
  Deno.test(`direct DNS over ${protocol}: latency and every error class`, async () => {
    await using server = await startDnsServer({ behaviour: behaviours });
    const probe = (host: string, recordType: "A" | "AAAA" = "A", timeoutMs = 500) =>
      probeDns(
        { host, recordType, server: { hostname: "127.0.0.1", port: server.port }, protocol },
        {},
        AbortSignal.timeout(timeoutMs),
      );

    const fast = await probe("fast.test.");
    assert(fast.ok);
    assert.deepEqual(fast.addresses, ["10.1.0.3"]);
    const v6 = await probe("fast.test", "AAAA");
    assert(v6.ok);
    assert.deepEqual(v6.addresses, ["fd00::3"]);

    const slow = [];
    for (let i = 0; i < 5; i++) {
      const result = await probe("slow.test");
      assert(result.ok);
      slow.push(result.seconds);
    }
    // The server holds each answer 40 ms: none can be faster, and the median is not much slower
    // (one lookup of five may meet a busy machine, so not the mean).
    slow.sort((a, b) => a - b);
    assert.ok(slow[0]! >= 0.039, `fastest ${slow[0]}`);
    assertNear(slow[2]!, 0.040, 0.010, `median ${slow[2]}`);

    assert.deepEqual(await probe("nx.test"), {
      ok: false,
      reason: "nxdomain",
      message: "Server answered NXDOMAIN",
    });
    assert.deepEqual(await probe("fail.test"), {
      ok: false,
      reason: "servfail",
      message: "Server answered SERVFAIL",
    });
    assert.deepEqual(await probe("refuse.test"), {
      ok: false,
      reason: "refused",
      message: "Server answered REFUSED",
    });
    assert.deepEqual((await probe("v4only.test", "AAAA") as { reason: string }).reason, "nodata");
    assert.deepEqual(
      (await probe("silent.test", "A", 200) as { reason: string }).reason,
      "timeout",
    );
    // A deadline says the same words over either transport (a TCP read ends "Interrupted").
    using limit = deadline(200, new AbortController().signal);
    const silent = await probeDns(
      {
        host: "silent.test",
        recordType: "A",
        server: { hostname: "127.0.0.1", port: server.port },
        protocol,
      },
      {},
      limit.signal,
    );
    assert.deepEqual(silent, {
      ok: false,
      reason: "timeout",
      message: "TimeoutError: Deadline of 200 ms exceeded",
    });
    assert.deepEqual(server.queries.filter((query) => query.startsWith(protocol)).length, 13);
  });

  // Over TCP the RST is seen; over UDP, Deno's sockets do not surface the
  // ICMP port-unreachable, so the lookup runs into its deadline.
  const closedPortReason = protocol === "tcp" ? "refused" : "timeout";
  Deno.test(`direct DNS over ${protocol}: a closed port counts as ${closedPortReason}`, async () => {
    const result = await probeDns(
      {
        host: "x.test",
        recordType: "A",
        server: { hostname: "127.0.0.1", port: closedPort() },
        protocol,
      },
      {},
      AbortSignal.timeout(300),
    );
    assert.deepEqual(result.ok ? "ok" : result.reason, closedPortReason);
  });
}

Deno.test("direct DNS: no timeout of its own, only the caller's deadline", async () => {
  // Deno.resolveDns gives up after 1 s when handed a signal; a direct probe waits as long as asked.
  await using server = await startDnsServer({
    behaviour: () => ({ delayMs: 1300, a: ["10.1.0.9"] }),
  });
  const result = await probeDns(
    {
      host: "late.test",
      recordType: "A",
      server: { hostname: "127.0.0.1", port: server.port },
      protocol: "udp",
    },
    {},
    AbortSignal.timeout(2000),
  );
  assert(result.ok);
  assertNear(result.seconds, 1.3, 0.1);
});

Deno.test("direct DNS: IPv6 server on ::1", async () => {
  await using server = await startDnsServer({ hostname: "::1" });
  for (const protocol of ["udp", "tcp"] as const) {
    const result = await probeDns(
      {
        host: "six.test",
        recordType: "A",
        server: { hostname: "::1", port: server.port },
        protocol,
      },
      {},
      AbortSignal.timeout(500),
    );
    assert(result.ok, JSON.stringify(result));
  }
});

Deno.test("direct DNS: cancellation is rethrown, not counted", async () => {
  await using server = await startDnsServer({ behaviour: () => ({ silent: true }) });
  const controller = new AbortController();
  const pending = probeDns(
    {
      host: "x.test",
      recordType: "A",
      server: { hostname: "127.0.0.1", port: server.port },
      protocol: "udp",
    },
    {},
    controller.signal,
  );
  controller.abort(new DOMException("shutdown", "AbortError"));
  let thrown: unknown;
  try {
    await pending;
  } catch (error) {
    thrown = error;
  }
  assert.deepEqual((thrown as DOMException).name, "AbortError");
});

for (const protocol of ["udp", "tcp"] as const) {
  Deno.test(`direct DNS over ${protocol}: a forged or mismatched answer is never a success`, async () => {
    const forgeries = protocol === "udp"
      ? ["other-port", "other-question", "wrong-id", "query-echo", "junk"] as const
      : ["other-question", "wrong-id", "query-echo", "junk"] as const;
    await using server = await startDnsServer();
    for (const forge of forgeries) {
      const strays: string[] = [];
      const probe = (timeoutMs: number) =>
        probeDns(
          {
            host: "Real.Test.",
            recordType: "A",
            server: { hostname: "127.0.0.1", port: server.port },
            protocol,
          },
          { onStray: (reason) => strays.push(reason) },
          AbortSignal.timeout(timeoutMs),
        );
      // The forgery alone: the lookup waits for the real answer until its deadline.
      server.behaviour = () => ({ forge, silent: true });
      const alone = await probe(300);
      assert.deepEqual(alone.ok ? "ok" : alone.reason, "timeout", `${forge} alone`);
      assert.ok(strays.length >= 1, `${forge} was seen and set aside`);
      // The forgery first, then the real answer: the real one is taken.
      server.behaviour = () => ({ forge, a: ["10.1.0.7"] });
      const both = await probe(1000);
      assert(both.ok, `${forge} then the answer: ${JSON.stringify(both)}`);
      assert.deepEqual(both.addresses, ["10.1.0.7"]);
    }
  });
}

Deno.test("direct DNS: an answer with the TC bit and no records is a failure over TCP, a timed answer over UDP", async () => {
  await using server = await startDnsServer({ behaviour: () => ({ truncated: true }) });
  const probe = (protocol: "udp" | "tcp") =>
    probeDns(
      {
        host: "big.test",
        recordType: "A",
        server: { hostname: "127.0.0.1", port: server.port },
        protocol,
      },
      {},
      AbortSignal.timeout(500),
    );
  const tcp = await probe("tcp");
  assert.deepEqual(tcp.ok ? "ok" : tcp.reason, "other");
  assert.match((tcp as { message: string }).message, /TC/);
  // Over UDP a truncated answer is how a large answer arrives; the server did answer.
  assert((await probe("udp")).ok);
});

Deno.test("direct DNS over UDP: a flood of junk from the server's port does not hide the answer", async () => {
  await using server = await startDnsServer({
    behaviour: () => ({ flood: 20_000, delayMs: 100, a: ["10.1.0.8"] }),
  });
  let strays = 0;
  const result = await probeDns(
    {
      host: "flood.test",
      recordType: "A",
      server: { hostname: "127.0.0.1", port: server.port },
      protocol: "udp",
    },
    { onStray: () => strays++ },
    AbortSignal.timeout(3000),
  );
  assert(result.ok, JSON.stringify(result));
  assert.deepEqual(result.addresses, ["10.1.0.8"]);
  assert.ok(strays > 0, "the junk arrived and was set aside");
  // The rest of the flood, still arriving, is dropped with the closed socket.
});

Deno.test("direct DNS: a signal aborted before the probe settles at once", async () => {
  const timedOut = AbortSignal.timeout(0);
  await new Promise((resolve) => setTimeout(resolve, 5));
  for (const protocol of ["udp", "tcp"] as const) {
    const result = await probeDns(
      {
        host: "x.test",
        recordType: "A",
        server: { hostname: "127.0.0.1", port: closedPort() },
        protocol,
      },
      {},
      timedOut,
    );
    assert.deepEqual(result.ok ? "ok" : result.reason, "timeout");
  }
  const cancelled = new AbortController();
  cancelled.abort();
  await assert.rejects(() =>
    probeDns(
      {
        host: "x.test",
        recordType: "A",
        server: { hostname: "127.0.0.1", port: closedPort() },
        protocol: "udp",
      },
      {},
      cancelled.signal,
    )
  );
});
