/**
 * Authentication the exporter-toolkit way, and the rest of what the web
 * config puts in front of the application's handler: a rate limit, paths
 * served without credentials, and the configured response headers.
 *
 * Basic authentication checks bcrypt hashes on a worker thread, one
 * comparison at a time, and remembers every outcome, failures included, by
 * (user, SHA-256 of the password, hash): a client that retries the same
 * wrong password costs a map look-up, not a bcrypt run. An unknown user is
 * compared against a dummy hash of the same cost, so known and unknown users
 * take the same time. The line of comparisons waiting is bounded; past it a
 * request is answered 429 at once.
 * @module
 */

import { authenticates, sha256Hex, type WebConfig } from "./config.ts";
import { type PasswordAnswer, type PasswordRequest, passwordWorkerUrl } from "./password_worker.ts";
import { plain } from "./server.ts";

/** Outcomes remembered at most; the oldest go first. */
const REMEMBERED_OUTCOMES = 4_096;
/** Comparisons waiting for the worker at most. */
const WAITING_COMPARISONS = 16;
/**
 * How long one bcrypt run may take: cost 31 is possible in a hash, but a
 * cost that takes this long per request is a configuration no one can use.
 */
const ANSWER_WITHIN_MS = 30_000;
const DUMMY_PASSWORD = "net-exporter: a password no user has";

/** bcrypt comparisons on a worker thread, one at a time, with every outcome remembered. */
export class PasswordChecker {
  #worker: Worker | undefined;
  readonly #answers = new Map<number, (answer: PasswordAnswer) => void>();
  #nextId = 0;
  /** The line of comparisons: each waits for the one before. */
  #line: Promise<unknown> = Promise.resolve();
  #waiting = 0;
  readonly #outcomes = new Map<string, boolean>();
  readonly #inFlight = new Map<string, Promise<boolean>>();
  readonly #dummies = new Map<number, Promise<string>>();

  /**
   * Whether `password` is `user`'s. `hash` is the user's bcrypt hash, or
   * undefined for an unknown user (then a dummy hash of `dummyCost` is
   * compared, and the answer is false). "busy" when too many comparisons
   * wait already.
   */
  async verify(
    user: string,
    password: string,
    hash: string | undefined,
    dummyCost: number,
  ): Promise<boolean | "busy"> {
    const key = await sha256Hex(`${user}\0${password}\0${hash ?? `unknown ${dummyCost}`}`);
    const known = this.#outcomes.get(key);
    if (known !== undefined) return known;
    const pending = this.#inFlight.get(key);
    if (pending) return await pending;
    if (this.#waiting >= WAITING_COMPARISONS) return "busy";
    this.#waiting++;
    const outcome = (async () => {
      try {
        const against = hash ?? await this.#dummy(dummyCost);
        const matches = await this.#inLine({ kind: "compare", password, hash: against });
        return hash !== undefined && matches.ok === true;
      } finally {
        this.#waiting--;
      }
    })();
    this.#inFlight.set(key, outcome);
    try {
      const result = await outcome;
      if (this.#outcomes.size >= REMEMBERED_OUTCOMES) {
        this.#outcomes.delete(this.#outcomes.keys().next().value!);
      }
      this.#outcomes.set(key, result);
      return result;
    } finally {
      this.#inFlight.delete(key);
    }
  }

  /**
   * Makes the dummy hash of `cost` ahead of the first unknown user, so that
   * user's first refusal takes no longer than a known user's.
   */
  prepare(cost: number): void {
    this.#dummy(cost).catch(() => {});
  }

  /** A hash of a password no one has, at `cost`: what an unknown user is compared against. */
  #dummy(cost: number): Promise<string> {
    let dummy = this.#dummies.get(cost);
    if (!dummy) {
      dummy = this.#inLine({ kind: "hash", password: DUMMY_PASSWORD, cost }).then((answer) =>
        answer.hash!
      );
      this.#dummies.set(cost, dummy);
    }
    return dummy;
  }

  /** Sends one request to the worker after every request before it is answered. */
  #inLine(
    request: Omit<PasswordRequest, "id"> & Partial<PasswordRequest>,
  ): Promise<PasswordAnswer> {
    const answered = this.#line.then(() => this.#ask(request));
    this.#line = answered.catch(() => {});
    return answered;
  }

  #ask(request: Omit<PasswordRequest, "id">): Promise<PasswordAnswer> {
    const worker = this.#worker ??= this.#start();
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      // A worker that stops answering is replaced rather than waited on for ever.
      const timer = setTimeout(() => {
        worker.terminate();
        if (this.#worker === worker) this.#worker = undefined;
        this.#answers.delete(id);
        reject(new Error(`Cannot check a password: no answer within ${ANSWER_WITHIN_MS} ms`));
      }, ANSWER_WITHIN_MS);
      this.#answers.set(id, (answer) => {
        clearTimeout(timer);
        if (answer.error !== undefined) {
          reject(new Error(`Cannot check a password: ${answer.error}`));
        } else resolve(answer);
      });
      worker.postMessage({ ...request, id } as PasswordRequest);
    });
  }

  #start(): Worker {
    const worker = new Worker(passwordWorkerUrl(), { type: "module" });
    worker.onmessage = ({ data }: MessageEvent<PasswordAnswer>) => {
      const answer = this.#answers.get(data.id);
      this.#answers.delete(data.id);
      answer?.(data);
    };
    worker.onerror = (event) => {
      event.preventDefault();
      // A worker that failed answers nothing more: the next request starts a new one.
      worker.terminate();
      if (this.#worker === worker) this.#worker = undefined;
      for (const [id, answer] of this.#answers) {
        this.#answers.delete(id);
        answer({ id, error: `the password worker failed: ${event.message}` });
      }
    };
    return worker;
  }

  /** Stops the worker; comparisons still waiting fail. */
  close(): void {
    this.#worker?.terminate();
    this.#worker = undefined;
    for (const [id, answer] of this.#answers) {
      this.#answers.delete(id);
      answer({ id, error: "the password worker was stopped" });
    }
  }
}

/** The bcrypt cost an unknown user's comparison takes: the highest of the users' hashes. */
export function dummyCostOf(config: WebConfig): number {
  // `$2b$12$…` has cost 12.
  return Math.max(4, ...[...config.users.values()].map((hash) => Number(hash.split("$")[2])));
}

/** A token bucket: `burst` requests at once, one more each `intervalMs` (Go's x/time/rate). */
class RateLimiter {
  readonly #intervalMs: number;
  readonly #burst: number;
  #tokens: number;
  #updatedAt = performance.now();

  constructor(intervalMs: number, burst: number) {
    this.#intervalMs = intervalMs;
    // Go's limiter with burst 0 refuses everything; a limit that serves nothing is taken as 1.
    this.#burst = Math.max(1, burst);
    this.#tokens = this.#burst;
  }

  /** Takes a token; false when there is none now. */
  take(): boolean {
    const now = performance.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#updatedAt) / this.#intervalMs);
    this.#updatedAt = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Seconds until the next token. */
  retryAfterSeconds(): number {
    return Math.max(1, Math.ceil(((1 - this.#tokens) * this.#intervalMs) / 1000));
  }
}

/** What {@link guard} needs besides the handler. */
export interface GuardOptions {
  /** The configuration now (it may be re-read between requests). */
  readonly config: () => WebConfig;
  /** Paths open without credentials when the configuration names none (`auth_excluded_paths`). */
  readonly defaultExcludedPaths: readonly string[];
  readonly passwords: PasswordChecker;
  /** The realm of `WWW-Authenticate: Basic`. */
  readonly realm: string;
}

/**
 * Wraps `handler` with the configuration as it stands at each request: the
 * rate limit, basic and bearer authentication (except on excluded paths),
 * and the configured headers.
 */
export function guard(
  handler: (request: Request) => Promise<Response>,
  options: GuardOptions,
): (request: Request) => Promise<Response> {
  const limiters = new WeakMap<WebConfig, RateLimiter>();
  const tokenDigests = new WeakMap<WebConfig, Promise<string[]>>();
  const dummyCosts = new WeakMap<WebConfig, number>();
  return async (request) => {
    const config = options.config();
    const path = new URL(request.url).pathname;
    const excluded = (config.excludedPaths ?? options.defaultExcludedPaths).includes(path);
    let response: Response;
    let limiter = limiters.get(config);
    if (!limiter && config.rateLimit) {
      limiter = new RateLimiter(config.rateLimit.intervalMs, config.rateLimit.burst);
      limiters.set(config, limiter);
    }
    // The kubelet's probes on excluded paths are not rate limited: a limit must not restart the pod.
    if (limiter && !excluded && !limiter.take()) {
      response = plain(429, "Too many requests", {
        "retry-after": String(limiter.retryAfterSeconds()),
      });
    } else if (excluded || !authenticates(config)) {
      response = await handler(request);
    } else {
      let dummyCost = dummyCosts.get(config);
      if (dummyCost === undefined) {
        dummyCost = dummyCostOf(config);
        dummyCosts.set(config, dummyCost);
      }
      let digests = tokenDigests.get(config);
      if (!digests) {
        digests = Promise.all(config.tokens.map(sha256Hex));
        tokenDigests.set(config, digests);
      }
      const verdict = await check(request, config, await digests, dummyCost, options.passwords);
      if (verdict === "busy") {
        response = plain(429, "Too many authentication attempts at once", { "retry-after": "1" });
      } else if (verdict) {
        response = await handler(request);
      } else {
        response = plain(401, "Unauthorized", {
          "www-authenticate": config.users.size > 0
            ? `Basic realm="${options.realm}"`
            : `Bearer realm="${options.realm}"`,
        });
      }
    }
    for (const [name, value] of Object.entries(config.headers)) response.headers.set(name, value);
    return response;
  };
}

/** Whether the request's credentials are accepted. */
async function check(
  request: Request,
  config: WebConfig,
  tokenDigests: readonly string[],
  dummyCost: number,
  passwords: PasswordChecker,
): Promise<boolean | "busy"> {
  const header = request.headers.get("authorization") ?? "";
  const [scheme = "", credentials = ""] = header.split(/\s+/, 2);
  if (scheme.toLowerCase() === "bearer" && tokenDigests.length > 0 && credentials !== "") {
    const digest = await sha256Hex(credentials);
    // Every token is compared, all the way, so the time says nothing of which one nearly matched.
    let matched = false;
    for (const known of tokenDigests) matched = equalInConstantTime(digest, known) || matched;
    return matched;
  }
  if (scheme.toLowerCase() !== "basic" || config.users.size === 0) return false;
  let decoded: string;
  try {
    decoded = new TextDecoder().decode(Uint8Array.from(atob(credentials), (c) => c.charCodeAt(0)));
  } catch {
    return false;
  }
  const colon = decoded.indexOf(":");
  if (colon === -1) return false;
  const user = decoded.slice(0, colon);
  return await passwords.verify(user, decoded.slice(colon + 1), config.users.get(user), dummyCost);
}

function equalInConstantTime(a: string, b: string): boolean {
  let difference = a.length ^ b.length;
  for (let i = 0; i < a.length && i < b.length; i++) {
    difference |= a.charCodeAt(i) ^ b.charCodeAt(i);
  }
  return difference === 0;
}
