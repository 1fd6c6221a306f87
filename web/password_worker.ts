/**
 * The password worker's side: bcrypt comparisons on a thread of their own,
 * so that a burst of login attempts (bcrypt costs tens of milliseconds by
 * design) never holds the thread that probes and serves. auth.ts sends one
 * request at a time.
 * @module
 */

/** A request to the worker. */
export type PasswordRequest =
  | {
    readonly id: number;
    readonly kind: "compare";
    readonly password: string;
    readonly hash: string;
  }
  | {
    readonly id: number;
    readonly kind: "hash";
    readonly password: string;
    readonly cost: number;
  };

/** The worker's answer: `ok` for a comparison, `hash` for a hash. */
export interface PasswordAnswer {
  readonly id: number;
  readonly ok?: boolean;
  readonly hash?: string;
  readonly error?: string;
}

/** Whether this code runs in a worker rather than on the program's main thread. */
export function inWorkerThread(): boolean {
  const scope = (globalThis as { WorkerGlobalScope?: new () => unknown }).WorkerGlobalScope;
  return scope !== undefined && globalThis instanceof scope;
}

/** Answers password requests on this worker thread. */
export function servePasswordChecks(): void {
  const worker = globalThis as unknown as {
    onmessage: ((event: MessageEvent<PasswordRequest>) => void) | null;
    postMessage(answer: PasswordAnswer): void;
  };
  worker.onmessage = async ({ data }) => {
    try {
      // Loaded here, on the worker's first request: only a configuration with users needs it.
      const { default: bcrypt } = await import("bcryptjs");
      worker.postMessage(
        data.kind === "compare"
          ? { id: data.id, ok: bcrypt.compareSync(data.password, data.hash) }
          : { id: data.id, hash: bcrypt.hashSync(data.password, data.cost) },
      );
    } catch (error) {
      worker.postMessage({ id: data.id, error: String(error) });
    }
  };
}
