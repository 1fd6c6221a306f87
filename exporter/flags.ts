/**
 * Building blocks for flags. Every flag is also read from the environment as
 * `NET_EXPORTER_` + its name upper-cased with dots and dashes as underscores;
 * a flag on the command line beats the environment.
 * @module
 */

import { InvalidArgumentError, Option } from "commander";
import { parseDuration } from "./duration.ts";

/** The parsed flags, keyed by long name without dashes (e.g. "dns.interval"). */
export type FlagValues = ReadonlyMap<string, unknown>;

/** A combination of flags that cannot work together; reported like a bad flag, exit 2. */
export class FlagError extends Error {
  override name = "FlagError";
}

/** The environment variable that sets `flag`, e.g. "dns.interval" → NET_EXPORTER_DNS_INTERVAL. */
export function envName(flag: string): string {
  return `NET_EXPORTER_${flag.toUpperCase().replace(/[.-]/g, "_")}`;
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
): Option {
  return new Option(`--${flag} <${placeholder}>`, description)
    .env(envName(flag))
    .default(parse(defaultText), defaultText === "" ? '""' : defaultText)
    .argParser(parsing(parse));
}

/** A Go-style duration flag, in milliseconds. */
export function durationFlag(flag: string, description: string, defaultText: string): Option {
  return valueFlag(flag, "duration", description, defaultText, parseDuration);
}

/** A positive integer flag; `allowZero` admits 0 where it has a meaning of its own. */
export function integerFlag(
  flag: string,
  description: string,
  defaultValue: number,
  { allowZero = false } = {},
): Option {
  return valueFlag(flag, "n", description, String(defaultValue), (text) => {
    const value = Number(text);
    if (!/^\d+$/.test(text) || (!allowZero && value === 0)) {
      throw new RangeError(
        `Cannot use count: current value is "${text}", it must be a ${
          allowZero ? "non-negative" : "positive"
        } integer`,
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
): Option {
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
): Option {
  return valueFlag(flag, "seconds,...", description, defaults.join(","), (text) => {
    const buckets = text.split(",").map((item) => Number(item.trim()));
    buckets.forEach((bound, index) => {
      if (!(bound > 0) || (index > 0 && !(bound > buckets[index - 1]!))) {
        throw new RangeError(
          `Cannot use buckets: current value is "${text}", expected positive seconds in increasing order`,
        );
      }
    });
    return buckets;
  });
}

/** A flag that takes one of `choices`. */
export function choiceFlag<const T extends string>(
  flag: string,
  description: string,
  defaultValue: T,
  choices: readonly T[],
): Option {
  return valueFlag(flag, choices.join("|"), description, defaultValue, (text) => {
    if (!(choices as readonly string[]).includes(text)) {
      throw new RangeError(
        `Cannot use value: current value is "${text}", expected one of ${choices.join(", ")}`,
      );
    }
    return text as T;
  });
}

/**
 * A `--flag` / `--no-flag` pair, default on. Its environment variable takes
 * true/false/1/0 (commander's own env support would treat "false" as set).
 */
export function switchFlags(flag: string, description: string): Option[] {
  return [
    new Option(`--${flag}`, `${description} (env: ${envName(flag)}=true|false)`).default(true),
    new Option(`--no-${flag}`, `Turn off --${flag}`),
  ];
}

/** Reads a switch's environment variable when the command line did not set it. */
export function switchFromEnv(
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
