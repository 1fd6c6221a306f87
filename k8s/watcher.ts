/**
 * One list, then one watch of the net-exporter pods, kept alive through
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
 * @module
 */

import { type Clock, systemClock } from "../exporter/clock.ts";
import type { ApiClient } from "./client.ts";
import { type PodObject, type PodRecord, toPodRecord } from "./pods.ts";

/** What a watcher reports. */
export interface WatcherEvents {
  /** The pod cache changed (after the list, and after each batch of watch events). */
  onPods(pods: ReadonlyMap<string, PodRecord>): void;
  /** A request or stream failed; the watcher will retry. */
  onFailure(error: Error): void;
  /** Every request made, by verb and HTTP status ("error" when none came back). */
  onRequest(verb: "list" | "watch", code: string): void;
  /** The cache is known to be current as of now (a list, an event, a bookmark, a clean end). */
  onSynced(): void;
}

/** Where to watch and how patiently. */
export interface WatcherOptions {
  readonly client: ApiClient;
  readonly namespace: string;
  readonly labelSelector: string;
  /** Server-side watch timeout; the server ends the stream after it and the watcher resumes. */
  readonly watchTimeoutSeconds?: number;
  /** How long past the server's timeout a silent stream is tolerated before it is cut. */
  readonly silenceSlackMs?: number;
  readonly pageSize?: number;
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
  /** Where a watch resumes: the last version seen in a list, an event or a bookmark. */
  #resourceVersion: string | undefined;

  constructor(options: WatcherOptions, events: WatcherEvents) {
    this.#options = {
      watchTimeoutSeconds: 300,
      silenceSlackMs: 30_000,
      pageSize: 500,
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
        if (this.#resourceVersion === undefined) await this.#list(signal);
        await this.#watch(signal);
        failures = 0;
      } catch (error) {
        if (signal.aborted) break;
        if (error instanceof Expired) {
          this.#resourceVersion = undefined; // history gone: list again, at once
          continue;
        }
        this.#events.onFailure(error instanceof Error ? error : new Error(String(error)));
        await this.#sleep(this.#backoff(failures++), signal);
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
    const params = new URLSearchParams({ labelSelector: this.#options.labelSelector, ...query });
    return `/api/v1/namespaces/${encodeURIComponent(this.#options.namespace)}/pods?${params}`;
  }

  async #request(verb: "list" | "watch", path: string, signal: AbortSignal): Promise<Response> {
    let response: Response;
    try {
      response = await this.#options.client.get(path, signal);
    } catch (error) {
      this.#events.onRequest(verb, "error");
      throw error;
    }
    this.#events.onRequest(verb, String(response.status));
    if (response.status === 410) {
      await response.body?.cancel();
      throw new Expired(`${verb}: 410 Gone`);
    }
    if (response.status !== 200) {
      const text = await response.text().catch(() => "");
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
    const fresh = new Map<string, PodRecord>();
    let continueToken = "";
    let resourceVersion = "";
    do {
      const query: Record<string, string> = { limit: String(this.#options.pageSize) };
      if (continueToken) query.continue = continueToken;
      const page = await (await this.#request("list", this.#podsPath(query), signal))
        .json() as PodList;
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
    this.#synced = true;
    this.#events.onPods(this.#pods);
    this.#events.onSynced();
  }

  /** Watches from the last version seen until the server ends the stream. */
  async #watch(outer: AbortSignal): Promise<void> {
    const { watchTimeoutSeconds, silenceSlackMs, clock } = this.#options;
    const silence = new AbortController();
    const signal = AbortSignal.any([outer, silence.signal]);
    const silenceLimitMs = watchTimeoutSeconds * 1000 + silenceSlackMs;
    let timer = clock.setTimeout(() => silence.abort(), silenceLimitMs);
    const heardFrom = () => {
      clock.clearTimeout(timer);
      timer = clock.setTimeout(() => silence.abort(), silenceLimitMs);
    };
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
      let buffered = "";
      const decoder = new TextDecoder();
      for await (const chunk of response.body!) {
        heardFrom();
        buffered += decoder.decode(chunk, { stream: true });
        const lines = buffered.split("\n");
        buffered = lines.pop()!;
        let changed = false;
        for (const line of lines) {
          if (line.trim() === "") continue;
          const result = this.#apply(JSON.parse(line) as WatchEvent);
          this.#resourceVersion = result.resourceVersion ?? this.#resourceVersion;
          changed ||= result.changed;
        }
        if (changed) this.#events.onPods(this.#pods);
        this.#events.onSynced();
      }
    } catch (error) {
      if (silence.signal.aborted && !outer.aborted) {
        throw new SilentStream(`Watch stream silent for ${silenceLimitMs} ms; resuming`);
      }
      throw error;
    } finally {
      clock.clearTimeout(timer);
    }
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
