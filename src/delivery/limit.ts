/**
 * A counting semaphore with a FIFO of waiters: the global cap on delivery sessions in flight,
 * shared by every destination's transport.
 */
export class Semaphore {
  private used = 0
  private readonly waiting: Array<() => void> = []

  constructor(readonly size: number) {
    if (!(size >= 1)) throw new RangeError('a semaphore needs at least one permit')
  }

  /** Permits in use. */
  get inUse(): number {
    return this.used
  }

  /** Callers waiting for a permit. */
  get queued(): number {
    return this.waiting.length
  }

  /** Resolves once a permit is held; give it back with {@link release}. */
  acquire(): Promise<void> {
    if (this.used < this.size) {
      this.used++
      return Promise.resolve()
    }
    return new Promise((resolve) => this.waiting.push(resolve))
  }

  // The permit passes straight to the next waiter, so arrivals cannot overtake the queue.
  release(): void {
    const next = this.waiting.shift()
    if (next) next()
    else this.used--
  }
}
