/**
 * The HTTP surface as a plain `(Request) => Response` handler: metrics,
 * health, readiness and a status page. It only reads state; a scrape never
 * triggers a probe.
 * @module
 */

import type client from "prom-client";
// @ts-types="npm:@types/escape-html@1.0.4"
import escape from "escape-html";
import type { TargetStatus } from "../collectors/collector.ts";
import type { DiscoveryHealth, PeerView } from "../k8s/discovery.ts";
import { VERSION } from "./metrics.ts";
import { Semaphore } from "../lib/semaphore.ts";

/** A signal that never aborts: a scrape waiting for a render is bounded by the waiting line. */
const NEVER = new AbortController().signal;

/** What the status page shows. */
export interface StatusView {
  readonly flags: ReadonlyArray<readonly [string, string]>;
  readonly targets: readonly TargetStatus[];
  readonly peers?: readonly PeerView[];
  /** Kubernetes discovery's state, when it runs. */
  readonly discovery?: DiscoveryHealth;
}

/** What the handler reads. */
export interface HttpState {
  readonly registry: client.Registry;
  readonly telemetryPath: string;
  /** Process and scheduler alive (liveness). */
  alive(): boolean;
  /** First round done, discovery synced, not shutting down (readiness). */
  ready(): boolean;
  status(): StatusView;
}

/** Renders of the metrics at once; more wait in line. */
export const MAX_CONCURRENT_RENDERS = 2;
/** Scrapes waiting for a render; beyond them a scrape is answered 503 at once. */
export const MAX_WAITING_RENDERS = 8;

/** Builds the request handler. */
export function createHandler(state: HttpState): (request: Request) => Promise<Response> {
  // Each render holds the whole exposition in memory: without a bound, 2,000
  // concurrent scrapes took 1.25 GB.
  const renders = new Semaphore(MAX_CONCURRENT_RENDERS);
  let waiting = 0;
  const renderBounded = async (): Promise<Response> => {
    if (waiting >= MAX_WAITING_RENDERS) {
      return new Response("Too many scrapes at once\n", {
        status: 503,
        headers: { "retry-after": "1", "content-type": "text/plain; charset=utf-8" },
      });
    }
    waiting++;
    try {
      await renders.acquire(NEVER);
    } finally {
      waiting--;
    }
    try {
      return new Response(await renderYielding(state.registry), {
        headers: { "content-type": state.registry.contentType },
      });
    } finally {
      renders.release();
    }
  };
  return async (request) => {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("Method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    const { pathname } = new URL(request.url);
    switch (pathname) {
      case state.telemetryPath:
        return await renderBounded();
      case "/healthz":
        return plain(state.alive() ? 200 : 503, state.alive() ? "ok" : "scheduler stalled");
      case "/readyz":
        return plain(state.ready() ? 200 : 503, state.ready() ? "ready" : "not ready");
      case "/": {
        const view = state.status();
        if ((request.headers.get("accept") ?? "").includes("application/json")) {
          return Response.json({ version: VERSION, ...view });
        }
        return new Response(renderPage(view, state.telemetryPath), {
          headers: { "content-type": "text/html; charset=utf-8" },
        });
      }
      default:
        return plain(404, "not found");
    }
  };
}

function plain(status: number, text: string): Response {
  return new Response(`${text}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

/** Milliseconds with enough digits to compare with a reference tool. */
export function formatSeconds(seconds: number | undefined): string {
  return seconds === undefined ? "" : `${(seconds * 1000).toFixed(3)} ms`;
}

function renderPage(view: StatusView, telemetryPath: string): string {
  const rows = view.targets.map((status) =>
    `<tr class="${status.state}"><td>${escape(status.collector)}</td><td>${
      escape(status.title)
    }</td>` +
    `<td>${status.state}</td><td>${formatSeconds(status.seconds)}</td>` +
    `<td>${escape(status.reason ?? "")}</td><td>${escape(status.message ?? "")}</td>` +
    `<td>${status.at ? new Date(status.at).toISOString() : ""}</td></tr>`
  ).join("\n");
  const health = view.discovery;
  const discovery = health === undefined ? "" : `<h2>Kubernetes discovery</h2>
<p class="${health.state === "failing" ? "down" : "up"}">${escape(health.state)}${
    health.since ? ` since ${new Date(health.since).toISOString()}` : ""
  }${health.error ? `: ${escape(health.error)}` : ""}</p>`;
  const peers = view.peers === undefined ? "" : `<h2>Discovered peers</h2>
<table><tr><th>Pod</th><th>Node</th><th>Addresses</th><th>Probed by this pod</th></tr>
${
    view.peers.map((peer) =>
      `<tr><td>${escape(peer.name)}</td><td>${escape(peer.node)}</td><td>${
        escape(peer.addresses.join(", "))
      }</td><td>${peer.selected ? "yes" : "no"}</td></tr>`
    ).join("\n")
  }
</table>`;
  const flags = view.flags.map(([name, value]) =>
    `<tr><td>--${escape(name)}</td><td>${escape(value)}</td></tr>`
  )
    .join("\n");
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>net-exporter</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}.down{background:#fdd}.up{background:#efe}</style>
</head><body>
<h1>net-exporter ${escape(VERSION)}</h1>
<p><a href="${
    escape(telemetryPath)
  }">Metrics</a> · <a href="/healthz">Health</a> · <a href="/readyz">Readiness</a></p>
<h2>Targets</h2>
<table><tr><th>Collector</th><th>Target</th><th>State</th><th>Last latency</th><th>Reason</th><th>Error</th><th>At</th></tr>
${rows}
</table>
${discovery}
${peers}
<h2>Configuration</h2>
<table>${flags}</table>
</body></html>
`;
}

/**
 * The registry's text, one metric family at a time, giving the event loop a
 * turn whenever rendering has held it for 4 ms: thousands of series rendered
 * in one go would hold up probe starts and DNS answers for as long. Small
 * registries render in one go. Same bytes as `registry.metrics()`.
 */
async function renderYielding(registry: client.Registry): Promise<string> {
  const families: string[] = [];
  let since = performance.now();
  for (const metric of registry.getMetricsAsArray()) {
    if (performance.now() - since > 4) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      since = performance.now();
    }
    // prom-client's typings leave out the name every metric has.
    const { name } = metric as unknown as { name: string };
    families.push(await registry.getSingleMetricAsString(name));
  }
  return families.join("\n\n") + "\n";
}
