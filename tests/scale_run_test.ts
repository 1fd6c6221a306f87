/**
 * `deno task cluster:scale`'s command line: bad input is one line and exit 2,
 * before a control plane, a namespace or a file is made.
 */

import { assert } from "./helpers/assert.ts";

const SCRIPT = new URL("./cluster/scale_run.ts", import.meta.url).pathname;

async function scaleRun(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-check", "--allow-all", SCRIPT, ...args],
    env: { DENO_NO_UPDATE_CHECK: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr).trim(),
  };
}

Deno.test("cluster:scale: bad arguments are one line and exit 2, before anything starts", async () => {
  const earlier = await Deno.makeTempFile({ suffix: ".json" });
  const out = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(earlier, JSON.stringify({ real: 10, sizes: [{ nodes: 300 }] }));
    const cases: Array<[string[], RegExp]> = [
      [["--real=1"], /--real=1/],
      [["--sizes=300,100"], /--sizes=300,100/],
      [["--sizes=5000"], /--sizes=5000/],
      [["--steady=soon"], /--steady=soon/],
      [["--bogus"], /bogus/],
      [["--with=/nonexistent/scale.json"], /--with=\/nonexistent\/scale.json/],
      [["--from=/nonexistent/scale.json"], /--from=\/nonexistent\/scale.json/],
      // An earlier run's sizes must all be below this run's.
      [["--sizes=300", `--with=${earlier}`, `--out=${out}/report`], /current sizes 300/],
    ];
    for (const [args, names] of cases) {
      const { code, stdout, stderr } = await scaleRun(args);
      assert.equal(code, 2, `${args.join(" ")}: ${stderr}`);
      assert.equal(stderr.split("\n").length, 1, stderr);
      assert.match(stderr, /^error: Cannot /);
      assert.match(stderr, names);
      assert.equal(stdout, "");
    }
    // Nothing was made: not even the report directory.
    assert.deepEqual([...Deno.readDirSync(out)], []);
  } finally {
    await Deno.remove(earlier);
    await Deno.remove(out, { recursive: true });
  }
});
