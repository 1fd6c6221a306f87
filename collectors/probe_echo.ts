/**
 * One round of UDP echo with another net-exporter: what a handshake cannot
 * show. `count` small datagrams a few milliseconds apart measure loss (a
 * handshake's lost SYN shows only as a rare 1 s outlier) and round trips; one
 * full-size datagram, whose IP packet fills the path MTU with Don't Fragment
 * set, finds an MTU black hole (small packets pass, full-size ones vanish).
 *
 * A reply counts only if it is an echo reply of this version
 * (collectors/echo_wire.ts) carrying this round's random nonce and an
 * outstanding sequence number, as long as its request, from the target's own
 * address and port (a connected socket receives from nowhere else). A datagram
 * not back by the round's deadline (the signal) is lost. The probe touches no
 * metric; it returns what it counted.
 * @module
 */

import {
  decodeEcho,
  ECHO_HEADER_BYTES,
  ECHO_REPLY,
  ECHO_REQUEST,
  encodeEcho,
  sameNonce,
} from "./echo_wire.ts";
import { addressToProbe } from "./resolve.ts";
import { type UdpExchanger, withUdpExchange } from "./udp.ts";
import { failureMessage, isDeadline, rethrowIfCancelled } from "./probe_signal.ts";
import { isIP } from "../lib/ip.ts";

/** Why a round failed. */
export const ECHO_ERROR_REASONS = [
  "timeout",
  "refused",
  "mtu",
  "unreachable",
  "resolve",
  "other",
] as const;
export type EchoErrorReason = typeof ECHO_ERROR_REASONS[number];

/** Size of a small echo datagram (UDP payload), as goldpinger's UDP probe sends. */
export const SMALL_ECHO_BYTES = 64;
/** IP and UDP headers, which the path MTU includes and a datagram's payload does not. */
const HEADERS = { 4: 20 + 8, 6: 40 + 8 } as const;
/** The largest UDP payload one IP packet carries (no jumbograms). */
const MAX_PAYLOAD = { 4: 65_535 - HEADERS[4], 6: 65_535 - 8 } as const;
/** A full-size payload where the path MTU cannot be read: an Ethernet MTU less IPv4 and UDP. */
export const FALLBACK_FULL_SIZE = 1500 - HEADERS[4];

/** Where to echo. */
export interface EchoTarget {
  readonly hostname: string;
  readonly port: number;
}

/** Options of {@link probeEcho}. */
export interface EchoProbeOptions {
  /** Small datagrams per round. */
  readonly count: number;
  /** The full-size datagram's payload; 0: the path MTU less the headers. */
  readonly fullSize: number;
  /** Between two small datagrams. */
  readonly spacingMs?: number;
  /** Default: Deno's socket (no Don't Fragment control, no path MTU). */
  readonly exchanger?: UdpExchanger;
  readonly resolve?: (name: string, signal: AbortSignal) => Promise<string>;
  readonly now?: () => number;
}

/** What one round counted. */
export interface EchoCounts {
  readonly smallSent: number;
  readonly smallLost: number;
  /** The small datagrams' round trips, in seconds. */
  readonly rtts: readonly number[];
  /** The full-size datagram's payload, in bytes. */
  readonly fullSize: number;
  readonly fullSent: number;
  readonly fullLost: number;
}

export type EchoProbeResult =
  | ({ readonly ok: true } & EchoCounts)
  | ({
    readonly ok: false;
    readonly reason: EchoErrorReason;
    readonly message: string;
  } & Partial<EchoCounts>);

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });

/** One round with `target`; ends at the signal's deadline at the latest. */
export async function probeEcho(
  target: EchoTarget,
  options: EchoProbeOptions,
  signal: AbortSignal,
): Promise<EchoProbeResult> {
  rethrowIfCancelled(signal);
  const resolved = await addressToProbe(target.hostname, options.resolve, signal);
  if (!("address" in resolved)) return { ok: false, ...resolved };
  const address = resolved.address;
  const family = isIP(address.split("%")[0]!) === 6 ? 6 : 4;
  const now = options.now ?? (() => performance.now());
  const exchanger = options.exchanger ?? withUdpExchange;
  const nonce = crypto.getRandomValues(new Uint8Array(8));
  const sentAt = new Map<number, number>();
  const sizes = new Map<number, number>();
  const rtts: number[] = [];
  let fullSize = options.fullSize;
  let fullSent = 0;
  let fullError: unknown;
  let smallSent = 0;
  try {
    await exchanger({ hostname: address, port: target.port }, signal, async (socket) => {
      if (fullSize === 0) {
        const mtu = socket.pathMtu?.();
        fullSize = mtu === undefined ? FALLBACK_FULL_SIZE : mtu - HEADERS[family];
      }
      // Loopback's MTU (65,536) exceeds what one IP packet can carry: the largest UDP payload.
      fullSize = Math.min(Math.max(fullSize, ECHO_HEADER_BYTES), MAX_PAYLOAD[family]);
      // Every datagram sent, and every one of them back or given up on at sending (EMSGSIZE).
      const done = () =>
        smallSent === options.count && (fullSent > 0 || fullError !== undefined) &&
        sentAt.size === 0;
      let finish!: () => void;
      const finished = new Promise<void>((resolve) => (finish = resolve));
      const buffer = new Uint8Array(Math.max(fullSize, SMALL_ECHO_BYTES) + 1);
      // Replies are read while the rest is still being sent.
      const receiving = (async () => {
        while (!done()) {
          const { message, fromServer } = await socket.receive(buffer);
          const at = now();
          if (!fromServer) continue;
          const header = decodeEcho(message);
          if (header?.type !== ECHO_REPLY || !sameNonce(header.nonce, nonce)) continue;
          const sent = sentAt.get(header.sequence);
          // A reply as long as its request, to a request still outstanding.
          if (sent === undefined || message.length !== sizes.get(header.sequence)) continue;
          sentAt.delete(header.sequence);
          if (header.sequence < options.count) rtts.push((at - sent) / 1000);
        }
        finish();
      })();
      const sending = (async () => {
        for (let sequence = 0; sequence < options.count; sequence++) {
          if (sequence > 0) await sleep(options.spacingMs ?? 5, signal);
          if (signal.aborted) return;
          sizes.set(sequence, SMALL_ECHO_BYTES);
          sentAt.set(sequence, now());
          await socket.send(encodeEcho(SMALL_ECHO_BYTES, ECHO_REQUEST, nonce, sequence));
          smallSent++;
        }
        const sequence = options.count;
        sizes.set(sequence, fullSize);
        sentAt.set(sequence, now());
        try {
          await socket.send(encodeEcho(fullSize, ECHO_REQUEST, nonce, sequence));
          fullSent = 1;
        } catch (error) {
          // EMSGSIZE: the kernel already knows a path MTU below this size. That is the MTU problem
          // the round looks for, not a failure of the round.
          sentAt.delete(sequence);
          if ((error as { code?: unknown }).code !== "EMSGSIZE") throw error;
          fullError = error;
        }
        // Every reply may be in already, with the receiver waiting for one more datagram.
        if (done()) finish();
      })();
      // Ends when all is back; a send or receive error (a refusal, the deadline) ends it sooner.
      await Promise.race([
        (async () => {
          await sending;
          await finished;
        })(),
        receiving,
      ]);
    });
  } catch (error) {
    rethrowIfCancelled(signal);
    if (!isDeadline(signal)) {
      const code = (error as { code?: unknown } | undefined)?.code;
      const reason: EchoErrorReason = code === "ECONNREFUSED"
        ? "refused"
        : code === "ENETUNREACH" || code === "EHOSTUNREACH"
        ? "unreachable"
        : "other";
      return { ok: false, reason, message: failureMessage(error, signal), smallSent, fullSize };
    }
  }
  const smallLost = [...sentAt.keys()].filter((sequence) => sequence < options.count).length;
  const fullLost = fullError ? 1 : sentAt.has(options.count) ? 1 : 0;
  const counts: EchoCounts = {
    smallSent,
    smallLost,
    rtts,
    fullSize,
    fullSent: fullSent + (fullError ? 1 : 0),
    fullLost,
  };
  if (smallSent > 0 && smallLost === smallSent) {
    return {
      ok: false,
      reason: "timeout",
      message: `no echo back: ${smallSent} of ${smallSent} small datagrams lost`,
      ...counts,
    };
  }
  if (fullLost > 0) {
    const small = `${smallSent - smallLost}/${smallSent} small ones back`;
    return {
      ok: false,
      reason: "mtu",
      message: fullError
        ? `MTU: full-size datagram (${fullSize} bytes) not sent, the kernel knows a smaller ` +
          `path MTU (${(fullError as Error).message}); ${small}`
        : `MTU: full-size lost (${fullSize} bytes, not back); ${small}`,
      ...counts,
    };
  }
  return { ok: true, ...counts };
}
