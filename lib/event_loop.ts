/**
 * A turn of the event loop for pending I/O, in the middle of long work on
 * the main thread (a render of thousands of series).
 *
 * Why not the usual `setTimeout(resolve, 0)`: Deno's timers have a
 * resolution of about a millisecond, so each such yield idles for about
 * 2 ms (measured here: 2.2 ms median on Deno 2.9.6), which a render that
 * yields a few times adds to every scrape. Neither `setImmediate` nor a
 * `MessageChannel` message lets Deno poll sockets (measured: an HTTP request
 * waiting on the same process was not answered across 50 such yields). An
 * asynchronous op that Deno completes on its blocking thread pool does: the
 * event loop polls every pending op, sockets included, while it waits.
 * `crypto.subtle.digest` of zero bytes is such an op, needs no permission,
 * and returns in about 0.06 ms.
 * @module
 */

const NOTHING = new Uint8Array(0);
/** Items between two looks at the clock in {@link TurnTaker.item}. */
const ITEMS_PER_CLOCK_LOOK = 64;

/** Lets Deno poll pending I/O (sockets, timers due) before the caller goes on. */
export async function yieldToEventLoop(): Promise<void> {
  await crypto.subtle.digest("SHA-256", NOTHING);
}

/**
 * Calls {@link yieldToEventLoop} once the work since the last turn has held
 * the thread for `afterMs`; otherwise returns at once.
 */
export class TurnTaker {
  #since = performance.now();
  #items = 0;
  readonly #afterMs: number;

  constructor(afterMs: number) {
    this.#afterMs = afterMs;
  }

  /**
   * For one small item of a long loop (a histogram's series, about 40 lines): looks at the clock
   * every {@link ITEMS_PER_CLOCK_LOOK} items, and yields as {@link TurnTaker.maybeYield} does.
   */
  async item(): Promise<void> {
    if (++this.#items % ITEMS_PER_CLOCK_LOOK === 0) await this.maybeYield();
  }

  /** Yields if the thread has been held for longer than the limit. */
  async maybeYield(): Promise<void> {
    if (performance.now() - this.#since <= this.#afterMs) return;
    await yieldToEventLoop();
    this.#since = performance.now();
  }
}
