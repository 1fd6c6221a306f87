/**
 * The password worker: bcrypt comparisons on a thread of their own, so that
 * a burst of login attempts (bcrypt costs tens of milliseconds by design)
 * never holds the thread that probes and serves. auth.ts sends one request
 * at a time.
 *
 * The worker runs bcryptjs's own source, imported as text (Deno's text
 * imports; the bundle inlines it), from a `data:` URL: a worker started from
 * a file needs read permission on that file, which the compiled binary does
 * not have, while a `data:` worker needs none (as the dialer's, in
 * collectors/dialer.ts). The one line changed is bcryptjs's import of
 * node's `crypto`, which a `data:` module cannot resolve; bcryptjs takes the
 * Web Crypto API first anyway, and only for the dummy hash's salt.
 * @module
 */

import bcryptSource from "bcryptjs" with { type: "text" };

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

const NODE_CRYPTO_IMPORT = /^import nodeCrypto from "crypto";$/m;

// deno-fmt-ignore
const ANSWERING = `
self.onmessage = ({ data }) => {
  try {
    self.postMessage(data.kind === "compare"
      ? { id: data.id, ok: compareSync(data.password, data.hash) }
      : { id: data.id, hash: hashSync(data.password, data.cost) });
  } catch (error) {
    self.postMessage({ id: data.id, error: String(error) });
  }
};
`;

/**
 * The worker's module as a `data:` URL.
 * @throws {Error} when bcryptjs's source no longer imports `crypto` as this expects.
 */
export function passwordWorkerUrl(): string {
  if (!NODE_CRYPTO_IMPORT.test(bcryptSource)) {
    throw new Error(
      'Cannot start the password worker: current bcryptjs source has no `import nodeCrypto from "crypto"` line to replace',
    );
  }
  const source = bcryptSource.replace(NODE_CRYPTO_IMPORT, "const nodeCrypto = undefined;") +
    ANSWERING;
  return `data:application/javascript,${encodeURIComponent(source)}`;
}
