/**
 * System DNS prober: one lookup through `Deno.resolveDns` without a name
 * server, i.e. the path applications take (resolv.conf, search list, ndots).
 *
 * Its error tells only "not found", so NXDOMAIN, SERVFAIL, REFUSED and NODATA
 * are all `notfound` here; probe a server directly to tell them apart.
 * @module
 */

import type { DnsProbeResult, RecordType } from "./probe_dns.ts";
import { failureMessage, isDeadline, rethrowIfCancelled } from "./probe_signal.ts";

/** What to look up. A host ending in a dot is absolute; others go through the search list. */
export interface SystemDnsTarget {
  readonly host: string;
  readonly recordType: RecordType;
}

/** Side effects, injectable for tests. */
export interface SystemDnsProbeOptions {
  resolveDns?: (
    host: string,
    recordType: RecordType,
    options: { signal: AbortSignal },
  ) => Promise<string[]>;
  now?: () => number;
}

/** Looks `target.host` up through the system's resolver configuration. */
export async function probeSystemDns(
  target: SystemDnsTarget,
  options: SystemDnsProbeOptions,
  signal: AbortSignal,
): Promise<DnsProbeResult> {
  const resolveDns = options.resolveDns ?? Deno.resolveDns;
  const now = options.now ?? (() => performance.now());
  const startedAt = now();
  try {
    const addresses = await resolveDns(target.host, target.recordType, { signal });
    return { ok: true, seconds: (now() - startedAt) / 1000, addresses };
  } catch (error) {
    rethrowIfCancelled(signal);
    const message = failureMessage(error, signal);
    if (isDeadline(signal) || error instanceof Deno.errors.TimedOut) {
      return { ok: false, reason: "timeout", message };
    }
    if (error instanceof Deno.errors.NotFound) return { ok: false, reason: "notfound", message };
    return { ok: false, reason: "other", message };
  }
}
