/**
 * Run results belong in docs/, written by the task that measured them: each
 * task rewrites its own block of its own file, between
 * `<!-- NAME:start -->` and `<!-- NAME:end -->`, and leaves the hand-written
 * text around it alone.
 * @module
 */

const DOCS = new URL("../../docs/", import.meta.url);

/**
 * Replaces block `name` of `docs/<file>` with `markdown` (stamped with the
 * date and the command that wrote it).
 * @throws {Error} when the file has no such block: a task never invents where its results go.
 */
export async function rewriteDocsBlock(
  file: string,
  name: string,
  command: string,
  markdown: string,
): Promise<string> {
  const url = new URL(file, DOCS);
  const text = await Deno.readTextFile(url);
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  if (from === -1 || to < from) {
    throw new Error(`Cannot write results: current docs/${file} has no ${start} … ${end} block`);
  }
  const stamp = `Written by \`${command}\` on ${
    new Date().toISOString().slice(0, 16)
  }Z (${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}).`;
  const block = `${start}\n\n${stamp}\n\n${markdown.trim()}\n\n${end}`;
  await Deno.writeTextFile(url, text.slice(0, from) + block + text.slice(to + end.length));
  return url.pathname;
}
