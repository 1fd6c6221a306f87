/**
 * The HTTP surface as a plain `(Request) => Response` handler: metrics,
 * health, readiness and a status page. It only reads state; a scrape never
 * triggers a probe.
 * @module
 */

import { renderRegistry } from "../lib/exposition.ts";
import { negotiateExposition, PROTOBUF_CONTENT_TYPE } from "../lib/exposition_negotiation.ts";
import type * as client from "../lib/prom_client.ts";
import { renderStatusPage, type StatusView } from "./status_page.ts";
import { VERSION } from "./metrics.ts";
import { plain } from "../web/mod.ts";
import { Semaphore } from "../lib/semaphore.ts";

/** A signal that never aborts: a scrape waiting for a render is bounded by the waiting line. */
const NEVER = new AbortController().signal;

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

/**
 * A render gives the event loop a turn whenever it has held it this long
 * (ms): thousands of series in one go would hold up probe starts and DNS
 * answers as long. A turn costs about 0.06 ms (lib/event_loop.ts).
 */
const YIELD_AFTER_MS = 4;

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
  const renderBounded = async (accept: string | null): Promise<Response> => {
    if (waiting >= MAX_WAITING_RENDERS) {
      return plain(503, "Too many scrapes at once", { "retry-after": "1" });
    }
    waiting++;
    try {
      await renders.acquire(NEVER);
    } finally {
      waiting--;
    }
    try {
      // Native histograms exist only in the protobuf exposition; text stays the default.
      if (negotiateExposition(accept) === "protobuf") {
        // Loaded at the first protobuf scrape: a Prometheus reading text never pays for the library.
        const { renderRegistryProtobuf } = await import("../lib/exposition_proto.ts");
        return new Response(
          await renderRegistryProtobuf(state.registry, { yieldAfterMs: YIELD_AFTER_MS }),
          {
            headers: { "content-type": PROTOBUF_CONTENT_TYPE },
          },
        );
      }
      return new Response(await renderRegistry(state.registry, { yieldAfterMs: YIELD_AFTER_MS }), {
        headers: { "content-type": state.registry.contentType },
      });
    } finally {
      renders.release();
    }
  };
  return async (request) => {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return plain(405, "Method not allowed", { allow: "GET, HEAD" });
    }
    const { pathname } = new URL(request.url);
    switch (pathname) {
      case state.telemetryPath:
        return await renderBounded(request.headers.get("accept"));
      case "/healthz":
        return plain(state.alive() ? 200 : 503, state.alive() ? "ok" : "scheduler stalled");
      case "/readyz":
        return plain(state.ready() ? 200 : 503, state.ready() ? "ready" : "not ready");
      case "/": {
        const view = state.status();
        if ((request.headers.get("accept") ?? "").includes("application/json")) {
          return Response.json({ version: VERSION, ...view });
        }
        return new Response(renderStatusPage(view, state.telemetryPath, VERSION), {
          headers: { "content-type": "text/html; charset=utf-8" },
        });
      }
      default:
        return plain(404, "not found");
    }
  };
}
