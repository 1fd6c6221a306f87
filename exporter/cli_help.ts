/**
 * What the command line says to a person: help grouped by what each flag
 * belongs to and wrapped to the terminal, and suggestions for the mistakes
 * people make (a misspelt `--flag=value`, a mistyped command, a misspelt
 * `NET_EXPORTER_*` variable).
 * @module
 */

import { type Command, Help, type Option } from "commander";
import { envName, type Flag } from "../lib/flags.ts";

/** Flags that belong together in help, under a title. */
export interface FlagGroup {
  readonly title: string;
  readonly flags: readonly Flag<unknown>[];
}

/** Columns of help when the output is not a terminal (commander's own fallback is 80 too). */
const DEFAULT_WIDTH = 80;
/** A flag's description is indented under its name, as kingpin's help in Go exporters does. */
const DESCRIPTION_INDENT = 6;

/**
 * Formats a command's help: usage, description, each group's flags (the
 * flag on its own line, its description wrapped beneath it), then the
 * options that belong to no group (help, version).
 */
export function formatGroupedHelp(
  command: Command,
  helper: Help,
  groups: readonly FlagGroup[],
  usage: string,
  extra: { readonly options?: readonly Option[]; readonly trailer?: readonly string[] } = {},
): string {
  const width = Math.max(helper.helpWidth ?? DEFAULT_WIDTH, 40);
  const own = helper.visibleOptions(command);
  // Options of another command shown here too (the program's --version in its help), once each.
  const visible = [
    ...own,
    ...(extra.options ?? []).filter((option) => !own.some((o) => o.long === option.long)),
  ];
  const trailer = extra.trailer ?? [];
  const grouped = new Set(groups.flatMap((group) => group.flags.flatMap((flag) => flag.options)));
  const item = (option: Option) => {
    const description = helper.optionDescription(option);
    const wrapped = helper.boxWrap(description, width - DESCRIPTION_INDENT)
      .split("\n").map((line) => `${" ".repeat(DESCRIPTION_INDENT)}${line}`).join("\n");
    return `  ${helper.optionTerm(option)}\n${wrapped}`;
  };
  const sections = groups
    .map((group) => {
      const options = group.flags.flatMap((flag) => flag.options)
        .filter((option) => visible.includes(option));
      return options.length === 0 ? "" : `${group.title}:\n${options.map(item).join("\n")}`;
    })
    .filter((section) => section !== "");
  const others = visible.filter((option) => !grouped.has(option));
  if (others.length > 0) sections.push(`Other flags:\n${others.map(item).join("\n")}`);
  const description = command.description();
  return [
    usage,
    "",
    ...(description ? [helper.boxWrap(description, width), ""] : []),
    sections.join("\n\n"),
    ...trailer,
    "",
  ].join("\n");
}

/**
 * Edit distance with adjacent transpositions (optimal string alignment), as
 * commander's own suggestions measure it (its lib/suggestSimilar.js, MIT;
 * copied in behaviour, not in code).
 */
export function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array(b.length).fill(0)]);
  for (let j = 0; j <= b.length; j++) rows[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, rows[i - 2]![j - 2]! + 1);
      }
      rows[i]![j] = best;
    }
  }
  return rows[a.length]![b.length]!;
}

/**
 * The candidate closest to `word`, if it is close enough to be a typo: at
 * most 40% of the word's length away (commander's threshold), or a prefix
 * of it ("serv" → "serve").
 */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = candidate.startsWith(word) && word.length >= 3
      ? 0.5
      : editDistance(word, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return bestDistance <= Math.max(1, word.length * 0.4) ? best : undefined;
}

/** The long options of a command, help and version included ("--dns.hosts", "--no-collector.dns"). */
function longOptions(command: Command): string[] {
  const own = command.options.flatMap((option) => option.long ? [option.long] : []);
  return [...own, "--help", "--version"];
}

/** Options of a command that take a value: the word after them is that value, not a command. */
function takesValue(command: Command, name: string): boolean {
  return command.options.some((option) =>
    option.long === name && (option.required || option.optional)
  );
}

/**
 * A mistake commander words unhelpfully, said plainly with a suggestion, or
 * undefined: `--dns.host=localhost.` (commander suggests only for the
 * spelling without `=`), and a mistyped command (`serv`, which commander
 * takes for an argument of the default command and calls "too many
 * arguments").
 */
export function explainMistake(
  argv: readonly string[],
  program: Command,
  defaultCommand: string,
): string | undefined {
  const commands = [...program.commands.map((sub) => sub.name()), "help"];
  let command = program.commands.find((sub) => sub.name() === defaultCommand)!;
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]!;
    // Commander's own help command, and what follows "--", are commander's to judge.
    if (arg === "--" || (index === 0 && arg === "help")) return undefined;
    if (index === 0 && commands.includes(arg)) {
      command = program.commands.find((sub) => sub.name() === arg)!;
      continue;
    }
    if (arg.startsWith("--")) {
      const [name] = arg.split("=", 1) as [string];
      const known = longOptions(command);
      if (!known.includes(name)) {
        const suggestion = closest(name, known);
        return `error: unknown flag '${name}'${
          arg.includes("=") ? ` (in '${arg}')` : ""
        } for '${command.name()}'${suggestion ? `\n(Did you mean ${suggestion}?)` : ""}\n`;
      }
      if (!arg.includes("=") && takesValue(command, name)) index++;
      continue;
    }
    if (arg.startsWith("-")) continue;
    // A word that is neither a flag nor a flag's value: no command of ours takes arguments.
    const suggestion = closest(arg, commands);
    return `error: unknown command '${arg}' (commands: ${commands.join(", ")})${
      suggestion ? `\n(Did you mean ${suggestion}?)` : ""
    }\n`;
  }
  return undefined;
}

/**
 * Warnings for variables named `NET_EXPORTER_*` that set no flag (a typo
 * would otherwise be ignored in silence), each with the closest real name.
 */
export function unknownVariableWarnings(
  names: readonly string[],
  flags: readonly Flag<unknown>[],
): string[] {
  const known = [...new Set(flags.map((flag) => envName(flag.name)))];
  return names
    .filter((name) => name.startsWith("NET_EXPORTER_") && !known.includes(name))
    .sort()
    .map((name) => {
      const suggestion = closest(name, known);
      return `warning: environment variable ${name} sets no flag and is ignored${
        suggestion ? ` (did you mean ${suggestion}?)` : ""
      }\n`;
    });
}
