import { assert } from "./helpers/assert.ts";
import { startDnsServer } from "./helpers/dns_server.ts";
import { runProgram } from "./helpers/exporter_process.ts";
import { closedPort, startListener } from "./helpers/tcp.ts";
import { startNtpServer } from "./helpers/ntp_server.ts";

const runCheck = (args: string[]) => runProgram(["check", ...args]);

Deno.test("check: a table of every probe; NODATA fails (exit 1), all ok exits 0", async () => {
  await using dns = await startDnsServer();
  await using listener = startListener();
  const { code, stdout, stderr } = await runCheck([
    `--dns.servers=${dns.address}`,
    "--dns.hosts=ok.test.",
    "--dns.record-types=A,AAAA",
    `--network.targets=${listener.address}`,
  ]);
  assert.equal(code, 1, "AAAA has no record: NODATA is a failure");
  const lines = stdout.trimEnd().split("\n");
  assert.match(lines[0]!, /^COLLECTOR\s+TARGET\s+RESULT\s+LATENCY\s+REASON(\s+DETAIL)?$/);
  assert.match(stdout, /dns\s+ok\.test\. A via 127\.0\.0\.1:\d+\/udp\s+ok\s+\d+\.\d{3} ms\s+-/);
  assert.match(stdout, /dns\s+ok\.test\. AAAA via 127\.0\.0\.1:\d+\/udp\s+failed\s+-\s+nodata/);
  // The failure's own words are in the table, not only in a log line.
  const json = await runCheck([
    `--dns.servers=${dns.address}`,
    "--dns.hosts=ok.test.",
    "--dns.record-types=AAAA",
    "--no-collector.network",
    "--output=json",
  ]);
  const [nodata] = JSON.parse(json.stdout) as Array<{ message: string }>;
  assert.ok(nodata!.message.length > 0);
  const aaaaLine = stdout.split("\n").find((line) => line.includes("AAAA"))!;
  assert.ok(aaaaLine.trimEnd().endsWith(nodata!.message), aaaaLine);
  assert.match(
    stdout,
    new RegExp(`network\\s+${listener.address.replaceAll(".", "\\.")}\\s+ok\\s+\\d+\\.\\d{3} ms`),
  );
  assert.equal(lines.length, 4, stderr);

  const allGood = await runCheck([
    `--dns.servers=${dns.address}`,
    "--dns.hosts=ok.test.",
    `--network.targets=${listener.address}`,
  ]);
  assert.equal(allGood.code, 0, allGood.stdout + allGood.stderr);
});

Deno.test("check: a failing target → JSON with its reason, exit 1", async () => {
  const port = closedPort();
  const { code, stdout } = await runCheck([
    "--no-collector.dns",
    `--network.targets=127.0.0.1:${port}`,
    "--network.timeout=1s",
    "--output=json",
  ]);
  assert.equal(code, 1);
  const rows = JSON.parse(stdout);
  assert.deepEqual(
    rows.map((
      row: { target: string; result: string; reason: string },
    ) => [row.target, row.result, row.reason]),
    [
      [`127.0.0.1:${port}`, "failed", "refused"],
    ],
  );
});

Deno.test("check: the warm-up before the timed probes probes no target twice", async () => {
  await using dns = await startDnsServer();
  await using listener = startListener();
  const { code, stdout } = await runCheck([
    `--dns.servers=${dns.address}`,
    "--dns.hosts=once.test.",
    "--dns.protocols=udp,tcp",
    `--network.targets=${listener.address}`,
  ]);
  assert.equal(code, 0, stdout);
  assert.deepEqual(dns.queries.sort(), ["tcp once.test A", "udp once.test A"]);
  assert.equal(listener.accepted, 1);
});

Deno.test("check: NTP servers are checked too, with the clock offset beside the round trip", async () => {
  await using ahead = startNtpServer({ offsetMs: 300 });
  await using refusing = startNtpServer({ kiss: "RSTR" });
  const table = await runCheck([
    "--no-collector.dns",
    `--ntp.servers=${ahead.address},${refusing.address}`,
    "--ntp.timeout=1s",
  ]);
  assert.equal(table.code, 1, table.stderr);
  assert.match(
    table.stdout.split("\n")[0]!,
    /^COLLECTOR\s+TARGET\s+RESULT\s+LATENCY\s+REASON\s+DETAIL$/,
  );
  assert.match(
    table.stdout,
    /ntp\s+127\.0\.0\.1:\d+ \(NTP\)\s+ok\s+\d+\.\d{3} ms\s+-\s+offset \d+\.\d{3} ms · stratum 2/,
  );
  assert.match(table.stdout, /ntp\s+127\.0\.0\.1:\d+ \(NTP\)\s+failed\s+-\s+kiss_of_death/);

  const json = await runCheck([
    "--no-collector.dns",
    `--ntp.servers=${ahead.address}`,
    "--output=json",
  ]);
  assert.equal(json.code, 0, json.stderr);
  const [row] = JSON.parse(json.stdout);
  assert.equal(row.collector, "ntp");
  assert.ok(Math.abs(row.readings.offset_seconds - 0.3) < 0.01, JSON.stringify(row));
  assert.deepEqual(row.labels, { server: ahead.address });
  // One casing throughout, as the metrics' names: snake_case.
  const keys = (value: unknown): string[] =>
    value !== null && typeof value === "object"
      ? Object.entries(value).flatMap(([key, inner]) =>
        Array.isArray(value) ? keys(inner) : [key, ...keys(inner)]
      )
      : [];
  for (const key of keys(JSON.parse(json.stdout))) {
    if (key === "labels") continue;
    assert.match(key, /^[a-z0-9]+(_[a-z0-9]+)*$/, `${key} is snake_case`);
  }
});
