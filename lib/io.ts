/**
 * Whole reads and writes on a `Deno.Conn`: the two helpers of Deno std's
 * `@std/io` (`writeAll`, and a read of exactly N bytes) that JSR, out of
 * reach here, would otherwise give. Copied in behaviour, not in code.
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
