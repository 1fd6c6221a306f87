/**
 * A DNS server for tests, on UDP and TCP of the same port, whose every answer
 * is decided by the test: delay, response code, records, or silence.
 * @module
 */

import { Buffer } from "node:buffer";
import dgram from "node:dgram";
// @ts-types="npm:@types/dns-packet@5.6.5"
import dnsPacket from "dns-packet";
import { readTcpMessage, writeTcpMessage } from "../../collectors/probe_dns.ts";

/** How the server answers one question. */
export interface Behaviour {
  delayMs?: number;
  rcode?: "NOERROR" | "NXDOMAIN" | "SERVFAIL" | "REFUSED";
  /** Records for A and AAAA questions; a type left out gets NOERROR with no answer (NODATA). */
  a?: string[];
  aaaa?: string[];
  /** Never answer. */
  silent?: boolean;
  /**
   * Sends a forgery first (an A record 203.0.113.66), then the real answer
   * (or nothing, when `silent`): from another port of this host (UDP only), for
   * another name, with another ID, the query echoed back (QR=0), or junk.
   */
  forge?: "other-port" | "other-question" | "wrong-id" | "query-echo" | "junk";
  /** Junk datagrams sent to the asker's port from the server's, in bursts around the answer (UDP only). */
  flood?: number;
  /** Answer with the TC (truncated) bit and no records. */
  truncated?: boolean;
}

/** A running test DNS server. */
export interface TestDnsServer extends AsyncDisposable {
  readonly hostname: string;
  readonly port: number;
  /** `hostname:port`, as `--dns.servers` takes it. */
  readonly address: string;
  /** Questions received so far, as "protocol name type". */
  readonly queries: string[];
  /** Decides answers from now on. */
  behaviour: (name: string, type: string) => Behaviour;
}

/** Starts a server on `hostname` (default 127.0.0.1) and a free port, or the given one. */
export async function startDnsServer(
  options: {
    hostname?: string;
    port?: number;
    behaviour?: (name: string, type: string) => Behaviour;
  } = {},
): Promise<TestDnsServer> {
  const hostname = options.hostname ?? "127.0.0.1";
  const tcp = Deno.listen({ hostname, port: options.port ?? 0 });
  const port = (tcp.addr as Deno.NetAddr).port;
  const udp = dgram.createSocket(hostname.includes(":") ? "udp6" : "udp4");
  await new Promise<void>((resolve, reject) => {
    udp.once("error", reject);
    udp.bind(port, hostname, () => resolve());
  });
  const pending = new Set<Promise<unknown>>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const conns = new Set<Deno.Conn>();
  const closing = new AbortController();
  const server: TestDnsServer = {
    hostname,
    port,
    address: hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`,
    queries: [],
    behaviour: options.behaviour ?? (() => ({ a: ["192.0.2.1"] })),
    async [Symbol.asyncDispose]() {
      closing.abort();
      for (const timer of timers) clearTimeout(timer);
      tcp.close();
      for (const conn of conns) conn.close();
      await new Promise<void>((resolve) => udp.close(() => resolve()));
      await new Promise<void>((resolve) => forger.close(() => resolve()));
      await Promise.allSettled(pending);
    },
  };

  const forger = dgram.createSocket(hostname.includes(":") ? "udp6" : "udp4");
  await new Promise<void>((resolve, reject) => {
    forger.once("error", reject);
    forger.bind(0, hostname, () => resolve());
  });

  /** The forgery `behaviour.forge` asks for, as the bytes to send. */
  const forgery = (query: dnsPacket.Packet, raw: Uint8Array, behaviour: Behaviour): Uint8Array => {
    const question = query.questions?.[0] ?? { name: "", type: "A" as const };
    const forged = (id: number, name: string) =>
      dnsPacket.encode({
        type: "response",
        id,
        flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
        questions: [{ ...question, name }],
        answers: [{ type: "A", class: "IN", name, ttl: 30, data: "203.0.113.66" }],
      });
    switch (behaviour.forge) {
      case "other-question":
        return forged(query.id ?? 0, "elsewhere.invalid");
      case "wrong-id":
        return forged(((query.id ?? 0) + 1) & 0xffff, question.name);
      case "query-echo":
        return raw;
      case "junk":
        return crypto.getRandomValues(new Uint8Array(48));
      default:
        return forged(query.id ?? 0, question.name);
    }
  };

  const answer = (query: dnsPacket.Packet, protocol: string): [Behaviour, Uint8Array | null] => {
    const question = query.questions?.[0];
    const name = question?.name ?? "";
    const type = question?.type ?? "A";
    server.queries.push(`${protocol} ${name} ${type}`);
    const behaviour = server.behaviour(name, type);
    if (behaviour.silent) return [behaviour, null];
    const data = type === "A" ? behaviour.a ?? [] : type === "AAAA" ? behaviour.aaaa ?? [] : [];
    const rcode = behaviour.rcode ?? "NOERROR";
    const response = dnsPacket.encode({
      type: "response",
      id: query.id ?? 0,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE |
        (behaviour.truncated ? dnsPacket.TRUNCATED_RESPONSE : 0) |
        ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"].indexOf(rcode),
      questions: query.questions ?? [],
      answers: rcode === "NOERROR" && !behaviour.truncated
        ? data.map((address) =>
          ({ type, class: "IN", name, ttl: 30, data: address }) as dnsPacket.Answer
        )
        : [],
    });
    return [behaviour, response];
  };

  const later = (delayMs: number | undefined, action: () => void) => {
    if (!delayMs) return action();
    const timer = setTimeout(() => {
      timers.delete(timer);
      action();
    }, delayMs);
    timers.add(timer);
  };

  udp.on("message", (message: Uint8Array, remote: { address: string; port: number }) => {
    const query = dnsPacket.decode(Buffer.from(message));
    const [behaviour, response] = answer(query, "udp");
    if (behaviour.forge) {
      const socket = behaviour.forge === "other-port" ? forger : udp;
      socket.send(forgery(query, message, behaviour), remote.port, remote.address);
    }
    if (behaviour.flood) flood(behaviour.flood, remote);
    if (response) later(behaviour.delayMs, () => udp.send(response, remote.port, remote.address));
  });

  /** Sends `count` junk datagrams in bursts of 50, one burst per turn of the event loop. */
  const flood = (count: number, remote: { address: string; port: number }) => {
    const junk = crypto.getRandomValues(new Uint8Array(512));
    const burst = (left: number) => {
      if (left <= 0 || closing.signal.aborted) return;
      for (let i = 0; i < Math.min(50, left); i++) udp.send(junk, remote.port, remote.address);
      later(1, () => burst(left - 50));
    };
    burst(count);
  };

  const serveConn = async (conn: Deno.Conn) => {
    conns.add(conn);
    try {
      const body = await readTcpMessage(conn);
      const query = dnsPacket.decode(Buffer.from(body));
      const [behaviour, response] = answer(query, "tcp");
      if (behaviour.forge) await writeTcpMessage(conn, forgery(query, body, behaviour));
      if (!response) {
        await conn.read(new Uint8Array(1)); // hold the connection open until the client leaves
        return;
      }
      if (behaviour.delayMs) await sleep(behaviour.delayMs, closing.signal);
      await writeTcpMessage(conn, response);
    } catch {
      // the client went away first; nothing to answer
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* already closed by dispose */ }
    }
  };

  const acceptLoop = (async () => {
    try {
      for await (const conn of tcp) {
        const served = serveConn(conn);
        pending.add(served);
        served.finally(() => pending.delete(served));
      }
    } catch { /* listener closed */ }
  })();
  pending.add(acceptLoop);
  return server;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
