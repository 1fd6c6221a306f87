/**
 * The echo datagram between net-exporters, both ways: what a request holds,
 * and what makes a datagram one at all. A request is sent back as it came,
 * with its type byte turned to "reply" and nothing added, so a reply is never
 * longer than its request.
 *
 * ```
 * offset  size  field
 *      0     4  magic "NXEC"
 *      4     1  version (1)
 *      5     1  type: 1 request, 2 reply
 *      6     2  reserved, 0
 *      8     8  nonce: random per round, so a reply answers this round
 *     16     4  sequence number within the round (big-endian)
 *     20     …  padding (zeros) up to the datagram's size
 * ```
 * @module
 */

/** Bytes before the padding; the smallest echo datagram. */
export const ECHO_HEADER_BYTES = 20;
const MAGIC = [0x4e, 0x58, 0x45, 0x43]; // "NXEC"
const VERSION = 1;
export const ECHO_REQUEST = 1;
export const ECHO_REPLY = 2;

/** What a datagram says of itself, once it is known to be an echo datagram. */
export interface EchoHeader {
  readonly type: typeof ECHO_REQUEST | typeof ECHO_REPLY;
  readonly nonce: Uint8Array;
  readonly sequence: number;
}

/** Writes an echo datagram of `size` bytes (at least {@link ECHO_HEADER_BYTES}) into a new buffer. */
export function encodeEcho(
  size: number,
  type: typeof ECHO_REQUEST | typeof ECHO_REPLY,
  nonce: Uint8Array,
  sequence: number,
): Uint8Array<ArrayBuffer> {
  if (!Number.isInteger(size) || size < ECHO_HEADER_BYTES) {
    throw new RangeError(
      `Cannot build an echo datagram: current size is ${size}, below ${ECHO_HEADER_BYTES} bytes`,
    );
  }
  const bytes = new Uint8Array(size);
  bytes.set(MAGIC, 0);
  bytes[4] = VERSION;
  bytes[5] = type;
  bytes.set(nonce.subarray(0, 8), 8);
  new DataView(bytes.buffer).setUint32(16, sequence >>> 0, false);
  return bytes;
}

/**
 * The header of `bytes` when it is an echo datagram of this version (magic,
 * version, a known type, reserved bytes zero), or undefined: anything else is
 * not read further.
 */
export function decodeEcho(bytes: Uint8Array): EchoHeader | undefined {
  if (bytes.length < ECHO_HEADER_BYTES) return undefined;
  for (let i = 0; i < MAGIC.length; i++) if (bytes[i] !== MAGIC[i]) return undefined;
  if (bytes[4] !== VERSION || bytes[6] !== 0 || bytes[7] !== 0) return undefined;
  const type = bytes[5];
  if (type !== ECHO_REQUEST && type !== ECHO_REPLY) return undefined;
  return {
    type,
    nonce: bytes.subarray(8, 16),
    sequence: new DataView(bytes.buffer, bytes.byteOffset, bytes.length).getUint32(16, false),
  };
}

/** Turns a request, in place, into its reply: the type byte only. */
export function markReply(bytes: Uint8Array): void {
  bytes[5] = ECHO_REPLY;
}

/** True when two nonces are the same 8 bytes. */
export function sameNonce(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length < 8 || b.length < 8) return false;
  for (let i = 0; i < 8; i++) if (a[i] !== b[i]) return false;
  return true;
}
