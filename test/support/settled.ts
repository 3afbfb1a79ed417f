/**
 * Whether a promise has settled by now, after the microtasks already queued: for tests of
 * waiting code (semaphores, budgets) that must tell "granted" from "still waiting".
 */
export async function settledNow<T>(promise: Promise<T>): Promise<{ value: T } | undefined> {
  let out: { value: T } | undefined
  void promise.then((value) => {
    out = { value }
  })
  await Promise.resolve()
  await Promise.resolve()
  return out
}
