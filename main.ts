/**
 * net-exporter: DNS and pod-to-pod TCP latency for Prometheus.
 * Wiring only: parse the command line, set up logging, run the command.
 * @module
 */

import { check } from "./exporter/check.ts";
import { parseCommandLine, versionText } from "./exporter/cli.ts";
import { setUpLogging, tearDownLogging } from "./exporter/log.ts";
import { serve } from "./exporter/serve.ts";

const encoder = new TextEncoder();
const writeOut = (text: string) => void Deno.stdout.writeSync(encoder.encode(text));
const writeErr = (text: string) => void Deno.stderr.writeSync(encoder.encode(text));

/** Aborts on SIGTERM or SIGINT. */
function stopSignal(): AbortSignal {
  const controller = new AbortController();
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => controller.abort(new DOMException(signal, "AbortError")));
  }
  return controller.signal;
}

async function main(argv: readonly string[]): Promise<number> {
  const invocation = await parseCommandLine(argv, {
    output: { writeOut, writeErr },
    env: (name) => Deno.env.get(name),
    // The compiled binary may read only the variables it names: then nothing is listed.
    envNames: () => {
      try {
        return Object.keys(Deno.env.toObject());
      } catch {
        return undefined;
      }
    },
  });
  switch (invocation.command) {
    case "exit":
      return invocation.code;
    case "version":
      writeOut(versionText());
      return 0;
    case "serve":
      await setUpLogging(invocation.settings.log);
      try {
        return await serve({ ...invocation, stop: stopSignal() });
      } finally {
        await tearDownLogging();
      }
    case "check":
      await setUpLogging(invocation.settings.log);
      try {
        return await check(
          invocation.settings,
          invocation.output,
          writeOut,
          stopSignal(),
          writeErr,
        );
      } finally {
        await tearDownLogging();
      }
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
