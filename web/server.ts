/**
 * The HTTP/1.1 server under the web layer: a `(Request) => Response`
 * handler served with the limits an exporter on every node needs, which
 * neither `Deno.serve` nor `node:http` gives (web/README.md lists each limit
 * and what happens at it):
 *
 * - an accept error (at the descriptor limit: EMFILE) waits and retries, as
 *   Go's net/http does, instead of ending the server;
 * - a head (and, over TLS, the handshake before it) must arrive within a
 *   deadline, and the deadline closes the TCP socket;
 * - at most `maxConnections` connections: at the limit, the connection that
 *   has waited longest without delivering a head (silent, dribbling, still
 *   handshaking, or idle on keep-alive) is closed for the new one, so slow
 *   clients cannot hold a scrape out;
 * - heads are parsed with bounded work (http1.ts) and a body is read and
 *   discarded, or the connection closed after the response: never parsed as
 *   a request;
 * - on shutdown the accept queue is drained and every request that arrives
 *   within the grace is answered, with `Connection: close`.
 * @module
 */

import { gzipSync } from "node:zlib";
import {
  acceptsGzip,
  HeadError,
  keepsAlive,
  parseHead,
  reasonPhrase,
  type RequestHead,
} from "./http1.ts";

/** What the server reads from and writes to: a TCP connection, or TLS over one. */
export interface Connection {
  read(into: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  close(): void;
}

/** Limits of one server; every field has a default for an exporter. */
export interface ServerLimits {
  /** From accept (or a kept-alive request's first byte) to the end of the head, TLS handshake included. */
  readonly headerTimeoutMs?: number;
  /** A kept-alive connection with no new request for this long is closed. */
  readonly idleTimeoutMs?: number;
  /** Time to write one response. */
  readonly writeTimeoutMs?: number;
  /** Connections held at once, handshaking ones included. */
  readonly maxConnections?: number;
  /** Bytes of one request head. */
  readonly maxHeaderBytes?: number;
  /** Header fields of one request (Deno.serve's limit is 100 too). */
  readonly maxHeaderFields?: number;
  /** A request body up to this size is read and discarded; a larger one gets 413 and a close. */
  readonly maxBodyBytes?: number;
  /** On shutdown, how long a connection that has sent nothing yet may take to send its request. */
  readonly shutdownGraceMs?: number;
}

/** Defaults of {@link ServerLimits}. */
export const DEFAULT_LIMITS: Readonly<Required<ServerLimits>> = {
  headerTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
  writeTimeoutMs: 30_000,
  maxConnections: 64,
  maxHeaderBytes: 16 * 1024,
  maxHeaderFields: 100,
  maxBodyBytes: 64 * 1024,
  shutdownGraceMs: 2_000,
};

/** How a server is made. */
export interface ServerOptions extends ServerLimits {
  /** Wraps each accepted TCP connection (TLS); absent: plain HTTP over it. */
  readonly wrap?: (raw: Deno.TcpConn) => Connection;
  /** Called when accepting fails (the server waits `retryInMs` and tries again). */
  readonly onAcceptError?: (error: unknown, retryInMs: number) => void;
  /** Called at each accepted connection, before any of it is read. */
  readonly onAccept?: () => void;
}

/** After an accept error, the first wait; doubled up to {@link ACCEPT_RETRY_MAX_MS}. */
const ACCEPT_RETRY_MIN_MS = 5;
const ACCEPT_RETRY_MAX_MS = 1_000;
/** On shutdown, the accept queue counts as drained after this long with no new connection. */
const DRAIN_QUIET_MS = 50;
const DRAIN_MAX_MS = 5_000;
/**
 * A connection may be displaced once it has waited this long for its head:
 * long enough that a request already in the socket has been read (a whole
 * head is parsed at once, and then the connection is busy), short enough that
 * a queue of hundreds of slow connections is cycled through within a second
 * (the cap every 100 ms), so a scrape behind them is reached.
 */
const DISPLACE_AFTER_MS = 100;
/** While draining, how long a kept-alive connection may take to send its next request. */
const KEEPALIVE_GRACE_MS = 500;
/** Bodies shorter than this are sent as they are, even to a client that takes gzip. */
const GZIP_ABOVE_BYTES = 1_024;
/** Head and body go out in one write up to this size; a larger body is not copied again for it. */
const ONE_WRITE_BYTES = 1024 * 1024;

const encoder = new TextEncoder();

interface Slot {
  readonly conn: Connection;
  /** Handling or writing a request: not to be displaced. */
  busy: boolean;
  /** Answered at least one request. */
  served: boolean;
  /** Since when it has been waiting for a head (accept, or the end of its last response). */
  waitingSince: number;
  /** Waiting for the first byte of a request (on keep-alive or since accept). */
  waitingFirstByte: boolean;
  /** Closes the connection when the current wait is over. */
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Bytes received and not yet used. */
  buffered: Uint8Array;
}

/** A running server; {@link shutdown} it to stop. */
export class HttpServer {
  readonly addr: Deno.NetAddr;
  readonly #listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  readonly #handler: (request: Request) => Promise<Response>;
  readonly #options: Required<ServerLimits> & ServerOptions;
  readonly #slots = new Set<Slot>();
  readonly #served = new Set<Promise<void>>();
  readonly #acceptLoop: Promise<void>;
  #draining = false;
  #closing = false;
  /** The accept loop waits for a free slot: the queue is not drained while it does. */
  #full = false;
  #slotFreed: () => void = () => {};
  #lastAcceptAt = 0;

  constructor(
    listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>,
    handler: (request: Request) => Promise<Response>,
    options: ServerOptions = {},
  ) {
    this.#listener = listener;
    this.addr = listener.addr;
    this.#handler = handler;
    this.#options = { ...DEFAULT_LIMITS, ...options };
    this.#acceptLoop = this.#accept();
  }

  /** Connections open now. */
  get connections(): number {
    return this.#slots.size;
  }

  /**
   * Stops accepting once the accept queue is drained, answers every request
   * that arrives within the grace (closing each connection after its
   * response), and resolves when all connections are closed.
   */
  async shutdown(): Promise<void> {
    if (this.#draining) return await this.#acceptLoop;
    this.#draining = true;
    // Connections waiting for a request get the grace to send one, then close.
    for (const slot of this.#slots) {
      if (!slot.busy && slot.waitingFirstByte) this.#deadline(slot, this.#firstByteMs(slot));
    }
    this.#lastAcceptAt = performance.now();
    const startedAt = this.#lastAcceptAt;
    while (
      (this.#full || performance.now() - this.#lastAcceptAt < DRAIN_QUIET_MS) &&
      performance.now() - startedAt < DRAIN_MAX_MS
    ) {
      await delay(DRAIN_QUIET_MS / 5);
    }
    this.#closing = true;
    this.#slotFreed();
    try {
      this.#listener.close();
    } catch { /* already closed */ }
    await this.#acceptLoop;
    await Promise.allSettled([...this.#served]);
  }

  async #accept(): Promise<void> {
    let retryInMs = 0;
    while (!this.#closing) {
      // At the limit the slowest head makes room; while every connection is mid-request,
      // new ones wait in the queue.
      for (;;) {
        if (this.#slots.size < this.#options.maxConnections) break;
        const waitMs = this.#displaceSlowest();
        if (waitMs === 0) break;
        this.#full = true;
        let timer: ReturnType<typeof setTimeout> | undefined;
        await new Promise<void>((resolve) => {
          this.#slotFreed = resolve;
          if (waitMs !== undefined) timer = setTimeout(resolve, waitMs);
        });
        clearTimeout(timer);
      }
      this.#full = false;
      if (this.#closing) return;
      let raw: Deno.TcpConn;
      try {
        raw = await this.#listener.accept();
      } catch (error) {
        if (this.#closing) return;
        if (error instanceof Deno.errors.BadResource) return;
        retryInMs = Math.min(Math.max(retryInMs * 2, ACCEPT_RETRY_MIN_MS), ACCEPT_RETRY_MAX_MS);
        this.#options.onAcceptError?.(error, retryInMs);
        await delay(retryInMs);
        continue;
      }
      retryInMs = 0;
      this.#lastAcceptAt = performance.now();
      // As Go's net/http: no Nagle delay between a response's writes.
      raw.setNoDelay(true);
      this.#options.onAccept?.();
      const slot: Slot = {
        conn: this.#options.wrap ? this.#options.wrap(raw) : raw,
        busy: false,
        served: false,
        waitingSince: performance.now(),
        waitingFirstByte: true,
        timer: undefined,
        buffered: new Uint8Array(),
      };
      this.#slots.add(slot);
      const served = this.#serve(slot).catch(() => {}).finally(() => {
        clearTimeout(slot.timer);
        this.#slots.delete(slot);
        this.#slotFreed();
        this.#served.delete(served);
        close(slot.conn);
      });
      this.#served.add(served);
    }
  }

  /**
   * Closes the connection that has waited longest for its head (or its next
   * request on keep-alive), of those not in the middle of a response, once
   * it has waited {@link DISPLACE_AFTER_MS}. Returns 0 when one was closed,
   * else the milliseconds until one may be, or undefined when every
   * connection is mid-response.
   */
  #displaceSlowest(): number | undefined {
    let slowest: Slot | undefined;
    for (const slot of this.#slots) {
      if (!slot.busy && (!slowest || slot.waitingSince < slowest.waitingSince)) slowest = slot;
    }
    if (!slowest) return undefined;
    const waitMs = slowest.waitingSince + DISPLACE_AFTER_MS - performance.now();
    if (waitMs > 0) return Math.ceil(waitMs);
    this.#slots.delete(slowest);
    close(slowest.conn);
    return 0;
  }

  /** (Re)arms the timer that closes `slot`'s connection in `ms`. */
  #deadline(slot: Slot, ms: number): void {
    clearTimeout(slot.timer);
    slot.timer = setTimeout(() => close(slot.conn), ms);
  }

  /**
   * How long `slot` may wait for the first byte of its next request. While
   * draining, a kept-alive connection still gets a moment: under steady load
   * its next request is already on the way, and it is answered (with
   * `Connection: close`) rather than cut off unanswered.
   */
  #firstByteMs(slot: Slot): number {
    const { headerTimeoutMs, idleTimeoutMs, shutdownGraceMs } = this.#options;
    if (!this.#draining) return slot.served ? idleTimeoutMs : headerTimeoutMs;
    return slot.served
      ? Math.min(shutdownGraceMs, KEEPALIVE_GRACE_MS)
      : Math.min(shutdownGraceMs, headerTimeoutMs);
  }

  async #serve(slot: Slot): Promise<void> {
    const { headerTimeoutMs } = this.#options;
    for (;;) {
      slot.waitingSince = performance.now();
      slot.waitingFirstByte = slot.buffered.length === 0;
      // A new connection's head deadline runs from accept; a kept-alive one's from its first byte.
      this.#deadline(slot, slot.waitingFirstByte ? this.#firstByteMs(slot) : headerTimeoutMs);
      let head: RequestHead | undefined;
      try {
        head = await this.#readHead(slot);
        if (head && !(await this.#skipBody(slot, head))) {
          slot.busy = true;
          await this.#write(slot, plain(413, "Request body too large"), false, head);
          return;
        }
      } catch (error) {
        if (error instanceof HeadError) {
          slot.busy = true;
          await this.#write(slot, plain(error.status, error.message), false);
        }
        return;
      }
      clearTimeout(slot.timer);
      if (head === undefined) return; // closed, or nothing in time
      slot.busy = true;
      // A chunked body is not read: the connection closes after the response.
      const keepAlive = keepsAlive(head) && !head.chunked && !this.#draining;
      const response = await this.#respond(head);
      // A target the URL parser refused is answered 400 and, like every refused head, closes.
      const written = await this.#write(slot, response, keepAlive && response.status !== 400, head);
      slot.busy = false;
      slot.served = true;
      if (!written || !keepAlive || this.#draining) return;
    }
  }

  /**
   * Reads one request head. `undefined` when the client closed, or the
   * deadline closed the connection, before a whole head came.
   */
  async #readHead(slot: Slot): Promise<RequestHead | undefined> {
    const { headerTimeoutMs } = this.#options;
    const limits = this.#options;
    const chunk = new Uint8Array(16 * 1024);
    for (;;) {
      if (slot.buffered.length > 0) {
        const parsed = parseHead(slot.buffered, limits);
        if (parsed.complete) {
          slot.buffered = slot.buffered.slice(parsed.consumed);
          return parsed.head;
        }
      }
      let read: number | null;
      try {
        read = await slot.conn.read(chunk);
      } catch {
        return undefined; // closed by the deadline or the client, or the TLS handshake failed
      }
      if (read === null) return undefined;
      if (slot.waitingFirstByte) {
        slot.waitingFirstByte = false;
        if (slot.served) this.#deadline(slot, headerTimeoutMs);
      }
      slot.buffered = concat(slot.buffered, chunk.subarray(0, read));
    }
  }

  /**
   * Reads and drops a Content-Length body, within the head's deadline. False
   * when it is larger than the server takes.
   */
  async #skipBody(slot: Slot, head: RequestHead): Promise<boolean> {
    let remaining = head.contentLength;
    if (remaining === 0) return true;
    if (remaining > this.#options.maxBodyBytes) return false;
    const chunk = new Uint8Array(16 * 1024);
    for (;;) {
      const take = Math.min(remaining, slot.buffered.length);
      slot.buffered = slot.buffered.slice(take);
      remaining -= take;
      if (remaining === 0) return true;
      const read = await slot.conn.read(chunk);
      if (read === null) throw new Deno.errors.UnexpectedEof("Cannot read the request body");
      slot.buffered = chunk.slice(0, read);
    }
  }

  async #respond(head: RequestHead): Promise<Response> {
    let url: URL;
    try {
      // The asterisk-form (RFC 9112 §3.2.4) is OPTIONS's only; the handler sees the path "/*", as
      // with Deno.serve.
      const target = head.target === "*" && head.method === "OPTIONS" ? "/*" : head.target;
      url = target.startsWith("/") ? new URL(`http://localhost${target}`) : new URL(target);
      if (url.protocol !== "http:" && url.protocol !== "https:") throw new TypeError(url.protocol);
    } catch {
      return plain(400, "Cannot parse the request target");
    }
    const headers = new Headers();
    for (const [name, value] of head.headers) headers.append(name, value);
    try {
      return await this.#handler(new Request(url, { method: head.method, headers }));
    } catch (error) {
      return plain(500, `Cannot answer: ${error instanceof Error ? error.message : error}`);
    }
  }

  /** Writes a response; false when the client went away or was too slow. */
  async #write(
    slot: Slot,
    response: Response,
    keepAlive: boolean,
    request?: RequestHead,
  ): Promise<boolean> {
    let body: Uint8Array = new Uint8Array(
      await response.arrayBuffer().catch(() => new ArrayBuffer(0)),
    );
    const headers = new Headers(response.headers);
    const acceptEncoding = request?.headers.find(([name]) => name === "accept-encoding")?.[1];
    if (
      body.length > GZIP_ABOVE_BYTES && !headers.has("content-encoding") &&
      acceptsGzip(acceptEncoding ?? null)
    ) {
      body = gzipSync(body, { level: 1 });
      headers.set("content-encoding", "gzip");
    }
    if (body.length > GZIP_ABOVE_BYTES) headers.append("vary", "Accept-Encoding");
    headers.set("content-length", String(body.length));
    headers.set("connection", keepAlive ? "keep-alive" : "close");
    headers.set("date", new Date().toUTCString());
    const reason = response.statusText || reasonPhrase(response.status);
    let text = `HTTP/1.1 ${response.status} ${reason}\r\n`;
    for (const [name, value] of headers) text += `${name}: ${value}\r\n`;
    const head = encoder.encode(`${text}\r\n`);
    if (request?.method === "HEAD") body = new Uint8Array();
    this.#deadline(slot, this.#options.writeTimeoutMs);
    try {
      // One write where it fits, so no part of a response waits on the peer's delayed ACK.
      if (body.length <= ONE_WRITE_BYTES) {
        await writeAll(slot.conn, concat(head, body));
      } else {
        await writeAll(slot.conn, head);
        await writeAll(slot.conn, body);
      }
      return true;
    } catch {
      return false;
    } finally {
      clearTimeout(slot.timer);
    }
  }
}

/** A one-line plain-text answer, with any further headers. */
export function plain(
  status: number,
  text: string,
  headers: Readonly<Record<string, string>> = {},
): Response {
  return new Response(`${text}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}

/** Writes all of `bytes`, however many writes it takes. */
export async function writeAll(conn: Connection, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) {
    written += await conn.write(bytes.subarray(written));
  }
}

/** A new array holding `a` then `b` (never a view of either: reads reuse their buffer). */
export function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}

function close(conn: Connection): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
