/**
 * The comparison's configuration and arithmetic, without namespaces: a bad
 * entry is refused with one line naming it; placeholders fill; histogram
 * quantiles, counter increases and per-target failures read as Prometheus
 * would read them.
 */

import { assert, assertNear } from "./helpers/assert.ts";
import { parseSamples } from "./helpers/metrics.ts";
import {
  detectionMs,
  errorCount,
  firstScrapeFrom,
  histogramQuantile,
  latency,
  probeCount,
  probesWhilePaused,
  type Recording,
} from "./sim/recording.ts";
import {
  fill,
  fillArgv,
  loadTools,
  longestProbeMs,
  type ToolConfig,
  validateTools,
} from "./sim/tools.ts";
import { settleAll } from "./helpers/settle.ts";
import { CHILD_ENV } from "./helpers/requirements.ts";

const shipped = await loadTools(new URL("./sim/compare.yaml", import.meta.url).pathname);

Deno.test("comparison config: the shipped file and the plug-in fixture load", async () => {
  assert.deepEqual(shipped.map((tool) => tool.name), ["net-exporter", "blackbox_exporter"]);
  const plugin = await loadTools(
    new URL("./fixtures/compare_plugin.yaml", import.meta.url).pathname,
  );
  assert.equal(plugin[0]!.scrape.mode, "background");
});

Deno.test("comparison config: each mistake is refused with one line naming it", () => {
  const base = structuredClone(shipped[0]!) as unknown as Record<string, unknown>;
  const cases: Array<[(tool: Record<string, unknown>) => void, RegExp]> = [
    [(tool) => delete tool.name, /tools\[0\]\.name must be a string/],
    [
      (tool) => (tool.port = 70000),
      /tools\[0\]\.port must be a port number: current value is 70000/,
    ],
    [(tool) => (tool.command = []), /tools\[0\]\.command must be a non-empty list/],
    [(tool) => (tool.scrape = { mode: "push" }), /scrape\.mode must be background or per_target/],
    [
      (tool) => ((tool.dial as Record<string, unknown>).latency = { metric: "x", type: "summary" }),
      /tools\[0\]\.dial\.latency\.type must be histogram, gauge or counter: current value is "summary"/,
    ],
    [
      (tool) => delete (tool.dns as Record<string, unknown>).successes,
      /tools\[0\]\.dns\.successes is needed by background tools/,
    ],
    [
      (tool) => delete (tool.dial as Record<string, unknown>).target,
      /tools\[0\]\.dial\.target needs label and value/,
    ],
  ];
  for (const [mutate, message] of cases) {
    const tool = structuredClone(base);
    mutate(tool);
    assert.throws(() => validateTools({ tools: [tool] }), message);
  }
  assert.throws(() => validateTools({ tools: [base, base] }), /tools\[1\]\.name repeats/);
  assert.throws(() => validateTools({}), /tools must be a non-empty list/);
  const gauge = structuredClone(shipped[1]!) as unknown as Record<string, Record<string, unknown>>;
  delete (gauge.dial!.errors as Record<string, unknown>).failed_when;
  assert.throws(() => validateTools({ tools: [gauge] }), /dial\.errors\.failed_when is needed/);
});

Deno.test("comparison config: placeholders fill, a list placeholder spreads, an unknown one is refused", () => {
  const values = { pod_ip: "198.18.0.1", port: "8000", start_flags: ["--a", "--b"] };
  assert.equal(fill("{pod_ip}:{port}", values), "198.18.0.1:8000");
  assert.deepEqual(fillArgv(["deno", "{start_flags}", "--listen={pod_ip}"], values), [
    "deno",
    "--a",
    "--b",
    "--listen=198.18.0.1",
  ]);
  assert.throws(() => fill("{nope}", values), /Cannot fill \{nope\}/);
});

Deno.test("comparison arithmetic: histogram_quantile interpolates inside the bucket", () => {
  const buckets: Array<[number, number]> = [[0.025, 0], [0.05, 10], [Infinity, 10]];
  assertNear(histogramQuantile(0.5, buckets), 0.0375, 1e-12, "median");
  assertNear(histogramQuantile(0.99, buckets), 0.04975, 1e-12, "p99");
  assert.equal(histogramQuantile(0.5, [[0.1, 0], [Infinity, 4]]), 0.1);
});

function recording(
  at: number,
  text: string,
  extra: Partial<Recording> = {},
): Recording {
  return {
    instance: "i",
    kind: "metrics",
    startedAt: at - 1,
    at,
    samples: parseSamples(text),
    ...extra,
  };
}

Deno.test("comparison arithmetic: counters count increases, a new series from 0, a restart as a reset", () => {
  const tool = shipped[0]!;
  const series = (host: string, value: number) =>
    `network_dial_error_total{host="${host}",reason="timeout"} ${value}\n`;
  const recordings = [
    recording(1, series("10.0.0.2:8000", 5)),
    recording(2, series("10.0.0.2:8000", 7) + series("10.0.0.3:8000", 1)),
    recording(3, series("10.0.0.2:8000", 2)), // restarted: counts 2
  ];
  assert.equal(errorCount(tool, recordings, { kind: "dial" }, 1, 3), 2 + 1 + 2);
  assert.equal(errorCount(tool, recordings, { kind: "dial", peerIp: "10.0.0.3" }, 1, 3), 1);
  assert.equal(
    probeCount(
      tool,
      [
        recording(1, 'network_latency_seconds_count{host="a"} 10\n'),
        recording(2, 'network_latency_seconds_count{host="a"} 14\n' + series("a", 1)),
      ],
      1,
      2,
    ),
    5,
  );
});

Deno.test("comparison arithmetic: a last-latency gauge gives one sample per new value", () => {
  const tool: ToolConfig = shipped[0]!;
  const gauge = (value: number) => `network_last_latency_seconds{host="10.0.0.2:8000"} ${value}\n`;
  const figures = latency(
    tool,
    [recording(1, gauge(0.010)), recording(2, gauge(0.010)), recording(3, gauge(0.030))],
    { kind: "dial", peerIp: "10.0.0.2" },
    0,
    3,
  );
  assert.deepEqual(figures, { median_ms: 10, p99_ms: 30, samples: 2, values_ms: [10, 30] });
});

Deno.test("comparison arithmetic: pooled over peers, each series' gauge is read on its own", () => {
  const tool: ToolConfig = shipped[0]!;
  const gauges = (two: number, three: number) =>
    `network_last_latency_seconds{host="10.0.0.2:8000"} ${two}\n` +
    `network_last_latency_seconds{host="10.0.0.3:8000"} ${three}\n`;
  const recordings = [
    recording(1, gauges(0.010, 0.020)),
    recording(2, gauges(0.010, 0.030)), // 10.0.0.2 not probed again: not a new sample
    recording(3, gauges(0.012, 0.030)),
  ];
  assert.deepEqual(latency(tool, recordings, { kind: "dial" }, 0, 3), {
    median_ms: 12,
    p99_ms: 30,
    samples: 4,
    values_ms: [10, 20, 30, 12],
  });
});

Deno.test("comparison arithmetic: detection is when an answer first shows a new error after the fault", () => {
  const tool = shipped[0]!;
  const errors = (value: number) =>
    `network_dial_error_total{host="10.0.0.2:8000",reason="timeout"} ${value}\n`;
  const recordings = [
    recording(1, errors(3)), // errors from before the fault are not its detection
    recording(2, errors(3)),
    recording(3, errors(4)),
  ];
  const selection = { kind: "dial", peerIp: "10.0.0.2" } as const;
  // Polled: the error appeared between the answers at 2 and 3; the middle of that gap.
  assert.equal(detectionMs(tool, recordings, selection, 1.5, 5), 1);
  // Nothing shows an error before the fault: the gap starts at the fault if that is later.
  assert.equal(detectionMs(tool, recordings, selection, 2.5, 5), 0.25);
  assert.equal(detectionMs(tool, recordings, selection, 1.5, 2.5), undefined);
  assert.equal(
    detectionMs(tool, recordings, { kind: "dial", peerIp: "10.0.0.3" }, 0, 5),
    undefined,
  );

  const probe = (at: number, success: number) =>
    recording(at, `probe_success ${success}\nprobe_duration_seconds 0.5\n`, {
      kind: "dial",
      peer: "10.0.0.2",
    });
  // A per-target answer is the probe: exact.
  assert.equal(
    detectionMs(shipped[1]!, [probe(1, 0), probe(2, 1), probe(3, 0)], selection, 1.5, 5),
    1.5,
  );
});

Deno.test("comparison arithmetic: a Prometheus scraping every interval sees a background tool's error at its first instant after the tool shows it", () => {
  const tool = shipped[0]!;
  const errors = (value: number) =>
    `network_dial_error_total{host="10.0.0.2:8000",reason="timeout"} ${value}\n`;
  // Polled about every 50 ms; the error shows from the answer at 1.2 s on (after a failed poll).
  const polled = [0.05, 0.6, 1.15, 1.18, 1.2, 1.25, 2.2].map((at) =>
    at === 1.18
      ? { ...recording(at, ""), samples: undefined }
      : recording(at, errors(at >= 1.2 ? 1 : 0))
  );
  const selection = { kind: "dial", peerIp: "10.0.0.2" } as const;
  const shownAfter = detectionMs(tool, polled, selection, 1, 5)!;
  // Between the last answer without it (1.15; the failed poll at 1.18 shows nothing) and 1.2.
  assertNear(shownAfter, 0.175, 1e-9);
  // Scraped at 0.1 + k s: the first instant from 1.175 s is 2.1 s.
  assertNear(firstScrapeFrom(1 + shownAfter, 1, 0.1), 2.1, 1e-9);
  assertNear(firstScrapeFrom(2.1, 1, 0.1), 2.1, 1e-9);
});

Deno.test("comparison arithmetic: a per-target tool's failed probes are errors, not latencies", () => {
  const tool = shipped[1]!;
  const probe = (at: number, success: number, seconds: number) =>
    recording(at, `probe_success ${success}\nprobe_duration_seconds ${seconds}\n`, {
      kind: "dial",
      peer: "10.0.0.2",
    });
  const recordings = [probe(1, 1, 0.002), probe(2, 0, 0.5), probe(3, 1, 0.004)];
  assert.equal(errorCount(tool, recordings, { kind: "dial", peerIp: "10.0.0.2" }, 0, 3), 1);
  assert.deepEqual(latency(tool, recordings, { kind: "dial", peerIp: "10.0.0.2" }, 0, 3), {
    median_ms: 2,
    p99_ms: 4,
    samples: 2,
    values_ms: [2, 4],
  });
  assert.equal(probeCount(tool, recordings, 0, 3), 3);
});

Deno.test("comparison command: bad input is one line and exit 2, before anything is built", async () => {
  const compare = new URL("./sim/compare.ts", import.meta.url).pathname;
  for (
    const [args, message] of [
      [["--nodes=1"], /^Cannot compare: --nodes must be 3 to 200, current value is 1$/],
      [["--crowd=-5"], /^Cannot compare: --crowd must be 0 to 1000, current value is -5$/],
      [
        ["--config=/nonexistent.yaml"],
        /^Cannot read the comparison configuration: current value is \/nonexistent\.yaml \(/,
      ],
      [["--bogus"], /Unknown option '--bogus'/],
    ] as const
  ) {
    // No --allow-run: were it to get as far as building namespaces, it could not.
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-env", compare, ...args],
      env: CHILD_ENV,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr).trim();
    assert.equal(output.code, 2, `${args}: ${stderr}`);
    assert.equal(stderr.split("\n").length, 1, stderr);
    assert.match(stderr, message);
  }
});

Deno.test("comparison arithmetic: probing while unscraped counts only the pause, not the scrape after it", () => {
  const tool = shipped[0]!;
  const count = (value: number) => `network_latency_seconds_count{host="a"} ${value}\n`;
  // Scrapes every 1,000 ms; the pause runs from 2,500 to 7,500 and the next scrape comes at 8,000.
  const scrapeTimes = [1_000, 2_000, 8_000];
  // A tool that probes when scraped: each scrape runs one probe and shows it.
  const onScrape = scrapeTimes.map((at, index) => recording(at, count(index + 1)));
  assert.equal(probesWhilePaused(tool, onScrape, 2_500, 7_500), 0);
  // A tool that probes every second on its own: six probes at the next scrape, five beyond an
  // ordinary interval.
  const background = scrapeTimes.map((at) => recording(at, count(at / 1_000)));
  assert.equal(probesWhilePaused(tool, background, 2_500, 7_500), 5);
  // A per-target tool: the probes asked of it during the pause (none, while paused).
  const perTarget: ToolConfig = {
    ...tool,
    scrape: { mode: "per_target", path: "/probe", dial_path: "/probe", dns_path: "/probe" },
  };
  const asked = [1_000, 2_000, 8_000].map((at) => recording(at, "", { kind: "dial" }));
  assert.equal(probesWhilePaused(perTarget, asked, 2_500, 7_500), 0);
  assert.throws(() => probesWhilePaused(tool, onScrape.slice(1), 2_500, 7_500), /two scrapes/);
});

Deno.test("comparison: trials are spaced past the longest probe of any tool", () => {
  const tool = shipped[0]!;
  assert.equal(longestProbeMs([tool], 500), 500);
  assert.equal(longestProbeMs([tool, { ...tool, probe_timeout_ms: 2_000 }], 500), 2_000);
  const config = (value: unknown) => ({ tools: [{ ...tool, probe_timeout_ms: value }] });
  assert.equal(validateTools(config(2_000))[0]!.probe_timeout_ms, 2_000);
  assert.throws(() => validateTools(config(-1)), /probe_timeout_ms must be a positive integer/);
});

Deno.test("comparison: a failed start is thrown only once every other start has settled", async () => {
  const started: string[] = [];
  const later = (name: string, ms: number) =>
    new Promise<string>((resolve) =>
      setTimeout(() => {
        started.push(name);
        resolve(name);
      }, ms)
    );
  await assert.rejects(
    () => settleAll([Promise.reject(new Error("cannot start a")), later("b", 50), later("c", 100)]),
    /cannot start a/,
  );
  // Had it thrown at once, b and c would start after the cleanup and never be stopped.
  assert.deepEqual(started, ["b", "c"]);
  assert.deepEqual(await settleAll([later("d", 1), Promise.resolve("e")]), ["d", "e"]);
});
