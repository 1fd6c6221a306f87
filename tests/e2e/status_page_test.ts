/**
 * The status page in a real headless Chromium: `fixtures/status_page.ts`
 * renders a scene of healthy and failing targets and a peer on a node with a
 * hostile name, and checks what Chromium shows (see there).
 */

import { assert } from "../helpers/assert.ts";
import { CHILD_ENV, requires } from "../helpers/requirements.ts";

const NAME = "status page: in Chromium";
Deno.test({
  name:
    `${NAME}, it escapes hostile names, shows failures in red with their reason, updates itself`,
  ignore: !requires(NAME, { commands: ["chromium", "openssl"] }),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "status-page-" });
    try {
      const output = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-all",
          new URL("../fixtures/status_page.ts", import.meta.url).pathname,
          `${dir}/page.png`,
          "--check",
        ],
        env: CHILD_ENV,
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(120_000),
      }).output();
      const text = new TextDecoder().decode(output.stderr) +
        new TextDecoder().decode(output.stdout);
      assert.ok(output.success, text);
      const png = await Deno.readFile(`${dir}/page.png`);
      assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
      assert.ok(png.length > 10_000, `${png.length} bytes`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
