/**
 * UDP exchanges over a socket connected to the server, through libc
 * (lib/libc.ts): what Deno's datagram sockets cannot do. Linux reports an
 * ICMP port unreachable only to a connected socket, so a server whose port is
 * closed ends the exchange at once as `ECONNREFUSED` instead of after the
 * whole deadline; and a connected socket receives datagrams from the server's
 * own address and port only, so none has to be turned away by sender.
 *
 * One exchange is one non-blocking socket and one eventfd. A receive that
 * finds nothing waits in `poll` on both, on a thread of Deno's blocking pool;
 * an abort (deadline, shutdown) writes the eventfd, so the wait ends at once
 * and the descriptors are closed only after it has: never under a thread
 * still polling them. Exchanges are few (NTP: one per server per minute), so
 * a pool thread for the length of a round trip costs nothing worth a shared
 * poller like the kernel dialer's.
 * @module
 */

import { encodeSockaddr, ERRNO_NAMES, type Libc, LINUX, openLibc } from "../lib/libc.ts";
import type { UdpExchanger } from "./udp.ts";

/** `struct pollfd` (poll.h): int fd, short events, short revents. */
const POLLFD_BYTES = 8;
/** A poll waits at most this long before looking at the signal again (the eventfd ends it sooner). */
const POLL_SLICE_MS = 1_000;
const EAGAIN = 11;
const EINTR = 4;

/** A failed socket call, with the errno's name as `code` (e.g. "ECONNREFUSED"), as Node's errors. */
export class UdpSocketError extends Error {
  override readonly name = "UdpSocketError";
  readonly code: string;

  constructor(call: string, errno: number) {
    const code = ERRNO_NAMES[errno] ?? `errno ${errno}`;
    super(`${call}: ${code}`);
    this.code = code;
  }
}

/** Options of {@link connectedUdpExchanger}. */
export interface ConnectedUdpOptions {
  /**
   * Sets Don't Fragment on every datagram and never fragments
   * (`IP_PMTUDISC_DO`): a datagram larger than the path MTU the kernel knows
   * fails to send with `EMSGSIZE` instead of going out in pieces. For the
   * echo's full-size datagram, whose point is to cross the path whole.
   */
  readonly dontFragment?: boolean;
}

/** A connected-socket exchanger and the libc it was opened with, closed together. */
export interface ConnectedUdp {
  readonly exchanger: UdpExchanger;
  /** Closes libc; call it once no exchange runs any more. */
  close(): void;
}

/**
 * Opens libc and a {@link connectedUdpExchanger} on it, for a collector's
 * lifetime.
 * @throws {LibcUnavailable} (lib/libc.ts) when libc cannot be opened.
 */
export function openConnectedUdp(options: ConnectedUdpOptions = {}): ConnectedUdp {
  const libc = openLibc();
  return { exchanger: connectedUdpExchanger(libc, options), close: () => libc.close() };
}

/** A {@link UdpExchanger} whose sockets are connected to the server through `libc`. */
export function connectedUdpExchanger(
  libc: Libc,
  options: ConnectedUdpOptions = {},
): UdpExchanger {
  const { symbols } = libc;
  const fail = (call: string): never => {
    throw new UdpSocketError(call, libc.errno());
  };
  return async (server, signal, use) => {
    if (signal.aborted) throw signal.reason;
    const address = encodeSockaddr(libc, server.hostname, server.port);
    const fd = symbols.socket(
      address.family,
      LINUX.SOCK_DGRAM | LINUX.SOCK_NONBLOCK | LINUX.SOCK_CLOEXEC,
      0,
    );
    if (fd < 0) fail("socket");
    const wake = symbols.eventfd(0, LINUX.EFD_NONBLOCK | LINUX.EFD_CLOEXEC);
    if (wake < 0) {
      const errno = libc.errno();
      symbols.close(fd);
      throw new UdpSocketError("eventfd", errno);
    }
    const pollfds = new Uint8Array(2 * POLLFD_BYTES);
    const view = new DataView(pollfds.buffer);
    view.setInt32(0, fd, true);
    view.setInt16(4, LINUX.POLLIN, true);
    view.setInt32(POLLFD_BYTES, wake, true);
    view.setInt16(POLLFD_BYTES + 4, LINUX.POLLIN, true);
    let polling: Promise<number> | undefined;
    // Set when the exchange ends: a receive still waiting stops instead of polling again.
    let closing = false;
    const wakeUp = () => void symbols.write(wake, new BigUint64Array([1n]), 8n);
    signal.addEventListener("abort", wakeUp, { once: true });
    const v6 = address.family === LINUX.AF_INET6;
    try {
      if (options.dontFragment) {
        const mode = new Int32Array([v6 ? LINUX.IPV6_PMTUDISC_DO : LINUX.IP_PMTUDISC_DO]);
        const level = v6 ? LINUX.IPPROTO_IPV6 : LINUX.IPPROTO_IP;
        const name = v6 ? LINUX.IPV6_MTU_DISCOVER : LINUX.IP_MTU_DISCOVER;
        if (symbols.setsockopt(fd, level, name, new Uint8Array(mode.buffer), 4) < 0) {
          fail("setsockopt(MTU_DISCOVER)");
        }
      }
      if (symbols.connect(fd, address.bytes, address.bytes.length) < 0) fail("connect");
      return await use({
        pathMtu: () => {
          const value = new Int32Array(1);
          const length = new Uint32Array([4]);
          const ok = symbols.getsockopt(
            fd,
            v6 ? LINUX.IPPROTO_IPV6 : LINUX.IPPROTO_IP,
            v6 ? LINUX.IPV6_MTU : LINUX.IP_MTU,
            new Uint8Array(value.buffer),
            new Uint8Array(length.buffer),
          );
          return ok < 0 ? undefined : value[0];
        },
        send: (data) => {
          if (signal.aborted) return Promise.reject(signal.reason);
          if (
            Number(symbols.send(fd, data as Uint8Array<ArrayBuffer>, BigInt(data.length), 0)) < 0
          ) {
            fail("send");
          }
          return Promise.resolve();
        },
        receive: async (buffer) => {
          // Bounded by the signal: each turn ends in a datagram, an error, or a look at it.
          for (;;) {
            if (signal.aborted) throw signal.reason;
            if (closing) throw new Error("Cannot receive: current exchange has ended");
            const read = Number(
              symbols.recv(fd, buffer as Uint8Array<ArrayBuffer>, BigInt(buffer.length), 0),
            );
            if (read >= 0) return { message: buffer.subarray(0, read), fromServer: true };
            const errno = libc.errno();
            if (errno !== EAGAIN && errno !== EINTR) throw new UdpSocketError("recv", errno);
            polling = symbols.poll(pollfds, 2n, POLL_SLICE_MS);
            await polling;
            polling = undefined;
          }
        },
      });
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      throw error;
    } finally {
      closing = true;
      signal.removeEventListener("abort", wakeUp);
      if (polling) {
        wakeUp();
        await polling.catch(() => {});
      }
      symbols.close(fd);
      symbols.close(wake);
    }
  };
}
