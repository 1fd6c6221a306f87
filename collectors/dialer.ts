/**
 * Times TCP handshakes on a thread of their own.
 *
 * On the main thread a handshake's end is seen only when the event loop next
 * polls, so rendering a large /metrics (tens of ms at a thousand targets) or
 * a GC pause is added to every handshake finishing meanwhile. The worker does
 * nothing but connect, so its clock stops when the kernel completes the
 * handshake. Its code is inline (no module to fetch or embed) and needs no
 * permission beyond the parent's `--allow-net`. The network collector starts
 * one above `DIAL_THREAD_ABOVE` targets (network.ts).
 * @module
 */

import type { Handshake } from "./probe_tcp.ts";

// deno-fmt-ignore
const WORKER_SOURCE = `
const inFlight = new Map();
self.onmessage = async ({ data }) => {
  if (data.abort !== undefined) return inFlight.get(data.abort)?.abort();
  const controller = new AbortController();
  inFlight.set(data.id, controller);
  const startedAt = performance.now();
  try {
    const conn = await Deno.connect({ hostname: data.hostname, port: data.port, signal: controller.signal });
    const seconds = (performance.now() - startedAt) / 1000;
    conn.close();
    self.postMessage({ id: data.id, seconds });
  } catch (error) {
    self.postMessage({ id: data.id, error: { name: error?.name, code: error?.code, message: String(error?.message ?? error) } });
  } finally {
    inFlight.delete(data.id);
  }
};
`;

interface Pending {
  resolve(handshake: Handshake): void;
  reject(error: Error): void;
}

/** One worker thread timing handshakes for a collector; close it when done. */
export class Dialer {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #nextId = 0;

  constructor() {
    this.#worker = new Worker(
      `data:application/javascript,${encodeURIComponent(WORKER_SOURCE)}`,
      { type: "module" },
    );
    this.#worker.onmessage = ({ data }: MessageEvent) => {
      const pending = this.#pending.get(data.id);
      if (!pending) return;
      this.#pending.delete(data.id);
      if (data.error) {
        // The error keeps its name and OS code, which is what dial errors are classified by.
        const error = Object.assign(new Error(data.error.message), data.error);
        pending.reject(error);
      } else {
        pending.resolve({ seconds: data.seconds, clock: "wall" });
      }
    };
  }

  /**
   * Connects to `hostname:port` (an IP literal) and closes at once; resolves
   * with the handshake time, timed on the thread's own clock. Aborting `signal` aborts the dial.
   */
  dial(hostname: string, port: number, signal: AbortSignal): Promise<Handshake> {
    const id = this.#nextId++;
    return new Promise<Handshake>((resolve, reject) => {
      const onAbort = () => this.#worker.postMessage({ abort: id });
      const settle = () => signal.removeEventListener("abort", onAbort);
      this.#pending.set(id, {
        resolve: (seconds) => (settle(), resolve(seconds)),
        reject: (error) => (settle(), reject(error)),
      });
      signal.addEventListener("abort", onAbort, { once: true });
      this.#worker.postMessage({ id, hostname, port });
      if (signal.aborted) onAbort();
    });
  }

  /** Stops the thread; dials still in flight fail. */
  close(): void {
    this.#worker.terminate();
    for (const [id, pending] of this.#pending) {
      this.#pending.delete(id);
      pending.reject(new Error("Cannot dial: the dialer was closed"));
    }
  }
}
