/**
 * The C library through Deno's FFI: the few socket, epoll, poll and eventfd
 * calls that kernel-timed handshakes (collectors/kernel_dialer.ts) and UDP
 * exchanges over a connected socket (collectors/udp_connected.ts) need, and
 * nothing else. Only glibc's `libc.so.6` at the paths Debian (and so the
 * distroless `cc` image), Ubuntu and Fedora put it is opened, each path
 * exactly as `--allow-ffi=…` grants it: Deno compares the granted path with
 * the opened one literally, so `/lib/…` and `/usr/lib/…` are both listed.
 *
 * `errno` is read with `memcpy` from `__errno_location()` into a buffer, not
 * with `Deno.UnsafePointerView`: reading a pointer needs `--allow-ffi` for
 * every path, while calling a symbol of an opened library needs nothing more.
 * @module
 */

/** Where glibc lives on the distributions the exporter is built and run on. */
export const LIBC_PATHS: readonly string[] = [
  "/usr/lib/x86_64-linux-gnu/libc.so.6",
  "/lib/x86_64-linux-gnu/libc.so.6",
  "/usr/lib/aarch64-linux-gnu/libc.so.6",
  "/lib/aarch64-linux-gnu/libc.so.6",
  "/usr/lib64/libc.so.6",
  "/lib64/libc.so.6",
];

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  inet_pton: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  // On a thread of Deno's blocking pool, returning a promise: the only call that waits.
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32", nonblocking: true },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  // As epoll_wait: on a thread of the blocking pool, for the few sockets of one exchange.
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  __errno_location: { parameters: [], result: "pointer" },
  memcpy: { parameters: ["buffer", "pointer", "usize"], result: "pointer" },
} as const;

/** The opened library's calls. */
export type LibcSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** glibc, opened. */
export interface Libc {
  /** The path it was opened from. */
  readonly path: string;
  readonly symbols: LibcSymbols;
  /** The calling thread's `errno`; read it right after the call that failed. */
  errno(): number;
  close(): void;
}

/** Constants of Linux's UAPI headers, the same on x86-64 and arm64. */
export const LINUX = {
  AF_INET: 2,
  AF_INET6: 10,
  SOCK_STREAM: 1,
  SOCK_DGRAM: 2,
  POLLIN: 0x001,
  SOCK_NONBLOCK: 0o4000,
  SOCK_CLOEXEC: 0o2000000,
  SOL_SOCKET: 1,
  SO_ERROR: 4,
  IPPROTO_TCP: 6,
  TCP_INFO: 11,
  EFD_NONBLOCK: 0o4000,
  EFD_CLOEXEC: 0o2000000,
  EPOLL_CLOEXEC: 0o2000000,
  EPOLL_CTL_ADD: 1,
  EPOLL_CTL_DEL: 2,
  EPOLLIN: 0x001,
  EPOLLOUT: 0x004,
  EPOLLERR: 0x008,
  EPOLLHUP: 0x010,
  EPOLLONESHOT: 1 << 30,
  EINPROGRESS: 115,
  IPPROTO_IP: 0,
  IPPROTO_IPV6: 41,
  /** linux/in.h: path MTU discovery mode, and the MTU a connected socket's route knows. */
  IP_MTU_DISCOVER: 10,
  IP_MTU: 14,
  IP_PMTUDISC_DO: 2,
  /** linux/in6.h. */
  IPV6_MTU_DISCOVER: 23,
  IPV6_MTU: 24,
  IPV6_PMTUDISC_DO: 2,
} as const;

/** asm-generic/errno.h names of the errors a connect can end in. */
export const ERRNO_NAMES: Readonly<Record<number, string>> = {
  1: "EPERM",
  4: "EINTR",
  11: "EAGAIN",
  13: "EACCES",
  22: "EINVAL",
  24: "EMFILE",
  32: "EPIPE",
  90: "EMSGSIZE",
  97: "EAFNOSUPPORT",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
  100: "ENETDOWN",
  101: "ENETUNREACH",
  103: "ECONNABORTED",
  104: "ECONNRESET",
  110: "ETIMEDOUT",
  111: "ECONNREFUSED",
  112: "EHOSTDOWN",
  113: "EHOSTUNREACH",
};

/** Why libc could not be opened: one line for the log, with its cause. */
export class LibcUnavailable extends Error {
  override readonly name = "LibcUnavailable";
}

/**
 * Opens glibc from the first of {@link LIBC_PATHS} that exists, or throws a
 * {@link LibcUnavailable} saying why: not Linux, no such file, or no
 * `--allow-ffi` for it.
 */
export function openLibc(paths: readonly string[] = LIBC_PATHS): Libc {
  if (Deno.build.os !== "linux") {
    throw new LibcUnavailable(`Cannot open libc: current OS is ${Deno.build.os}, not linux`);
  }
  let lastError: unknown;
  for (const path of paths) {
    let library: Deno.DynamicLibrary<typeof SYMBOLS>;
    try {
      library = Deno.dlopen(path, SYMBOLS);
    } catch (error) {
      lastError = error;
      // No permission is the same answer for every path: say it once.
      if (
        error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied
      ) {
        break;
      }
      continue;
    }
    const errnoBuffer = new Int32Array(1);
    const symbols = library.symbols;
    return {
      path,
      symbols,
      errno() {
        symbols.memcpy(errnoBuffer, symbols.__errno_location(), 4n);
        return errnoBuffer[0]!;
      },
      close: () => library.close(),
    };
  }
  throw new LibcUnavailable(
    `Cannot open libc: current paths ${paths.join(", ")} failed`,
    { cause: lastError },
  );
}

const CSTRING = new TextEncoder();

/**
 * `address` (an IP, IPv6 with an optional `%zone`) and `port` as the C
 * `struct sockaddr_in` or `sockaddr_in6` a `connect` takes, with its family.
 * @throws {TypeError} when `address` is not an IP address.
 */
export function encodeSockaddr(
  libc: Libc,
  address: string,
  port: number,
): { family: number; bytes: Uint8Array<ArrayBuffer> } {
  const [host, zone] = address.split("%") as [string, string | undefined];
  const text = CSTRING.encode(`${host}\0`);
  const v4 = new Uint8Array(4);
  if (zone === undefined && libc.symbols.inet_pton(LINUX.AF_INET, text, v4) === 1) {
    // struct sockaddr_in (netinet/in.h): family, port (network order), address, 8 bytes of zero.
    const bytes = new Uint8Array(16);
    const view = new DataView(bytes.buffer);
    view.setUint16(0, LINUX.AF_INET, true);
    view.setUint16(2, port, false);
    bytes.set(v4, 4);
    return { family: LINUX.AF_INET, bytes };
  }
  // struct sockaddr_in6: family, port, flow info, 16-byte address, scope id.
  const bytes = new Uint8Array(28);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, LINUX.AF_INET6, true);
  view.setUint16(2, port, false);
  if (libc.symbols.inet_pton(LINUX.AF_INET6, text, bytes.subarray(8, 24)) !== 1) {
    throw new TypeError(`Cannot use ${address}: current value is not an IP address`);
  }
  if (zone !== undefined) {
    const scope = /^\d+$/.test(zone)
      ? Number(zone)
      : libc.symbols.if_nametoindex(CSTRING.encode(`${zone}\0`));
    view.setUint32(24, scope, true);
  }
  return { family: LINUX.AF_INET6, bytes };
}
