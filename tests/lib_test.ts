import { isIP as nodeIsIP } from "node:net";
import { isIP } from "../lib/ip.ts";
import { LineSplitter } from "../lib/lines.ts";
import { describeError } from "../lib/errors.ts";
import { yieldToEventLoop } from "../lib/event_loop.ts";
import { assert } from "./helpers/assert.ts";

Deno.test("lines: a line split over chunks comes out once, whole, without its end", () => {
  const lines = new LineSplitter();
  assert.deepEqual(lines.push('{"a":'), []);
  assert.equal(lines.pendingLength, 5);
  assert.deepEqual(lines.push('1}\r\n{"b"'), ['{"a":1}']);
  assert.deepEqual(lines.push(":2}\n\n{"), ['{"b":2}', ""]);
  assert.equal(lines.pendingLength, 1);
});

Deno.test("lines: a line of many chunks is measured as it grows and comes out whole", () => {
  const lines = new LineSplitter();
  const chunk = "x".repeat(65_536);
  for (let i = 1; i <= 200; i++) {
    assert.deepEqual(lines.push(chunk), []);
    assert.equal(lines.pendingLength, i * 65_536);
  }
  assert.deepEqual(lines.push("\ny").map((line) => line.length), [200 * 65_536]);
  assert.equal(lines.pendingLength, 1);
});

Deno.test("errors: a description keeps every cause an operator needs, once", () => {
  const error = new TypeError("fetch failed", {
    cause: new Error("client error (Connect): invalid peer certificate: UnknownIssuer"),
  });
  assert.equal(
    describeError(error),
    "TypeError: fetch failed: client error (Connect): invalid peer certificate: UnknownIssuer",
  );
  const repeated = new Error("Cannot list pods: timed out", { cause: new Error("timed out") });
  assert.equal(describeError(repeated), "Error: Cannot list pods: timed out");
  assert.equal(describeError("plain"), "plain");
});

Deno.test("ip: the family of a string is node:net's, on hand-picked and generated strings", () => {
  const picked = [
    "",
    "1.2.3.4",
    "255.255.255.255",
    "256.1.1.1",
    "01.2.3.4",
    "1.2.3",
    "1.2.3.4.5",
    " 1.2.3.4",
    "::",
    "::1",
    "fd00::5",
    "fe80::1%eth0",
    "::ffff:10.0.0.1",
    "1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8:9",
    "1::2::3",
    "gggg::1",
    "[::1]",
    "example.com",
    "10.0.0.1:53",
  ];
  // Strings drawn from the characters addresses are made of, so most are near misses.
  const alphabet = "0123456789abcdefABCDEF:.%z";
  let seed = 42;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const generated = Array.from(
    { length: 20_000 },
    () =>
      Array.from(
        { length: 1 + Math.floor(random() * 20) },
        () => alphabet[Math.floor(random() * alphabet.length)],
      ).join(""),
  );
  // Well-formed ones too, which random strings rarely are.
  for (let i = 0; i < 2_000; i++) {
    const byte = () => String(Math.floor(random() * 300));
    const group = () => Math.floor(random() * 0x1ffff).toString(16);
    generated.push([byte(), byte(), byte(), byte()].join("."));
    const groups = Array.from({ length: 8 }, group);
    const gap = Math.floor(random() * 8);
    generated.push(
      random() < 0.5
        ? groups.join(":")
        : `${groups.slice(0, gap).join(":")}::${groups.slice(gap + 1).join(":")}`,
    );
  }
  let families = 0;
  for (const text of [...picked, ...generated]) {
    assert.equal(isIP(text), nodeIsIP(text), JSON.stringify(text));
    if (isIP(text) !== 0) families++;
  }
  assert.ok(families > 1_000, `enough of them are addresses: ${families}`);
});

Deno.test("event loop: a turn given away lets a pending socket read finish", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  using client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  using server = await listener.accept();
  let read: number | null | undefined;
  const reading = server.read(new Uint8Array(8)).then((count) => read = count);
  await client.write(new Uint8Array([1, 2, 3]));
  // Work that holds the thread, with a turn between pieces; bounded in count, not timed.
  let turns = 0;
  while (read === undefined && turns < 1_000) {
    const until = performance.now() + 1;
    while (performance.now() < until) { /* holds the thread, as a long render does */ }
    await yieldToEventLoop();
    turns++;
  }
  assert.equal(read, 3, `the read finished within ${turns} turns`);
  await reading;
});
