/**
 * Assertions: node:assert/strict (JSR's @std/assert cannot be fetched here),
 * plus the one it lacks.
 * @module
 */

import assert from "node:assert/strict";

export { assert };

/** Asserts `|actual - expected| <= tolerance`. */
export function assertNear(
  actual: number,
  expected: number,
  tolerance: number,
  what = "value",
): void {
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${what}: expected ${expected} ± ${tolerance}, got ${actual}`,
  );
}
