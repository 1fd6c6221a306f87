/**
 * Logging through LogTape: JSON lines by default (one object per line, for log
 * pipelines), or plain text for a person at a terminal.
 * @module
 */

import {
  configure,
  getLogger,
  getStreamSink,
  getTextFormatter,
  jsonLinesFormatter,
  type Logger,
  reset,
} from "@logtape/logtape";

export const LOG_LEVELS = ["debug", "info", "warning", "error"] as const;
export const LOG_FORMATS = ["json", "text"] as const;

/** How to log. */
export interface LogSettings {
  readonly level: typeof LOG_LEVELS[number];
  readonly format: typeof LOG_FORMATS[number];
}

/** Configures LogTape for the process; logs go to stderr so `check` output stays clean. */
export async function setUpLogging(settings: LogSettings): Promise<void> {
  await configure({
    reset: true,
    sinks: {
      stderr: getStreamSink(Deno.stderr.writable, {
        formatter: settings.format === "json" ? jsonLinesFormatter : getTextFormatter(),
      }),
    },
    loggers: [
      { category: ["logtape", "meta"], sinks: ["stderr"], lowestLevel: "warning" },
      { category: ["net-exporter"], sinks: ["stderr"], lowestLevel: settings.level },
    ],
  });
}

/** Flushes and removes the logging configuration. */
export function tearDownLogging(): Promise<void> {
  return reset();
}

/** The logger of one part of the exporter, e.g. `logger("dns")`. */
export function logger(...category: string[]): Logger {
  return getLogger(["net-exporter", ...category]);
}
