/**
 * Errors as one line that keeps their causes: `fetch` says "fetch failed"
 * and hides "tcp connect error: Connection refused" or "invalid peer
 * certificate" in its `cause`, which is what an operator needs to read.
 * @module
 */

/** How many causes deep a description goes (a cycle or a deep chain stops there). */
const MAX_CAUSES = 4;

/**
 * `Name: message: cause message: its cause's message …`, the name only for
 * the outermost error; a cause whose message the outer one already holds is
 * left out.
 */
export function describeError(error: unknown): string {
  let text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  let cause = error instanceof Error ? error.cause : undefined;
  for (let depth = 0; cause !== undefined && cause !== null && depth < MAX_CAUSES; depth++) {
    const message = cause instanceof Error ? cause.message : String(cause);
    if (message !== "" && !text.includes(message)) text += `: ${message}`;
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  return text;
}
