/**
 * Names resolved before a probe's clock starts, so its figure is the exchange
 * alone: one place for the TCP and NTP probers.
 * @module
 */

import { isIP } from "../lib/ip.ts";
import { failureMessage, rethrowIfCancelled } from "./probe_signal.ts";

/** Resolves a name to its first A record, else its first AAAA record. */
export async function resolveFirstAddress(name: string, signal: AbortSignal): Promise<string> {
  for (const type of ["A", "AAAA"] as const) {
    try {
      const [address] = await Deno.resolveDns(name, type, { signal });
      if (address !== undefined) return address;
    } catch (error) {
      if (signal.aborted || !(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  throw new Deno.errors.NotFound(`Cannot resolve ${name}: current value has no A or AAAA record`);
}

/**
 * The address to probe: `hostname` itself when it is an IP literal, else its
 * first address. A failure comes back as a probe failure — `timeout` when the
 * deadline passed meanwhile, `resolve` otherwise; a cancellation is rethrown.
 */
export async function addressToProbe(
  hostname: string,
  resolve: ((name: string, signal: AbortSignal) => Promise<string>) | undefined,
  signal: AbortSignal,
): Promise<
  { readonly address: string } | {
    readonly reason: "timeout" | "resolve";
    readonly message: string;
  }
> {
  if (isIP(hostname) !== 0) return { address: hostname };
  try {
    return { address: await (resolve ?? resolveFirstAddress)(hostname, signal) };
  } catch (error) {
    rethrowIfCancelled(signal);
    return {
      reason: signal.aborted ? "timeout" : "resolve",
      message: failureMessage(error, signal),
    };
  }
}
