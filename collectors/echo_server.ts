/**
 * The answering side of the echo collector: every exporter answers UDP echo
 * requests from the other exporters on its own port number.
 *
 * Everything that arrives is hostile until shown otherwise. A datagram is
 * answered only when it is an echo request of this version
 * (collectors/echo_wire.ts), from an address allowed to ask (the current
 * peers when discovery runs), and within the rate limit; the answer is the
 * request itself with its type byte turned, never a byte longer. Everything
 * else is dropped and counted. One buffer serves every datagram, so a flood
 * costs no allocation per datagram.
 * @module
 */

import { decodeEcho, ECHO_REQUEST, markReply } from "./echo_wire.ts";
import { plainAddress } from "./udp.ts";

/** What became of a datagram that arrived. */
export type EchoRequestResult = "answered" | "refused" | "rate_limited";
export const ECHO_REQUEST_RESULTS: readonly EchoRequestResult[] = [
  "answered",
  "refused",
  "rate_limited",
];

/** Largest datagram read; a longer one is read cut short, and so is not an echo of its size. */
const MAX_DATAGRAM_BYTES = 65_536;

/** Options of {@link EchoServer}. */
export interface EchoServerOptions {
  readonly hostname: string;
  readonly port: number;
  /** Answers at most this many datagrams a second (a token bucket holding one second's worth). */
  readonly ratePerSecond: number;
  /** True when `address` (an IP as the socket reports it) may ask. */
  readonly allowed: (address: string) => boolean;
  /** Called once per datagram that arrived, with what became of it. */
  readonly count: (result: EchoRequestResult) => void;
  readonly now?: () => number;
}

/** A running echo responder; {@link EchoServer.close} stops it. */
export class EchoServer {
  readonly #socket: Deno.DatagramConn;
  readonly #options: EchoServerOptions;
  readonly #now: () => number;
  readonly #serving: Promise<void>;
  #tokens: number;
  #refilledAt: number;
  #closed = false;

  constructor(options: EchoServerOptions) {
    this.#options = options;
    this.#socket = Deno.listenDatagram({
      hostname: options.hostname,
      port: options.port,
      transport: "udp",
    });
    this.#now = options.now ?? (() => performance.now());
    this.#tokens = options.ratePerSecond;
    this.#refilledAt = this.#now();
    this.#serving = this.#serve();
  }

  /** The address and port it answers on. */
  get addr(): Deno.NetAddr {
    return this.#socket.addr as Deno.NetAddr;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.close();
    await this.#serving;
  }

  async #serve(): Promise<void> {
    const buffer = new Uint8Array(MAX_DATAGRAM_BYTES);
    while (!this.#closed) {
      let message: Uint8Array;
      let sender: Deno.NetAddr;
      try {
        const [received, from] = await this.#socket.receive(buffer);
        message = received;
        sender = from as Deno.NetAddr;
      } catch (error) {
        if (this.#closed) return;
        // A receive error on a UDP socket (e.g. a port unreachable for an earlier reply) is that
        // datagram's, not the socket's: go on.
        if (error instanceof Deno.errors.BadResource) return;
        continue;
      }
      const result = this.#judge(message, sender);
      this.#options.count(result);
      if (result !== "answered") continue;
      markReply(message);
      try {
        await this.#socket.send(message, sender);
      } catch {
        // The asker went away; its loss is what the asker measures.
      }
    }
  }

  #judge(message: Uint8Array, sender: Deno.NetAddr): EchoRequestResult {
    const header = decodeEcho(message);
    if (header?.type !== ECHO_REQUEST || !this.#options.allowed(plainAddress(sender.hostname))) {
      return "refused";
    }
    const now = this.#now();
    const rate = this.#options.ratePerSecond;
    this.#tokens = Math.min(rate, this.#tokens + (now - this.#refilledAt) / 1000 * rate);
    this.#refilledAt = now;
    if (this.#tokens < 1) return "rate_limited";
    this.#tokens -= 1;
    return "answered";
  }
}
