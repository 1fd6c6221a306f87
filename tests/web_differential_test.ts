/**
 * The web layer's request parsing beside Deno.serve's, on 2,000 generated
 * cases with a fixed seed (more, and other seeds: `deno task fuzz:web`).
 */

import { assert } from "./helpers/assert.ts";
import { agree, generateCase, randomSource, Servers } from "./helpers/http_differential.ts";

const SEED = 20261205;
const CASES = 2_000;

Deno.test("web differential: 2,000 generated heads reach the handler as they reach Deno.serve's", async () => {
  const random = randomSource(SEED);
  await using servers = new Servers();
  const disagreements: string[] = [];
  const seen = { stricter: 0, lenient: 0, closesAfter: 0, refused: 0, pipelined: 0 };
  for (let i = 0; i < CASES; i++) {
    const testCase = generateCase(random);
    const outcome = await servers.run(testCase);
    if (!agree(testCase, outcome)) {
      disagreements.push(
        `case ${i} (${testCase.description}): ours ${JSON.stringify(outcome.ours)}, ` +
          `Deno.serve ${JSON.stringify(outcome.reference)}`,
      );
    }
    // A body is never parsed as a request.
    assert.ok(
      !outcome.ours.requests.some((request) => request.includes("/smuggled")),
      `case ${i}: a request inside a body reached the handler`,
    );
    if (testCase.stricter) seen.stricter++;
    if (testCase.lenient) seen.lenient++;
    if (testCase.closesAfter) seen.closesAfter++;
    if (outcome.ours.statuses.some((status) => status >= 400)) seen.refused++;
    if (outcome.ours.requests.length > 1) seen.pipelined++;
  }
  assert.deepEqual(disagreements.slice(0, 5), [], `${disagreements.length} of ${CASES} disagree`);
  // The cases reach every kind the generator makes, or the agreement above would mean little.
  for (const [kind, count] of Object.entries(seen)) {
    assert.ok(count >= 10, `${kind}: only ${count} of ${CASES} cases`);
  }
});
