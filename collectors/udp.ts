/**
 * One UDP exchange with a server, the way the DNS and NTP probers both need
 * it: a socket of the exchange's own, closed when the signal aborts (a
 * pending receive cannot take a signal), and each datagram said to be from
 * the server's own address and port or not before anything in it is read.
 *
 * Two ways to make one, the same to a prober ({@link UdpExchanger}):
 * {@link withUdpExchange} through `Deno.listenDatagram` (needs
 * `--unstable-net`), whose unconnected socket never learns of an ICMP port
 * unreachable, so a closed port reads as a timeout; and a socket connected
 * to the server through libc (collectors/udp_connected.ts), where the same
 * ICMP message ends the exchange at once as refused.
 * @module
 */

import { isIP } from "../lib/ip.ts";

/** An exchange's socket, as a prober uses it. */
export interface UdpExchange {
  /** Sends one datagram to the server. */
  send(data: Uint8Array): Promise<void>;
  /**
   * The next datagram, read into `buffer` (a longer one is cut to its size),
   * and whether it came from the server's own address and port.
   */
  receive(buffer: Uint8Array): Promise<{ message: Uint8Array; fromServer: boolean }>;
  /**
   * The largest IP packet the kernel will send towards the server now (the
   * route's MTU, or less once it learned a smaller path MTU); undefined where
   * the socket cannot tell (Deno's).
   */
  pathMtu?(): number | undefined;
}

/**
 * Runs `use` with a fresh socket for `server`. When `signal` aborts, the
 * socket is closed and the abort reason thrown; otherwise the socket is
 * closed when `use` settles.
 */
export type UdpExchanger = <T>(
  server: { readonly hostname: string; readonly port: number },
  signal: AbortSignal,
  use: (exchange: UdpExchange) => Promise<T>,
) => Promise<T>;

/** Strips the IPv4-mapped prefix, so a sender compares with an address as written. */
export function plainAddress(address: string): string {
  const lower = address.toLowerCase();
  return lower.startsWith("::ffff:") && isIP(lower.slice(7)) === 4 ? lower.slice(7) : lower;
}

/** A {@link UdpExchanger} through `Deno.listenDatagram`. */
export const withUdpExchange: UdpExchanger = async (server, signal, use) => {
  const socket = Deno.listenDatagram({
    hostname: isIP(server.hostname) === 6 ? "::" : "0.0.0.0",
    port: 0,
    transport: "udp",
  });
  const closeOnAbort = () => socket.close();
  signal.addEventListener("abort", closeOnAbort, { once: true });
  const serverAddress = plainAddress(server.hostname);
  const to = { hostname: server.hostname, port: server.port, transport: "udp" } as const;
  try {
    return await use({
      send: async (data) => void await socket.send(data, to),
      receive: async (buffer) => {
        const [message, sender] = await socket.receive(buffer);
        const from = sender as Deno.NetAddr;
        return {
          message,
          fromServer: from.port === server.port && plainAddress(from.hostname) === serverAddress,
        };
      },
    });
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    throw error;
  } finally {
    signal.removeEventListener("abort", closeOnAbort);
    if (!signal.aborted) socket.close();
  }
};
