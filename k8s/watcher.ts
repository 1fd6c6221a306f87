/**
 * One list, then one watch of the running net-exporter pods, kept alive through
 * whatever the API server does.
 *
 * The list is paginated; the watch asks for bookmarks and a server-side
 * timeout and resumes from the last resourceVersion; a 410 Gone (as an HTTP
 * status or an ERROR event) means the history is gone, so the pods are
 * listed again. client-node's informer stops for good on any other error and
 * has no client-side timeout, so a half-open connection would stall it
 * silently: here every failure is retried with capped exponential backoff and
 * jitter, and a stream that stays silent past the server's own timeout is
 * cut and resumed. The last known pods stay known throughout.
 *
 * Everything the API server sends is bounded: a list has a deadline, a cap on
 * its pages and on each page's bytes; a watch has a deadline for its answer,
 * then for silence (the server's timeout plus slack), and a cap on one line.
 * A watch that ends at once or with nothing in it waits its backoff like a
 * failure, so a broken proxy that answers 200 and hangs up is not asked again
 * in a tight loop.
 * @module
 */

import { type Clock, deadline, systemClock } from "../lib/clock.ts";
import { formatDuration } from "../lib/duration.ts";
import { concatBytes } from "../lib/io.ts";
import { LineSplitter } from "../lib/lines.ts";
import type { ApiClient } from "./client.ts";
import { type PodObject, type PodRecord, toPodRecord } from "./pods.ts";

/** What a watcher reports. */
export interface WatcherEvents {
  /** The pod cache changed (after the list, and after each batch of watch events). */
  onPods(pods: ReadonlyMap<string, PodRecord>): void;
  /** A request or stream failed; the watcher retries after `retryInMs`. */
  onFailure(error: Error, retryInMs: number): void;
  /** Every request made, by verb and HTTP status ("error" when none came back). */
  onRequest(verb: "list" | "watch", code: string): void;
  /** The cache is known to be current as of now: a list, or a parsed watch event or bookmark. */
  onSynced(): void;
}

/** Where to watch and how patiently. */
export interface WatcherOptions {
  readonly client: ApiClient;
  readonly namespace: string;
  readonly labelSelector: string;
  /**
   * Server-side watch timeout; the server ends the stream after it and the watcher resumes. Each
   * watch asks for up to a fifth more, at random ({@link WATCH_TIMEOUT_SPREAD}).
   */
  readonly watchTimeoutSeconds?: number;
  /** How long past the server's timeout a silent stream is tolerated before it is cut. */
  readonly silenceSlackMs?: number;
  readonly pageSize?: number;
  /** Deadline of one list page, from request to the last byte of its body. */
  readonly listTimeoutMs?: number;
  /** Deadline of a watch's answer (its status and headers). */
  readonly watchOpenTimeoutMs?: number;
  /** Pages one list may take; beyond it the list is abandoned and retried. */
  readonly maxListPages?: number;
  /** Bytes one list page may take. */
  readonly maxPageBytes?: number;
  /** Bytes one watch event (one line) may take; beyond it the stream is cut and the pods listed. */
  readonly maxLineBytes?: number;
  readonly backoffInitialMs?: number;
  readonly backoffMaxMs?: number;
  readonly clock?: Clock;
  readonly random?: () => number;
}

/** An HTTP answer other than 200, with the API server's own message. */
class ApiStatusError extends Error {
  override name = "ApiStatusError";
  constructor(readonly verb: string, readonly status: number, message: string) {
    super(`Cannot ${verb} pods: API server answered ${status}${message ? ` (${message})` : ""}`);
  }
}

class Expired extends Error {
  override name = "Expired";
}

class SilentStream extends Error {
  override name = "SilentStream";
}

/** The API server sent more than the watcher will hold. */
class TooLarge extends Error {
  override name = "TooLarge";
}

/** A watch that ended at once, or with nothing in it. */
class EmptyWatch extends Error {
  override name = "EmptyWatch";
}

/** The server-side timeout of a watch by default: each pod opens one watch per ~5 minutes. */
export const WATCH_TIMEOUT_SECONDS = 300;
/**
 * A watch's server-side timeout is spread up to this fraction above the base
 * (300–360 s): pods started together (an install, a rollout round, an API
 * server restart) would otherwise renew their watches in the same second
 * every 5 minutes, for as long as they run (docs/scale.md measured it).
 * client-go spreads its reflectors' watches the same way, over 5–10 minutes.
 */
export const WATCH_TIMEOUT_SPREAD = 0.2;

/** One watch's server-side timeout: `baseSeconds` spread by {@link WATCH_TIMEOUT_SPREAD}. */
export function watchTimeout(baseSeconds: number, random: () => number): number {
  return Math.round(baseSeconds * (1 + WATCH_TIMEOUT_SPREAD * random()));
}

/** Pods per list page by default. */
export const LIST_PAGE_SIZE = 500;

/**
 * Only running pods are listed and watched: a pod that is not running is never
 * a peer (`isPeer` in pods.ts), and the API server filters before it sends. A pod
 * enters the watch as ADDED when it starts running and leaves it as DELETED
 * when it stops (or is deleted), so the creation, binding and pending status
 * of every new pod are never sent to every exporter: in a rollout each pod
 * replaced reaches each exporter as about 3 of its 7 changes, and the API
 * server's fan-out (N pods × N exporters) is less than half (docs/scale.md).
 */
export const RUNNING_PODS = "status.phase=Running";

/**
 * The path of a pods request of the watcher: a list page or a watch, for the
 * running pods ({@link RUNNING_PODS}) in `namespace` matching `labelSelector`,
 * with `query` (limit, continue, watch, resourceVersion…). Exported so that
 * the scale harness's hollow exporters (tests/cluster/hollow.ts) ask exactly
 * what a pod asks.
 */
export function podsPath(
  namespace: string,
  labelSelector: string,
  query: Record<string, string>,
): string {
  const params = new URLSearchParams({ labelSelector, fieldSelector: RUNNING_PODS, ...query });
  return `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods?${params}`;
}

/**
 * The query of one list page. The first list after a start asks for
 * `resourceVersion=0`: any version the API server has, served from its watch
 * cache instead of a read of every pod from etcd (client-go's informers do
 * the same; the watch that follows catches up from the list's version). A
 * relist after a 410 or a failure asks for the current state (no version),
 * so the cache never goes back in time. Further pages carry only the
 * continue token: the API server refuses a version beside it.
 */
export function listQuery(
  pageSize: number,
  continueToken: string,
  first: boolean,
): Record<string, string> {
  const query: Record<string, string> = { limit: String(pageSize) };
  if (continueToken) query.continue = continueToken;
  else if (first) query.resourceVersion = "0";
  return query;
}

/** A watch stream ending sooner than this after it opened, with no event, waits its backoff. */
const QUICK_END_MS = 1_000;

interface PodList {
  metadata?: { resourceVersion?: string; continue?: string };
  items?: PodObject[];
}

interface WatchEvent {
  type?: string;
  object?: PodObject & { metadata?: { resourceVersion?: string }; code?: number; message?: string };
}

/** Keeps a map of pod uid → {@link PodRecord} current with the API server. */
export class PodWatcher {
  readonly #options: Required<Omit<WatcherOptions, "client">> & Pick<WatcherOptions, "client">;
  readonly #events: WatcherEvents;
  readonly #pods = new Map<string, PodRecord>();
  readonly #stop = new AbortController();
  #loop: Promise<void> | undefined;
  #synced = false;
  /** True once a list has completed: later lists ask for the current state, not the cache's. */
  #listed = false;
  /** Where a watch resumes: the last version seen in a list, an event or a bookmark. */
  #resourceVersion: string | undefined;

  constructor(options: WatcherOptions, events: WatcherEvents) {
    this.#options = {
      watchTimeoutSeconds: WATCH_TIMEOUT_SECONDS,
      silenceSlackMs: 30_000,
      pageSize: LIST_PAGE_SIZE,
      listTimeoutMs: 30_000,
      watchOpenTimeoutMs: 30_000,
      maxListPages: 40,
      maxPageBytes: 64 * 1024 * 1024,
      maxLineBytes: 4 * 1024 * 1024,
      backoffInitialMs: 500,
      backoffMaxMs: 30_000,
      clock: systemClock,
      random: Math.random,
      ...options,
    };
    this.#events = events;
  }

  /** True once the first list has completed. */
  get synced(): boolean {
    return this.#synced;
  }

  /** Lists once (all pages) and returns the pods; for `check`. */
  async listOnce(signal: AbortSignal): Promise<ReadonlyMap<string, PodRecord>> {
    await this.#list(signal);
    return this.#pods;
  }

  /** Starts the list-then-watch loop in the background. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** Stops watching and waits for the loop to end. */
  async stop(): Promise<void> {
    this.#stop.abort(new DOMException("Watcher stopped", "AbortError"));
    await this.#loop;
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    let failures = 0;
    while (!signal.aborted) {
      try {
        if (this.#resourceVersion === undefined) {
          await this.#list(signal);
          failures = 0; // a good list ends an outage: the next failure starts from the shortest wait
        }
        if (await this.#watch(signal)) failures = 0;
      } catch (error) {
        if (signal.aborted) break;
        if (error instanceof Expired) {
          this.#resourceVersion = undefined; // history gone: list again, at once
          continue;
        }
        // A line too long was skipped: the cache can only be trusted again after a list.
        if (error instanceof TooLarge) this.#resourceVersion = undefined;
        const retryInMs = this.#backoff(failures++);
        this.#events.onFailure(
          error instanceof Error ? error : new Error(String(error)),
          retryInMs,
        );
        await this.#sleep(retryInMs, signal);
      }
    }
  }

  /** Capped exponential backoff with equal jitter: half fixed, half random. */
  #backoff(failures: number): number {
    const { backoffInitialMs, backoffMaxMs, random } = this.#options;
    const ceiling = Math.min(backoffMaxMs, backoffInitialMs * 2 ** failures);
    return ceiling / 2 + random() * ceiling / 2;
  }

  #sleep(ms: number, signal: AbortSignal): Promise<void> {
    const { clock } = this.#options;
    return new Promise((resolve) => {
      const done = () => {
        clock.clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = clock.setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  #podsPath(query: Record<string, string>): string {
    return podsPath(this.#options.namespace, this.#options.labelSelector, query);
  }

  async #request(verb: "list" | "watch", path: string, signal: AbortSignal): Promise<Response> {
    let response: Response;
    try {
      response = await this.#options.client.get(path, signal);
    } catch (error) {
      this.#events.onRequest(verb, "error");
      throw error;
    }
    try {
      return await this.#checkStatus(verb, response);
    } catch (error) {
      await response.body?.cancel().catch(() => {});
      throw error;
    }
  }

  async #checkStatus(verb: "list" | "watch", response: Response): Promise<Response> {
    this.#events.onRequest(verb, String(response.status));
    if (response.status === 410) throw new Expired(`${verb}: 410 Gone`);
    if (response.status !== 200) {
      // A Status object is small; a larger body is not read (its status code still tells).
      const body = await readAtMost(response, 64 * 1024).catch(() => null);
      const text = new TextDecoder().decode(body ?? new Uint8Array());
      let message = text.slice(0, 200);
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? message;
      } catch { /* not a Status object */ }
      throw new ApiStatusError(verb, response.status, message);
    }
    return response;
  }

  /** Lists every page and replaces the cache; a watch resumes from the list's version. */
  async #list(signal: AbortSignal): Promise<void> {
    const { maxListPages, pageSize } = this.#options;
    const fresh = new Map<string, PodRecord>();
    let continueToken = "";
    let resourceVersion = "";
    let pages = 0;
    do {
      if (pages++ === maxListPages) {
        throw new TooLarge(
          `Cannot list pods: current list goes on past ${maxListPages} pages of ${pageSize}; giving up`,
        );
      }
      const query = listQuery(pageSize, continueToken, !this.#listed);
      const page = await this.#listPage(this.#podsPath(query), signal);
      for (const item of page.items ?? []) {
        const record = toPodRecord(item);
        if (record) fresh.set(record.uid, record);
      }
      continueToken = page.metadata?.continue ?? "";
      resourceVersion = page.metadata?.resourceVersion ?? resourceVersion;
    } while (continueToken);
    this.#pods.clear();
    for (const [uid, record] of fresh) this.#pods.set(uid, record);
    this.#resourceVersion = resourceVersion;
    this.#listed = true;
    this.#synced = true;
    this.#events.onPods(this.#pods);
    this.#events.onSynced();
  }

  /** One list page, read within the list deadline and the page's byte cap. */
  async #listPage(path: string, outer: AbortSignal): Promise<PodList> {
    const { listTimeoutMs, maxPageBytes, clock } = this.#options;
    using limit = deadline(listTimeoutMs, outer, clock);
    try {
      const response = await this.#request("list", path, limit.signal);
      const body = await readAtMost(response, maxPageBytes);
      if (body === null) {
        throw new TooLarge(
          `Cannot list pods: current page is larger than ${maxPageBytes} bytes; giving up`,
        );
      }
      return JSON.parse(new TextDecoder().decode(body)) as PodList;
    } catch (error) {
      if (limit.expired && !outer.aborted) {
        throw new Error(
          `Cannot list pods: no complete answer within ${formatDuration(listTimeoutMs)}`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  /**
   * Watches from the last version seen until the server ends the stream.
   * True when it delivered at least one event; an empty stream that ended
   * within {@link QUICK_END_MS} or before half the server's timeout throws.
   */
  async #watch(outer: AbortSignal): Promise<boolean> {
    const { silenceSlackMs, watchOpenTimeoutMs, maxLineBytes, clock, random } = this.#options;
    const watchTimeoutSeconds = watchTimeout(this.#options.watchTimeoutSeconds, random);
    const openedAt = clock.now();
    const silence = new AbortController();
    const signal = AbortSignal.any([outer, silence.signal]);
    const silenceLimitMs = watchTimeoutSeconds * 1000 + silenceSlackMs;
    // Until the answer, the open deadline; after it, the server's timeout plus slack. A real
    // kube-apiserver answers at once and then may send nothing until an event or its next
    // bookmark (a minute or more): a deadline on the first byte cut every quiet watch at 30 s.
    let limitMs = Math.min(watchOpenTimeoutMs, silenceLimitMs);
    let answered = false;
    let timer = clock.setTimeout(() => silence.abort(), limitMs);
    const heardFrom = () => {
      clock.clearTimeout(timer);
      limitMs = silenceLimitMs;
      timer = clock.setTimeout(() => silence.abort(), limitMs);
    };
    let events = 0;
    try {
      const response = await this.#request(
        "watch",
        this.#podsPath({
          watch: "1",
          resourceVersion: this.#resourceVersion ?? "",
          allowWatchBookmarks: "true",
          timeoutSeconds: String(watchTimeoutSeconds),
        }),
        signal,
      );
      answered = true;
      heardFrom();
      const lines = new LineSplitter();
      const decoder = new TextDecoder();
      for await (const chunk of response.body ?? []) {
        heardFrom();
        const complete = lines.push(decoder.decode(chunk, { stream: true }));
        if (lines.pendingLength > maxLineBytes) {
          throw new TooLarge(
            `Cannot watch pods: current event is longer than ${maxLineBytes} bytes; listing again`,
          );
        }
        let changed = false;
        let parsed = 0;
        for (const line of complete) {
          if (line.trim() === "") continue;
          const result = this.#apply(parseEvent(line));
          this.#resourceVersion = result.resourceVersion ?? this.#resourceVersion;
          changed ||= result.changed;
          parsed++;
        }
        if (changed) this.#events.onPods(this.#pods);
        if (parsed > 0) this.#events.onSynced();
        events += parsed;
      }
    } catch (error) {
      if (silence.signal.aborted && !outer.aborted) {
        throw new SilentStream(
          !answered
            ? `Cannot watch pods: no answer within ${formatDuration(limitMs)}; watching again`
            : `Cannot watch pods: stream silent for ${formatDuration(limitMs)}; watching again`,
          { cause: error },
        );
      }
      throw error;
    } finally {
      clock.clearTimeout(timer);
    }
    const lastedMs = clock.now() - openedAt;
    if (events === 0 && (lastedMs < QUICK_END_MS || lastedMs < watchTimeoutSeconds * 500)) {
      throw new EmptyWatch(
        `Cannot watch pods: the stream ended after ${
          formatDuration(Math.round(lastedMs) || 1)
        } with no event; waiting before watching again`,
      );
    }
    return events > 0;
  }

  #apply(event: WatchEvent): { changed: boolean; resourceVersion?: string } {
    const object = event.object ?? {};
    const resourceVersion = object.metadata?.resourceVersion;
    switch (event.type) {
      case "ADDED":
      case "MODIFIED": {
        const record = toPodRecord(object);
        if (record) this.#pods.set(record.uid, record);
        return { changed: record !== undefined, ...(resourceVersion ? { resourceVersion } : {}) };
      }
      case "DELETED": {
        const uid = object.metadata?.uid;
        const changed = uid !== undefined && this.#pods.delete(uid);
        return { changed, ...(resourceVersion ? { resourceVersion } : {}) };
      }
      case "BOOKMARK":
        return { changed: false, ...(resourceVersion ? { resourceVersion } : {}) };
      case "ERROR":
        if (object.code === 410) throw new Expired(object.message ?? "410 Gone");
        throw new ApiStatusError("watch", object.code ?? 0, object.message ?? "ERROR event");
      default:
        throw new Error(`Cannot apply watch event: current type is ${JSON.stringify(event.type)}`);
    }
  }
}

function parseEvent(line: string): WatchEvent {
  try {
    return JSON.parse(line) as WatchEvent;
  } catch (error) {
    throw new Error(`Cannot read watch event: current line starts "${line.slice(0, 60)}"`, {
      cause: error,
    });
  }
}

/**
 * Reads a body up to `maxBytes`; `null` when it is longer (the rest is not
 * read, and the stream is cancelled).
 */
async function readAtMost(response: Response, maxBytes: number): Promise<Uint8Array | null> {
  if (!response.body) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let length = 0;
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      length += value.length;
      if (length > maxBytes) {
        await reader.cancel();
        return null;
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  return concatBytes(chunks);
}
