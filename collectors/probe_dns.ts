/**
 * Direct DNS prober: one query straight to a name server over UDP or TCP.
 *
 * Unlike `Deno.resolveDns`, this knows the response code (so NXDOMAIN,
 * SERVFAIL, REFUSED and NODATA are told apart) and has no timeout of its own:
 * the caller's signal is the only deadline.
 * @module
 */

import { Buffer } from "node:buffer";
import dgram from "node:dgram";
import { isIP } from "node:net";
// @ts-types="npm:@types/dns-packet@5.6.5"
import dnsPacket from "dns-packet";
import { errorMessage, isDeadline, rethrowIfCancelled } from "./probe_signal.ts";

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

/** Injectable clock for tests. */
export interface DnsProbeOptions {
  now?: () => number;
}

const REASON_BY_RCODE: Readonly<Record<string, DnsErrorReason>> = {
  NXDOMAIN: "nxdomain",
  SERVFAIL: "servfail",
  REFUSED: "refused",
};

/** Sends one query to `target.server` and classifies the answer. */
export async function probeDns(
  target: DnsTarget,
  options: DnsProbeOptions,
  signal: AbortSignal,
): Promise<DnsProbeResult> {
  const now = options.now ?? (() => performance.now());
  const id = crypto.getRandomValues(new Uint16Array(1))[0]!;
  const name = target.host.endsWith(".") ? target.host.slice(0, -1) : target.host;
  const query = dnsPacket.encode({
    type: "query",
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: target.recordType, class: "IN", name }],
  });
  const exchange = target.protocol === "udp" ? exchangeUdp : exchangeTcp;
  let outcome: { response: dnsPacket.Packet; seconds: number };
  try {
    outcome = await exchange(target.server, query, id, now, signal);
  } catch (error) {
    rethrowIfCancelled(signal);
    return {
      ok: false,
      reason: classifyExchangeError(error, signal),
      message: errorMessage(error),
    };
  }
  return classifyResponse(outcome.response, target.recordType, outcome.seconds);
}

/** A server port that refuses (ICMP port unreachable, TCP RST) refuses like REFUSED does. */
function classifyExchangeError(error: unknown, signal: AbortSignal): DnsErrorReason {
  if (isDeadline(signal)) return "timeout";
  const code = (error as { code?: unknown } | undefined)?.code;
  if (code === "ECONNREFUSED" || error instanceof Deno.errors.ConnectionRefused) return "refused";
  return "other";
}

/** Maps a response to a result: its response code first, then whether it holds the asked type. */
function classifyResponse(
  response: dnsPacket.Packet,
  recordType: RecordType,
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
  const addresses = (response.answers ?? [])
    .filter((answer) => answer.type === recordType)
    .map((answer) => String((answer as { data: unknown }).data));
  // A truncated UDP answer still timed the server; a client would retry over TCP.
  const truncated = (response as { flag_tc?: boolean }).flag_tc === true;
  if (addresses.length === 0 && !truncated) {
    return {
      ok: false,
      reason: "nodata",
      message: `Server answered NOERROR with no ${recordType} record`,
    };
  }
  return { ok: true, seconds, addresses };
}

function exchangeUdp(
  server: NameServer,
  query: Uint8Array,
  id: number,
  now: () => number,
  signal: AbortSignal,
): Promise<{ response: dnsPacket.Packet; seconds: number }> {
  const socket = dgram.createSocket(isIP(server.hostname) === 6 ? "udp6" : "udp4");
  let onAbort = () => {};
  return new Promise<{ response: dnsPacket.Packet; seconds: number }>((resolve, reject) => {
    let startedAt = 0;
    onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    socket.on("error", reject);
    socket.on("message", (message: Uint8Array) => {
      const seconds = (now() - startedAt) / 1000;
      let response: dnsPacket.Packet;
      try {
        response = dnsPacket.decode(Buffer.from(message));
      } catch {
        return; // not a DNS message: keep waiting for the real answer
      }
      if (response.id === id && response.type === "response") resolve({ response, seconds });
    });
    // A connected socket only accepts datagrams from the server itself.
    socket.connect(server.port, server.hostname, () => {
      if (signal.aborted) return;
      startedAt = now();
      socket.send(query, (error) => error && reject(error));
    });
  }).finally(() => {
    signal.removeEventListener("abort", onAbort);
    socket.close();
  });
}

async function exchangeTcp(
  server: NameServer,
  query: Uint8Array,
  id: number,
  now: () => number,
  signal: AbortSignal,
): Promise<{ response: dnsPacket.Packet; seconds: number }> {
  const startedAt = now();
  const conn = await Deno.connect({ hostname: server.hostname, port: server.port, signal });
  // A pending read cannot take a signal: closing the connection ends it.
  const closeOnAbort = () => conn.close();
  signal.addEventListener("abort", closeOnAbort, { once: true });
  try {
    const framed = new Uint8Array(query.length + 2);
    new DataView(framed.buffer).setUint16(0, query.length);
    framed.set(query, 2);
    await writeAll(conn, framed);
    const header = await readExactly(conn, 2);
    const body = await readExactly(conn, new DataView(header.buffer).getUint16(0));
    const seconds = (now() - startedAt) / 1000;
    const response = dnsPacket.decode(Buffer.from(body));
    if (response.id !== id) {
      throw new Error(`Cannot use answer: current ID is ${response.id}, the query's was ${id}`);
    }
    return { response, seconds };
  } finally {
    signal.removeEventListener("abort", closeOnAbort);
    if (!signal.aborted) conn.close();
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}

async function readExactly(conn: Deno.Conn, length: number): Promise<Uint8Array> {
  const buffer = new Uint8Array(length);
  let filled = 0;
  while (filled < length) {
    const read = await conn.read(buffer.subarray(filled));
    if (read === null) {
      throw new Deno.errors.UnexpectedEof(
        `Cannot read DNS answer: connection closed after ${filled} of ${length} bytes`,
      );
    }
    filled += read;
  }
  return buffer;
}
