/**
 * Parsers that read what arrives from outside, beyond their example tests:
 * NTP timestamps on both sides of the 2036 era boundary, and the line
 * splitter under every way a stream can be cut.
 */

import { readTimestamp } from "../collectors/probe_ntp.ts";
import { LineSplitter } from "../lib/lines.ts";
import { assert } from "./helpers/assert.ts";
import { seededRandom } from "./helpers/fake_clock.ts";

function timestamp(seconds: number, fraction = 0): DataView {
  const view = new DataView(new ArrayBuffer(8));
  view.setUint32(0, seconds);
  view.setUint32(4, fraction);
  return view;
}

Deno.test("ntp timestamps: era 0 up to 2036-02-07T06:28:15Z, era 1 from the next second", () => {
  const at = (seconds: number, fraction = 0) =>
    new Date(readTimestamp(timestamp(seconds, fraction), 0)).toISOString();
  assert.equal(at(0xffff_ffff), "2036-02-07T06:28:15.000Z", "the last second of era 0");
  assert.equal(at(0x0000_0000), "2036-02-07T06:28:16.000Z", "the first second of era 1");
  assert.equal(at(0x0000_0001, 0x8000_0000), "2036-02-07T06:28:17.500Z");
  assert.equal(at(0x7fff_ffff), "2104-02-26T09:42:23.000Z", "top bit clear: still era 1");
  assert.equal(at(0x8000_0000), "1968-01-20T03:14:08.000Z", "top bit set: era 0");
  // Today's clock, as a server sends it now.
  const now = Date.UTC(2026, 11, 5, 12, 0, 0);
  assert.equal(readTimestamp(timestamp(now / 1000 + 2_208_988_800), 0), now);
});

/**
 * std's TextLineStream (which lib/lines.ts follows) lives on JSR, which is not reachable here;
 * the reference is its documented rule applied to the whole text at once: a line ends at "\n",
 * and a "\r" just before it is dropped.
 */
function referenceLines(text: string): { lines: string[]; rest: string } {
  const parts = text.split("\n");
  const rest = parts.pop()!;
  return { lines: parts.map((line) => line.endsWith("\r") ? line.slice(0, -1) : line), rest };
}

Deno.test("line splitter: any cut of a stream of CR, LF and text gives the lines of the whole", () => {
  const random = seededRandom(36);
  const alphabet = ["a", "b", "\n", "\r", "\r\n", "\n\n", "é", " "];
  for (let trial = 0; trial < 2_000; trial++) {
    let text = "";
    const length = Math.floor(random() * 40);
    for (let i = 0; i < length; i++) text += alphabet[Math.floor(random() * alphabet.length)];
    const splitter = new LineSplitter();
    const lines: string[] = [];
    let at = 0;
    while (at < text.length) {
      const size = 1 + Math.floor(random() * 6);
      lines.push(...splitter.push(text.slice(at, at + size)));
      at += size;
    }
    const expected = referenceLines(text);
    assert.deepEqual(lines, expected.lines, JSON.stringify(text));
    assert.equal(splitter.pendingLength, expected.rest.length, JSON.stringify(text));
  }
});
