/**
 * Whole reads and writes on a `Deno.Conn`: the two helpers of Deno std's
 * `@std/io` (`writeAll`, and a read of exactly N bytes) that JSR, out of
 * reach here, would otherwise give, and std's `concat` of `@std/bytes`.
 * Copied in behaviour, not in code.
 * @module
 */

/** Writes every byte of `bytes`, however many writes the connection takes. */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}

/**
 * Reads exactly `length` bytes.
 * @throws {Deno.errors.UnexpectedEof} when the peer closes first.
 */
export async function readExactly(conn: Deno.Conn, length: number): Promise<Uint8Array> {
  const buffer = new Uint8Array(length);
  let filled = 0;
  while (filled < length) {
    const read = await conn.read(buffer.subarray(filled));
    if (read === null) {
      throw new Deno.errors.UnexpectedEof(
        `Cannot read ${length} bytes: current connection closed after ${filled}`,
      );
    }
    filled += read;
  }
  return buffer;
}

/** The pieces joined into one array, in order. */
export function concatBytes(pieces: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  let length = 0;
  for (const piece of pieces) length += piece.length;
  const bytes = new Uint8Array(length);
  let offset = 0;
  for (const piece of pieces) {
    bytes.set(piece, offset);
    offset += piece.length;
  }
  return bytes;
}
