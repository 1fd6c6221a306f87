/**
 * How probes tell a deadline from a cancellation. Both abort the same signal;
 * only the first is a network failure worth counting.
 * @module
 */

import { describeError } from "../lib/errors.ts";

/** True when the signal aborted because its deadline passed. */
export function isDeadline(signal: AbortSignal): boolean {
  return signal.aborted && (signal.reason as Error | undefined)?.name === "TimeoutError";
}

/**
 * Rethrows the abort reason when the signal aborted for a reason other than
 * its deadline (shutdown, target removed), so the caller counts nothing.
 */
export function rethrowIfCancelled(signal: AbortSignal): void {
  if (signal.aborted && !isDeadline(signal)) throw signal.reason;
}

/** A one-line description of an error with its causes, for logs and the status page. */
export function errorMessage(error: unknown): string {
  return describeError(error);
}
