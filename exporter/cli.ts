/**
 * The command line: `net-exporter [serve] [flags]`, `net-exporter check [flags]`,
 * `net-exporter version`. Parsing checks everything before anything starts.
 * @module
 */

import { Command, CommanderError, Help } from "commander";
import { COLLECTORS, type ConfiguredCollector } from "../collectors/mod.ts";
import {
  configureDiscovery,
  DISCOVERY_FLAGS,
  DISCOVERY_MODE,
  type DiscoverySettings,
} from "../k8s/discovery.ts";
import { type HostPort, parseHostPort } from "../lib/address.ts";
import {
  choiceFlag,
  type Flag,
  FlagError,
  integerFlag,
  readFlags,
  valueFlag,
} from "../lib/flags.ts";
import { DEFAULT_EXCLUDED_PATHS, loadWebConfig, type WebConfig } from "../web/mod.ts";
import { LOG_FORMATS, LOG_LEVELS, type LogSettings } from "./log.ts";
import { configureNativeHistograms, METRICS_FLAGS, VERSION } from "./metrics.ts";
import { ECHO_LISTEN_FLAG } from "../collectors/echo.ts";
import type { NativeHistogramOptions } from "../lib/histogram.ts";
import {
  explainMistake,
  type FlagGroup,
  formatGroupedHelp,
  unknownVariableWarnings,
} from "./cli_help.ts";

/** Settings every command shares. */
export interface CommonSettings {
  readonly log: LogSettings;
  /** Enabled collectors, checked and ready to build. */
  readonly collectors: readonly ConfiguredCollector[];
  /** Every flag's effective value, for the status page. */
  readonly flags: ReadonlyArray<readonly [string, string]>;
  /** Kubernetes discovery, when on (or auto with a configuration at hand). */
  readonly discovery: DiscoverySettings | undefined;
  /** Discovery is on auto and found no configuration: only static targets are probed. */
  readonly staticTargetsOnly: boolean;
  /** Native buckets of the latency histograms. */
  readonly nativeHistograms: NativeHistogramOptions;
}

/** What the command line asked for. */
export type Invocation =
  | {
    readonly command: "serve";
    readonly settings: CommonSettings;
    readonly listen: HostPort;
    readonly telemetryPath: string;
    readonly maxConnections: number;
    /** `--web.config.file`, checked: its path and what it held at start. */
    readonly webConfig: { readonly path: string; readonly config: WebConfig } | undefined;
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
  if (/^\d+$/.test(text)) {
    throw new RangeError(
      `Cannot listen: current value is "${text}", a port alone; did you mean ":${text}"?`,
    );
  }
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
  // The health paths are served without credentials: metrics there would be open to anyone.
  if (DEFAULT_EXCLUDED_PATHS.includes(text) || text === "/") {
    throw new RangeError(
      `Cannot serve metrics at "${text}": it is the ${
        text === "/" ? "status page" : "health path"
      } (${["/", ...DEFAULT_EXCLUDED_PATHS].join(", ")} are taken)`,
    );
  }
  return text;
}

/** `--log.level` and `--log.format` with a command's defaults. */
function logFlags(level: LogSettings["level"], format: LogSettings["format"]) {
  return {
    // "warn" is how the Prometheus ecosystem (promlog, exporter-toolkit) spells it.
    level: choiceFlag("log.level", "Least severe level logged", level, LOG_LEVELS, {
      warn: "warning",
    }),
    format: choiceFlag("log.format", "Log line format", format, LOG_FORMATS),
  };
}
const SERVE_LOG = logFlags("info", "json");
// check prints its results as a table for a person: its logs say only what went wrong in the
// exporter itself, as text (a failed target is in the table, not in a log line).
const CHECK_LOG = logFlags("warning", "text");
const LISTEN_ADDRESS = valueFlag(
  "web.listen-address",
  "[host]:port",
  "Address to serve HTTP on",
  ":8000",
  parseListenAddress,
);
const MAX_CONNECTIONS = integerFlag(
  "web.max-connections",
  "HTTP connections held at once; a new one displaces the one slowest to send its request",
  64,
);
const TELEMETRY_PATH = valueFlag(
  "web.telemetry-path",
  "path",
  "Path of the metrics endpoint",
  "/metrics",
  parsePath,
);
const WEB_CONFIG_FILE = valueFlag(
  "web.config.file",
  "path",
  "TLS, client certificates, basic and bearer authentication, rate limit, in the exporter-toolkit format",
  "",
  (text) => text,
);
const OUTPUT = choiceFlag("output", "Result format", "table", ["table", "json"] as const);

/** The groups `serve` and `check` share, in the order of help and the status page. */
const PROBE_GROUPS: readonly FlagGroup[] = [
  { title: "Collectors", flags: COLLECTORS.map((collector) => collector.enabled) },
  ...COLLECTORS.map((collector) => ({
    title: `The ${collector.name} collector`,
    flags: collector.flags,
  })),
  { title: "Kubernetes discovery (peers for the network collector)", flags: DISCOVERY_FLAGS },
  { title: "Metrics", flags: METRICS_FLAGS },
];
const SERVE_GROUPS: readonly FlagGroup[] = [
  ...PROBE_GROUPS,
  { title: "Logging", flags: [SERVE_LOG.level, SERVE_LOG.format] },
  {
    title: "Listening",
    flags: [LISTEN_ADDRESS, MAX_CONNECTIONS, TELEMETRY_PATH, WEB_CONFIG_FILE, ECHO_LISTEN_FLAG],
  },
];
const CHECK_GROUPS: readonly FlagGroup[] = [
  ...PROBE_GROUPS,
  {
    title: "Logging (to stderr; the results go to stdout)",
    flags: [CHECK_LOG.level, CHECK_LOG.format],
  },
  { title: "Output", flags: [OUTPUT] },
];
const SERVE_FLAGS: readonly Flag<unknown>[] = SERVE_GROUPS.flatMap((group) => group.flags);
const CHECK_FLAGS: readonly Flag<unknown>[] = CHECK_GROUPS.flatMap((group) => group.flags);
const ALL_FLAGS: readonly Flag<unknown>[] = [...SERVE_FLAGS, ...CHECK_FLAGS];

const HELP_TRAILER = [
  "Every flag can also be set from the environment: NET_EXPORTER_ and its name,",
  "shown with each flag. The flags of one command: net-exporter serve --help,",
  "net-exporter check --help.",
];

async function settingsOf(
  command: Command,
  flags: readonly Flag<unknown>[],
  log: ReturnType<typeof logFlags>,
  env: (name: string) => string | undefined,
) {
  const values = readFlags(command, flags, env);
  const collectors = COLLECTORS
    .filter((collector) => collector.enabled.read(values))
    .map((collector) => collector.configure(values))
    .filter((collector) => collector !== undefined);
  const peerTaker = collectors.find((collector) => collector.peers !== undefined);
  const mode = DISCOVERY_MODE.read(values);
  if (!peerTaker && mode === "on") {
    const takers = COLLECTORS.filter((collector) => collector.takesPeers).map(({ name }) => name);
    throw new FlagError(
      `Cannot discover peers: current --k8s.discovery=on, but the ${
        takers.join(", ")
      } collector that probes them is off`,
    );
  }
  const discovery = peerTaker?.peers
    ? await configureDiscovery(values, peerTaker.peers, env)
    : undefined;
  const settings: CommonSettings = {
    log: { level: log.level.read(values), format: log.format.read(values) },
    collectors,
    flags: values.shown,
    discovery,
    staticTargetsOnly: peerTaker !== undefined && mode === "auto" && discovery === undefined,
    nativeHistograms: configureNativeHistograms(values),
  };
  return { values, settings };
}

/**
 * Parses `argv` (without the program name). Help, version and bad input come
 * back as `{ command: "exit" }` after their text is written: 0 for help, 2 for
 * bad input, with one line naming the flag and the value.
 */
export async function parseCommandLine(
  argv: readonly string[],
  options: {
    output: CliOutput;
    env: (name: string) => string | undefined;
    /**
     * Names of the environment's variables, to warn of a misspelt
     * `NET_EXPORTER_*` one; undefined where they cannot be listed (the
     * compiled binary may read only the variables it names).
     */
    envNames?: () => readonly string[] | undefined;
  },
): Promise<Invocation> {
  const { output, env } = options;
  let invocation: Invocation | undefined;
  const program = new Command("net-exporter")
    .description("Prometheus exporter for DNS and pod-to-pod TCP latency")
    .exitOverride()
    .configureOutput({ writeOut: output.writeOut, writeErr: output.writeErr })
    .showSuggestionAfterError(true)
    .version(versionText().trimEnd(), "-V, --version", "Print the version");
  // As every Prometheus exporter's: the top-level help lists the flags of the default command
  // (serve) first, then the other commands. Each command's flags come in groups (a collector's
  // beside it), the flag on its own line and its description wrapped beneath it.
  program.configureHelp({
    formatHelp: (command, helper) => {
      if (command.name() === "check") {
        return formatGroupedHelp(
          command,
          helper,
          CHECK_GROUPS,
          "Usage: net-exporter check [flags]",
        );
      }
      if (command.name() === "serve") {
        return formatGroupedHelp(
          command,
          helper,
          SERVE_GROUPS,
          "Usage: net-exporter [serve] [flags]",
        );
      }
      if (command !== program) return new Help().formatHelp(command, helper);
      const serve = command.commands.find((sub) => sub.name() === "serve")!;
      const width = helper.helpWidth ?? 80;
      const commands = helper.visibleCommands(command).map((sub) =>
        `  ${helper.subcommandTerm(sub).padEnd(16)}  ${
          helper.boxWrap(helper.subcommandDescription(sub), width - 20).replaceAll(
            "\n",
            `\n${" ".repeat(20)}`,
          )
        }`
      );
      return formatGroupedHelp(
        serve,
        helper,
        SERVE_GROUPS,
        "Usage: net-exporter [serve] [flags]\n       net-exporter <command> [flags]",
        {
          options: helper.visibleOptions(command),
          trailer: [
            "",
            "Commands:",
            ...commands,
            "",
            ...HELP_TRAILER,
          ],
        },
      );
    },
  });

  const withFlags = (command: Command, flags: readonly Flag<unknown>[]) => {
    for (const flag of flags) for (const option of flag.options) command.addOption(option);
    return command;
  };

  withFlags(
    program.command("serve", { isDefault: true }).description(
      "Probe in the background and serve metrics",
    ),
    SERVE_FLAGS,
  ).action(async (_options, command: Command) => {
    const { values, settings } = await settingsOf(command, SERVE_FLAGS, SERVE_LOG, env);
    const webConfigPath = WEB_CONFIG_FILE.read(values);
    let webConfig: { path: string; config: WebConfig } | undefined;
    if (webConfigPath !== "") {
      try {
        webConfig = { path: webConfigPath, config: await loadWebConfig(webConfigPath) };
      } catch (error) {
        throw new FlagError(error instanceof Error ? error.message : String(error));
      }
    }
    invocation = {
      command: "serve",
      settings,
      listen: LISTEN_ADDRESS.read(values),
      telemetryPath: TELEMETRY_PATH.read(values),
      maxConnections: MAX_CONNECTIONS.read(values),
      webConfig,
    };
  });

  withFlags(
    program.command("check").description(
      "Probe every target once, print the results, exit 1 if any failed",
    ),
    CHECK_FLAGS,
  ).action(async (_options, command: Command) => {
    const { values, settings } = await settingsOf(command, CHECK_FLAGS, CHECK_LOG, env);
    invocation = { command: "check", settings, output: OUTPUT.read(values) };
  });

  program.command("version").description("Print the version").action(() => {
    invocation = { command: "version" };
  });

  const mistake = explainMistake(argv, program, "serve");
  if (mistake !== undefined) {
    output.writeErr(mistake);
    return { command: "exit", code: 2 };
  }
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
  if (invocation?.command === "serve" || invocation?.command === "check") {
    for (const warning of unknownVariableWarnings(options.envNames?.() ?? [], ALL_FLAGS)) {
      output.writeErr(warning);
    }
  }
  return invocation ?? { command: "exit", code: 2 };
}

/** `net-exporter version` output. */
export function versionText(): string {
  return `net-exporter ${VERSION} (deno ${Deno.version.deno}, v8 ${Deno.version.v8})\n`;
}
