/**
 * A small HTTP/1.1 server for a `(Request) => Response` handler, with the
 * limits an exporter on every node needs and `Deno.serve` does not give:
 *
 * - an accept error (at the descriptor limit: EMFILE) waits and retries, as
 *   Go's net/http does, instead of ending the server (Deno 2.9's `Deno.serve`
 *   rejects its `finished` promise and stops serving; node:http stops
 *   answering);
 * - a request head must arrive within a deadline and a size cap (slowloris),
 *   and a kept-alive connection with no request is closed after a while;
 * - at most `maxConnections` connections: a new one displaces the one idle
 *   longest (holding no part of a request), so idle clients cannot lock out
 *   a scrape; when every one is mid-request, new ones wait in the queue;
 * - on shutdown the accept queue is drained, and every connection accepted
 *   gets its request answered, with `Connection: close`.
 *
 * It serves what an exporter serves: GET and HEAD with small heads and no
 * request bodies (a request with one is answered 413). Responses are read
 * whole, so they carry a Content-Length, and gzipped when asked and worth it.
 * @module
 */

import { gzipSync } from "node:zlib";
import { writeAll } from "./io.ts";
import { type ClientAuthType, listenMutualTls } from "./mutual_tls.ts";

/** Limits of one server; every field has a default for an exporter. */
export interface HttpServerOptions {
  /** From accept (or the first byte of a later request) to the end of the request head. */
  readonly headerTimeoutMs?: number;
  /** A kept-alive connection with no new request for this long is closed. */
  readonly idleTimeoutMs?: number;
  /** Time to write one response. */
  readonly writeTimeoutMs?: number;
  /** Connections held at once. */
  readonly maxConnections?: number;
  /** Bytes of one request head. */
  readonly maxHeaderBytes?: number;
  /** On shutdown, how long a connection that has sent nothing yet may take to send its request. */
  readonly shutdownGraceMs?: number;
  /** Called when accepting fails (the server waits `retryInMs` and tries again). */
  readonly onAcceptError?: (error: unknown, retryInMs: number) => void;
}

const DEFAULTS: Required<Omit<HttpServerOptions, "onAcceptError">> = {
  headerTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
  writeTimeoutMs: 30_000,
  maxConnections: 64,
  maxHeaderBytes: 16 * 1024,
  shutdownGraceMs: 2_000,
};

/** After an accept error, the first wait; doubled up to {@link ACCEPT_RETRY_MAX_MS}. */
const ACCEPT_RETRY_MIN_MS = 5;
const ACCEPT_RETRY_MAX_MS = 1_000;
/** On shutdown, the accept queue counts as drained after this long with no new connection. */
const DRAIN_QUIET_MS = 50;
const DRAIN_MAX_MS = 5_000;
/**
 * A connection silent this long may be displaced: a client sends its request
 * within milliseconds of connecting, and its bytes may not have been read yet.
 */
const DISPLACE_AFTER_MS = 1_000;
/** Bodies shorter than this are sent as they are, even to a client that takes gzip. */
const GZIP_ABOVE_BYTES = 1_024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Connection {
  readonly conn: Deno.Conn;
  /** Handling or writing a request: not to be displaced. */
  busy: boolean;
  /** When it last finished a response or was accepted (for displacing the longest idle). */
  idleSince: number;
  /** Answered at least one request. */
  served: boolean;
  /** Bytes received and not yet used. */
  buffered: Uint8Array;
}

interface RequestHead {
  readonly method: string;
  readonly target: string;
  readonly version: "HTTP/1.0" | "HTTP/1.1";
  readonly headers: Headers;
}

/** A rejected request: answered with `status` and the connection closed. */
class BadRequest extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** A running server; {@link shutdown} it to stop. */
export class HttpServer {
  readonly addr: Deno.NetAddr;
  readonly #listener: Deno.Listener;
  readonly #handler: (request: Request) => Promise<Response>;
  readonly #options: Required<Omit<HttpServerOptions, "onAcceptError">> & HttpServerOptions;
  readonly #connections = new Set<Connection>();
  readonly #served = new Set<Promise<void>>();
  readonly #acceptLoop: Promise<void>;
  #draining = false;
  #closing = false;
  /** The accept loop waits for a free slot: the queue is not drained while it does. */
  #full = false;
  #slotFreed: () => void = () => {};
  #lastAcceptAt = 0;

  constructor(
    listener: Deno.Listener,
    handler: (request: Request) => Promise<Response>,
    options: HttpServerOptions = {},
  ) {
    this.#listener = listener;
    this.addr = listener.addr as Deno.NetAddr;
    this.#handler = handler;
    this.#options = { ...DEFAULTS, ...options };
    this.#acceptLoop = this.#accept();
  }

  /** Connections open now. */
  get connections(): number {
    return this.#connections.size;
  }

  /**
   * Stops accepting once the accept queue is drained, answers every request
   * of the connections accepted (closing each after its response), and
   * resolves when all are closed.
   */
  async shutdown(): Promise<void> {
    if (this.#draining) return await this.#acceptLoop;
    this.#draining = true;
    this.#closeAnswered();
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
    this.#closeAnswered();
    await Promise.allSettled([...this.#served]);
  }

  /** Closes the connections waiting on keep-alive: they have had their answers. */
  #closeAnswered(): void {
    for (const connection of this.#connections) {
      if (!connection.busy && connection.served && connection.buffered.length === 0) {
        close(connection.conn);
      }
    }
  }

  async #accept(): Promise<void> {
    let retryInMs = 0;
    while (!this.#closing) {
      // At the limit, a connection with nothing of a request in it makes room;
      // if every one is in the middle of a request, new ones wait in the queue.
      while (this.#connections.size >= this.#options.maxConnections && !this.#displaceIdle()) {
        this.#full = true;
        await Promise.race([
          new Promise<void>((resolve) => (this.#slotFreed = resolve)),
          delay(DISPLACE_AFTER_MS / 4),
        ]);
      }
      this.#full = false;
      if (this.#closing) return;
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
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
      // As Go's net/http: no Nagle delay between a response's head and body writes.
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
      const connection: Connection = {
        conn,
        busy: false,
        idleSince: performance.now(),
        served: false,
        buffered: new Uint8Array(),
      };
      this.#connections.add(connection);
      const served = this.#serve(connection).finally(() => {
        this.#connections.delete(connection);
        this.#slotFreed();
        this.#served.delete(served);
        close(conn);
      });
      this.#served.add(served);
    }
  }

  /**
   * Closes the connection idle longest, of those holding no part of a
   * request for {@link DISPLACE_AFTER_MS}: waiting on keep-alive, or accepted
   * and silent since. False when there is none.
   */
  #displaceIdle(): boolean {
    const now = performance.now();
    let oldest: Connection | undefined;
    for (const connection of this.#connections) {
      if (
        !connection.busy && connection.buffered.length === 0 &&
        now - connection.idleSince >= DISPLACE_AFTER_MS &&
        (!oldest || connection.idleSince < oldest.idleSince)
      ) {
        oldest = connection;
      }
    }
    if (!oldest) return false;
    this.#connections.delete(oldest);
    close(oldest.conn);
    return true;
  }

  async #serve(connection: Connection): Promise<void> {
    const { headerTimeoutMs, idleTimeoutMs, shutdownGraceMs } = this.#options;
    for (;;) {
      let head: RequestHead | undefined;
      try {
        const waitMs = !connection.served
          ? (this.#draining ? Math.min(headerTimeoutMs, shutdownGraceMs) : headerTimeoutMs)
          : idleTimeoutMs;
        head = await this.#readHead(connection, waitMs);
      } catch (error) {
        if (error instanceof BadRequest) {
          connection.busy = true;
          await this.#write(connection, plain(error.status, error.message), false, false);
        }
        return;
      }
      if (head === undefined) return; // closed, or no request in time
      connection.busy = true;
      const keepAlive = wantsKeepAlive(head) && !this.#draining;
      const response = await this.#respond(head);
      const written = await this.#write(
        connection,
        response,
        keepAlive,
        head.method === "HEAD",
        head,
      );
      connection.busy = false;
      connection.served = true;
      connection.idleSince = performance.now();
      if (!written || !keepAlive || this.#draining) return;
    }
  }

  async #respond(head: RequestHead): Promise<Response> {
    if (
      head.headers.has("transfer-encoding") || Number(head.headers.get("content-length") ?? 0) > 0
    ) {
      return plain(413, "Request bodies are not accepted");
    }
    let url: URL;
    try {
      url = head.target.startsWith("/")
        ? new URL(`http://localhost${head.target}`)
        : new URL(head.target);
    } catch {
      return plain(400, "Cannot parse the request target");
    }
    try {
      return await this.#handler(new Request(url, { method: head.method, headers: head.headers }));
    } catch (error) {
      return plain(500, `Cannot answer: ${error instanceof Error ? error.message : error}`);
    }
  }

  /**
   * Reads one request head: the first byte within `waitMs`, the rest within
   * the header deadline of it. `undefined` when the client closed or timed
   * out before sending anything.
   */
  async #readHead(connection: Connection, waitMs: number): Promise<RequestHead | undefined> {
    const { headerTimeoutMs, maxHeaderBytes } = this.#options;
    let timer = setTimeout(() => close(connection.conn), waitMs);
    let started = connection.buffered.length > 0;
    if (started) {
      clearTimeout(timer);
      timer = setTimeout(() => close(connection.conn), headerTimeoutMs);
    }
    try {
      const chunk = new Uint8Array(4096);
      for (;;) {
        const end = headEnd(connection.buffered);
        if (end > maxHeaderBytes) throw new BadRequest(431, "Request head too large");
        if (end !== -1) {
          const head = connection.buffered.subarray(0, end);
          connection.buffered = connection.buffered.slice(end + 4);
          return parseHead(decoder.decode(head));
        }
        if (connection.buffered.length > maxHeaderBytes) {
          throw new BadRequest(431, "Request head too large");
        }
        let read: number | null;
        try {
          read = await connection.conn.read(chunk);
        } catch {
          return undefined; // closed by the deadline or by the client
        }
        if (read === null) return undefined;
        if (!started) {
          started = true;
          clearTimeout(timer);
          timer = setTimeout(() => close(connection.conn), headerTimeoutMs);
        }
        connection.buffered = concat(connection.buffered, chunk.subarray(0, read));
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Writes a response; false when the client went away or was too slow. */
  async #write(
    connection: Connection,
    response: Response,
    keepAlive: boolean,
    headOnly: boolean,
    request?: RequestHead,
  ): Promise<boolean> {
    let body: Uint8Array = new Uint8Array(
      await response.arrayBuffer().catch(() => new ArrayBuffer(0)),
    );
    const headers = new Headers(response.headers);
    if (
      body.length > GZIP_ABOVE_BYTES && !headers.has("content-encoding") &&
      /\bgzip\b/i.test(request?.headers.get("accept-encoding") ?? "")
    ) {
      body = gzip(body);
      headers.set("content-encoding", "gzip");
      headers.append("vary", "Accept-Encoding");
    }
    headers.set("content-length", String(body.length));
    headers.set("connection", keepAlive ? "keep-alive" : "close");
    headers.set("date", new Date().toUTCString());
    let text = `HTTP/1.1 ${response.status} ${
      response.statusText || reasonPhrase(response.status)
    }\r\n`;
    for (const [name, value] of headers) text += `${name}: ${value}\r\n`;
    const headBytes = encoder.encode(`${text}\r\n`);
    const timer = setTimeout(() => close(connection.conn), this.#options.writeTimeoutMs);
    try {
      // Head and body in two writes: joined, a 10 MB exposition would be copied once more.
      await writeAll(connection.conn, headBytes);
      if (!headOnly && body.length > 0) await writeAll(connection.conn, body);
      return true;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** TLS of a server: PEM chain and key, and whether clients must show certificates. */
export interface ServerTls {
  readonly cert: string;
  readonly key: string;
  /** The exporter-toolkit's `client_auth_type`; NoClientCert when absent. */
  readonly clientAuth?: ClientAuthType;
  /** PEM CAs of client certificates (`client_ca_file`). */
  readonly clientCa?: string;
}

/**
 * Listens on `hostname:port` (over TLS when `options.tls` holds a PEM
 * certificate and key; the handshake happens on the first read, under the
 * header deadline — or, when client certificates are asked for, through
 * `node:tls` within the same deadline, see mutual_tls.ts) and serves
 * `handler` with the limits in `options`.
 */
export async function serveHttp(
  address: { hostname: string; port: number },
  handler: (request: Request) => Promise<Response>,
  options: HttpServerOptions & { readonly tls?: ServerTls } = {},
): Promise<HttpServer> {
  const tls = options.tls;
  let listener: Deno.Listener;
  if (tls && (tls.clientAuth ?? "NoClientCert") !== "NoClientCert") {
    listener = await listenMutualTls({
      ...address,
      cert: tls.cert,
      key: tls.key,
      clientAuth: tls.clientAuth as Exclude<ClientAuthType, "NoClientCert">,
      ...(tls.clientCa ? { clientCa: tls.clientCa } : {}),
      handshakeTimeoutMs: options.headerTimeoutMs ?? DEFAULTS.headerTimeoutMs,
      // Handshakes in flight count against the descriptors too; twice the HTTP connections.
      maxConnections: 2 * (options.maxConnections ?? DEFAULTS.maxConnections),
    });
  } else {
    listener = tls
      ? Deno.listenTls({ ...address, cert: tls.cert, key: tls.key, transport: "tcp" })
      : Deno.listen({ ...address, transport: "tcp" });
  }
  return new HttpServer(listener, handler, options);
}

function wantsKeepAlive(head: RequestHead): boolean {
  const connection = (head.headers.get("connection") ?? "").toLowerCase();
  if (head.version === "HTTP/1.0") return /\bkeep-alive\b/.test(connection);
  return !/\bclose\b/.test(connection);
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function parseHead(text: string): RequestHead {
  const [requestLine = "", ...lines] = text.split("\r\n");
  const parts = requestLine.split(" ");
  if (parts.length !== 3 || !TOKEN.test(parts[0]!) || parts[1] === "") {
    throw new BadRequest(400, "Cannot parse the request line");
  }
  const [method, target, version] = parts as [string, string, string];
  if (version !== "HTTP/1.1" && version !== "HTTP/1.0") {
    throw new BadRequest(505, "HTTP version not supported");
  }
  const headers = new Headers();
  for (const line of lines) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon);
    if (colon <= 0 || !TOKEN.test(name)) throw new BadRequest(400, "Cannot parse a header");
    try {
      headers.append(name, line.slice(colon + 1).trim());
    } catch {
      throw new BadRequest(400, "Cannot parse a header");
    }
  }
  return { method, target, version, headers };
}

/** Index of the CRLF CRLF that ends a head, or -1. */
function headEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      return i;
    }
  }
  return -1;
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

const REASONS: Readonly<Record<number, string>> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  413: "Content Too Large",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

function reasonPhrase(status: number): string {
  return REASONS[status] ?? "Status";
}

/**
 * Gzip at level 1 in one synchronous call (node:zlib). Streaming through a
 * CompressionStream was tried for large bodies, so that a big exposition would
 * not hold the event loop in one piece; but its chunks run on this thread too,
 * at its default level: for a 500-target exposition (1.1 MB) 6 ms against
 * 0.5 ms, for 10 MB of exposition text 18 ms against 2.6 ms (measured here), and
 * for small bodies its fixed cost cut a busy scraper's throughput to a third.
 */
function gzip(body: Uint8Array): Uint8Array {
  return gzipSync(body, { level: 1 });
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}

function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
