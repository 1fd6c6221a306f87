/**
 * Direct DNS prober: one query straight to a name server over UDP or TCP.
 *
 * Unlike `Deno.resolveDns`, this knows the response code (so NXDOMAIN,
 * SERVFAIL, REFUSED and NODATA are told apart) and has no timeout of its own:
 * the caller's signal is the only deadline.
 * @module
 */

import { Buffer } from "node:buffer";
// @ts-types="npm:@types/dns-packet@5.6.5"
import dnsPacket from "dns-packet";
import { readExactly, writeAll } from "../lib/io.ts";
import { withUdpExchange } from "./udp.ts";
import { errorMessage, failureMessage, isDeadline, rethrowIfCancelled } from "./probe_signal.ts";

/** Why a lookup failed. `notfound` is the system path's NotFound, whose cause is unknown. */
export const DNS_ERROR_REASONS = [
  "nxdomain",
  "servfail",
  "refused",
  "nodata",
  "timeout",
  "notfound",
  "other",
] as const;
export type DnsErrorReason = typeof DNS_ERROR_REASONS[number];

export const RECORD_TYPES = ["A", "AAAA"] as const;
export type RecordType = typeof RECORD_TYPES[number];

export const DNS_PROTOCOLS = ["udp", "tcp"] as const;
export type DnsProtocol = typeof DNS_PROTOCOLS[number];

/** A name server address. */
export interface NameServer {
  /** IP literal without brackets. */
  readonly hostname: string;
  readonly port: number;
}

/** What to ask whom. */
export interface DnsTarget {
  /** Queried as an absolute name; a trailing dot is optional. */
  readonly host: string;
  readonly recordType: RecordType;
  readonly server: NameServer;
  readonly protocol: DnsProtocol;
}

/** Outcome of one lookup. */
export type DnsProbeResult =
  | { readonly ok: true; readonly seconds: number; readonly addresses: readonly string[] }
  | { readonly ok: false; readonly reason: DnsErrorReason; readonly message: string };

/** Why a datagram or TCP message was not taken as the answer (see {@link DnsProbeOptions.onStray}). */
export const STRAY_REASONS = ["sender", "malformed", "id", "not_response", "question"] as const;
export type StrayReason = typeof STRAY_REASONS[number];

/** Side effects, injectable for tests. */
export interface DnsProbeOptions {
  now?: () => number;
  /**
   * Called for every message that arrived but is not the answer: from another
   * address or port, not DNS, another ID, a query (QR=0), or an answer to
   * another question. The probe ignores it and keeps waiting for the answer.
   */
  onStray?: (reason: StrayReason) => void;
}

const REASON_BY_RCODE: Readonly<Record<string, DnsErrorReason>> = {
  NXDOMAIN: "nxdomain",
  SERVFAIL: "servfail",
  REFUSED: "refused",
};

/** The question a query asked, to hold each answer against. */
interface Asked {
  readonly id: number;
  /** Lower case, no trailing dot. */
  readonly name: string;
  readonly type: RecordType;
}

/** Sends one query to `target.server` and classifies the answer. */
export async function probeDns(
  target: DnsTarget,
  options: DnsProbeOptions,
  signal: AbortSignal,
): Promise<DnsProbeResult> {
  rethrowIfCancelled(signal);
  if (signal.aborted) {
    return { ok: false, reason: "timeout", message: errorMessage(signal.reason) };
  }
  const now = options.now ?? (() => performance.now());
  const id = crypto.getRandomValues(new Uint16Array(1))[0]!;
  const name = target.host.endsWith(".") ? target.host.slice(0, -1) : target.host;
  const asked: Asked = { id, name: name.toLowerCase(), type: target.recordType };
  const query = dnsPacket.encode({
    type: "query",
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: target.recordType, class: "IN", name }],
  });
  const exchange = target.protocol === "udp" ? exchangeUdp : exchangeTcp;
  const onStray = options.onStray ?? (() => {});
  let outcome: { response: dnsPacket.Packet; seconds: number };
  try {
    outcome = await exchange(target.server, query, asked, { now, onStray }, signal);
  } catch (error) {
    rethrowIfCancelled(signal);
    return {
      ok: false,
      reason: classifyExchangeError(error, signal),
      message: failureMessage(error, signal),
    };
  }
  return classifyResponse(outcome.response, target, outcome.seconds);
}

/** A server port that refuses (ICMP port unreachable, TCP RST) refuses like REFUSED does. */
function classifyExchangeError(error: unknown, signal: AbortSignal): DnsErrorReason {
  if (isDeadline(signal)) return "timeout";
  const code = (error as { code?: unknown } | undefined)?.code;
  if (code === "ECONNREFUSED" || error instanceof Deno.errors.ConnectionRefused) return "refused";
  return "other";
}

/** Maps an answer to a result: its response code first, then whether it holds the asked type. */
function classifyResponse(
  response: dnsPacket.Packet,
  target: DnsTarget,
  seconds: number,
): DnsProbeResult {
  const rcode = (response as { rcode?: string }).rcode ?? "NOERROR";
  if (rcode !== "NOERROR") {
    return {
      ok: false,
      reason: REASON_BY_RCODE[rcode] ?? "other",
      message: `Server answered ${rcode}`,
    };
  }
  const truncated = (response as { flag_tc?: boolean }).flag_tc === true;
  // Over TCP nothing limits the size, so a truncated answer is a broken server.
  if (truncated && target.protocol === "tcp") {
    return {
      ok: false,
      reason: "other",
      message: "Cannot use answer: current answer over TCP has the TC (truncated) bit set",
    };
  }
  const addresses = (response.answers ?? [])
    .filter((answer) => answer.type === target.recordType)
    .map((answer) => String((answer as { data: unknown }).data));
  // A truncated UDP answer still timed the server; a client would retry over TCP.
  if (addresses.length === 0 && !truncated) {
    return {
      ok: false,
      reason: "nodata",
      message: `Server answered NOERROR with no ${target.recordType} record`,
    };
  }
  return { ok: true, seconds, addresses };
}

/**
 * Decodes `message` when it is the answer to `asked`: same ID, QR=1, and one
 * question equal to the one asked (name without regard to case, type, class
 * IN). Otherwise the reason it is not. The ID is read before anything is
 * decoded, so a flood of junk costs little.
 */
function answerTo(message: Uint8Array, asked: Asked): dnsPacket.Packet | StrayReason {
  if (message.length < 12) return "malformed";
  if (((message[0]! << 8) | message[1]!) !== asked.id) return "id";
  if ((message[2]! & 0x80) === 0) return "not_response";
  let packet: dnsPacket.Packet;
  try {
    packet = dnsPacket.decode(Buffer.from(message.buffer, message.byteOffset, message.length));
  } catch {
    return "malformed";
  }
  const questions = packet.questions ?? [];
  const question = questions[0];
  if (
    questions.length !== 1 || question === undefined ||
    question.name.replace(/\.$/, "").toLowerCase() !== asked.name ||
    question.type !== asked.type || (question.class ?? "IN") !== "IN"
  ) {
    return "question";
  }
  return packet;
}

interface ExchangeContext {
  readonly now: () => number;
  readonly onStray: (reason: StrayReason) => void;
}

type Exchange = (
  server: NameServer,
  query: Uint8Array,
  asked: Asked,
  context: ExchangeContext,
  signal: AbortSignal,
) => Promise<{ response: dnsPacket.Packet; seconds: number }>;

/**
 * Largest datagram read. Queries carry no EDNS, so a real answer fits in 512
 * bytes; a longer datagram is not a valid answer and is read truncated.
 */
const MAX_DATAGRAM_BYTES = 4096;

/**
 * Over UDP, through `Deno.listenDatagram` (needs `--unstable-net`) rather than
 * node:dgram: every datagram is read into one buffer of the probe's own, so
 * a flood of junk costs no allocation per datagram (20,000 junk datagrams in
 * 1.5 s: peak RSS +13 MiB, against +100 MiB through node:dgram).
 */
const exchangeUdp: Exchange = (server, query, asked, { now, onStray }, signal) =>
  withUdpExchange(server, signal, async (socket) => {
    const buffer = new Uint8Array(MAX_DATAGRAM_BYTES);
    const startedAt = now();
    await socket.send(query);
    for (;;) {
      const { message, fromServer } = await socket.receive(buffer);
      const receivedAt = now();
      // Only the server's own address and port may answer; checked before anything is read.
      if (!fromServer) {
        onStray("sender");
        continue;
      }
      const answer = answerTo(message, asked);
      if (typeof answer === "string") {
        onStray(answer);
        continue;
      }
      return { response: answer, seconds: (receivedAt - startedAt) / 1000 };
    }
  });

/** Over TCP, a message that is not the answer is skipped and the next one read, until the deadline. */
const exchangeTcp: Exchange = async (server, query, asked, { now, onStray }, signal) => {
  const startedAt = now();
  const conn = await Deno.connect({ hostname: server.hostname, port: server.port, signal });
  // A pending read cannot take a signal: closing the connection ends it.
  const closeOnAbort = () => conn.close();
  signal.addEventListener("abort", closeOnAbort, { once: true });
  try {
    await writeTcpMessage(conn, query);
    for (;;) {
      const body = await readTcpMessage(conn);
      const seconds = (now() - startedAt) / 1000;
      const answer = answerTo(body, asked);
      if (typeof answer !== "string") return { response: answer, seconds };
      onStray(answer);
    }
  } finally {
    signal.removeEventListener("abort", closeOnAbort);
    if (!signal.aborted) conn.close();
  }
};

/** Writes one DNS message over TCP: its length in two bytes, then the message (RFC 1035 4.2.2). */
export async function writeTcpMessage(conn: Deno.Conn, message: Uint8Array): Promise<void> {
  const framed = new Uint8Array(message.length + 2);
  new DataView(framed.buffer).setUint16(0, message.length);
  framed.set(message, 2);
  await writeAll(conn, framed);
}

/** Reads one DNS message over TCP, as {@link writeTcpMessage} writes it. */
export async function readTcpMessage(conn: Deno.Conn): Promise<Uint8Array> {
  const length = new DataView((await readExactly(conn, 2)).buffer).getUint16(0);
  return await readExactly(conn, length);
}

/** Lookups per protocol that {@link warmUpDns} makes. */
const WARM_UP_LOOKUPS = 3;

/**
 * Runs the lookup path a few times per protocol against a loopback "mirror"
 * made for the purpose (it sends each query back as a response with no
 * records), so that the first real lookup of a fresh process (as `check`
 * runs them) is not timed with the runtime still compiling and loading the
 * socket and packet code. Sends nothing beyond 127.0.0.1.
 */
export async function warmUpDns(
  protocols: readonly DnsProtocol[],
  signal: AbortSignal,
): Promise<void> {
  const mirror = (query: Uint8Array) => {
    const answer = query.slice();
    answer[2] = answer[2]! | 0x80; // QR: a response
    return answer;
  };
  const udp = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const mirroring = (async () => {
    try {
      for (;;) {
        const [query, from] = await udp.receive();
        await udp.send(mirror(query), from);
      }
    } catch { /* closed */ }
  })();
  const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    try {
      for await (const conn of tcp) {
        try {
          await writeTcpMessage(conn, mirror(await readTcpMessage(conn)));
        } catch {
          /* the prober left */
        } finally {
          conn.close();
        }
      }
    } catch { /* closed */ }
  })();
  try {
    const ports = {
      udp: (udp.addr as Deno.NetAddr).port,
      tcp: (tcp.addr as Deno.NetAddr).port,
    };
    for (const protocol of protocols) {
      const server = { hostname: "127.0.0.1", port: ports[protocol] };
      for (let i = 0; i < WARM_UP_LOOKUPS && !signal.aborted; i++) {
        await probeDns({ host: "warm-up.invalid", recordType: "A", server, protocol }, {}, signal);
      }
    }
  } finally {
    tcp.close();
    udp.close();
    await Promise.all([serving, mirroring]);
  }
}
