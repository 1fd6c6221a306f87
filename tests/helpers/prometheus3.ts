/**
 * Prometheus 3 for the tests that need it (native histograms in promtool's
 * test input, `scrape_native_histograms`): `prometheus` and `promtool` built
 * from the Go module `github.com/prometheus/prometheus` at the version below,
 * the way tests/cluster/build.ts builds the control plane, into
 * `$NET_EXPORTER_CACHE/prometheus3/bin` (outside the repository, kept between
 * runs). The web UI's assets are not built: the tests use the API only.
 *
 * Run: deno run --allow-all tests/helpers/prometheus3.ts   (builds once; .ci/run does)
 * @module
 */

import { cacheDir } from "../cluster/build.ts";

/** The Go module version of Prometheus 3.x that these machines serve. */
export const PROMETHEUS3_MODULE_VERSION = "v0.316.0";

const binDir = () => `${cacheDir()}/prometheus3/bin`;

/** The path of a built Prometheus 3 binary (`prometheus` or `promtool`), or undefined when not built. */
export function prometheus3Bin(name: "prometheus" | "promtool"): string | undefined {
  const path = `${binDir()}/${name}`;
  try {
    return Deno.statSync(path).isFile ? path : undefined;
  } catch {
    return undefined;
  }
}

/** Builds both binaries unless they exist; returns the bin directory. */
export async function buildPrometheus3(): Promise<string> {
  if (prometheus3Bin("prometheus") && prometheus3Bin("promtool")) return binDir();
  await Deno.mkdir(binDir(), { recursive: true });
  const output = await new Deno.Command("go", {
    args: [
      "install",
      `github.com/prometheus/prometheus/cmd/prometheus@${PROMETHEUS3_MODULE_VERSION}`,
      `github.com/prometheus/prometheus/cmd/promtool@${PROMETHEUS3_MODULE_VERSION}`,
    ],
    env: { GOBIN: binDir(), GOTOOLCHAIN: "local" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(
      `Cannot build Prometheus ${PROMETHEUS3_MODULE_VERSION}: ${
        new TextDecoder().decode(output.stderr).trim().split("\n").slice(-5).join(" / ")
      }`,
    );
  }
  return binDir();
}

if (import.meta.main) {
  console.log(`Prometheus 3 in ${await buildPrometheus3()}`);
}

/**
 * True when Prometheus 3 is built; otherwise prints a notice naming the test
 * and how to build it, and returns false (pass it negated as a test's `ignore`).
 */
export function requiresPrometheus3(test: string): boolean {
  if (prometheus3Bin("prometheus") && prometheus3Bin("promtool")) return true;
  console.warn(
    `NOTICE: skipping "${test}": needs Prometheus 3 (deno run --allow-all tests/helpers/prometheus3.ts)`,
  );
  return false;
}
