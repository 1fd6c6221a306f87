/**
 * `deno task docs:architecture`: writes the table of source files (each
 * folder's modules, their lines, and the first sentence of their module
 * comment) into docs/architecture.md, so the page names only files that
 * exist. `tests/docs_test.ts` checks that the table lists exactly the files
 * there are.
 * @module
 */

import { rewriteDocsBlock } from "../helpers/docs.ts";

const ROOT = new URL("../../", import.meta.url);
/** The product's folders, top floor first; main.ts stands alone above them. */
export const SOURCE_FOLDERS = ["exporter", "collectors", "k8s", "web", "lib"] as const;

/** One source file: its path from the repository root, lines, and what its comment says it is. */
export interface SourceFile {
  readonly path: string;
  readonly lines: number;
  readonly summary: string;
}

/** The product's TypeScript files, main.ts first, then each folder's in name order. */
export async function sourceFiles(): Promise<SourceFile[]> {
  const paths = ["main.ts"];
  for (const folder of SOURCE_FOLDERS) {
    const names: string[] = [];
    for await (const entry of Deno.readDir(new URL(`${folder}/`, ROOT))) {
      if (entry.isFile && entry.name.endsWith(".ts")) names.push(entry.name);
    }
    paths.push(...names.sort().map((name) => `${folder}/${name}`));
  }
  return await Promise.all(paths.map(async (path) => {
    const text = await Deno.readTextFile(new URL(path, ROOT));
    return { path, lines: text.split("\n").length - 1, summary: summaryOf(text) };
  }));
}

/** The first sentence of the file's leading JSDoc comment. */
function summaryOf(text: string): string {
  const comment = /^\/\*\*([^]*?)\*\//.exec(text.trimStart())?.[1] ?? "";
  const prose = comment.split("\n").map((line) => line.replace(/^\s*\*\s?/, "")).filter((line) =>
    !line.startsWith("@")
  ).join(" ").replace(/\s+/g, " ").trim();
  const sentence = /^(.*?\.)(\s|$)/.exec(prose)?.[1] ?? prose;
  const short = sentence.length > 160 ? `${sentence.slice(0, 157).trimEnd()}…` : sentence;
  return short.replaceAll("|", "\\|");
}

/** The table as markdown. */
export function filesMarkdown(files: readonly SourceFile[]): string {
  return [
    "| File | Lines | What it is |",
    "| --- | ---: | --- |",
    ...files.map((file) => `| \`${file.path}\` | ${file.lines} | ${file.summary} |`),
  ].join("\n");
}

if (import.meta.main) {
  const written = await rewriteDocsBlock(
    "architecture.md",
    "files",
    "deno task docs:architecture",
    filesMarkdown(await sourceFiles()),
  );
  console.log(`written to ${written}`);
}
