/**
 * The memory bench (tests/bench/memory.ts) in its quick form: it bundles,
 * runs and reads what it says it does. Its figures are the bench's to report
 * (docs/reports/benchmark.md), not this test's to judge; this checks that they are
 * measured, whole and consistent.
 */

import { measureMemory, memoryMarkdown } from "../bench/memory.ts";
import { assert } from "../helpers/assert.ts";
import { requires } from "../helpers/requirements.ts";

const QUICK_RUN =
  "bench memory: quick run measures the runtime, a dependency and two exporter configurations";
Deno.test({
  name: QUICK_RUN,
  // openssl: the stand-in API server's certificates; cat: another process's /proc entries.
  ignore: !requires(QUICK_RUN, { commands: ["openssl", "cat"] }),
  async fn() {
    const rows = await measureMemory(true);
    assert.deepEqual(rows.map((row) => row.kind), [
      "dependency",
      "dependency",
      "subsystem",
      "subsystem",
    ]);
    for (const row of rows) {
      for (const reading of [row.start, row.steady]) {
        assert.ok(reading.rss > 10 && reading.rss < 1_000, `${row.what}: ${reading.rss} MiB`);
        // RSS is the anonymous and the file-backed pages (and shared memory, none here).
        assert.ok(
          Math.abs(reading.anon + reading.file - reading.rss) <= 0.2,
          JSON.stringify(reading),
        );
      }
    }
    const [runtime, promClient, httpOnly, network] = rows as [
      (typeof rows)[0],
      (typeof rows)[0],
      (typeof rows)[0],
      (typeof rows)[0],
    ];
    assert.ok(promClient.steady.rss > runtime.steady.rss, "a dependency costs more than nothing");
    assert.equal(promClient.overMiB, +(promClient.steady.rss - runtime.steady.rss).toFixed(1));
    assert.ok(httpOnly.steady.rss > runtime.steady.rss, "the exporter is more than the runtime");
    assert.ok(httpOnly.heapMiB! > 0);
    assert.ok(network.cpuPer1000Probes! > 0, "probes were counted and CPU read");
    const markdown = memoryMarkdown(rows);
    for (const row of rows) assert.ok(markdown.includes(row.what));
  },
});
