/**
 * One UDP exchange with a server, the way the DNS and NTP probers both need
 * it: a socket of the exchange's own, through `Deno.listenDatagram` (needs
 * `--unstable-net`), closed when the signal aborts (a pending receive cannot
 * take a signal), and a check that a datagram came from the server's own
 * address and port before anything in it is read.
 * @module
 */

import { isIP } from "../lib/ip.ts";

/** Strips the IPv4-mapped prefix, so a sender compares with the server as written. */
function plainAddress(address: string): string {
  const lower = address.toLowerCase();
  return lower.startsWith("::ffff:") && isIP(lower.slice(7)) === 4 ? lower.slice(7) : lower;
}

/** A socket for one exchange with `server`, and whether a datagram came from it. */
export interface UdpExchange {
  readonly socket: Deno.DatagramConn;
  /** True when `sender` is the server's own address and port. */
  isFromServer(sender: Deno.Addr): boolean;
}

/**
 * Runs `use` with a fresh socket of `server`'s address family. When `signal`
 * aborts, the socket is closed and the abort reason thrown; otherwise the
 * socket is closed when `use` settles.
 */
export async function withUdpExchange<T>(
  server: { readonly hostname: string; readonly port: number },
  signal: AbortSignal,
  use: (exchange: UdpExchange) => Promise<T>,
): Promise<T> {
  const socket = Deno.listenDatagram({
    hostname: isIP(server.hostname) === 6 ? "::" : "0.0.0.0",
    port: 0,
    transport: "udp",
  });
  const closeOnAbort = () => socket.close();
  signal.addEventListener("abort", closeOnAbort, { once: true });
  const serverAddress = plainAddress(server.hostname);
  try {
    return await use({
      socket,
      isFromServer: (sender) => {
        const from = sender as Deno.NetAddr;
        return from.port === server.port && plainAddress(from.hostname) === serverAddress;
      },
    });
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    throw error;
  } finally {
    signal.removeEventListener("abort", closeOnAbort);
    if (!signal.aborted) socket.close();
  }
}
