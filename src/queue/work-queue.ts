/**
 * An in-memory FIFO of keys worked on with bounded concurrency. A key is never worked on
 * twice at once: pushing a queued key does nothing, and pushing a running key queues it once
 * more for after the current run (so a directory scan racing a live notification is harmless,
 * and a worker may requeue its own key).
 */
export class WorkQueue<K> {
  private readonly waiting: K[] = []
  private readonly queued = new Set<K>()
  private readonly running = new Set<K>()
  private readonly again = new Set<K>()
  private stopped = false
  private idleWaiters: Array<() => void> = []

  constructor(
    private readonly concurrency: number,
    private readonly work: (key: K) => Promise<void>,
    /** What to do about a failed run; it counts as part of the run (stop() waits for it). */
    private readonly onError: (key: K, err: unknown) => void | Promise<void>,
  ) {}

  /** Queue a key. Returns whether anything was added. */
  push(key: K): boolean {
    if (this.stopped || this.queued.has(key)) return false
    if (this.running.has(key)) {
      if (this.again.has(key)) return false
      this.again.add(key)
      return true
    }
    this.queued.add(key)
    this.waiting.push(key)
    this.pump()
    return true
  }

  /** Keys queued or running. */
  get size(): number {
    return this.queued.size + this.running.size
  }

  /** Keys waiting for a place (all `concurrency` places are taken). */
  get backlog(): number {
    return this.waiting.length
  }

  /** Whether a key pushed now would start at once (a place is free and nothing waits). */
  hasRoom(): boolean {
    return !this.stopped && this.running.size < this.concurrency && this.waiting.length === 0
  }

  /** Whether a key is queued or running. */
  has(key: K): boolean {
    return this.queued.has(key) || this.running.has(key)
  }

  private pump(): void {
    while (!this.stopped && this.running.size < this.concurrency && this.waiting.length > 0) {
      const key = this.waiting.shift() as K
      this.queued.delete(key)
      this.running.add(key)
      this.work(key)
        .catch((err) => this.onError(key, err))
        .finally(() => this.finish(key))
    }
  }

  private finish(key: K): void {
    this.running.delete(key)
    if (this.again.delete(key)) this.push(key)
    this.pump()
    if (this.running.size === 0) for (const wake of this.idleWaiters.splice(0)) wake()
  }

  /** Take no more work, drop what waits, and resolve when the running work has finished. */
  stop(): Promise<void> {
    this.stopped = true
    this.waiting.length = 0
    this.queued.clear()
    this.again.clear()
    if (this.running.size === 0) return Promise.resolve()
    return new Promise((resolve) => this.idleWaiters.push(resolve))
  }
}
