/**
 * TCP handshakes timed by the kernel: a non-blocking `connect()` through libc
 * (lib/libc.ts), and once it completes, the round trip the kernel measured
 * for it, read from `getsockopt(TCP_INFO)`.
 *
 * Why: a clock in JavaScript around an awaited connect also times the event
 * loop — a /metrics render, a GC pause, a busy core — so at in-cluster
 * latencies (0.05–0.5 ms) it read 2–3× the network's figure (issue #30).
 * For a fresh connection `tcpi_rtt` is exactly the kernel's first RTT
 * sample: from the SYN leaving to the SYN-ACK arriving, taken in softirq, so
 * neither side's userspace and no accept-queue wait on the peer is in it.
 *
 * One poller for every socket: each dial registers its socket with one epoll
 * instance, and one `epoll_wait` at a time runs on a thread of Deno's blocking
 * pool, so threads stay at one however many handshakes are in flight. The
 * wait runs only while a dial is pending, and wakes at least every
 * {@link WAIT_SLICE_MS} to notice that none is left. A dial's deadline and a
 * shutdown both come as its `AbortSignal`: the socket leaves epoll and is
 * closed at once, whatever state its handshake is in. An epoll event carries
 * the dial's id, never its descriptor, so an event that arrives for a socket
 * already closed (and its number reused) finds nothing.
 * @module
 */

import { encodeSockaddr, ERRNO_NAMES, type Libc, LINUX, openLibc } from "../lib/libc.ts";
import { isIP } from "../lib/ip.ts";
import { DialError, type Handshake } from "./probe_tcp.ts";

/** An `epoll_wait` returns at least this often while dials are pending (ms). */
const WAIT_SLICE_MS = 250;
/** Events taken from one `epoll_wait`. */
const EVENTS_PER_WAIT = 256;
/** `struct tcp_info` up to `tcpi_total_retrans`, the last field read. */
const TCP_INFO_BYTES = 104;
/**
 * Offsets in `struct tcp_info` (include/uapi/linux/tcp.h), stable since
 * Linux 2.6 for these fields: u8 `tcpi_retransmits` at 2, u32 `tcpi_pmtu` at
 * 60, u32 `tcpi_rtt` (µs) at 68, u32 `tcpi_total_retrans` at 100.
 */
const TCPI = { retransmits: 2, pmtu: 60, rtt: 68, totalRetrans: 100 } as const;
/** The id an epoll event carries for the wake-up eventfd. */
const WAKE_ID = 0n;

interface PendingDial {
  readonly fd: number;
  readonly startedAt: number;
  readonly signal: AbortSignal;
  readonly onAbort: () => void;
  resolve(handshake: Handshake): void;
  reject(error: unknown): void;
}

/**
 * `struct epoll_event` is packed on x86-64 (12 bytes: u32 events, u64 data)
 * and naturally aligned elsewhere (16 bytes, data at 8): sys/epoll.h's
 * `__EPOLL_PACKED`.
 */
const EPOLL_EVENT = Deno.build.arch === "x86_64" ? { size: 12, data: 4 } : { size: 16, data: 8 };

/** Handshakes timed by the kernel; one per collector. Close it when done. */
export class KernelDialer {
  readonly #libc: Libc;
  readonly #ownsLibc: boolean;
  readonly #epoll: number;
  readonly #wake: number;
  readonly #pending = new Map<bigint, PendingDial>();
  readonly #events = new Uint8Array(EVENTS_PER_WAIT * EPOLL_EVENT.size);
  readonly #eventView = new DataView(this.#events.buffer);
  /** The `struct epoll_event` handed to `epoll_ctl`, reused by every call. */
  readonly #control = new Uint8Array(EPOLL_EVENT.size);
  readonly #controlView = new DataView(this.#control.buffer);
  readonly #intBuffer = new Int32Array(1);
  readonly #lengthBuffer = new Uint32Array(1);
  readonly #tcpInfo = new Uint8Array(TCP_INFO_BYTES);
  readonly #tcpInfoView = new DataView(this.#tcpInfo.buffer);
  #nextId = 1n;
  #loop: Promise<void> | undefined;
  #closed = false;

  /**
   * Opens libc and an epoll instance. Throws (a `LibcUnavailable` with its
   * cause) where this cannot work: not Linux, no glibc, no `--allow-ffi`.
   */
  constructor(libc?: Libc) {
    this.#ownsLibc = libc === undefined;
    libc ??= openLibc();
    this.#libc = libc;
    const { symbols } = libc;
    const epoll = symbols.epoll_create1(LINUX.EPOLL_CLOEXEC);
    const wake = epoll < 0 ? -1 : symbols.eventfd(0, LINUX.EFD_NONBLOCK | LINUX.EFD_CLOEXEC);
    if (wake < 0) {
      const errno = libc.errno();
      if (epoll >= 0) symbols.close(epoll);
      if (this.#ownsLibc) libc.close();
      throw this.#error(epoll < 0 ? "create an epoll instance" : "create an eventfd", errno);
    }
    this.#epoll = epoll;
    this.#wake = wake;
    this.#control.fill(0);
    this.#controlView.setUint32(0, LINUX.EPOLLIN, true);
    symbols.epoll_ctl(epoll, LINUX.EPOLL_CTL_ADD, wake, this.#control);
  }

  /** Where libc was opened from, for the log line that names the clock. */
  get libcPath(): string {
    return this.#libc.path;
  }

  /** Dials in flight. */
  get pending(): number {
    return this.#pending.size;
  }

  /**
   * Connects to `address:port` (an IP literal, an IPv6 zone allowed) and
   * closes at once; resolves with the kernel's round trip of the handshake.
   * A failure rejects with a {@link DialError} whose `code` is the errno's
   * name; an abort of `signal` closes the socket and rejects with its reason.
   */
  dial(address: string, port: number, signal: AbortSignal): Promise<Handshake> {
    if (this.#closed) return Promise.reject(new Error("Cannot dial: the kernel dialer is closed"));
    if (signal.aborted) return Promise.reject(signal.reason);
    const sockaddr = this.#sockaddr(address, port);
    const { symbols } = this.#libc;
    const fd = symbols.socket(
      sockaddr.family,
      LINUX.SOCK_STREAM | LINUX.SOCK_NONBLOCK | LINUX.SOCK_CLOEXEC,
      0,
    );
    if (fd < 0) return Promise.reject(this.#dialError(this.#libc.errno(), 0));
    const startedAt = performance.now();
    if (symbols.connect(fd, sockaddr.bytes, sockaddr.bytes.length) < 0) {
      const errno = this.#libc.errno();
      if (errno !== LINUX.EINPROGRESS) {
        symbols.close(fd);
        return Promise.reject(this.#dialError(errno, 0));
      }
    }
    const id = this.#nextId++;
    const control = this.#controlView;
    control.setUint32(
      0,
      LINUX.EPOLLOUT | LINUX.EPOLLERR | LINUX.EPOLLHUP | LINUX.EPOLLONESHOT,
      true,
    );
    control.setBigUint64(EPOLL_EVENT.data, id, true);
    if (symbols.epoll_ctl(this.#epoll, LINUX.EPOLL_CTL_ADD, fd, this.#control) < 0) {
      const errno = this.#libc.errno();
      symbols.close(fd);
      return Promise.reject(this.#error("watch a socket", errno));
    }
    return new Promise<Handshake>((resolve, reject) => {
      const onAbort = () => this.#abandon(id);
      signal.addEventListener("abort", onAbort, { once: true });
      this.#pending.set(id, { fd, startedAt, signal, onAbort, resolve, reject });
      this.#loop ??= this.#run();
    });
  }

  /** Closes every socket still dialling (their dials reject) and the poller. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const id of [...this.#pending.keys()]) {
      this.#abandon(id, new Error("Cannot dial: the kernel dialer was closed"));
    }
    // Wake a wait in progress so that the loop sees it is closed, then let it end.
    this.#libc.symbols.write(this.#wake, new BigUint64Array([1n]), 8n);
    await this.#loop;
    this.#libc.symbols.close(this.#wake);
    this.#libc.symbols.close(this.#epoll);
    if (this.#ownsLibc) this.#libc.close();
  }

  async #run(): Promise<void> {
    try {
      while (this.#pending.size > 0 && !this.#closed) {
        const count = await this.#libc.symbols.epoll_wait(
          this.#epoll,
          this.#events,
          EVENTS_PER_WAIT,
          WAIT_SLICE_MS,
        );
        // A negative count is EINTR (a signal reached the waiting thread): wait again.
        for (let i = 0; i < count; i++) {
          const id = this.#eventView.getBigUint64(i * EPOLL_EVENT.size + EPOLL_EVENT.data, true);
          if (id === WAKE_ID) this.#drainWake();
          else this.#complete(id);
        }
      }
    } finally {
      this.#loop = undefined;
      // A dial that came while the last wait was ending starts a wait of its own.
      if (this.#pending.size > 0 && !this.#closed) this.#loop = this.#run();
    }
  }

  #drainWake(): void {
    this.#libc.symbols.read(this.#wake, new BigUint64Array(1), 8n);
  }

  /** The socket is writable or failed: its handshake is over. */
  #complete(id: bigint): void {
    const dial = this.#take(id);
    if (!dial) return;
    const wallSeconds = (performance.now() - dial.startedAt) / 1000;
    const { symbols } = this.#libc;
    this.#lengthBuffer[0] = 4;
    const soErrorRead = symbols.getsockopt(
      dial.fd,
      LINUX.SOL_SOCKET,
      LINUX.SO_ERROR,
      this.#intBuffer,
      this.#lengthBuffer,
    );
    const socketError = soErrorRead < 0 ? this.#libc.errno() : this.#intBuffer[0]!;
    const info = this.#readTcpInfo(dial.fd);
    symbols.close(dial.fd);
    if (socketError !== 0) {
      dial.reject(this.#dialError(socketError, info?.synRetransmits ?? 0));
      return;
    }
    // No RTT sample (0): e.g. a retransmitted SYN without TCP timestamps (Karn's rule). The
    // wall clock is then the only figure there is.
    const seconds = info && info.rttMicros > 0 ? info.rttMicros / 1e6 : wallSeconds;
    dial.resolve({
      seconds,
      wallSeconds,
      clock: info && info.rttMicros > 0 ? "kernel" : "wall",
      ...(info ? { synRetransmits: info.synRetransmits, pathMtu: info.pathMtu } : {}),
    });
  }

  /** Closes a dial's socket before its handshake ended: deadline, shutdown or close(). */
  #abandon(id: bigint, reason?: unknown): void {
    const dial = this.#take(id);
    if (!dial) return;
    const info = this.#readTcpInfo(dial.fd);
    this.#libc.symbols.close(dial.fd);
    const cause = reason ?? dial.signal.reason;
    // The SYNs resent before the deadline are loss on the path even though the dial timed out.
    if (info && info.synRetransmits > 0 && cause instanceof Error) {
      Object.defineProperty(cause, "synRetransmits", {
        value: info.synRetransmits,
        configurable: true,
      });
    }
    dial.reject(cause);
  }

  /** Removes a dial from epoll and the pending table; undefined when it already ended. */
  #take(id: bigint): PendingDial | undefined {
    const dial = this.#pending.get(id);
    if (!dial) return undefined;
    this.#pending.delete(id);
    dial.signal.removeEventListener("abort", dial.onAbort);
    this.#libc.symbols.epoll_ctl(this.#epoll, LINUX.EPOLL_CTL_DEL, dial.fd, this.#control);
    return dial;
  }

  #readTcpInfo(
    fd: number,
  ): { rttMicros: number; synRetransmits: number; pathMtu: number } | undefined {
    this.#lengthBuffer[0] = TCP_INFO_BYTES;
    if (
      this.#libc.symbols.getsockopt(
          fd,
          LINUX.IPPROTO_TCP,
          LINUX.TCP_INFO,
          this.#tcpInfo,
          this.#lengthBuffer,
        ) < 0 || this.#lengthBuffer[0]! < TCP_INFO_BYTES
    ) {
      return undefined;
    }
    const view = this.#tcpInfoView;
    return {
      rttMicros: view.getUint32(TCPI.rtt, true),
      // Before the handshake completes only `tcpi_retransmits` (SYNs resent so far) counts them.
      synRetransmits: Math.max(
        view.getUint32(TCPI.totalRetrans, true),
        view.getUint8(TCPI.retransmits),
      ),
      pathMtu: view.getUint32(TCPI.pmtu, true),
    };
  }

  #sockaddr(address: string, port: number): { family: number; bytes: Uint8Array<ArrayBuffer> } {
    if (isIP(address) === 0) {
      throw new TypeError(`Cannot dial ${address}: current value is not an IP address`);
    }
    return encodeSockaddr(this.#libc, address, port);
  }

  #dialError(errno: number, synRetransmits: number): DialError {
    const code = ERRNO_NAMES[errno] ?? `errno ${errno}`;
    return new DialError(`connect: ${code}`, code, synRetransmits);
  }

  #error(what: string, errno: number): Error {
    return new Error(`Cannot ${what}: current errno is ${ERRNO_NAMES[errno] ?? errno}`);
  }
}
