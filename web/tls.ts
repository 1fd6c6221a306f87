/**
 * TLS for the server, on one path for every configuration: the server
 * accepts plain TCP connections itself (Deno.listen, so the accept loop,
 * connection limit and deadlines are the same as for HTTP), and each one is
 * handed, once its first byte arrives, to a `node:tls` server of its own
 * that never listens (`server.emit("connection", stream)`), whose TLS socket
 * then carries the HTTP bytes.
 *
 * The first record is read and checked here before `node:tls` is involved
 * (client_hello.ts: Deno's `node:tls` leaks memory on malformed ones).
 *
 * Why not `Deno.listenTls`: in Deno 2.9 a `TlsConn` closed before its
 * handshake completed keeps its TCP socket open (denoland/deno#14547), so a
 * client that never sends a ClientHello holds a descriptor for ever; and it
 * cannot ask for client certificates. Why not a listening `node:tls` server:
 * its handshake timeout does not close the socket, and its connections are
 * outside the server's limit and deadlines. Here closing a connection closes
 * the `Deno.TcpConn` underneath, whatever the handshake's state. And why a
 * `node:tls` server per connection rather than one `TLSSocket`: in Deno 2.9
 * only the server verifies client certificates against `ca`; building one
 * costs about the same as the handshake's own setup (measured: 1.5 ms against
 * 0.9 ms with a shared server, both 3 ms of CPU per connection in all).
 * @module
 */

import type { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import type tls from "node:tls";
import type { ClientAuthType, TlsSettings } from "./config.ts";
import { concat, type Connection, writeAll } from "./server.ts";
import { checkClientHello, firstRecordBytes } from "./client_hello.ts";

/**
 * Whether a finished handshake is let through, per Go's `tls.ClientAuthType`:
 * the Verify policies check a certificate against the client CA when one is
 * given (RequireAndVerify also has the handshake refuse a missing or
 * unverified one); RequireAny wants a certificate, any; and with
 * `client_allowed_sans`, one of the certificate's SANs must be listed.
 */
function admits(socket: tls.TLSSocket, settings: TlsSettings): boolean {
  const certificate = socket.getPeerCertificate();
  const given = certificate !== null && Object.keys(certificate).length > 0;
  const byPolicy: Record<ClientAuthType, boolean> = {
    NoClientCert: true,
    RequestClientCert: true,
    RequireAnyClientCert: given,
    VerifyClientCertIfGiven: !given || socket.authorized,
    RequireAndVerifyClientCert: given && socket.authorized,
  };
  if (!byPolicy[settings.clientAuth]) return false;
  if (settings.allowedSans === undefined) return true;
  const sans = subjectAltNames(given ? certificate.subjectaltname : undefined);
  return sans.some((san) => settings.allowedSans!.includes(san));
}

/**
 * The values of a certificate's `subjectaltname` as Go lists them (DNS
 * names, e-mail addresses, IP addresses, URIs), without their kind.
 */
export function subjectAltNames(text: string | undefined): string[] {
  if (!text) return [];
  return text.split(/,\s*/).flatMap((entry) => {
    const match = /^(DNS|email|IP Address|URI):(.*)$/.exec(entry.trim());
    return match ? [match[2]!] : [];
  });
}

/** A `node:stream` Duplex over a Deno TCP connection, for `node:tls` to read and write. */
function streamOver(raw: Deno.TcpConn, first: Uint8Array): Duplex {
  let pending: Uint8Array | undefined = first;
  return new Duplex({
    read() {
      if (pending) {
        this.push(pending);
        pending = undefined;
        return;
      }
      const buffer = new Uint8Array(16 * 1024);
      raw.read(buffer).then(
        (read) => this.push(read === null ? null : buffer.subarray(0, read)),
        (error) => this.destroy(error),
      );
    },
    write(chunk: Uint8Array, _encoding, done) {
      writeAll(raw, chunk).then(() => done(), done);
    },
    final(done) {
      try {
        raw.closeWrite();
      } catch { /* closed */ }
      done();
    },
    destroy(error, done) {
      try {
        raw.close();
      } catch { /* closed */ }
      done(error);
    },
  });
}

type NodeTls = typeof import("node:tls");
let nodeTls: Promise<NodeTls> | undefined;

/**
 * Loaded on first use, not at start: an exporter without TLS (most of them)
 * does not carry `node:tls` in its resident memory.
 */
function loadNodeTls(): Promise<NodeTls> {
  nodeTls ??= import("node:tls").then((module) => module.default as unknown as NodeTls);
  return nodeTls;
}

/**
 * The TLS side of one accepted TCP connection: reads and writes plaintext
 * once the handshake is done and the client admitted. Closing it closes the
 * TCP connection at any stage.
 */
export class TlsConnection implements Connection {
  readonly #raw: Deno.TcpConn;
  readonly #settings: () => TlsSettings;
  #socket: tls.TLSSocket | undefined;
  #handshake: Promise<void> | undefined;
  readonly #chunks: Uint8Array[] = [];
  #ended = false;
  #closed = false;
  #failure: Error | undefined;
  #wake: (() => void) | undefined;
  /** Ends the wait for the handshake: called by its outcome or by close. */
  #handshakeSettled: (() => void) | undefined;

  /** `settings` is read when the handshake starts, so a renewed certificate counts for new clients. */
  constructor(raw: Deno.TcpConn, settings: () => TlsSettings) {
    this.#raw = raw;
    this.#settings = settings;
  }

  /**
   * The handshake: on the first read, once the client's whole first record
   * is in and is a ClientHello (client_hello.ts says why).
   */
  async #startHandshake(): Promise<void> {
    const first = await this.#readFirstRecord();
    if (first === undefined) return;
    const settings = this.#settings();
    const { createServer } = await loadNodeTls();
    if (this.#closed) return;
    const server = createServer({
      cert: settings.cert,
      key: settings.key,
      requestCert: settings.clientAuth !== "NoClientCert",
      // Only RequireAndVerify lets the handshake itself refuse; the others judge after it (admits).
      rejectUnauthorized: settings.clientAuth === "RequireAndVerifyClientCert",
      ...(settings.clientCa ? { ca: settings.clientCa } : {}),
      ...(settings.minVersion ? { minVersion: settings.minVersion } : {}),
    });
    await new Promise<void>((resolve) => {
      this.#handshakeSettled = resolve;
      server.on("tlsClientError", (error: Error, socket: tls.TLSSocket) => {
        this.#failure = error;
        socket.destroy();
        resolve();
      });
      server.on("secureConnection", (socket: tls.TLSSocket) => {
        if (this.#closed || !admits(socket, settings)) {
          this.#failure = new Error("Cannot admit the client: its certificate is not accepted");
          socket.destroy();
          resolve();
          return;
        }
        this.#socket = socket;
        socket.on("data", (chunk: Buffer) => {
          this.#chunks.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          // Read no further until the server asks: a client that sends a lot is held by TCP.
          socket.pause();
          this.#notify();
        });
        const ended = () => {
          this.#ended = true;
          this.#notify();
        };
        socket.on("end", ended);
        socket.on("close", ended);
        socket.on("error", (error: Error) => {
          this.#failure = error;
          this.#notify();
        });
        resolve();
      });
      server.emit("connection", streamOver(this.#raw, first));
    });
  }

  /** The first record, checked; undefined (and the connection ended) when there is none. */
  async #readFirstRecord(): Promise<Uint8Array | undefined> {
    let buffered: Uint8Array = new Uint8Array(0);
    const chunk = new Uint8Array(16 * 1024);
    for (;;) {
      let wanted: number | undefined;
      try {
        wanted = firstRecordBytes(buffered);
        if (wanted !== undefined && buffered.length >= wanted) {
          checkClientHello(buffered.subarray(0, wanted));
          return buffered;
        }
      } catch (error) {
        this.#failure = error as Error;
        return undefined;
      }
      const read = await this.#raw.read(chunk);
      if (read === null) {
        this.#ended = true;
        return undefined;
      }
      buffered = concat(buffered, chunk.subarray(0, read));
    }
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async read(into: Uint8Array): Promise<number | null> {
    this.#handshake ??= this.#startHandshake();
    await this.#handshake;
    while (this.#chunks.length === 0) {
      if (this.#failure) throw this.#failure;
      if (this.#ended || this.#closed || !this.#socket) return null;
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
      const socket = this.#socket;
      if (!socket || socket.destroyed) {
        reject(new Deno.errors.BrokenPipe("Cannot write: current connection is closed"));
        return;
      }
      socket.write(bytes, (error) => error ? reject(error) : resolve(bytes.length));
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket?.destroy();
    this.#handshakeSettled?.();
    try {
      this.#raw.close();
    } catch { /* closed with the TLS socket */ }
    this.#notify();
  }
}
