/**
 * `deno task bench:check`: what `net-exporter check` reads for a loopback
 * handshake, a DNS server that holds each answer 20 ms and an NTP server
 * 250 ms ahead over a 20 ms path, over five runs of the real program, beside
 * Python timing the same exchanges with nothing but a socket. Writes
 * docs/reports/check.md (and prints it). Everything on 127.0.0.1.
 */

import { startDnsServer } from "../helpers/dns_server.ts";
import { runProgram } from "../helpers/exporter_process.ts";
import { median } from "../helpers/stats.ts";
import { startNtpServer } from "../helpers/ntp_server.ts";
import { startListener } from "../helpers/tcp.ts";

const RUNS = 5;
const DNS_DELAY_MS = 20;
const NTP_OFFSET_MS = 250;
const NTP_PATH_MS = 20;

/** Python's view of the same exchanges, one per run: a UDP query and a TCP connect. */
const REFERENCE_PY = `
import socket, struct, sys, time
dns_port, tcp_port, ntp_port, runs = (int(arg) for arg in sys.argv[1:5])
def ntp_time(packet, offset):
    seconds, fraction = struct.unpack(">II", packet[offset:offset + 8])
    return seconds - 2208988800 + fraction / 2**32
query = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\\x05bench\\x04test\\x00\\x00\\x01\\x00\\x01"
for _ in range(runs):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect(("127.0.0.1", dns_port))
    t = time.perf_counter(); u.send(query); u.recv(512); dns = time.perf_counter() - t
    u.close()
    t = time.perf_counter(); c = socket.create_connection(("127.0.0.1", tcp_port)); tcp = time.perf_counter() - t
    c.close()
    n = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    n.connect(("127.0.0.1", ntp_port))
    request = bytes([0x23]) + bytes(39) + struct.pack(">Q", 0x1234_5678_9abc_def0)
    t1 = time.time(); n.send(request); reply = n.recv(512); t4 = time.time()
    n.close()
    t2, t3 = ntp_time(reply, 32), ntp_time(reply, 40)
    print(dns * 1000, tcp * 1000, ((t4 - t1) - (t3 - t2)) * 1000, ((t2 - t1) + (t3 - t4)) / 2 * 1000)
`;

const ms = (value: number) => value.toFixed(3);

await using dns = await startDnsServer({
  behaviour: () => ({ delayMs: DNS_DELAY_MS, a: ["192.0.2.1"] }),
});
await using listener = startListener();
await using ntp = startNtpServer({ offsetMs: NTP_OFFSET_MS, delayMs: NTP_PATH_MS });
const args = [
  "check",
  `--dns.servers=${dns.address}`,
  "--dns.hosts=bench.test.",
  `--network.targets=${listener.address}`,
  `--ntp.servers=${ntp.address}`,
  "--output=json",
];
const check = {
  dns: [] as number[],
  tcp: [] as number[],
  ntpDelay: [] as number[],
  ntpOffset: [] as number[],
};
for (let run = 0; run < RUNS; run++) {
  const { code, stdout, stderr } = await runProgram(args);
  if (code !== 0) throw new Error(`Cannot benchmark check: it exited ${code}: ${stderr}`);
  const rows = JSON.parse(stdout) as Array<
    { collector: string; latency_seconds: number; readings: Record<string, number> }
  >;
  for (const row of rows) {
    if (row.collector === "ntp") {
      check.ntpDelay.push(row.latency_seconds * 1000);
      check.ntpOffset.push(row.readings.offsetSeconds! * 1000);
    } else (row.collector === "dns" ? check.dns : check.tcp).push(row.latency_seconds * 1000);
  }
}
const output = await new Deno.Command("python3", {
  args: [
    "-c",
    REFERENCE_PY,
    ...[dns.port, listener.port, ntp.port, RUNS].map(String),
  ],
}).output();
if (!output.success) throw new Error(new TextDecoder().decode(output.stderr));
const reference = {
  dns: [] as number[],
  tcp: [] as number[],
  ntpDelay: [] as number[],
  ntpOffset: [] as number[],
};
for (const line of new TextDecoder().decode(output.stdout).trim().split("\n")) {
  const [dnsMs, tcpMs, delayMs, offsetMs] = line.split(" ").map(Number);
  reference.dns.push(dnsMs!);
  reference.tcp.push(tcpMs!);
  reference.ntpDelay.push(delayMs!);
  reference.ntpOffset.push(offsetMs!);
}

const row = (what: string, ours: number[], theirs: number[]) =>
  `| ${what} | ${ms(median(ours))} | ${ours.map(ms).join(", ")} | ${ms(median(theirs))} |`;
const report = `# Report: what \`net-exporter check\` reads

> **In short.** A fresh \`net-exporter check\` process, run the way an operator runs it on a node,
> against test servers whose true figures are known (a DNS server holding each answer, an NTP
> server with its clock ahead), beside Python timing the same exchanges with a bare socket. What it
> means: the one-shot figures \`check\` prints are as true as the running exporter's, not inflated
> by the process starting up. How to use \`check\`: [../check.md](../check.md).

Written by \`deno task bench:check\` on ${
  new Date().toISOString().slice(0, 10)
} (${Deno.build.os}, ${navigator.hardwareConcurrency} cores). Each of ${RUNS} runs is a fresh
\`net-exporter check\` process (\`${
  args.join(" ").replace(/127\.0\.0\.1:\d+/g, "127.0.0.1:PORT")
}\`)
against a loopback listener, a test DNS server that holds every answer ${DNS_DELAY_MS} ms, and a test
SNTP server whose clock is ${NTP_OFFSET_MS} ms ahead, over a path of ${NTP_PATH_MS} ms round trip.
Python times the same exchanges with a bare socket, as the reference (its NTP figures from
\`time.time()\` around a blocking socket). Milliseconds.

| Exchange | check, median | check, each run | Python, median |
| --- | ---: | --- | ---: |
${row("TCP handshake to 127.0.0.1", check.tcp, reference.tcp)}
${row(`DNS over UDP, server holding ${DNS_DELAY_MS} ms`, check.dns, reference.dns)}
${row(`NTP round trip δ, ${NTP_PATH_MS} ms path`, check.ntpDelay, reference.ntpDelay)}
${row(`NTP offset θ, server ${NTP_OFFSET_MS} ms ahead`, check.ntpOffset, reference.ntpOffset)}

The test servers' own timers and event loops add a little to their ${DNS_DELAY_MS} ms: the Python
column is what the servers really take. An NTP reply read a moment after it lands lengthens T4,
which adds to δ and takes half as much from θ. \`check\` runs each collector's probe path untimed against
loopback stand-ins before the first timed probe, so a fresh process does not time its own start-up.
`;
await Deno.mkdir(new URL("../../docs/reports/", import.meta.url), { recursive: true });
await Deno.writeTextFile(new URL("../../docs/reports/check.md", import.meta.url), report);
console.log(report);
