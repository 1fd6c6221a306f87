/**
 * Like `Promise.all`, but waits for every promise before it rejects: whatever
 * the others were starting has started, so whoever cleans up after the
 * failure finds it. (`Promise.all` rejects at the first failure, and an
 * instance still starting then is never stopped.)
 * @module
 */

/** Every value, once all have settled; else the first rejection's reason. */
export async function settleAll<T>(promises: Iterable<Promise<T>>): Promise<T[]> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((result) => result.status === "rejected");
  if (failed) throw failed.reason;
  return results.map((result) => (result as PromiseFulfilledResult<T>).value);
}
