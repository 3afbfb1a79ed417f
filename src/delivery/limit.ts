/**
 * A counting semaphore with a FIFO of waiters: the cap on delivery sessions in flight, one
 * per destination and one shared by every destination.
 */

/** How long a caller waits for a permit before it may give up. */
export interface WaitLimit {
  readonly ms: number
  /**
   * Asked each time `ms` has passed: true gives up (the acquire resolves false), false waits
   * another `ms`. Giving up only helps when something else could use the caller's place.
   */
  readonly giveUp: () => boolean
}

interface Waiter {
  readonly grant: (granted: boolean) => void
  timer?: NodeJS.Timeout
}

/** setTimeout's longest delay; longer ones fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1

export class Semaphore {
  private used = 0
  private readonly waiting: Waiter[] = []

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

  /**
   * Resolves true once a permit is held (give it back with {@link release}), or false when
   * the caller gave up under `limit` or {@link cancelWaiting} was called.
   */
  acquire(limit?: WaitLimit): Promise<boolean> {
    if (this.used < this.size) {
      this.used++
      return Promise.resolve(true)
    }
    return new Promise((resolve) => {
      const waiter: Waiter = { grant: resolve }
      if (limit && limit.ms > 0) this.arm(waiter, limit)
      this.waiting.push(waiter)
    })
  }

  // The permit passes straight to the next waiter, so arrivals cannot overtake the queue.
  release(): void {
    const next = this.waiting.shift()
    if (!next) {
      this.used--
      return
    }
    clearTimeout(next.timer)
    next.grant(true)
  }

  /** Wake every waiter with false (its owner is closing). */
  cancelWaiting(): void {
    for (const waiter of this.waiting.splice(0)) {
      clearTimeout(waiter.timer)
      waiter.grant(false)
    }
  }

  private arm(waiter: Waiter, limit: WaitLimit): void {
    waiter.timer = setTimeout(
      () => {
        if (!limit.giveUp()) return this.arm(waiter, limit)
        const at = this.waiting.indexOf(waiter)
        if (at !== -1) this.waiting.splice(at, 1)
        waiter.grant(false)
      },
      Math.min(limit.ms, MAX_TIMER_MS),
    )
    waiter.timer.unref()
  }
}
