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
    assert.deepEqual(server.queries.filter((query) => query.startsWith(protocol)).length, 12);
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
