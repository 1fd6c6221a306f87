/**
 * The HTTP/1.1 request head (RFC 9112), parsed from bytes with bounded work:
 * one pass over at most `maxHeaderBytes` bytes, at most `maxHeaderFields`
 * fields, and nothing built for the handler until the head has passed every
 * check. What is refused, and with which status:
 *
 * - a head over `maxHeaderBytes` or with more than `maxHeaderFields` fields: 431;
 * - a request line that is not `method SP target SP HTTP/x.y`, a target with
 *   a control character, space or byte above 0x7E, or that is not a path, an
 *   absolute http(s) URL or OPTIONS's `*`, a header name that is not
 *   a token or has white space before its colon, a value with a control
 *   character other than HTAB, obs-fold, a bare CR: 400;
 * - HTTP/1.1 without exactly one Host, or HTTP/1.0 with more than one: 400;
 * - more than one Content-Length, one that is not digits, Content-Length
 *   together with Transfer-Encoding, Transfer-Encoding on HTTP/1.0: 400
 *   (RFC 9112 §6.3: such framing cannot be trusted, so the connection closes);
 * - an HTTP version other than 1.0 and 1.1: 505.
 *
 * Accepted as Deno.serve and Go accept them: empty lines before the request
 * line (§2.2), a bare LF as line end (§2.2), obs-text (bytes 0x80–0xFF) in
 * header values, kept as the Latin-1 characters of those bytes.
 * @module
 */

/** A parsed request head. Header names are lower-cased; values are trimmed of SP and HTAB. */
export interface RequestHead {
  readonly method: string;
  readonly target: string;
  readonly version: "HTTP/1.0" | "HTTP/1.1";
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>;
  /** Bytes of body that follow the head (Content-Length), 0 when none. */
  readonly contentLength: number;
  /** The request has a Transfer-Encoding body, whose length the head does not give. */
  readonly chunked: boolean;
}

/** A head the server answers with `status` and then closes the connection. */
export class HeadError extends Error {
  constructor(readonly status: 400 | 431 | 505, message: string) {
    super(message);
    this.name = "HeadError";
  }
}

/** Limits of one head. */
export interface HeadLimits {
  readonly maxHeaderBytes: number;
  readonly maxHeaderFields: number;
}

/** What {@link parseHead} found in a buffer. */
export type HeadParse =
  | { readonly complete: false }
  | { readonly complete: true; readonly head: RequestHead; readonly consumed: number };

const CR = 13, LF = 10, SP = 32, HTAB = 9, COLON = 58;

/** tchar of RFC 9110 §5.6.2, by byte. */
const TOKEN_BYTE = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TOKEN_BYTE[c.charCodeAt(0)] = 1;
for (let b = 0x30; b <= 0x39; b++) TOKEN_BYTE[b] = 1;
for (let b = 0x41; b <= 0x5a; b++) TOKEN_BYTE[b] = 1;
for (let b = 0x61; b <= 0x7a; b++) TOKEN_BYTE[b] = 1;

/** Latin-1: one character per byte, so obs-text keeps its bytes. */
const latin1 = new TextDecoder("latin1");

/**
 * Parses the head at the start of `bytes`. `{ complete: false }` when more
 * bytes are needed (and the buffer is still within the limits).
 * @throws {HeadError} with the status to answer.
 */
export function parseHead(bytes: Uint8Array, limits: HeadLimits): HeadParse {
  // Empty lines before the request line are ignored (RFC 9112 §2.2), within the size limit.
  let start = 0;
  for (;;) {
    if (bytes[start] === LF) start++;
    else if (bytes[start] === CR && bytes[start + 1] === LF) start += 2;
    else if (bytes[start] === CR && start + 1 >= bytes.length) break; // wait for its LF
    else break;
    if (start > limits.maxHeaderBytes) throw new HeadError(431, "Request head too large");
  }
  const lines: Array<[number, number]> = [];
  let lineStart = start;
  let end = -1;
  const scanTo = Math.min(bytes.length, start + limits.maxHeaderBytes + 2);
  for (let i = start; i < scanTo; i++) {
    const byte = bytes[i]!;
    if (byte === CR) {
      if (i + 1 >= bytes.length) break; // its LF has not come yet
      if (bytes[i + 1] !== LF) throw new HeadError(400, "Cannot parse the head: a CR without LF");
      continue;
    }
    if (byte !== LF) continue;
    const lineEnd = bytes[i - 1] === CR && i - 1 >= lineStart ? i - 1 : i;
    if (lineEnd === lineStart && lines.length > 0) {
      end = i + 1;
      break;
    }
    lines.push([lineStart, lineEnd]);
    // The request line is not a field; the limit counts fields.
    if (lines.length - 1 > limits.maxHeaderFields) {
      throw new HeadError(431, `Request has more than ${limits.maxHeaderFields} header fields`);
    }
    lineStart = i + 1;
  }
  if (end === -1) {
    if (bytes.length - start > limits.maxHeaderBytes) {
      throw new HeadError(431, "Request head too large");
    }
    return { complete: false };
  }
  if (end - start > limits.maxHeaderBytes + 2) throw new HeadError(431, "Request head too large");

  const [requestStart, requestEnd] = lines[0]!;
  const { method, target, version } = parseRequestLine(bytes, requestStart, requestEnd);
  const headers: Array<[string, string]> = [];
  let hosts = 0;
  let contentLength: string | undefined;
  let transferEncoding = false;
  for (let l = 1; l < lines.length; l++) {
    const [from, to] = lines[l]!;
    const first = bytes[from]!;
    if (first === SP || first === HTAB) {
      throw new HeadError(400, "Cannot parse a header: obsolete line folding");
    }
    let colon = from;
    while (colon < to && TOKEN_BYTE[bytes[colon]!]) colon++;
    if (colon === from || colon >= to || bytes[colon] !== COLON) {
      throw new HeadError(400, "Cannot parse a header: its name is not a token followed by ':'");
    }
    let valueFrom = colon + 1;
    let valueTo = to;
    while (valueFrom < valueTo && (bytes[valueFrom] === SP || bytes[valueFrom] === HTAB)) {
      valueFrom++;
    }
    while (valueTo > valueFrom && (bytes[valueTo - 1] === SP || bytes[valueTo - 1] === HTAB)) {
      valueTo--;
    }
    for (let i = valueFrom; i < valueTo; i++) {
      const byte = bytes[i]!;
      if ((byte < 0x20 && byte !== HTAB) || byte === 0x7f) {
        throw new HeadError(400, "Cannot parse a header: a control character in its value");
      }
    }
    const name = latin1.decode(bytes.subarray(from, colon)).toLowerCase();
    const value = latin1.decode(bytes.subarray(valueFrom, valueTo));
    if (name === "host") hosts++;
    else if (name === "content-length") {
      if (contentLength !== undefined) {
        throw new HeadError(400, "Cannot frame the request: more than one Content-Length");
      }
      contentLength = value;
    } else if (name === "transfer-encoding") transferEncoding = true;
    headers.push([name, value]);
  }
  if (version === "HTTP/1.1" ? hosts !== 1 : hosts > 1) {
    throw new HeadError(400, `Cannot route the request: it has ${hosts} Host headers`);
  }
  if (transferEncoding && (contentLength !== undefined || version === "HTTP/1.0")) {
    throw new HeadError(
      400,
      "Cannot frame the request: Transfer-Encoding with Content-Length or on HTTP/1.0",
    );
  }
  let length = 0;
  if (contentLength !== undefined) {
    if (!/^[0-9]{1,15}$/.test(contentLength)) {
      throw new HeadError(
        400,
        `Cannot frame the request: current Content-Length "${contentLength}" is not a number`,
      );
    }
    length = Number(contentLength);
  }
  return {
    complete: true,
    head: { method, target, version, headers, contentLength: length, chunked: transferEncoding },
    consumed: end,
  };
}

function parseRequestLine(
  bytes: Uint8Array,
  from: number,
  to: number,
): { method: string; target: string; version: "HTTP/1.0" | "HTTP/1.1" } {
  let i = from;
  while (i < to && TOKEN_BYTE[bytes[i]!]) i++;
  if (i === from || i >= to || bytes[i] !== SP) {
    throw new HeadError(400, "Cannot parse the request line: no method");
  }
  const method = latin1.decode(bytes.subarray(from, i));
  const targetFrom = ++i;
  // The target is visible ASCII only: no control character, space or byte above 0x7E.
  while (i < to && bytes[i]! > 0x20 && bytes[i]! < 0x7f) i++;
  if (i === targetFrom || i >= to || bytes[i] !== SP) {
    throw new HeadError(400, "Cannot parse the request line: the target is empty or not ASCII");
  }
  const target = latin1.decode(bytes.subarray(targetFrom, i));
  // RFC 9112 §3.2: origin-form, absolute-form, or the asterisk-form of OPTIONS.
  if (
    !target.startsWith("/") && !/^https?:\/\/[^/?#]/i.test(target) &&
    !(target === "*" && method === "OPTIONS")
  ) {
    throw new HeadError(400, `Cannot parse the request line: "${target}" is not a request target`);
  }
  const version = latin1.decode(bytes.subarray(i + 1, to));
  if (version === "HTTP/1.1" || version === "HTTP/1.0") return { method, target, version };
  if (/^HTTP\/[0-9]\.[0-9]$/.test(version)) {
    throw new HeadError(505, `Cannot serve ${version}: only HTTP/1.0 and HTTP/1.1`);
  }
  throw new HeadError(400, "Cannot parse the request line: no HTTP version");
}

/** Whether the connection may carry another request after this one's response. */
export function keepsAlive(head: RequestHead): boolean {
  let close = false, keepAlive = false;
  for (const [name, value] of head.headers) {
    if (name !== "connection") continue;
    for (const option of value.toLowerCase().split(",")) {
      const trimmed = option.trim();
      if (trimmed === "close") close = true;
      else if (trimmed === "keep-alive") keepAlive = true;
    }
  }
  return head.version === "HTTP/1.0" ? keepAlive && !close : !close;
}

/** Reason phrases of the statuses an exporter answers with (RFC 9110 §15). */
const REASONS: Readonly<Record<number, string>> = {
  200: "OK",
  204: "No Content",
  301: "Moved Permanently",
  302: "Found",
  304: "Not Modified",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  408: "Request Timeout",
  413: "Content Too Large",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

/** The reason phrase of `status`; empty (allowed by RFC 9112 §4) when it has none here. */
export function reasonPhrase(status: number): string {
  return REASONS[status] ?? "";
}

/**
 * Whether a client that sent `acceptEncoding` takes gzip: RFC 9110 §12.5.3,
 * with q-values (`gzip;q=0` refuses it, `*` stands for gzip when gzip is not named).
 */
export function acceptsGzip(acceptEncoding: string | null): boolean {
  if (!acceptEncoding) return false;
  let star: number | undefined;
  for (const item of acceptEncoding.split(",")) {
    const [coding = "", ...params] = item.split(";").map((part) => part.trim());
    let q = 1;
    for (const param of params) {
      const match = /^q\s*=\s*([0-9.]+)$/i.exec(param);
      if (match) q = Number(match[1]);
    }
    const name = coding.toLowerCase();
    if (name === "gzip" || name === "x-gzip") return q > 0;
    if (name === "*") star = q;
  }
  return star !== undefined && star > 0;
}
