/**
 * A TLS listener that asks clients for certificates, for the exporter-toolkit's
 * `client_auth_type`. `Deno.listenTls` cannot request a client certificate;
 * `node:tls` can (Deno 2.8 and later send the CertificateRequest and verify
 * the chain against `ca`), so this wraps a `node:tls` server in the small part
 * of `Deno.Listener` and `Deno.Conn` the HTTP server uses: `accept`, `close`,
 * `addr`; `read`, `write`, `close`.
 * @module
 */

import type { Buffer } from "node:buffer";
import type tls from "node:tls";

/** The exporter-toolkit's (Go's) client authentication policies. */
export const CLIENT_AUTH_TYPES = [
  "NoClientCert",
  "RequestClientCert",
  "RequireAnyClientCert",
  "VerifyClientCertIfGiven",
  "RequireAndVerifyClientCert",
] as const;
export type ClientAuthType = typeof CLIENT_AUTH_TYPES[number];

/** What the listener needs. */
export interface MutualTlsOptions {
  readonly hostname: string;
  readonly port: number;
  /** PEM chain and key of the server. */
  readonly cert: string;
  readonly key: string;
  readonly clientAuth: Exclude<ClientAuthType, "NoClientCert">;
  /** PEM CAs that sign client certificates; required by the Verify policies. */
  readonly clientCa?: string;
  /** A handshake not done by then is dropped. */
  readonly handshakeTimeoutMs: number;
  /** Connections held by the TLS server at once (handshaking or queued), beyond which it refuses. */
  readonly maxConnections: number;
}

/**
 * Whether a finished handshake is let through, per Go's semantics: the
 * Verify policies check a certificate against `clientCa` when one is given
 * (and RequireAndVerify has the handshake itself refuse a missing or
 * unverified one); RequireAny wants a certificate, any.
 */
function admits(socket: tls.TLSSocket, clientAuth: MutualTlsOptions["clientAuth"]): boolean {
  const certificate = socket.getPeerCertificate();
  const given = certificate !== null && Object.keys(certificate).length > 0;
  switch (clientAuth) {
    case "RequestClientCert":
      return true;
    case "RequireAnyClientCert":
      return given;
    case "VerifyClientCertIfGiven":
      return !given || socket.authorized;
    case "RequireAndVerifyClientCert":
      return given && socket.authorized;
  }
}

/** One accepted connection as a `Deno.Conn` (read, write, close). */
class TlsSocketConn {
  readonly #socket: tls.TLSSocket;
  readonly #chunks: Uint8Array[] = [];
  #ended = false;
  #failure: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(socket: tls.TLSSocket) {
    this.#socket = socket;
    socket.on("data", (chunk: Buffer) => {
      this.#chunks.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      // Read no further until the server asks: a client that sends a lot is held by TCP.
      socket.pause();
      this.#notify();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("error", (error: Error) => {
      this.#failure = error;
      this.#notify();
    });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async read(into: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#failure) throw this.#failure;
      if (this.#ended) return null;
      this.#socket.resume();
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    const chunk = this.#chunks[0]!;
    const size = Math.min(chunk.length, into.length);
    into.set(chunk.subarray(0, size));
    if (size === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(size);
    return size;
  }

  write(bytes: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => {
      if (this.#socket.destroyed) {
        reject(new Deno.errors.BrokenPipe("Cannot write: current connection is closed"));
        return;
      }
      this.#socket.write(bytes, (error) => error ? reject(error) : resolve(bytes.length));
    });
  }

  close(): void {
    if (this.#socket.destroyed) {
      throw new Deno.errors.BadResource("Cannot close: current connection is closed");
    }
    this.#socket.destroy();
  }
}

/** The listener: handshaken, admitted connections queue here until the HTTP server accepts them. */
class MutualTlsListener {
  readonly addr: Deno.NetAddr;
  readonly #server: tls.Server;
  readonly #queue: TlsSocketConn[] = [];
  #waiting: ((conn: TlsSocketConn | undefined) => void) | undefined;
  #closed = false;

  constructor(server: tls.Server, addr: Deno.NetAddr) {
    this.#server = server;
    this.addr = addr;
  }

  /** Called with each connection whose handshake finished and whose certificate is admitted. */
  offer(conn: TlsSocketConn): void {
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting) waiting(conn);
    else this.#queue.push(conn);
  }

  async accept(): Promise<TlsSocketConn> {
    const queued = this.#queue.shift();
    if (queued) return queued;
    if (this.#closed) {
      throw new Deno.errors.BadResource("Cannot accept: current listener is closed");
    }
    const conn = await new Promise<TlsSocketConn | undefined>((
      resolve,
    ) => (this.#waiting = resolve));
    if (!conn) throw new Deno.errors.BadResource("Cannot accept: current listener is closed");
    return conn;
  }

  close(): void {
    if (this.#closed) throw new Deno.errors.BadResource("Cannot close: current listener is closed");
    this.#closed = true;
    this.#server.close();
    for (const conn of this.#queue.splice(0)) {
      try {
        conn.close();
      } catch { /* gone */ }
    }
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.(undefined);
  }
}

/**
 * Listens for TLS connections that present client certificates as
 * `options.clientAuth` asks. Resolves once bound; rejects (e.g. address in
 * use) with the server's error. `node:tls` is loaded here, on first use, not
 * at start: an exporter that asks no client certificates (most of them) does
 * not carry its resident memory.
 */
export async function listenMutualTls(options: MutualTlsOptions): Promise<Deno.Listener> {
  const verify = options.clientAuth === "VerifyClientCertIfGiven" ||
    options.clientAuth === "RequireAndVerifyClientCert";
  if (verify && !options.clientCa) {
    throw new Error(
      `Cannot verify client certificates: current client_auth_type ${options.clientAuth} has no client CA`,
    );
  }
  const { default: nodeTls } = await import("node:tls");
  const server = nodeTls.createServer({
    cert: options.cert,
    key: options.key,
    requestCert: true,
    // Only RequireAndVerify lets the handshake itself refuse; the others judge after it (admits).
    rejectUnauthorized: options.clientAuth === "RequireAndVerifyClientCert",
    ...(options.clientCa ? { ca: options.clientCa } : {}),
    handshakeTimeout: options.handshakeTimeoutMs,
  });
  server.maxConnections = options.maxConnections;
  // A failed handshake (no or a wrong certificate, a timeout) ends that connection only.
  server.on("tlsClientError", () => {});
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: options.hostname, port: options.port }, () => {
      server.off("error", reject);
      const bound = server.address() as { address: string; port: number };
      const listener = new MutualTlsListener(server, {
        transport: "tcp",
        hostname: bound.address,
        port: bound.port,
      });
      server.on("secureConnection", (socket: tls.TLSSocket) => {
        socket.setNoDelay(true);
        if (!admits(socket, options.clientAuth)) {
          socket.destroy();
          return;
        }
        listener.offer(new TlsSocketConn(socket));
      });
      resolve(listener as unknown as Deno.Listener);
    });
  });
}
