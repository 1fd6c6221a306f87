/**
 * TCP prober: times one handshake to `host:port`.
 *
 * A name is resolved before the clock starts, so the figure is the handshake
 * alone. The connection is closed at once; nothing is written to it.
 * @module
 */

import { failureMessage, isDeadline, rethrowIfCancelled } from "./probe_signal.ts";
import { addressToProbe } from "./resolve.ts";

/** Why a dial failed. `resolve` is a name that would not resolve to an address. */
export const DIAL_ERROR_REASONS = [
  "timeout",
  "refused",
  "unreachable",
  "reset",
  "resolve",
  "other",
] as const;
export type DialErrorReason = typeof DIAL_ERROR_REASONS[number];

/** Where to dial. */
export interface TcpTarget {
  /** An IP literal (no brackets) or a name. */
  readonly hostname: string;
  readonly port: number;
}

/** Which clock timed a handshake: the kernel's RTT sample, or a clock in the exporter around the connect. */
export type HandshakeClock = "kernel" | "wall";

/** What a dialer reports of one handshake. */
export interface Handshake {
  /** The handshake's time: the kernel's round trip when `clock` is "kernel". */
  readonly seconds: number;
  readonly clock: HandshakeClock;
  /** The exporter's own clock around the connect, beside the kernel's figure. */
  readonly wallSeconds?: number;
  /** SYNs the kernel had to send again: loss on the path (kernel clock only). */
  readonly synRetransmits?: number;
  /** The path MTU the kernel holds for the target, in bytes (kernel clock only). */
  readonly pathMtu?: number;
}

/**
 * A failed dial as a dialer reports it: `code` is the errno's name (e.g.
 * "ECONNREFUSED"), `synRetransmits` the SYNs resent before it failed.
 */
export class DialError extends Error {
  override readonly name = "DialError";
  constructor(
    message: string,
    readonly code: string,
    readonly synRetransmits: number,
  ) {
    super(message);
  }
}

/** Outcome of one dial. */
export type TcpProbeResult =
  | ({ readonly ok: true; readonly address: string } & Handshake)
  | {
    readonly ok: false;
    readonly reason: DialErrorReason;
    readonly message: string;
    /** SYNs resent before the dial failed, when the kernel said. */
    readonly synRetransmits?: number;
  };

/** Side effects of a dial, injectable for tests. */
export interface TcpProbeOptions {
  /** Connects and closes, timing the handshake itself; replaces `connect` and `now`. */
  dial?: (hostname: string, port: number, signal: AbortSignal) => Promise<Handshake>;
  connect?: (options: Deno.ConnectOptions & { signal?: AbortSignal }) => Promise<Deno.Conn>;
  resolve?: (name: string, signal: AbortSignal) => Promise<string>;
  now?: () => number;
}

const REASON_BY_CODE: Readonly<Record<string, DialErrorReason>> = {
  ECONNREFUSED: "refused",
  EHOSTUNREACH: "unreachable",
  ENETUNREACH: "unreachable",
  EHOSTDOWN: "unreachable",
  ENETDOWN: "unreachable",
  EADDRNOTAVAIL: "unreachable",
  ECONNRESET: "reset",
  ECONNABORTED: "reset",
  EPIPE: "reset",
  ETIMEDOUT: "timeout",
};

/** Maps a dial error to its reason, by the error's `code` (or its name, for aborts). */
export function classifyDialError(error: unknown, signal: AbortSignal): DialErrorReason {
  if (isDeadline(signal)) return "timeout";
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === "string" && code in REASON_BY_CODE) return REASON_BY_CODE[code]!;
  if (error instanceof Deno.errors.ConnectionRefused) return "refused";
  if (error instanceof Deno.errors.ConnectionReset) return "reset";
  if (error instanceof Deno.errors.TimedOut) return "timeout";
  return "other";
}

/**
 * Dials `target` once and reports the handshake time.
 * The signal carries the deadline; an abort for any other reason is rethrown
 * (it is not a network failure and must not be counted as one).
 */
export async function probeTcp(
  target: TcpTarget,
  options: TcpProbeOptions,
  signal: AbortSignal,
): Promise<TcpProbeResult> {
  const connect = options.connect ?? Deno.connect;
  const now = options.now ?? (() => performance.now());
  const resolved = await addressToProbe(target.hostname, options.resolve, signal);
  if (!("address" in resolved)) return { ok: false, ...resolved };
  const address = resolved.address;
  const failed = (error: unknown): TcpProbeResult => {
    rethrowIfCancelled(signal);
    const synRetransmits = (error as { synRetransmits?: unknown } | undefined)?.synRetransmits;
    return {
      ok: false,
      reason: classifyDialError(error, signal),
      message: failureMessage(error, signal),
      ...(typeof synRetransmits === "number" ? { synRetransmits } : {}),
    };
  };
  if (options.dial) {
    try {
      return { ok: true, ...await options.dial(address, target.port, signal), address };
    } catch (error) {
      return failed(error);
    }
  }
  const startedAt = now();
  let conn: Deno.Conn;
  try {
    conn = await connect({ hostname: address, port: target.port, transport: "tcp", signal });
  } catch (error) {
    return failed(error);
  }
  const seconds = (now() - startedAt) / 1000;
  conn.close();
  return { ok: true, seconds, clock: "wall", address };
}

/** Handshakes to a loopback listener of its own that {@link warmUpTcp} makes. */
const WARM_UP_DIALS = 3;

/**
 * Runs the dial path a few times against a loopback listener made for the
 * purpose, so that the first real probe of a fresh process (as `check` runs
 * them) is not timed with the runtime still compiling and loading it. Sends
 * nothing beyond 127.0.0.1.
 */
export async function warmUpTcp(options: TcpProbeOptions, signal: AbortSignal): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    try {
      for await (const conn of listener) conn.close();
    } catch { /* closed */ }
  })();
  try {
    const { port } = listener.addr as Deno.NetAddr;
    for (let i = 0; i < WARM_UP_DIALS && !signal.aborted; i++) {
      await probeTcp({ hostname: "127.0.0.1", port }, options, signal);
    }
  } finally {
    listener.close();
    await accepting;
  }
}
