import { startDnsServer } from "../helpers/dns_server.ts";
import { probeDns } from "../../collectors/probe_dns.ts";
await using srv = await startDnsServer({
  behaviour: (n) =>
    n.startsWith("slow")
      ? { delayMs: 40, a: ["10.0.0.1"] }
      : n.startsWith("nx")
      ? { rcode: "NXDOMAIN" }
      : n.startsWith("sf")
      ? { rcode: "SERVFAIL" }
      : n.startsWith("si")
      ? { silent: true }
      : { a: ["10.0.0.2"] },
});
for (const protocol of ["udp", "tcp"] as const) {
  for (const host of ["fast.test.", "slow.test", "nx.test", "sf.test", "si.test", "x.test"]) {
    const r = await probeDns(
      {
        host,
        recordType: host === "x.test" ? "AAAA" : "A",
        server: { hostname: "127.0.0.1", port: srv.port },
        protocol,
      },
      {},
      AbortSignal.timeout(300),
    );
    console.log(protocol, host, JSON.stringify(r));
  }
}
console.log(srv.queries.length);
