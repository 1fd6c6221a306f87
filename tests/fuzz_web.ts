/**
 * `deno task fuzz:web [cases] [seed]`: the differential test of the web
 * layer's request parsing against Deno.serve (tests/web_differential_test.ts)
 * for as many cases as asked (default 20,000) from any seed (default: from
 * the clock, printed so a failure can be replayed). Exits 1 on a disagreement.
 * @module
 */

import { agree, generateCase, randomSource, Servers } from "./helpers/http_differential.ts";

const cases = Number(Deno.args[0] ?? 20_000);
const seed = Number(Deno.args[1] ?? Date.now() % 2 ** 31);
if (!Number.isInteger(cases) || cases < 1 || cases > 10_000_000 || !Number.isInteger(seed)) {
  console.error(
    `Cannot fuzz: current arguments are "${Deno.args.join(" ")}"; expected [cases] [seed]`,
  );
  Deno.exit(2);
}
console.log(`seed ${seed}, ${cases} cases`);
const random = randomSource(seed);
let disagreements = 0;
{
  await using servers = new Servers();
  for (let i = 0; i < cases; i++) {
    const testCase = generateCase(random);
    const outcome = await servers.run(testCase);
    if (!agree(testCase, outcome)) {
      disagreements++;
      console.log(`case ${i}: ${testCase.description}`);
      console.log(
        `  bytes      ${JSON.stringify(new TextDecoder("latin1").decode(testCase.bytes))}`,
      );
      console.log(`  ours       ${JSON.stringify(outcome.ours)}`);
      console.log(`  Deno.serve ${JSON.stringify(outcome.reference)}`);
    }
    if ((i + 1) % 5_000 === 0) console.log(`${i + 1} cases, ${disagreements} disagreements`);
  }
}
console.log(`${cases - disagreements} agreed, ${disagreements} disagreed (seed ${seed})`);
Deno.exit(disagreements === 0 ? 0 : 1);
