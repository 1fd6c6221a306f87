/**
 * SNTP prober: one client/server exchange with an NTP server (RFC 4330, the
 * client side of RFC 5905), giving the round-trip delay δ and the clock
 * offset θ of this node against the server.
 *
 * The 48-byte packet is read and written here with a DataView rather than
 * through an npm package: `ntp-packet-parser` is GPL-3.0 (this project ships
 * as one Apache-2.0 binary) and returns timestamps as `Date`s (whole
 * milliseconds); `ntp-time` reads stratum 0 — a kiss-o'-death — as 2.
 * @module
 */

import { addressToProbe } from "./resolve.ts";
import { type UdpExchanger, withUdpExchange } from "./udp.ts";
import { errorMessage, failureMessage, isDeadline, rethrowIfCancelled } from "./probe_signal.ts";

/** Why an exchange failed. */
export const NTP_ERROR_REASONS = [
  "timeout",
  "refused",
  "kiss_of_death",
  "unsynchronized",
  "invalid",
  "resolve",
  "other",
] as const;
export type NtpErrorReason = typeof NTP_ERROR_REASONS[number];

/** Where to ask. */
export interface NtpTarget {
  /** An IP literal (no brackets) or a name, resolved before the clock starts. */
  readonly hostname: string;
  readonly port: number;
}

/** What a good exchange tells. */
export interface NtpReading {
  /** Round-trip delay δ = (T4 − T1) − (T3 − T2), seconds: the network's share of the exchange. */
  readonly seconds: number;
  /** Clock offset θ = ((T2 − T1) + (T3 − T4)) / 2, seconds: positive when the server is ahead. */
  readonly offsetSeconds: number;
  readonly stratum: number;
  /** Root delay / 2 + root dispersion, seconds: the server's own bound on its error. */
  readonly rootDistanceSeconds: number;
  /** Leap indicator: 0 none, 1 last minute has 61 s, 2 last minute has 59 s. */
  readonly leap: number;
  /** The reference ID: a source name at stratum 1, the upstream's address above. */
  readonly referenceId: string;
}

/** Outcome of one exchange. */
export type NtpProbeResult =
  | ({ readonly ok: true } & NtpReading)
  | { readonly ok: false; readonly reason: NtpErrorReason; readonly message: string };

/** Side effects, injectable for tests. */
export interface NtpProbeOptions {
  resolve?: (name: string, signal: AbortSignal) => Promise<string>;
  /**
   * This node's wall clock, in ms since the Unix epoch with sub-millisecond
   * digits. The default reads it afresh at each exchange (see
   * {@link wallClock}), so a step of the node's clock shows at the next probe.
   */
  wallClock?: () => { readonly wallMs: number; readonly monotonicMs: number };
  /** Monotonic milliseconds; the exchange is timed with this. */
  now?: () => number;
  /**
   * How the exchange's socket is made. Default: {@link withUdpExchange}
   * (Deno's socket: a closed port reads as a timeout); the collector passes a
   * socket connected through libc where it can open libc, which learns of an
   * ICMP port unreachable and ends the exchange at once as `refused`.
   */
  exchanger?: UdpExchanger;
}

/** Seconds from the NTP era 0 (1900-01-01) to the Unix epoch. */
const NTP_UNIX_OFFSET_SECONDS = 2_208_988_800;
const PACKET_BYTES = 48;
/** LI 0, version 4, mode 3 (client). */
const CLIENT_HEADER = (4 << 3) | 3;
const MODE_SERVER = 4;
/** Largest datagram read; an NTP reply without extensions is 48 bytes. */
const MAX_DATAGRAM_BYTES = 1024;

/**
 * Reads this node's wall clock to a fraction of a millisecond. `Date.now()`
 * has whole milliseconds only; this waits for it to tick (at most about 1 ms
 * of one core, once per exchange) and pairs that tick with the monotonic
 * clock, so every later instant of the exchange is the tick plus monotonic
 * time elapsed.
 */
export function wallClock(): { wallMs: number; monotonicMs: number } {
  const first = Date.now();
  // Bounded: a clock that does not tick within 5 ms falls back to whole milliseconds.
  const giveUp = performance.now() + 5;
  for (;;) {
    const monotonicMs = performance.now();
    const wallMs = Date.now();
    if (wallMs !== first) return { wallMs, monotonicMs };
    if (monotonicMs > giveUp) return { wallMs: wallMs + 0.5, monotonicMs };
  }
}

/**
 * An NTP timestamp (64 bits, big-endian) as ms since the Unix epoch, in the
 * era RFC 4330 §3 gives it: era 1 (from 2036-02-07) when the top bit is clear.
 */
export function readTimestamp(view: DataView, offset: number): number {
  let seconds = view.getUint32(offset);
  // RFC 4330 §3: with the top bit clear, the time is in era 1 (from 2036-02-07).
  if (seconds < 0x8000_0000) seconds += 0x1_0000_0000;
  const fraction = view.getUint32(offset + 4);
  return (seconds - NTP_UNIX_OFFSET_SECONDS) * 1000 + (fraction / 0x1_0000_0000) * 1000;
}

/** NTP short format (16.16 fixed point) in seconds. */
function readShort(view: DataView, offset: number): number {
  return view.getUint16(offset) + view.getUint16(offset + 2) / 0x1_0000;
}

/** The reference ID as text: four printable ASCII characters, or a dotted address. */
function referenceIdOf(bytes: Uint8Array, stratum: number): string {
  const id = bytes.subarray(12, 16);
  if (stratum <= 1) {
    return [...id].filter((byte) => byte >= 0x21 && byte <= 0x7e).map((byte) =>
      String.fromCharCode(byte)
    ).join("");
  }
  return [...id].join(".");
}

/** A reply from the right peer, with our nonce, read into numbers. */
interface Reply {
  readonly leap: number;
  readonly version: number;
  readonly stratum: number;
  readonly rootDelay: number;
  readonly rootDispersion: number;
  readonly referenceId: string;
  /** ms since the Unix epoch, or 0 when the field is zero. */
  readonly receiveMs: number;
  readonly transmitMs: number;
  readonly receiveZero: boolean;
  readonly transmitZero: boolean;
}

/** Why a datagram was not taken as the reply; the exchange keeps waiting for the real one. */
type Ignored = "sender" | "short" | "mode" | "origin";

const IGNORED_TEXT: Readonly<Record<Ignored, string>> = {
  sender: "from another address or port",
  short: "shorter than 48 bytes",
  mode: "not in server mode",
  origin: "origin timestamp not the one sent (forged or stray)",
};

function readReply(message: Uint8Array, nonce: Uint8Array): Reply | Ignored {
  if (message.length < PACKET_BYTES) return "short";
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  const first = message[0]!;
  if ((first & 0x07) !== MODE_SERVER) return "mode";
  for (let i = 0; i < 8; i++) if (message[24 + i] !== nonce[i]) return "origin";
  const stratum = message[1]!;
  const isZero = (offset: number) =>
    view.getUint32(offset) === 0 && view.getUint32(offset + 4) === 0;
  return {
    leap: first >> 6,
    version: (first >> 3) & 0x07,
    stratum,
    rootDelay: readShort(view, 4),
    rootDispersion: readShort(view, 8),
    referenceId: referenceIdOf(message, stratum),
    receiveMs: readTimestamp(view, 32),
    transmitMs: readTimestamp(view, 40),
    receiveZero: isZero(32),
    transmitZero: isZero(40),
  };
}

/** The exchange's four timestamps, ms since the Unix epoch. */
interface Exchange {
  readonly reply: Reply;
  readonly t1: number;
  readonly t4: number;
}

/**
 * Sends one client request and waits for the reply. Anything that is not the
 * reply (another sender, a short datagram, another mode, an origin timestamp
 * other than the request's nonce) is ignored and noted; the caller's signal is
 * the only deadline.
 */
function exchange(
  address: string,
  port: number,
  options: Required<Pick<NtpProbeOptions, "wallClock" | "now" | "exchanger">>,
  ignored: Map<Ignored, number>,
  signal: AbortSignal,
): Promise<Exchange> {
  return options.exchanger({ hostname: address, port }, signal, async (socket) => {
    const request = new Uint8Array(PACKET_BYTES);
    request[0] = CLIENT_HEADER;
    // The transmit timestamp is a random nonce, as chrony sends it: the server
    // copies it into the reply's origin timestamp, which proves the reply
    // answers this request, and the node's clock is not disclosed.
    const nonce = crypto.getRandomValues(new Uint8Array(8));
    request.set(nonce, 40);
    const buffer = new Uint8Array(MAX_DATAGRAM_BYTES);
    const clock = options.wallClock();
    const sentAt = options.now();
    await socket.send(request);
    for (;;) {
      const { message, fromServer } = await socket.receive(buffer);
      const receivedAt = options.now();
      const reply = fromServer ? readReply(message, nonce) : "sender";
      if (typeof reply === "string") {
        ignored.set(reply, (ignored.get(reply) ?? 0) + 1);
        continue;
      }
      const t1 = clock.wallMs + (sentAt - clock.monotonicMs);
      return { reply, t1, t4: t1 + (receivedAt - sentAt) };
    }
  });
}

/** Judges a reply that answers our request, and computes δ and θ from it. */
function judge(reply: Reply, t1: number, t4: number): NtpProbeResult {
  if (reply.stratum === 0) {
    const code = reply.referenceId || "?";
    return { ok: false, reason: "kiss_of_death", message: `kiss-o'-death ${code}` };
  }
  if (reply.leap === 3 || reply.stratum >= 16) {
    return {
      ok: false,
      reason: "unsynchronized",
      message: `server not synchronized (leap indicator ${reply.leap}, stratum ${reply.stratum})`,
    };
  }
  if (reply.version < 1 || reply.version > 4) {
    return { ok: false, reason: "invalid", message: `reply of NTP version ${reply.version}` };
  }
  if (reply.transmitZero || reply.receiveZero) {
    return {
      ok: false,
      reason: "invalid",
      message: `reply with a zero ${reply.transmitZero ? "transmit" : "receive"} timestamp`,
    };
  }
  const t2 = reply.receiveMs;
  const t3 = reply.transmitMs;
  const delayMs = (t4 - t1) - (t3 - t2);
  // The server claims to have held the request longer than the round trip took.
  if (t3 < t2 || delayMs < -1) {
    return {
      ok: false,
      reason: "invalid",
      message: `timestamps out of order: server held the request ${(t3 - t2).toFixed(3)} ms ` +
        `of a ${(t4 - t1).toFixed(3)} ms round trip`,
    };
  }
  return {
    ok: true,
    seconds: Math.max(delayMs, 0) / 1000,
    offsetSeconds: ((t2 - t1) + (t3 - t4)) / 2 / 1000,
    stratum: reply.stratum,
    rootDistanceSeconds: reply.rootDelay / 2 + reply.rootDispersion,
    leap: reply.leap,
    referenceId: reply.referenceId,
  };
}

function describeIgnored(ignored: Map<Ignored, number>): string {
  return [...ignored].map(([why, count]) => `${count} ${IGNORED_TEXT[why]}`).join(", ");
}

/**
 * One SNTP exchange with `target`. A name is resolved first, outside the
 * timed part. Ends at the signal's deadline at the latest: `timeout` when no
 * datagram came, `invalid` when only datagrams that were not the reply came,
 * `refused` as soon as the server's host says nothing listens on the port
 * (over a connected socket, see {@link NtpProbeOptions.exchanger}).
 */
export async function probeNtp(
  target: NtpTarget,
  options: NtpProbeOptions,
  signal: AbortSignal,
): Promise<NtpProbeResult> {
  rethrowIfCancelled(signal);
  if (signal.aborted) return { ok: false, reason: "timeout", message: errorMessage(signal.reason) };
  const resolved = await addressToProbe(target.hostname, options.resolve, signal);
  if (!("address" in resolved)) return { ok: false, ...resolved };
  const address = resolved.address;
  const ignored = new Map<Ignored, number>();
  let done: Exchange;
  try {
    done = await exchange(
      address,
      target.port,
      {
        wallClock: options.wallClock ?? wallClock,
        now: options.now ?? (() => performance.now()),
        exchanger: options.exchanger ?? withUdpExchange,
      },
      ignored,
      signal,
    );
  } catch (error) {
    rethrowIfCancelled(signal);
    if (isDeadline(signal)) {
      return ignored.size > 0
        ? {
          ok: false,
          reason: "invalid",
          message: `no valid reply; ignored ${describeIgnored(ignored)}`,
        }
        : { ok: false, reason: "timeout", message: failureMessage(error, signal) };
    }
    const code = (error as { code?: unknown } | undefined)?.code;
    if (code === "ECONNREFUSED") {
      return { ok: false, reason: "refused", message: errorMessage(error) };
    }
    return { ok: false, reason: "other", message: errorMessage(error) };
  }
  return judge(done.reply, done.t1, done.t4);
}

/** Exchanges that {@link warmUpNtp} makes. */
const WARM_UP_EXCHANGES = 3;

/**
 * Runs the exchange a few times against a loopback responder made for the
 * purpose, so that a fresh process's first timed exchange (as `check` runs
 * it) is not timed while the runtime still compiles the code. Sends nothing
 * beyond 127.0.0.1.
 */
export async function warmUpNtp(signal: AbortSignal): Promise<void> {
  const responder = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const answering = (async () => {
    try {
      for (;;) {
        const [request, from] = await responder.receive();
        if (request.length < PACKET_BYTES) continue;
        const reply = new Uint8Array(PACKET_BYTES);
        const view = new DataView(reply.buffer);
        reply[0] = (4 << 3) | MODE_SERVER;
        reply[1] = 1;
        reply.set(request.subarray(40, 48), 24);
        const now = Math.floor(Date.now() / 1000) + NTP_UNIX_OFFSET_SECONDS;
        view.setUint32(32, now >>> 0);
        view.setUint32(40, now >>> 0);
        await responder.send(reply, from);
      }
    } catch { /* closed */ }
  })();
  try {
    const port = (responder.addr as Deno.NetAddr).port;
    for (let i = 0; i < WARM_UP_EXCHANGES && !signal.aborted; i++) {
      await probeNtp({ hostname: "127.0.0.1", port }, {}, signal);
    }
  } finally {
    responder.close();
    await answering;
  }
}
