/**
 * `deno task bench:front-door`: every attack on the HTTP front door, rerun
 * as an outsider would from 127.0.0.1 against real exporter processes
 * (`deno run main.ts` with the start task's flags), and a minute of all of
 * them at once; the figures go to docs/hardening.md, each beside the bound
 * it is held to. Takes about three minutes.
 * @module
 */

import bcrypt from "bcryptjs";
import { makeCertificates } from "../helpers/api_server.ts";
import { rewriteDocsBlock } from "../helpers/docs.ts";
import { START_FLAGS, startExporter } from "../helpers/exporter_process.ts";
import { Exposition } from "../helpers/metrics.ts";
import { caAndLeaf, CLIENT_EXTENSIONS } from "../helpers/pki.ts";
import { processUsage } from "../helpers/proc.ts";
import { median } from "../helpers/stats.ts";
import { startListener } from "../helpers/tcp.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const encoder = new TextEncoder();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Row {
  readonly attack: string;
  readonly measured: string;
  readonly bound: string;
  readonly held: boolean;
}
const rows: Row[] = [];
function row(attack: string, measured: string, bound: string, held: boolean): void {
  rows.push({ attack, measured, bound, held });
  console.log(`${held ? "✓" : "✗"} ${attack}: ${measured} (bound: ${bound})`);
}

const work = await Deno.makeTempDir({ prefix: "bench-front-door-" });
const server = await makeCertificates("127.0.0.1");
await Deno.writeTextFile(`${work}/tls.crt`, server.cert);
await Deno.writeTextFile(`${work}/tls.key`, server.key);
const tlsClient = Deno.createHttpClient({ caCerts: [server.caPem] });
const HASH = bcrypt.hashSync("right", 10);
const target = startListener();
/** Probing that shows a bent clock: a loopback handshake every 100 ms. */
const PROBING = [
  "--no-collector.dns",
  `--network.targets=${target.address}`,
  "--network.interval=100ms",
  "--network.timeout=50ms",
];

async function writeConfig(name: string, yaml: string): Promise<string> {
  const path = `${work}/${name}.yml`;
  await Deno.writeTextFile(path, yaml);
  return path;
}
const TLS = "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n";

/** Probes delayed, and loopback handshakes recorded over 25 ms, so far. */
async function bentSoFar(url: string, headers: HeadersInit = {}): Promise<[number, number]> {
  const client = url.startsWith("https:") ? tlsClient : undefined;
  const text = await (await fetch(`${url}/metrics`, { headers, ...(client ? { client } : {}) }))
    .text();
  const metrics = new Exposition(text);
  const delayed = metrics.samples("net_exporter_probe_delayed_total")
    .reduce((sum, sample) => sum + sample.value, 0);
  const count = metrics.samples("network_latency_seconds_count")
    .reduce((sum, sample) => sum + sample.value, 0);
  const fast = metrics.samples("network_latency_seconds_bucket", { le: "0.025" })
    .reduce((sum, sample) => sum + sample.value, 0);
  return [delayed, count - fast];
}

async function dialErrors(url: string): Promise<number> {
  const client = url.startsWith("https:") ? tlsClient : undefined;
  const text = await (await fetch(`${url}/metrics`, client ? { client } : {})).text();
  return new Exposition(text).samples("network_dial_error_total")
    .reduce((sum, sample) => sum + sample.value, 0);
}

/** Milliseconds for one request on a fresh connection, to its last byte. */
async function timed(url: string, headers: HeadersInit = {}): Promise<[number, number]> {
  const client = url.startsWith("https:") ? tlsClient : undefined;
  const startedAt = performance.now();
  const response = await fetch(url, { headers, ...(client ? { client } : {}) });
  await response.arrayBuffer();
  return [performance.now() - startedAt, response.status];
}

/** Writes raw bytes on a new connection and reads until it closes (or `ms`). */
async function raw(port: number, bytes: string, ms = 5_000): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), ms);
  let text = "";
  try {
    await conn.write(Uint8Array.from(bytes, (c) => c.charCodeAt(0)));
    await conn.closeWrite();
    const buffer = new Uint8Array(65_536);
    for (;;) {
      const read = await conn.read(buffer);
      if (read === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, read));
    }
  } catch { /* closed */ }
  clearTimeout(timer);
  try {
    conn.close();
  } catch { /* closed */ }
  return text;
}

/** Runs `attack` until `signal` aborts, on `count` workers. */
function flood(count: number, signal: AbortSignal, attack: () => Promise<unknown>): Promise<void> {
  return Promise.all(Array.from({ length: count }, async () => {
    while (!signal.aborted) await attack().catch(() => {});
  })).then(() => {});
}

let names = "";
for (let i = 0; names.length < 16 * 1024 - 100; i++) names += `${i.toString(36)}:\r\n`;
const MANY_HEADERS = `GET /healthz HTTP/1.1\r\nHost: x\r\n${names}\r\n`;

// 1. Many header names.
{
  await using exporter = await startExporter(PROBING);
  const port = Number(new URL(exporter.url).port);
  const refusals: number[] = [];
  for (let i = 0; i < 20; i++) {
    const startedAt = performance.now();
    const text = await raw(port, MANY_HEADERS);
    if (/^HTTP\/1\.1 431/.test(text)) refusals.push(performance.now() - startedAt);
  }
  row(
    "A head of ~2,700 header names (16 KiB)",
    `${refusals.length}/20 refused 431, median ${median(refusals).toFixed(1)} ms`,
    "refused in < 100 ms",
    refusals.length === 20 && median(refusals) < 100,
  );
  const before = await bentSoFar(exporter.url);
  const stop = new AbortController();
  const attack = flood(4, stop.signal, () => raw(port, MANY_HEADERS));
  const scrapes: number[] = [];
  for (let i = 0; i < 10; i++) {
    scrapes.push((await timed(`${exporter.url}/metrics`))[0]);
    await sleep(1_000);
  }
  stop.abort();
  await attack;
  const after = await bentSoFar(exporter.url);
  row(
    "… from 4 connections in a loop for 10 s",
    `${after[0] - before[0]} probes delayed, ${
      after[1] - before[1]
    } handshakes recorded over 25 ms; scrape median ${median(scrapes).toFixed(1)} ms`,
    "0 delayed, 0 over 25 ms",
    after[0] === before[0] && after[1] === before[1],
  );
}

// 2. Requests inside bodies, and ambiguous lengths.
{
  await using exporter = await startExporter(PROBING);
  const port = Number(new URL(exporter.url).port);
  const hidden = "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n";
  const attempts = [
    `GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: ${hidden.length}\r\n\r\n${hidden}`,
    `GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nContent-Length: 40\r\n\r\n${hidden}`,
    `GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n${hidden}`,
    `GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n${hidden}`,
    `GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: +0\r\n\r\n${hidden}`,
    `GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n${hidden}`,
  ];
  let smuggled = 0;
  for (const attempt of attempts) {
    const text = await raw(port, attempt);
    if (/\r\n\r\n(ready|not ready)\n/.test(text)) smuggled++;
  }
  row(
    "Requests hidden in bodies, duplicate, non-numeric and conflicting lengths (6 kinds)",
    `${smuggled} hidden requests answered`,
    "0",
    smuggled === 0,
  );
}

// 3. 300 connections dribbling heads at 1 byte/s.
{
  await using exporter = await startExporter(PROBING);
  const port = Number(new URL(exporter.url).port);
  const stop = new AbortController();
  const dribblers = await Promise.all(
    Array.from({ length: 300 }, () => Deno.connect({ hostname: "127.0.0.1", port })),
  );
  const dribbling = Promise.all(dribblers.map(async (conn) => {
    for (
      const byte of "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    ) {
      if (stop.signal.aborted) break;
      try {
        await conn.write(encoder.encode(byte));
      } catch {
        break;
      }
      await sleep(1_000);
    }
  }));
  const scrapes: number[] = [];
  for (let i = 0; i < 10; i++) {
    scrapes.push((await timed(`${exporter.url}/metrics`))[0]);
    await sleep(500);
  }
  stop.abort();
  for (const conn of dribblers) {
    try {
      conn.close();
    } catch { /* displaced */ }
  }
  await dribbling;
  const worst = Math.max(...scrapes);
  row(
    "300 connections dribbling heads at 1 byte/s",
    `scrape median ${median(scrapes).toFixed(1)} ms, worst ${worst.toFixed(1)} ms`,
    "no scrape past 1 s",
    worst < 1_000,
  );
}

// 4–5. Password guesses, and who is refused how fast.
{
  const path = await writeConfig("users", `${TLS}basic_auth_users:\n  alice: ${HASH}\n`);
  await using exporter = await startExporter([...PROBING, `--web.config.file=${path}`]);
  const url = exporter.url.replace(/^http:/, "https:");
  const auth = (user: string, password: string) => ({
    authorization: `Basic ${btoa(`${user}:${password}`)}`,
  });
  const good = auth("alice", "right");
  await timed(`${url}/metrics`, good);
  const before = await bentSoFar(url, good);
  const stop = new AbortController();
  let guess = 0;
  const guessing = (async () => {
    while (!stop.signal.aborted) {
      void timed(`${url}/healthz`, {}).catch(() => {});
      void timed(`${url}/metrics`, auth("alice", `guess-${guess++}`)).catch(() => {});
      await sleep(50); // 20 a second
    }
  })();
  const scrapes: number[] = [];
  for (let i = 0; i < 20; i++) {
    scrapes.push((await timed(`${url}/metrics`, good))[0]);
    await sleep(500);
  }
  stop.abort();
  await guessing;
  await sleep(2_000);
  const after = await bentSoFar(url, good);
  row(
    "20 wrong passwords a second for 10 s (each new: no cache hit)",
    `authenticated scrape median ${median(scrapes).toFixed(1)} ms; ${
      after[1] - before[1]
    } handshakes over 25 ms, ${after[0] - before[0]} probes delayed`,
    "median ≤ 100 ms, no handshake past 25 ms",
    median(scrapes) <= 100 && after[1] === before[1],
  );
  const known: number[] = [], unknown: number[] = [];
  for (let i = 0; i < 12; i++) {
    known.push((await timed(`${url}/metrics`, auth("alice", `k-${i}`)))[0]);
    unknown.push((await timed(`${url}/metrics`, auth(`user-${i}`, `u-${i}`)))[0]);
  }
  const ratio = median(known) / median(unknown);
  row(
    "A known and an unknown user refused (bcrypt cost 10)",
    `known ${median(known).toFixed(1)} ms, unknown ${median(unknown).toFixed(1)} ms: ratio ${
      ratio.toFixed(2)
    }`,
    "ratio of medians 0.67–1.5",
    ratio >= 0.67 && ratio <= 1.5,
  );
}

// 6. An emptied config.
{
  const path = await writeConfig("emptied", `basic_auth_users:\n  alice: ${HASH}\n`);
  await using exporter = await startExporter([...PROBING, `--web.config.file=${path}`]);
  const statuses: number[] = [];
  for (const content of ["", "{}\n"]) {
    await Deno.writeTextFile(path, content);
    await sleep(1_100);
    await timed(`${exporter.url}/metrics`);
    await sleep(1_100);
    statuses.push((await timed(`${exporter.url}/metrics`))[1]);
  }
  row(
    "The web config emptied, then `{}`, while running",
    `/metrics without credentials: ${statuses.join(", ")}`,
    "stays closed (401)",
    statuses.every((status) => status === 401),
  );
}

// 7. A kept-alive TLS request.
{
  const path = await writeConfig("tls", TLS);
  await using exporter = await startExporter([...PROBING, `--web.config.file=${path}`]);
  const url = exporter.url.replace(/^http:/, "https:");
  await timed(`${url}/healthz`);
  const times: number[] = [];
  for (let i = 0; i < 50; i++) times.push((await timed(`${url}/healthz`))[0]);
  row(
    "A request on a kept-alive TLS connection",
    `median ${median(times).toFixed(2)} ms over 50`,
    "≤ 10 ms",
    median(times) <= 10,
  );
}

// 8. TLS connections that never start a handshake, at a 200-descriptor limit.
{
  const path = await writeConfig("tls-silent", TLS);
  await using exporter = await startExporter(
    [...PROBING, "--network.concurrency=8", `--web.config.file=${path}`],
    { command: ["prlimit", "--nofile=200:200", Deno.execPath(), "run", ...START_FLAGS, MAIN] },
  );
  const url = exporter.url.replace(/^http:/, "https:");
  await sleep(1_000);
  const fds = () =>
    new TextDecoder().decode(
      new Deno.Command("ls", { args: [`/proc/${exporter.child.pid}/fd`], stdout: "piped" })
        .outputSync().stdout,
    ).trim().split("\n").length;
  const before = [fds(), await dialErrors(url)];
  const silent = await Promise.all(
    Array.from(
      { length: 260 },
      () => Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(url).port) }),
    ),
  );
  await sleep(6_000);
  const after = [fds(), await dialErrors(url)];
  for (const conn of silent) {
    try {
      conn.close();
    } catch { /* closed by the server */ }
  }
  row(
    "260 connections that never send a ClientHello, descriptor limit 200",
    `${after[1]! - before[1]!} dial errors; descriptors ${before[0]} before, ${after[0]} 6 s later`,
    "0 dial errors, no descriptor held past the 5 s deadline",
    after[1] === before[1] && after[0]! <= before[0]! + 4,
  );
}

// 9. Client certificates required, 140 silent connections.
{
  const trusted = await caAndLeaf("bench-clients", "/CN=prometheus", CLIENT_EXTENSIONS);
  await Deno.writeTextFile(`${work}/clients.crt`, trusted.caPem);
  const path = await writeConfig(
    "mtls",
    `${TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.crt\n`,
  );
  await using exporter = await startExporter([...PROBING, `--web.config.file=${path}`]);
  const url = exporter.url.replace(/^http:/, "https:");
  const client = Deno.createHttpClient({
    caCerts: [server.caPem],
    cert: trusted.cert,
    key: trusted.key,
  });
  const silent = await Promise.all(
    Array.from(
      { length: 140 },
      () => Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(url).port) }),
    ),
  );
  const times: number[] = [];
  let ok = 0;
  for (let i = 0; i < 5; i++) {
    const startedAt = performance.now();
    const response = await fetch(`${url}/metrics`, { client });
    await response.arrayBuffer();
    times.push(performance.now() - startedAt);
    if (response.status === 200) ok++;
  }
  for (const conn of silent) {
    try {
      conn.close();
    } catch { /* closed */ }
  }
  client.close();
  row(
    "Client certificates required, 140 silent connections held",
    `a good client: ${ok}/5 answered 200, median ${median(times).toFixed(1)} ms`,
    "the good client gets in",
    ok === 5,
  );
}

// 10. A key that does not match its certificate.
{
  const other = await makeCertificates("127.0.0.1");
  await Deno.writeTextFile(`${work}/other.key`, other.key);
  const path = await writeConfig(
    "mismatch",
    "tls_server_config:\n  cert_file: tls.crt\n  key_file: other.key\n  client_auth_type: RequireAnyClientCert\n",
  );
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...START_FLAGS, MAIN, `--web.config.file=${path}`],
    stdout: "null",
    stderr: "piped",
    env: { DENO_NO_UPDATE_CHECK: "1" },
  }).output();
  const lines = new TextDecoder().decode(output.stderr).trim().split("\n").length;
  row(
    "A key that does not match its certificate (client certificates required)",
    `exit ${output.code}, ${lines} line`,
    "start refused, one line",
    output.code !== 0 && lines === 1,
  );
}

// 11. A minute of everything at once.
const soak: string[] = [];
{
  const path = await writeConfig("soak", `${TLS}basic_auth_users:\n  alice: ${HASH}\n`);
  await using exporter = await startExporter([...PROBING, `--web.config.file=${path}`]);
  const url = exporter.url.replace(/^http:/, "https:");
  const port = Number(new URL(url).port);
  const good = { authorization: `Basic ${btoa("alice:right")}` };
  await timed(`${url}/metrics`, good);
  const sample = async () => {
    const usage = await processUsage(exporter.child.pid);
    const fds = new TextDecoder().decode(
      new Deno.Command("ls", { args: [`/proc/${exporter.child.pid}/fd`], stdout: "piped" })
        .outputSync().stdout,
    ).trim().split("\n").length;
    const scrapes: number[] = [];
    for (let i = 0; i < 5; i++) scrapes.push((await timed(`${url}/metrics`, good))[0]);
    return { rss: (usage?.rssBytes ?? 0) / 2 ** 20, fds, scrape: median(scrapes) };
  };
  const before = await sample();
  const bentBefore = await bentSoFar(url, good);
  const stop = new AbortController();
  let guess = 0;
  const attacks = Promise.all([
    flood(2, stop.signal, () => raw(port, MANY_HEADERS, 1_000)),
    flood(
      2,
      stop.signal,
      () => timed(`${url}/metrics`, { authorization: `Basic ${btoa(`alice:g${guess++}`)}` }),
    ),
    flood(50, stop.signal, async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await sleep(3_000);
      conn.close();
    }),
  ]);
  const during: number[] = [];
  const endAt = performance.now() + 60_000;
  while (performance.now() < endAt) {
    during.push((await timed(`${url}/metrics`, good))[0]);
    await sleep(1_000);
  }
  stop.abort();
  await attacks;
  await sleep(6_000);
  const after = await sample();
  const bentAfter = await bentSoFar(url, good);
  soak.push(
    "| | before | during (median, worst) | after |",
    "| --- | ---: | ---: | ---: |",
    `| authenticated scrape over TLS (ms) | ${before.scrape.toFixed(1)} | ${
      median(during).toFixed(1)
    }, ${Math.max(...during).toFixed(1)} | ${after.scrape.toFixed(1)} |`,
    `| resident memory (MiB) | ${before.rss.toFixed(1)} | | ${after.rss.toFixed(1)} |`,
    `| descriptors | ${before.fds} | | ${after.fds} |`,
    `| probes delayed, handshakes over 25 ms (during the minute) | | ${
      bentAfter[0] - bentBefore[0]
    }, ${bentAfter[1] - bentBefore[1]} | |`,
  );
}

await target[Symbol.asyncDispose]();
tlsClient.close();
await Deno.remove(work, { recursive: true });

const table = [
  "| Attack | Measured | Held to | |",
  "| --- | --- | --- | --- |",
  ...rows.map((r) => `| ${r.attack} | ${r.measured} | ${r.bound} | ${r.held ? "✓" : "✗"} |`),
].join("\n");
const written = await rewriteDocsBlock(
  "reports/front-door.md",
  "front-door",
  "deno task bench:front-door",
  `${table}\n\nA minute of three attacks at once (the 16 KiB many-header head from 2 connections, ` +
    `password guesses from 2, 50 connections opened and left silent for 3 s each, over and over), ` +
    `with a probe every 100 ms and an authenticated scrape every second:\n\n${soak.join("\n")}`,
);
console.log(`written to ${written}`);
