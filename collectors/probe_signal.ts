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

/**
 * What a failed exchange says: when its deadline passed, the deadline's own
 * words ("Deadline of 2000 ms exceeded"), whatever the transport made of the
 * abort (a UDP wait ends with the deadline's reason, a TCP read with
 * "Interrupted: operation canceled"); otherwise the error with its causes.
 */
export function failureMessage(error: unknown, signal: AbortSignal): string {
  return isDeadline(signal) ? errorMessage(signal.reason) : errorMessage(error);
}
