import { LineSplitter } from "../lib/lines.ts";
import { describeError } from "../lib/errors.ts";
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
