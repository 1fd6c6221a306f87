import { startDnsServer } from "../helpers/dns_server.ts";
import { probeDns } from "../../collectors/probe_dns.ts";
await using srv = await startDnsServer({
  behaviour: (n) => n.startsWith("slow") ? { delayMs: 40, a: ["10.0.0.1"] } : { a: ["10.0.0.2"] },
});
for (const protocol of ["udp", "tcp"] as const) {
  for (const host of ["fast.test", "slow.test"]) {
    const xs = [];
    for (let i = 0; i < 10; i++) {
      const r = await probeDns(
        { host, recordType: "A", server: { hostname: "127.0.0.1", port: srv.port }, protocol },
        {},
        AbortSignal.timeout(300),
      );
      if (r.ok) xs.push((r.seconds * 1000).toFixed(2));
    }
    console.log(protocol, host, xs.join(" "));
  }
}
