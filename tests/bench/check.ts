/**
 * `deno task bench:check`: what `net-exporter check` reads for a loopback
 * handshake and a DNS server that holds each answer 20 ms, over five runs of
 * the real program, beside Python timing the same exchanges with nothing but
 * a socket. Writes docs/check.md (and prints it). Everything on 127.0.0.1.
 */

import { startDnsServer } from "../helpers/dns_server.ts";
import { runProgram } from "../helpers/exporter_process.ts";
import { median } from "../helpers/stats.ts";
import { startListener } from "../helpers/tcp.ts";

const RUNS = 5;
const DNS_DELAY_MS = 20;

/** Python's view of the same exchanges, one per run: a UDP query and a TCP connect. */
const REFERENCE_PY = `
import socket, struct, sys, time
dns_port, tcp_port, runs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
query = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\\x05bench\\x04test\\x00\\x00\\x01\\x00\\x01"
for _ in range(runs):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect(("127.0.0.1", dns_port))
    t = time.perf_counter(); u.send(query); u.recv(512); dns = time.perf_counter() - t
    u.close()
    t = time.perf_counter(); c = socket.create_connection(("127.0.0.1", tcp_port)); tcp = time.perf_counter() - t
    c.close()
    print(dns * 1000, tcp * 1000)
`;

const ms = (value: number) => value.toFixed(3);

await using dns = await startDnsServer({
  behaviour: () => ({ delayMs: DNS_DELAY_MS, a: ["192.0.2.1"] }),
});
await using listener = startListener();
const args = [
  "check",
  `--dns.servers=${dns.address}`,
  "--dns.hosts=bench.test.",
  `--network.targets=${listener.address}`,
  "--output=json",
];
const check = { dns: [] as number[], tcp: [] as number[] };
for (let run = 0; run < RUNS; run++) {
  const { code, stdout, stderr } = await runProgram(args);
  if (code !== 0) throw new Error(`Cannot benchmark check: it exited ${code}: ${stderr}`);
  for (const row of JSON.parse(stdout) as Array<{ collector: string; latency_seconds: number }>) {
    (row.collector === "dns" ? check.dns : check.tcp).push(row.latency_seconds * 1000);
  }
}
const output = await new Deno.Command("python3", {
  args: ["-c", REFERENCE_PY, String(dns.port), String(listener.port), String(RUNS)],
}).output();
if (!output.success) throw new Error(new TextDecoder().decode(output.stderr));
const reference = { dns: [] as number[], tcp: [] as number[] };
for (const line of new TextDecoder().decode(output.stdout).trim().split("\n")) {
  const [dnsMs, tcpMs] = line.split(" ").map(Number);
  reference.dns.push(dnsMs!);
  reference.tcp.push(tcpMs!);
}

const row = (what: string, ours: number[], theirs: number[]) =>
  `| ${what} | ${ms(median(ours))} | ${ours.map(ms).join(", ")} | ${ms(median(theirs))} |`;
const report = `# What \`net-exporter check\` reads

Written by \`deno task bench:check\` on ${
  new Date().toISOString().slice(0, 10)
} (${Deno.build.os}, ${navigator.hardwareConcurrency} cores). Each of ${RUNS} runs is a fresh
\`net-exporter check\` process (\`${
  args.join(" ").replace(/127\.0\.0\.1:\d+/g, "127.0.0.1:PORT")
}\`)
against a loopback listener and a test DNS server that holds every answer ${DNS_DELAY_MS} ms.
Python times the same exchanges with a bare socket, as the reference. Milliseconds.

| Exchange | check, median | check, each run | Python, median |
| --- | ---: | --- | ---: |
${row("TCP handshake to 127.0.0.1", check.tcp, reference.tcp)}
${row(`DNS over UDP, server holding ${DNS_DELAY_MS} ms`, check.dns, reference.dns)}

The test server's own timer and event loop add a little to its ${DNS_DELAY_MS} ms: the Python
column is what the server really takes. \`check\` runs each collector's probe path untimed against
loopback stand-ins before the first timed probe, so a fresh process does not time its own start-up.
`;
await Deno.mkdir(new URL("../../docs/", import.meta.url), { recursive: true });
await Deno.writeTextFile(new URL("../../docs/check.md", import.meta.url), report);
console.log(report);
