/**
 * The status page: what an operator on a node wants at a glance — which
 * targets are failing, since when and why, how their latency moved over the
 * last probes (an inline SVG sparkline, failures in red), discovery's state,
 * the peers by node with who probes whom, and the configuration.
 *
 * No framework and no outside asset, so it works air-gapped. Every value from
 * outside (target names, node and pod names, error messages) is escaped. It
 * refreshes itself every 5 s by fetching the page and swapping the changing
 * parts, without a full reload.
 * @module
 */

// @ts-types="npm:@types/escape-html@1.0.4"
import escape from "escape-html";
import type { TargetStatus } from "../collectors/collector.ts";
import type { PastProbe } from "../collectors/history.ts";
import type { DiscoveryHealth, PeerView } from "../k8s/discovery.ts";

/** What the status page shows. */
export interface StatusView {
  readonly flags: ReadonlyArray<readonly [string, string]>;
  readonly targets: readonly TargetStatus[];
  readonly peers?: readonly PeerView[];
  /** Kubernetes discovery's state, when it runs. */
  readonly discovery?: DiscoveryHealth;
}

/** Milliseconds with enough digits to compare with a reference tool. */
export function formatSeconds(seconds: number | undefined): string {
  return seconds === undefined ? "" : `${(seconds * 1000).toFixed(3)} ms`;
}

/** A time span as a person reads it: "45s", "12m 5s", "3h 20m", "2d 4h". */
export function formatAge(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${seconds % 60}s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h ${minutes % 60}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

const ORDER: Readonly<Record<TargetStatus["state"], number>> = { down: 0, pending: 1, up: 2 };

const SPARK_WIDTH = 150;
const SPARK_HEIGHT = 22;

/** The last probes as a line of latencies, scaled to their maximum, with failures as red bars. */
export function sparkline(history: readonly PastProbe[]): string {
  if (history.length === 0) return "";
  const step = history.length > 1 ? SPARK_WIDTH / (history.length - 1) : 0;
  const successes = history.filter((probe) => probe.seconds !== null);
  const max = Math.max(...successes.map((probe) => probe.seconds!), 1e-9);
  const x = (index: number) => (index * step).toFixed(1);
  const y = (seconds: number) =>
    (SPARK_HEIGHT - 2 - (seconds / max) * (SPARK_HEIGHT - 4)).toFixed(1);
  const points = history.flatMap((probe, index) =>
    probe.seconds === null ? [] : [`${x(index)},${y(probe.seconds)}`]
  );
  const failures = history.flatMap((probe, index) =>
    probe.seconds === null
      ? [
        `<rect class="fail" x="${
          Math.max(0, +x(index) - 1.5)
        }" y="0" width="3" height="${SPARK_HEIGHT}"><title>${
          escape(`${new Date(probe.at).toISOString()}: ${probe.reason ?? "failed"}`)
        }</title></rect>`,
      ]
      : []
  );
  const label = `${history.length} probes, ${history.length - successes.length} failed, ` +
    `highest ${formatSeconds(max)}`;
  return `<svg class="spark" width="${SPARK_WIDTH}" height="${SPARK_HEIGHT}" viewBox="-2 0 ${
    SPARK_WIDTH + 4
  } ${SPARK_HEIGHT}" role="img" aria-label="${escape(label)}"><title>${escape(label)}</title>${
    failures.join("")
  }${points.length > 0 ? `<polyline points="${points.join(" ")}"/>` : ""}</svg>`;
}

/** A success's further figures in words, e.g. "offset 250.012 ms · stratum 2". */
export function formatReadings(readings: Readonly<Record<string, number>> | undefined): string {
  return Object.entries(readings ?? {}).map(([name, value]) => {
    const unit = /(Seconds|Ratio|Bytes)$/.exec(name)?.[1];
    const words = name.replace(/(Seconds|Ratio|Bytes)$/, "").replace(
      /[A-Z]/g,
      (letter) => ` ${letter.toLowerCase()}`,
    );
    const shown = unit === "Seconds"
      ? formatSeconds(value)
      : unit === "Ratio"
      ? `${+(value * 100).toFixed(1)}%`
      : unit === "Bytes"
      ? `${value} B`
      : String(value);
    return `${words} ${shown}`;
  }).join(" · ");
}

function failures(status: TargetStatus): string {
  const counts = Object.entries(status.failures ?? {}).filter(([, count]) => count > 0);
  return counts.map(([reason, count]) => `${escape(reason)}&nbsp;${count}`).join(", ");
}

function targetRows(targets: readonly TargetStatus[], now: number): string {
  const sorted = [...targets].sort((a, b) =>
    ORDER[a.state] - ORDER[b.state] || a.collector.localeCompare(b.collector) ||
    a.title.localeCompare(b.title)
  );
  return sorted.map((status) =>
    `<tr class="${status.state}"><td>${escape(status.collector)}</td>` +
    `<td>${escape(status.title)}</td><td class="state">${status.state}</td>` +
    `<td>${status.since === undefined ? "" : `${formatAge(now - status.since)} ago`}</td>` +
    `<td class="num">${formatSeconds(status.seconds)}</td>` +
    `<td>${sparkline(status.history ?? [])}</td><td>${failures(status)}</td>` +
    `<td>${
      status.state === "down"
        ? `<b>${escape(status.reason ?? "")}</b> ${escape(status.message ?? "")}`
        : escape(formatReadings(status.readings))
    }</td></tr>`
  ).join("\n");
}

function summary(targets: readonly TargetStatus[]): string {
  const count = (state: TargetStatus["state"]) =>
    targets.filter((status) => status.state === state).length;
  return `<p id="summary"><span class="down">${count("down")} down</span> · ${
    count("pending")
  } pending · <span class="up">${count("up")} up</span></p>`;
}

function discoverySection(health: DiscoveryHealth | undefined, now: number): string {
  if (health === undefined) return `<div id="discovery"></div>`;
  return `<div id="discovery"><h2>Kubernetes discovery</h2><p class="${
    health.state === "failing" ? "down" : "up"
  }">${escape(health.state)}${health.since ? ` for ${formatAge(now - health.since)}` : ""}${
    health.error ? `: ${escape(health.error)}` : ""
  }</p></div>`;
}

function peersSection(peers: readonly PeerView[] | undefined): string {
  if (peers === undefined) return `<div id="peers"></div>`;
  const byNode = new Map<string, PeerView[]>();
  for (const peer of peers) byNode.set(peer.node, [...(byNode.get(peer.node) ?? []), peer]);
  const yes = (value: boolean | undefined) => value === undefined ? "?" : value ? "yes" : "no";
  const rows = [...byNode.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([node, pods]) =>
    pods.map((peer, index) =>
      `<tr>${index === 0 ? `<td rowspan="${pods.length}">${escape(node)}</td>` : ""}<td>${
        escape(peer.name)
      }</td><td>${escape(peer.addresses.join(", "))}</td><td>${yes(peer.selected)}</td><td>${
        yes(peer.probesThisPod)
      }</td></tr>`
    ).join("\n")
  ).join("\n");
  return `<div id="peers"><h2>Peers by node (${peers.length} pods, ${byNode.size} nodes)</h2>
<table><thead><tr><th>Node</th><th>Pod</th><th>Addresses</th><th>This pod probes it</th><th>It probes this pod</th></tr></thead>
<tbody>${rows}</tbody></table></div>`;
}

const STYLE = `body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:middle}
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}
tr.down{background:#fde8e8}tr.down .state,span.down,p.down{color:#b00;font-weight:bold}
tr.up .state,span.up,p.up{color:#070}tr.pending{color:#777}
svg.spark polyline{fill:none;stroke:#36c;stroke-width:1.5}svg.spark rect.fail{fill:#d33}
#updated{color:#777}`;

/** Swaps the changing parts from a fresh copy of the page every 5 s; stops after 3 failures in a row. */
const SCRIPT = `(() => {
  let failures = 0;
  const refresh = async () => {
    try {
      const response = await fetch(location.pathname, { headers: { accept: "text/html" } });
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const id of ["summary", "targets", "discovery", "peers", "updated"]) {
        const next = fresh.getElementById(id);
        const current = document.getElementById(id);
        if (next && current) current.replaceWith(next);
      }
      failures = 0;
    } catch {
      failures++;
    }
    if (failures < 3) setTimeout(refresh, 5000);
  };
  setTimeout(refresh, 5000);
})();`;

/** The whole page. */
export function renderStatusPage(
  view: StatusView,
  telemetryPath: string,
  version: string,
  now = Date.now(),
): string {
  const flags = view.flags.map(([name, value]) =>
    `<tr><td>--${escape(name)}</td><td>${escape(value)}</td></tr>`
  ).join("\n");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>net-exporter</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>${STYLE}</style>
</head><body>
<h1>net-exporter ${escape(version)}</h1>
<p><a href="${
    escape(telemetryPath)
  }">Metrics</a> · <a href="/healthz">Health</a> · <a href="/readyz">Readiness</a> · <span id="updated">as of ${
    new Date(now).toISOString().slice(11, 19)
  } UTC</span></p>
<h2>Targets</h2>
${summary(view.targets)}
<table><thead><tr><th>Collector</th><th>Target</th><th>State</th><th>Since</th><th>Last latency</th><th>Recent probes (latest right)</th><th>Failures</th><th>Last error, or figures</th></tr></thead>
<tbody id="targets">
${targetRows(view.targets, now)}
</tbody></table>
${discoverySection(view.discovery, now)}
${peersSection(view.peers)}
<h2>Configuration</h2>
<table>${flags}</table>
<script>${SCRIPT}</script>
</body></html>
`;
}
