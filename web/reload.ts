/**
 * The web config as it stands: the file is read again at most once a
 * second, when a request or a connection comes, and a change is told by the
 * SHA-256 of its bytes (a rewrite within one mtime tick is still seen). A
 * reload fails closed: a file that is empty, does not load, or would turn
 * off authentication or TLS that were on (or turn TLS on, which needs a new
 * listener) keeps the last good configuration, with one warning per content.
 * @module
 */

import { authenticates, parseWebConfig, sha256Hex, type WebConfig } from "./config.ts";

/** How often, at most, the file is read again. */
const RECHECK_MS = 1_000;

/** The configuration at `path`, re-read as it changes. */
export class ReloadingConfig {
  readonly #path: string;
  readonly #onWarning: (message: string, error?: unknown) => void;
  #current: WebConfig;
  #checkedAt = performance.now();
  #checking: Promise<void> | undefined;
  /** Digest of the content last refused, so one bad file is warned of once. */
  #refused: string | undefined;

  constructor(
    path: string,
    initial: WebConfig,
    onWarning: (message: string, error?: unknown) => void,
  ) {
    this.#path = path;
    this.#current = initial;
    this.#onWarning = onWarning;
  }

  /** The configuration now. */
  get current(): WebConfig {
    return this.#current;
  }

  /** Reads the file again if it was not read in the last second; resolves when that is done. */
  refresh(): Promise<void> {
    if (this.#checking) return this.#checking;
    if (performance.now() - this.#checkedAt < RECHECK_MS) return Promise.resolve();
    this.#checkedAt = performance.now();
    this.#checking = this.#check().finally(() => (this.#checking = undefined));
    return this.#checking;
  }

  async #check(): Promise<void> {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(this.#path);
    } catch (error) {
      return this.#refuse(`cannot be read: ${error}`, "unreadable", error);
    }
    const digest = await sha256Hex(bytes);
    if (digest === this.#current.digest || digest === this.#refused) return;
    if (new TextDecoder().decode(bytes).trim() === "") {
      return this.#refuse("is empty", digest);
    }
    let next: WebConfig;
    try {
      next = await parseWebConfig(bytes, this.#path);
    } catch (error) {
      return this.#refuse(error instanceof Error ? error.message : String(error), digest, error);
    }
    const was = this.#current;
    if (authenticates(was) && !authenticates(next)) {
      return this.#refuse("would turn authentication off", digest);
    }
    if ((was.tls === undefined) !== (next.tls === undefined)) {
      return this.#refuse(
        next.tls ? "would turn TLS on, which needs a restart" : "would turn TLS off",
        digest,
      );
    }
    this.#refused = undefined;
    this.#current = next;
  }

  #refuse(why: string, digest: string, error?: unknown): void {
    if (digest === this.#refused) return;
    this.#refused = digest;
    this.#onWarning(
      `Cannot reload the web config "${this.#path}": it ${
        why.replace(/^Cannot use web config: current file "[^"]*" /, "")
      }; keeping the last good one`,
      error,
    );
  }
}
