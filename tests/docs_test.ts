/**
 * docs/architecture.md's table of source files lists exactly the files there
 * are (`deno task docs:architecture` rewrites it).
 */

import { assert } from "./helpers/assert.ts";
import { sourceFiles } from "./docs/architecture.ts";

Deno.test("docs: the architecture page's file table names exactly the source files", async () => {
  const page = await Deno.readTextFile(new URL("../docs/architecture.md", import.meta.url));
  const block = /<!-- files:start -->([^]*)<!-- files:end -->/.exec(page)?.[1] ?? "";
  const listed = [...block.matchAll(/^\| `([^`]+)` \|/gm)].map((match) => match[1]!);
  const actual = (await sourceFiles()).map((file) => file.path);
  assert.deepEqual(listed, actual, "run `deno task docs:architecture`");
});
