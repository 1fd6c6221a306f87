/**
 * A DNS server for tests, on UDP and TCP of the same port, whose every answer
 * is decided by the test: delay, response code, records, or silence.
 * @module
 */

import { Buffer } from "node:buffer";
import dgram from "node:dgram";
// @ts-types="npm:@types/dns-packet@5.6.5"
import dnsPacket from "dns-packet";

/** How the server answers one question. */
export interface Behaviour {
  delayMs?: number;
  rcode?: "NOERROR" | "NXDOMAIN" | "SERVFAIL" | "REFUSED";
  /** Records for A and AAAA questions; a type left out gets NOERROR with no answer (NODATA). */
  a?: string[];
  aaaa?: string[];
  /** Never answer. */
  silent?: boolean;
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
      await Promise.allSettled(pending);
    },
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
        ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"].indexOf(rcode),
      questions: query.questions ?? [],
      answers: rcode === "NOERROR"
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
    const [behaviour, response] = answer(dnsPacket.decode(Buffer.from(message)), "udp");
    if (response) later(behaviour.delayMs, () => udp.send(response, remote.port, remote.address));
  });

  const serveConn = async (conn: Deno.Conn) => {
    conns.add(conn);
    try {
      const header = new Uint8Array(2);
      if (await conn.read(header) !== 2) return;
      const body = new Uint8Array(new DataView(header.buffer).getUint16(0));
      let filled = 0;
      while (filled < body.length) {
        const read = await conn.read(body.subarray(filled));
        if (read === null) return;
        filled += read;
      }
      const [behaviour, response] = answer(dnsPacket.decode(Buffer.from(body)), "tcp");
      if (!response) {
        await conn.read(new Uint8Array(1)); // hold the connection open until the client leaves
        return;
      }
      const framed = new Uint8Array(response.length + 2);
      new DataView(framed.buffer).setUint16(0, response.length);
      framed.set(response, 2);
      if (behaviour.delayMs) await sleep(behaviour.delayMs, closing.signal);
      await conn.write(framed);
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
