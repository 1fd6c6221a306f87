/**
 * A look at a connection's first TLS record before `node:tls` sees it.
 *
 * Deno 2.9's `node:tls` server keeps about 10 KB of JavaScript heap for
 * ever for each handshake that fails on a malformed ClientHello (measured:
 * 6,000 such connections, heap 5 → 66 MB; not so for a refused client
 * certificate or a connection cut mid-handshake). Plain HTTP sent to the
 * TLS port — a scrape with the wrong scheme, every interval — would leak
 * without end. So the server reads the first record itself and hands the
 * connection to `node:tls` only when it is one whole ClientHello (RFC 8446
 * §4.1.2, RFC 5246 §7.4.1.2) whose lengths add up and which offers a cipher
 * suite rustls speaks; anything else is closed unanswered.
 * @module
 */

/** The TLS record header: content type, legacy version, length. */
export const RECORD_HEADER_BYTES = 5;
const HANDSHAKE = 0x16;
const CLIENT_HELLO = 0x01;
const MAX_RECORD_BYTES = 16 * 1024;

/**
 * Cipher suites rustls (Deno's TLS) negotiates: TLS 1.3's three, and TLS
 * 1.2's ECDHE with AES-GCM or ChaCha20-Poly1305.
 */
const RUSTLS_SUITES = new Set([
  0x1301,
  0x1302,
  0x1303,
  0xc02b,
  0xc02c,
  0xcca9,
  0xc02f,
  0xc030,
  0xcca8,
]);

/**
 * How many bytes the first record takes in all, once its header is in;
 * undefined while fewer than {@link RECORD_HEADER_BYTES} have come.
 * @throws {RangeError} when the header is not a TLS handshake record's.
 */
export function firstRecordBytes(bytes: Uint8Array): number | undefined {
  if (bytes.length > 0 && bytes[0] !== HANDSHAKE) {
    throw new RangeError(
      `Cannot start TLS: current first byte 0x${hex(bytes[0]!)} is not a handshake`,
    );
  }
  if (bytes.length < RECORD_HEADER_BYTES) return undefined;
  const length = (bytes[3]! << 8) | bytes[4]!;
  if (bytes[1] !== 0x03 || bytes[2]! > 0x04 || length === 0 || length > MAX_RECORD_BYTES) {
    throw new RangeError(
      `Cannot start TLS: current record header ${
        Array.from(bytes.subarray(0, 5), hex).join(" ")
      } is not a TLS record's`,
    );
  }
  return RECORD_HEADER_BYTES + length;
}

/**
 * Checks that `record` (one whole record, header included) holds one whole
 * ClientHello whose lengths add up and which offers a suite rustls speaks.
 * @throws {RangeError} saying what is wrong.
 */
export function checkClientHello(record: Uint8Array): void {
  const reader = new Reader(record.subarray(RECORD_HEADER_BYTES));
  if (reader.u8() !== CLIENT_HELLO) throw new RangeError("Cannot start TLS: not a ClientHello");
  const body = reader.sub(reader.u24(), "the ClientHello");
  if (!reader.done) throw new RangeError("Cannot start TLS: bytes after the ClientHello");
  body.skip(2 + 32, "the version and random");
  body.sub(body.u8(), "the session id");
  const suites = body.sub(body.u16(), "the cipher suites");
  let supported = false;
  if (suites.length % 2 !== 0 || suites.length === 0) {
    throw new RangeError("Cannot start TLS: an odd or empty list of cipher suites");
  }
  while (!suites.done) supported = RUSTLS_SUITES.has(suites.u16()) || supported;
  if (!supported) throw new RangeError("Cannot start TLS: no cipher suite this server speaks");
  if (body.sub(body.u8(), "the compression methods").length === 0) {
    throw new RangeError("Cannot start TLS: no compression method");
  }
  if (body.done) return; // no extensions (TLS 1.2 without any)
  const extensions = body.sub(body.u16(), "the extensions");
  if (!body.done) throw new RangeError("Cannot start TLS: bytes after the extensions");
  while (!extensions.done) {
    extensions.skip(2, "an extension type");
    extensions.sub(extensions.u16(), "an extension");
  }
}

/** Reads big-endian lengths and fields, refusing to run past its end. */
class Reader {
  #at = 0;
  constructor(readonly bytes: Uint8Array) {}

  get length(): number {
    return this.bytes.length;
  }

  get done(): boolean {
    return this.#at === this.bytes.length;
  }

  #take(count: number, what: string): Uint8Array {
    if (this.#at + count > this.bytes.length) {
      throw new RangeError(`Cannot start TLS: ${what} runs past its end`);
    }
    const taken = this.bytes.subarray(this.#at, this.#at + count);
    this.#at += count;
    return taken;
  }

  u8(): number {
    return this.#take(1, "a length")[0]!;
  }

  u16(): number {
    const [a, b] = this.#take(2, "a length");
    return (a! << 8) | b!;
  }

  u24(): number {
    const [a, b, c] = this.#take(3, "a length");
    return (a! << 16) | (b! << 8) | c!;
  }

  skip(count: number, what: string): void {
    this.#take(count, what);
  }

  sub(count: number, what: string): Reader {
    return new Reader(this.#take(count, what));
  }
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, "0");
}
