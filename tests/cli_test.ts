import { type Invocation, parseCommandLine } from "../exporter/cli.ts";
import { parseDuration } from "../lib/duration.ts";
import { parseHostPort } from "../lib/address.ts";
import { assert } from "./helpers/assert.ts";
import { runProgram } from "./helpers/exporter_process.ts";

async function parse(argv: string[], env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const saved = Object.keys(env).map((name) => [name, Deno.env.get(name)] as const);
  for (const [name, value] of Object.entries(env)) Deno.env.set(name, value);
  try {
    const invocation = await parseCommandLine(argv, {
      output: { writeOut: (text) => out.push(text), writeErr: (text) => err.push(text) },
      env: (name) => Deno.env.get(name),
    });
    return { invocation, out: out.join(""), err: err.join("") };
  } finally {
    for (const [name, value] of saved) {
      value === undefined ? Deno.env.delete(name) : Deno.env.set(name, value);
    }
  }
}

/** Every flag's value as the status page shows it. */
function values(invocation: Invocation): ReadonlyMap<string, string> {
  assert.ok(invocation.command === "serve" || invocation.command === "check");
  return new Map(invocation.settings.flags);
}

Deno.test("cli: defaults of serve", async () => {
  const { invocation } = await parse([]);
  assert.equal(invocation.command, "serve");
  assert.ok(invocation.command === "serve");
  assert.deepEqual(invocation.listen, { hostname: "::", port: 8000 });
  assert.equal(invocation.telemetryPath, "/metrics");
  const flags = values(invocation);
  assert.equal(flags.get("dns.hosts"), "kubernetes.default.svc.cluster.local.");
  assert.equal(flags.get("dns.servers"), "");
  assert.equal(flags.get("dns.record-types"), "A");
  assert.equal(flags.get("dns.protocols"), "udp");
  assert.equal(flags.get("dns.interval"), "15s");
  assert.equal(flags.get("dns.timeout"), "2s");
  assert.equal(flags.get("network.interval"), "15s");
  assert.equal(flags.get("network.timeout"), "5s");
  assert.deepEqual(invocation.settings.log, { level: "info", format: "json" });
  assert.deepEqual(invocation.settings.collectors.map((collector) => collector.name), [
    "dns",
    "network",
    "echo",
  ]);
});

Deno.test("cli: flags, the environment, and a flag beating the environment", async () => {
  const { invocation } = await parse(
    [
      "serve",
      "--dns.servers=127.0.0.1:5353,[::1]",
      "--network.targets",
      "10.0.0.5:8000,[fd00::1]:8000",
      "--no-collector.dns",
      "--dns.interval=1m",
    ],
    {
      NET_EXPORTER_DNS_INTERVAL: "30s",
      NET_EXPORTER_NETWORK_INTERVAL: "2s",
      NET_EXPORTER_NETWORK_TIMEOUT: "500ms",
    },
  );
  const flags = values(invocation);
  assert.equal(flags.get("dns.servers"), "127.0.0.1:5353,[::1]:53");
  assert.equal(flags.get("network.targets"), "10.0.0.5:8000,[fd00::1]:8000");
  assert.equal(flags.get("dns.interval"), "1m");
  assert.equal(flags.get("network.interval"), "2s");
  assert.equal(flags.get("network.timeout"), "500ms");
  assert.ok(invocation.command === "serve");
  assert.deepEqual(invocation.settings.collectors.map((collector) => collector.name), [
    "network",
    "echo",
  ]);
});

Deno.test("cli: switches from the environment take true/false", async () => {
  const off = (await parse([], { NET_EXPORTER_COLLECTOR_DNS: "false" })).invocation;
  assert.ok(off.command === "serve");
  assert.deepEqual(off.settings.collectors.map((collector) => collector.name), [
    "network",
    "echo",
  ]);
  const on = (await parse(["--collector.dns"], { NET_EXPORTER_COLLECTOR_DNS: "false" })).invocation;
  assert.ok(on.command === "serve");
  assert.deepEqual(on.settings.collectors.map((collector) => collector.name), [
    "dns",
    "network",
    "echo",
  ]);
});

Deno.test("cli: bad input is one line naming the flag and the value, exit 2", async () => {
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [["--bogus"], {}, /unknown flag '--bogus'/],
    [["--dns.interval=soon"], {}, /--dns\.interval.*'soon'.*Cannot parse duration/],
    [["--dns.timeout=20s"], {}, /--dns\.timeout=20s is not below --dns\.interval=15s/],
    [["--network.interval=10000h"], {}, /--network\.interval.*'10000h'.*from 1ms to 576h/],
    [["--network.timeout=0.1ms"], {}, /--network\.timeout.*from 1ms to 576h/],
    [["--network.timeout=15s"], {}, /--network\.timeout=15s is not below --network\.interval=15s/],
    [["--network.targets=10.0.0.1"], {}, /--network\.targets.*'10\.0\.0\.1'.*expected host:port/],
    [["--network.targets=[zz]:80"], {}, /brackets hold an IPv6 address/],
    [["--dns.hosts=a,,b"], {}, /--dns\.hosts.*empty item/],
    [["--dns.hosts="], {}, /--dns\.hosts is empty/],
    [["--dns.servers=dns.example"], {}, /not an IP address/],
    [["--dns.record-types=MX"], {}, /expected one of A, AAAA/],
    [["--web.listen-address=:0x50"], {}, /--web\.listen-address/],
    [["--network.concurrency=0"], {}, /--network\.concurrency.*positive integer/],
    [["--dns.buckets=0.1,0.05"], {}, /increasing order/],
    [[], { NET_EXPORTER_DNS_TIMEOUT: "forever" }, /from env 'NET_EXPORTER_DNS_TIMEOUT' is invalid/],
    [[], { NET_EXPORTER_COLLECTOR_NETWORK: "maybe" }, /NET_EXPORTER_COLLECTOR_NETWORK/],
  ];
  for (const [argv, env, message] of cases) {
    const { invocation, err, out } = await parse(argv, env);
    assert.deepEqual(invocation, { command: "exit", code: 2 }, argv.join(" "));
    assert.match(err, message);
    assert.equal(err.trimEnd().split("\n").length, 1, `one line for ${argv.join(" ")}: ${err}`);
    assert.equal(out, "");
  }
});

Deno.test("cli: help exits 0; version and check are commands", async () => {
  const help = await parse(["--help"]);
  assert.deepEqual(help.invocation, { command: "exit", code: 0 });
  // serve is the default command: its flags first, then the other commands.
  for (
    const flag of ["--dns.servers", "--network.targets", "--network.port", "--web.config.file"]
  ) {
    assert.ok(help.out.includes(flag), `top-level help lists ${flag}`);
  }
  assert.ok(help.out.indexOf("--dns.servers") < help.out.indexOf("check [options]"));
  assert.match(help.out, /--version/);
  const serveHelp = await parse(["serve", "--help"]);
  assert.match(serveHelp.out, /--dns\.hosts/);
  assert.match(serveHelp.out, /NET_EXPORTER_DNS_HOSTS/);
  assert.deepEqual((await parse(["version"])).invocation, { command: "version" });
  const check = (await parse(["check", "--output=json", "--dns.servers=127.0.0.1:53"])).invocation;
  assert.ok(check.command === "check");
  assert.equal(check.output, "json");
});

Deno.test("cli: a misspelt flag (with =value too), command or NET_EXPORTER_ variable gets a suggestion", async () => {
  const cases: Array<[string[], RegExp]> = [
    [["--dns.host=localhost."], /unknown flag '--dns\.host'.*\n\(Did you mean --dns\.hosts\?\)/],
    [["--dns.host", "localhost."], /\(Did you mean --dns\.hosts\?\)/],
    [["check", "--ntp.server=10.0.0.1"], /for 'check'\n\(Did you mean --ntp\.servers\?\)/],
    [["serv"], /unknown command 'serv'.*\n\(Did you mean serve\?\)/],
    [["chekc", "--dns.hosts=a."], /unknown command 'chekc'.*\n\(Did you mean check\?\)/],
    [["--dns.hosts", "a.", "stray"], /unknown command 'stray'/],
  ];
  for (const [argv, message] of cases) {
    const { invocation, err, out } = await parse(argv);
    assert.deepEqual(invocation, { command: "exit", code: 2 }, argv.join(" "));
    assert.match(err, message, argv.join(" "));
    assert.equal(out, "");
  }
  // A flag's value is never taken for a command, and "help" stays commander's.
  assert.equal((await parse(["--dns.hosts", "check."])).invocation.command, "serve");
  assert.deepEqual((await parse(["help", "check"])).invocation, { command: "exit", code: 0 });

  let warnings = "";
  const env = { NET_EXPORTER_DNS_HOST: "a.", NET_EXPORTER_DNS_HOSTS: "b.", OTHER: "x" };
  const warned = await parseCommandLine([], {
    output: { writeOut: () => {}, writeErr: (text) => (warnings += text) },
    env: (name) => env[name as keyof typeof env],
    envNames: () => Object.keys(env),
  });
  assert.equal(warned.command, "serve", "a warning, not a refusal");
  assert.equal(
    warnings,
    "warning: environment variable NET_EXPORTER_DNS_HOST sets no flag and is ignored (did you mean NET_EXPORTER_DNS_HOSTS?)\n",
  );
});

Deno.test("cli: help groups each flag under what it belongs to, wrapped to 80 columns off a terminal", async () => {
  for (const argv of [["--help"], ["serve", "--help"], ["check", "--help"]]) {
    const { out } = await parse(argv);
    for (const line of out.split("\n")) {
      assert.ok([...line].length <= 80, `${argv.join(" ")}: ${line.length} columns: ${line}`);
    }
    const section = (title: string) => {
      const start = out.indexOf(`\n${title}:\n`);
      assert.ok(start >= 0, `${argv.join(" ")} has "${title}"`);
      const end = out.indexOf("\n\n", start + 1);
      return out.slice(start, end === -1 ? undefined : end);
    };
    assert.match(section("The network collector"), /--network\.port/);
    assert.doesNotMatch(
      section("Kubernetes discovery (peers for the network collector)"),
      /--network\./,
    );
    assert.match(section("The ntp collector"), /--ntp\.servers/);
  }
  const check = (await parse(["check", "--help"])).out;
  assert.match(check, /--output/);
  assert.doesNotMatch(check, /--web\.listen-address/);
  // check logs only what went wrong, as text, unless told otherwise.
  const invocation = (await parse(["check", "--dns.servers=127.0.0.1"])).invocation;
  assert.ok(invocation.command === "check");
  assert.deepEqual(invocation.settings.log, { level: "warning", format: "text" });
});

Deno.test("cli: the ecosystem's spellings are understood, and a bare port gets a suggestion", async () => {
  const warn = (await parse(["--log.level=warn"])).invocation;
  assert.ok(warn.command === "serve");
  assert.equal(warn.settings.log.level, "warning");
  const port = await parse(["--web.listen-address=9184"]);
  assert.deepEqual(port.invocation, { command: "exit", code: 2 });
  assert.match(port.err, /did you mean ":9184"\?/);
});

Deno.test("cli: durations and addresses", () => {
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("1m30s"), 90_000);
  assert.equal(parseDuration("1.5s"), 1_500);
  assert.equal(parseDuration("1000us"), 1);
  assert.equal(parseDuration("576h"), 576 * 3_600_000);
  // A timer holds at most 2^31-1 ms and fires at once past it; below 1 ms it cannot resolve.
  assert.throws(() => parseDuration("250us"), /from 1ms to 576h/);
  assert.throws(() => parseDuration("10000h"), /from 1ms to 576h/);
  assert.throws(() => parseDuration("0s"), /above zero/);
  assert.throws(() => parseDuration("15"), /Cannot parse duration/);
  assert.throws(() => parseDuration("-1s"), /Cannot parse duration/);
  assert.deepEqual(parseHostPort("[fd00::1]:8000"), { hostname: "fd00::1", port: 8000 });
  assert.deepEqual(parseHostPort("node-1.example:80"), { hostname: "node-1.example", port: 80 });
  assert.deepEqual(parseHostPort("fd00::1", { defaultPort: 53 }), {
    hostname: "fd00::1",
    port: 53,
  });
  assert.throws(() => parseHostPort("a b:80"), /not an IP address or a DNS name/);
  assert.throws(() => parseHostPort("host:0"), /1-65535/);
});

Deno.test("cli: the real program exits 2 with one line and no stack trace on bad input", async () => {
  for (const flag of ["--dns.interval=soon", "--network.interval=10000h"]) {
    const { code, stdout, stderr } = await runProgram([flag]);
    assert.equal(code, 2, flag);
    assert.equal(stderr.trimEnd().split("\n").length, 1, stderr);
    assert.doesNotMatch(stderr, /\bat\b.*\.ts:\d+/);
    assert.equal(stdout, "");
  }
});

Deno.test("cli: --version, version through the start task, and help that says where the flags are", async () => {
  for (const argv of [["--version"], ["-V"]]) {
    const { invocation, out } = await parse(argv);
    assert.deepEqual(invocation, { command: "exit", code: 0 });
    assert.match(out, /^net-exporter \d+\.\d+\.\d+ \(deno /);
  }
  const help = await parse(["--help"]);
  assert.match(help.out, /net-exporter serve --help/);
  // `deno task start version` runs the program with the start task's flags and no implied command.
  const version = await runProgram(["version"]);
  assert.equal(version.code, 0, version.stderr);
  assert.match(version.stdout, /^net-exporter /);
});

Deno.test("cli: check with nothing to probe is one line and exit 2", async () => {
  const { code, stdout, stderr } = await runProgram(["check", "--no-collector.dns"]);
  assert.equal(code, 2);
  assert.equal(stdout, "");
  assert.equal(stderr.trimEnd().split("\n").length, 1, stderr);
  assert.match(stderr, /nothing to probe/);
});

Deno.test("cli: a port in use, TCP for HTTP or UDP for echo, is one ERROR line naming it and exit 1", async () => {
  using tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const busyTcp = await runProgram([
    `--web.listen-address=127.0.0.1:${tcp.addr.port}`,
    "--no-collector.dns",
    "--k8s.discovery=off",
  ]);
  assert.equal(busyTcp.code, 1, busyTcp.stderr);
  const udp = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  try {
    const port = (udp.addr as Deno.NetAddr).port;
    const busyUdp = await runProgram([
      `--web.listen-address=127.0.0.1:${port}`,
      "--no-collector.dns",
      "--k8s.discovery=off",
    ]);
    assert.equal(busyUdp.code, 1, busyUdp.stderr);
    for (
      const [run, address] of [[busyTcp, `127.0.0.1:${tcp.addr.port}`], [
        busyUdp,
        `127.0.0.1:${port}/udp`,
      ]] as const
    ) {
      const errors = run.stderr.split("\n").filter((line) => line.includes('"level":"ERROR"'));
      assert.equal(errors.length, 1, run.stderr);
      assert.ok(errors[0]!.includes(address), errors[0]!);
    }
  } finally {
    udp.close();
  }
});
