/**
 * The command line: `net-exporter [serve] [flags]`, `net-exporter check [flags]`,
 * `net-exporter version`. Parsing checks everything before anything starts.
 * @module
 */

import { Command, CommanderError, Option } from "commander";
import type { CollectorContext } from "../collectors/collector.ts";
import type { Collector } from "../collectors/collector.ts";
import { COLLECTORS } from "../collectors/mod.ts";
import { configureDiscovery, discoveryFlags, type DiscoverySettings } from "../k8s/discovery.ts";
import { type HostPort, parseHostPort } from "./address.ts";
import {
  choiceFlag,
  FlagError,
  type FlagValues,
  integerFlag,
  switchFlags,
  switchFromEnv,
  valueFlag,
} from "./flags.ts";
import { LOG_FORMATS, LOG_LEVELS, type LogSettings } from "./log.ts";
import { VERSION } from "./metrics.ts";

/** Settings every command shares. */
export interface CommonSettings {
  readonly log: LogSettings;
  /** Enabled collectors, checked and ready to build. */
  readonly collectors: ReadonlyArray<
    { name: string; create: (context: CollectorContext) => Collector }
  >;
  /** Every flag's effective value, for the status page. */
  readonly flags: ReadonlyArray<readonly [string, string]>;
  /** Values of every flag. */
  readonly values: FlagValues;
  /** Kubernetes discovery, when on (or auto with a configuration at hand). */
  readonly discovery: DiscoverySettings | undefined;
}

/** What the command line asked for. */
export type Invocation =
  | {
    readonly command: "serve";
    readonly settings: CommonSettings;
    readonly listen: HostPort;
    readonly telemetryPath: string;
    readonly maxConnections: number;
  }
  | {
    readonly command: "check";
    readonly settings: CommonSettings;
    readonly output: "table" | "json";
  }
  | { readonly command: "version" }
  | { readonly command: "exit"; readonly code: number };

/** Where help and errors go; tests capture them. */
export interface CliOutput {
  writeOut(text: string): void;
  writeErr(text: string): void;
}

function parseListenAddress(text: string): HostPort {
  // ":8000" means every interface, as in Go; IPv6 "::" also accepts IPv4 on Linux.
  if (/^:\d+$/.test(text)) {
    return { ...parseHostPort(`0.0.0.0${text}`, { allowPortZero: true }), hostname: "::" };
  }
  return parseHostPort(text, { allowPortZero: true });
}

function parsePath(text: string): string {
  if (!/^\/[\x21-\x7e]*$/.test(text)) {
    throw new RangeError(`Cannot serve path: current value is "${text}", it must start with /`);
  }
  return text;
}

function commonFlags(): Option[] {
  return [
    ...COLLECTORS.flatMap((collector) =>
      switchFlags(
        `collector.${collector.name}`,
        `Run the ${collector.name} collector: ${collector.description}`,
      )
    ),
    ...COLLECTORS.flatMap((collector) => collector.flags()),
    ...discoveryFlags(),
    choiceFlag("log.level", "Least severe level logged", "info", LOG_LEVELS),
    choiceFlag("log.format", "Log line format", "json", LOG_FORMATS),
  ];
}

async function settingsOf(
  command: Command,
  env: (name: string) => string | undefined,
): Promise<CommonSettings> {
  const values = new Map<string, unknown>();
  const flags: Array<readonly [string, string]> = [];
  for (const option of command.options) {
    const name = option.long!.replace(/^--(no-)?/, "");
    if (option.negate) continue;
    let value = command.getOptionValue(option.attributeName());
    if (option.isBoolean() && command.getOptionValueSource(option.attributeName()) === "default") {
      value = switchFromEnv(name, env) ?? value;
    }
    values.set(name, value);
    flags.push([name, displayValue(value)]);
  }
  const collectors = COLLECTORS
    .filter((collector) => values.get(`collector.${collector.name}`) === true)
    .map((collector) => ({ name: collector.name, create: collector.configure(values) }));
  const networkOn = values.get("collector.network") === true;
  if (!networkOn && values.get("k8s.discovery") === "on") {
    throw new FlagError(
      "Cannot discover peers: current --k8s.discovery=on, but the network collector is off",
    );
  }
  return {
    log: {
      level: values.get("log.level") as LogSettings["level"],
      format: values.get("log.format") as LogSettings["format"],
    },
    collectors,
    flags,
    values,
    discovery: networkOn ? await configureDiscovery(values, env) : undefined,
  };
}

function displayValue(value: unknown): string {
  if (Array.isArray(value)) return value.map(displayValue).join(",");
  if (value !== null && typeof value === "object" && "hostname" in value && "port" in value) {
    const { hostname, port } = value as HostPort;
    return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
  }
  return String(value);
}

/**
 * Parses `argv` (without the program name). Help, version and bad input come
 * back as `{ command: "exit" }` after their text is written: 0 for help, 2 for
 * bad input, with one line naming the flag and the value.
 */
export async function parseCommandLine(
  argv: readonly string[],
  options: { output: CliOutput; env: (name: string) => string | undefined },
): Promise<Invocation> {
  const { output, env } = options;
  let invocation: Invocation | undefined;
  const program = new Command("net-exporter")
    .description("Prometheus exporter for DNS and pod-to-pod TCP latency")
    .exitOverride()
    .configureOutput({ writeOut: output.writeOut, writeErr: output.writeErr })
    .showSuggestionAfterError(true);

  const withFlags = (command: Command) => {
    for (const option of commonFlags()) command.addOption(option);
    return command;
  };

  withFlags(
    program.command("serve", { isDefault: true }).description(
      "Probe in the background and serve metrics",
    ),
  )
    .addOption(
      valueFlag(
        "web.listen-address",
        "[host]:port",
        "Address to serve HTTP on",
        ":8000",
        parseListenAddress,
      ),
    )
    .addOption(
      integerFlag(
        "web.max-connections",
        "HTTP connections held at once; a new one displaces the one idle longest",
        64,
      ),
    )
    .addOption(
      valueFlag(
        "web.telemetry-path",
        "path",
        "Path of the metrics endpoint",
        "/metrics",
        parsePath,
      ),
    )
    .action(async (_options, command: Command) => {
      invocation = {
        command: "serve",
        settings: await settingsOf(command, env),
        listen: command.getOptionValue("web.listenAddress") as HostPort,
        telemetryPath: command.getOptionValue("web.telemetryPath") as string,
        maxConnections: command.getOptionValue("web.maxConnections") as number,
      };
    });

  withFlags(
    program.command("check").description(
      "Probe every target once, print the results, exit 1 if any failed",
    ),
  )
    .addOption(choiceFlag("output", "Result format", "table", ["table", "json"] as const))
    .action(async (_options, command: Command) => {
      invocation = {
        command: "check",
        settings: await settingsOf(command, env),
        output: command.getOptionValue("output") as "table" | "json",
      };
    });

  program.command("version").description("Print the version").action(() => {
    invocation = { command: "version" };
  });

  try {
    await program.parseAsync(argv as string[], { from: "user" });
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has already written the message (or the help).
      return { command: "exit", code: error.exitCode === 0 ? 0 : 2 };
    }
    if (error instanceof FlagError) {
      output.writeErr(`error: ${error.message}\n`);
      return { command: "exit", code: 2 };
    }
    throw error;
  }
  return invocation ?? { command: "exit", code: 2 };
}

/** `net-exporter version` output. */
export function versionText(): string {
  return `net-exporter ${VERSION} (deno ${Deno.version.deno}, v8 ${Deno.version.v8})\n`;
}
