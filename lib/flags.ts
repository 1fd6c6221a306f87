/**
 * Typed flags on top of commander, the way kingpin's flags work in Go
 * exporters: defining a flag gives a handle, and the handle reads the flag's
 * value with its type (`INTERVAL.read(values)` is a `number`), so no code
 * looks a value up by name and casts it. Every flag is also read from the
 * environment as `NET_EXPORTER_` + its name upper-cased with dots and dashes
 * as underscores; a flag on the command line beats the environment.
 * @module
 */

import { type Command, InvalidArgumentError, Option } from "commander";
import { formatHostPort } from "./address.ts";
import { formatDuration, parseDuration } from "./duration.ts";

/** A combination of flags that cannot work together; reported like a bad flag, exit 2. */
export class FlagError extends Error {
  override name = "FlagError";
}

/** The flags of one command line, once parsed; read one with its {@link Flag}. */
export class FlagValues {
  readonly #shown: Array<readonly [string, string]> = [];

  /** Every flag's name and value as text, in definition order (for the status page). */
  get shown(): ReadonlyArray<readonly [string, string]> {
    return this.#shown;
  }

  /** Notes a flag's value as text; called by each flag as it is parsed. */
  show(name: string, text: string): void {
    this.#shown.push([name, text]);
  }
}

/** One flag: its command-line options, and the typed value it read. */
export interface Flag<T> {
  /** Long name without dashes, e.g. "dns.interval". */
  readonly name: string;
  /** The commander options that make it (a switch has two: --x and --no-x). */
  readonly options: readonly Option[];
  /** This flag's value in `values`. */
  read(values: FlagValues): T;
  /** Takes this flag's value from a parsed command into `values`. */
  capture(command: Command, env: (name: string) => string | undefined, values: FlagValues): void;
}

/** The environment variable that sets `flag`, e.g. "dns.interval" → NET_EXPORTER_DNS_INTERVAL. */
export function envName(flag: string): string {
  return `NET_EXPORTER_${flag.toUpperCase().replace(/[.-]/g, "_")}`;
}

/** Reads every flag of `flags` from `command` (already parsed by commander). */
export function readFlags(
  command: Command,
  flags: readonly Flag<unknown>[],
  env: (name: string) => string | undefined,
): FlagValues {
  const values = new FlagValues();
  for (const flag of flags) flag.capture(command, env, values);
  return values;
}

class TypedFlag<T> implements Flag<T> {
  readonly name: string;
  readonly options: readonly Option[];
  /** Values are kept per parse, so one definition serves every command line parsed. */
  readonly #values = new WeakMap<FlagValues, T>();
  readonly #take: (command: Command, env: (name: string) => string | undefined) => T;
  readonly #show: (value: T) => string;

  constructor(
    name: string,
    options: readonly Option[],
    take: (command: Command, env: (name: string) => string | undefined) => T,
    show: (value: T) => string = shownValue,
  ) {
    this.name = name;
    this.options = options;
    this.#take = take;
    this.#show = show;
  }

  read(values: FlagValues): T {
    if (!this.#values.has(values)) {
      throw new Error(`Cannot read --${this.name}: current command line was parsed without it`);
    }
    return this.#values.get(values)!;
  }

  capture(command: Command, env: (name: string) => string | undefined, values: FlagValues): void {
    const value = this.#take(command, env);
    this.#values.set(values, value);
    values.show(this.name, this.#show(value));
  }
}

/** A value as the status page shows it: lists joined, addresses as host:port. */
function shownValue(value: unknown): string {
  if (Array.isArray(value)) return value.map(shownValue).join(",");
  if (value !== null && typeof value === "object" && "hostname" in value && "port" in value) {
    return formatHostPort({ hostname: String(value.hostname), port: Number(value.port) });
  }
  return String(value);
}

function parsing<T>(parse: (value: string) => T): (value: string) => T {
  return (value) => {
    try {
      return parse(value);
    } catch (error) {
      throw new InvalidArgumentError(error instanceof Error ? error.message : String(error));
    }
  };
}

/** A flag taking one value, parsed by `parse` (which throws with a reason on bad input). */
export function valueFlag<T>(
  flag: string,
  placeholder: string,
  description: string,
  defaultText: string,
  parse: (value: string) => T,
  show?: (value: T) => string,
  /** The default as help shows it, where the value itself is too long to read there. */
  defaultDescription?: string,
): Flag<T> {
  const option = new Option(`--${flag} <${placeholder}>`, description)
    .env(envName(flag))
    .default(parse(defaultText), defaultDescription ?? (defaultText === "" ? '""' : defaultText))
    .argParser(parsing(parse));
  // commander keeps what `parse` returned (or the parsed default): a T.
  return new TypedFlag<T>(
    flag,
    [option],
    (command) => command.getOptionValue(option.attributeName()),
    show,
  );
}

/** A Go-style duration flag, in milliseconds. */
export function durationFlag(flag: string, description: string, defaultText: string): Flag<number> {
  return valueFlag(flag, "duration", description, defaultText, parseDuration, formatDuration);
}

/** A positive integer flag; `allowZero` admits 0 where it has a meaning of its own. */
export function integerFlag(
  flag: string,
  description: string,
  defaultValue: number,
  { allowZero = false, max = Number.MAX_SAFE_INTEGER } = {},
): Flag<number> {
  return valueFlag(flag, "n", description, String(defaultValue), (text) => {
    const value = Number(text);
    if (!/^\d+$/.test(text) || (!allowZero && value === 0) || value > max) {
      throw new RangeError(
        `Cannot use count: current value is "${text}", it must be a ${
          allowZero ? "non-negative" : "positive"
        } integer${max < Number.MAX_SAFE_INTEGER ? ` up to ${max}` : ""}`,
      );
    }
    return value;
  });
}

/** A comma-separated list flag; each item goes through `parseItem`. An empty value is an empty list. */
export function listFlag<T>(
  flag: string,
  placeholder: string,
  description: string,
  defaultText: string,
  parseItem: (item: string) => T,
): Flag<T[]> {
  return valueFlag(flag, `${placeholder},...`, description, defaultText, (text) => {
    if (text.trim() === "") return [];
    return text.split(",").map((item) => {
      const trimmed = item.trim();
      if (trimmed === "") {
        throw new RangeError(`Cannot parse list: current value "${text}" has an empty item`);
      }
      return parseItem(trimmed);
    });
  });
}

/** Histogram bucket upper bounds in seconds: positive and strictly increasing. */
export function bucketsFlag(
  flag: string,
  description: string,
  defaults: readonly number[],
): Flag<number[]> {
  const parse = (text: string) => {
    const buckets = text.split(",").map((item) => Number(item.trim()));
    buckets.forEach((bound, index) => {
      if (!(bound > 0) || (index > 0 && !(bound > buckets[index - 1]!))) {
        throw new RangeError(
          `Cannot use buckets: current value is "${text}", expected positive seconds in increasing order`,
        );
      }
    });
    return buckets;
  };
  // A long list reads better in help as its range and length; the status page shows it whole.
  const shown = defaults.length > 8
    ? `${defaults[0]},${defaults[1]},…,${defaults.at(-1)} (${defaults.length} bounds)`
    : undefined;
  return valueFlag(flag, "seconds,...", description, defaults.join(","), parse, undefined, shown);
}

/** A flag that takes one of `choices`. */
export function choiceFlag<const T extends string>(
  flag: string,
  description: string,
  defaultValue: T,
  choices: readonly T[],
  aliases: Readonly<Record<string, T>> = {},
): Flag<T> {
  return valueFlag(flag, choices.join("|"), description, defaultValue, (text) => {
    const choice = choices.find((candidate) => candidate === text) ??
      (Object.hasOwn(aliases, text) ? aliases[text] : undefined);
    if (choice === undefined) {
      throw new RangeError(
        `Cannot use value: current value is "${text}", expected one of ${choices.join(", ")}`,
      );
    }
    return choice;
  });
}

/**
 * A `--flag` / `--no-flag` pair, default on. Its environment variable takes
 * true/false/1/0 (commander's own env support would treat "false" as set).
 */
export function switchFlag(flag: string, description: string): Flag<boolean> {
  const on = new Option(`--${flag}`, `${description} (env: ${envName(flag)}=true|false)`)
    .default(true);
  const off = new Option(`--no-${flag}`, `Turn off --${flag}`);
  return new TypedFlag<boolean>(flag, [on, off], (command, env) => {
    const attribute = on.attributeName();
    const fromCommand = command.getOptionValue(attribute) === true;
    if (command.getOptionValueSource(attribute) !== "default") return fromCommand;
    return switchFromEnv(flag, env) ?? fromCommand;
  });
}

/** Reads a switch's environment variable; undefined when it is unset or empty. */
function switchFromEnv(
  flag: string,
  env: (name: string) => string | undefined,
): boolean | undefined {
  const text = env(envName(flag));
  if (text === undefined || text === "") return undefined;
  const value = { true: true, "1": true, false: false, "0": false }[text.toLowerCase()];
  if (value === undefined) {
    throw new FlagError(
      `option '--${flag}' value '${text}' from env '${
        envName(flag)
      }' is invalid. Cannot use switch: expected true or false`,
    );
  }
  return value;
}
