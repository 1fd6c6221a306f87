/**
 * The first TLS record is checked before node:tls sees it: a real
 * ClientHello passes; plain HTTP, a record of another type, lengths that do
 * not add up and suites rustls does not speak are refused.
 */

import { checkClientHello, firstRecordBytes } from "../web/client_hello.ts";
import { assert } from "./helpers/assert.ts";

/** Captures the first record a real TLS client (Deno's) sends. */
async function realClientHello(): Promise<Uint8Array> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const client = Deno.connectTls({ hostname: "127.0.0.1", port: listener.addr.port })
    .then((conn) => conn.handshake().finally(() => conn.close()))
    .catch(() => {});
  const conn = await accepted;
  let bytes = new Uint8Array(0);
  const chunk = new Uint8Array(16_384);
  for (;;) {
    const wanted = firstRecordBytes(bytes);
    if (wanted !== undefined && bytes.length >= wanted) break;
    const read = await conn.read(chunk);
    if (read === null) break;
    bytes = new Uint8Array([...bytes, ...chunk.subarray(0, read)]);
  }
  conn.close();
  listener.close();
  await client;
  return bytes;
}

Deno.test("client hello: a real one passes; anything else is refused before node:tls", async () => {
  const hello = await realClientHello();
  const length = firstRecordBytes(hello)!;
  assert.equal(length, hello.length);
  checkClientHello(hello);

  assert.equal(firstRecordBytes(hello.subarray(0, 3)), undefined, "waits for the header");
  assert.throws(() => firstRecordBytes(new TextEncoder().encode("GET / HTTP/1.1\r\n")));
  assert.throws(() => firstRecordBytes(Uint8Array.from([0x17, 3, 3, 0, 10])), RangeError);
  assert.throws(() => firstRecordBytes(Uint8Array.from([0x16, 3, 3, 0x7f, 0xff])), RangeError);

  const altered = (at: number, value: number) => {
    const copy = hello.slice();
    copy[at] = value;
    return copy;
  };
  // The handshake type, and the ClientHello's own length one byte off.
  assert.throws(() => checkClientHello(altered(5, 0x02)), RangeError, "not a ClientHello");
  assert.throws(() => checkClientHello(altered(8, hello[8]! + 1)), RangeError, "runs past");
  assert.throws(() => checkClientHello(altered(8, hello[8]! - 1)), RangeError, "after the");
  // Garbage inside a well-framed record.
  const garbage = hello.slice();
  garbage.fill(0xab, 9);
  assert.throws(() => checkClientHello(garbage), RangeError);
  // Only suites rustls does not speak: session id is at 5 + 4 + 34.
  const sessionIdLength = hello[5 + 4 + 34]!;
  const suitesAt = 5 + 4 + 34 + 1 + sessionIdLength;
  const suitesLength = (hello[suitesAt]! << 8) | hello[suitesAt + 1]!;
  const unsupported = hello.slice();
  for (let i = 0; i < suitesLength; i += 2) {
    unsupported[suitesAt + 2 + i] = 0x00;
    unsupported[suitesAt + 3 + i] = 0x2f; // TLS_RSA_WITH_AES_128_CBC_SHA
  }
  assert.throws(() => checkClientHello(unsupported), RangeError, "no cipher suite");
});
