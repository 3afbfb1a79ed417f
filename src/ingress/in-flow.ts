/**
 * Inflow pacing, as Postfix's in_flow_delay: when more accepted messages wait for a scan or a
 * delivery place than `smtp.maxBacklog`, a new MAIL FROM waits until the backlog is below the
 * mark again, or until `smtp.inFlowDelay` has passed, and then goes on either way. The MTA in
 * front keeps the mail it has not handed over yet, and sends at the pace mailscreen works
 * instead of piling a backlog into mailscreen's spool. It never refuses anything.
 */

/** How often the backlog is looked at while MAIL FROMs wait. */
const POLL_MS = 10

export interface InFlowOptions {
  /** Messages accepted and waiting for a scan or a delivery place. */
  readonly backlog: () => number
  readonly maxBacklog: number
  /** Longest wait of one MAIL FROM, ms; 0 turns pacing off. */
  readonly delayMs: number
  /**
   * Told when the backlog goes over the mark, and when it is below it again. The backlog is
   * looked at on MAIL FROM (and while one waits), so "below again" comes with the next one.
   */
  readonly onChange?: (over: boolean, backlog: number) => void
}

export class InFlow {
  private over = false
  /** MAIL FROMs waiting, oldest first. */
  private readonly waiters: Array<{ readonly deadline: number; readonly go: () => void }> = []
  /** One timer for all waiters (not one each: 50 paced sessions would mean 5,000 wake-ups a second). */
  private timer: NodeJS.Timeout | undefined

  constructor(private readonly options: InFlowOptions) {}

  /** Whether a MAIL FROM now would wait. */
  get pacing(): boolean {
    return this.check()
  }

  /**
   * Resolves once the backlog has room below the mark, or after the delay: the ms waited.
   * Each tick lets waiters go oldest first, as many as there is room for then.
   */
  wait(): Promise<number> {
    if (this.options.delayMs <= 0 || !this.check()) return Promise.resolve(0)
    const started = performance.now()
    return new Promise((resolve) => {
      this.waiters.push({
        deadline: started + this.options.delayMs,
        go: () => resolve(performance.now() - started),
      })
      if (!this.timer) {
        this.timer = setInterval(() => this.tick(), POLL_MS)
        // Waiting sessions must not keep a stopping process alive (their MTA retries).
        this.timer.unref()
      }
    })
  }

  private tick(): void {
    const now = performance.now()
    // At the mark there is room for one more: over the mark means above it.
    let room = this.check() ? 0 : this.options.maxBacklog - this.options.backlog() + 1
    for (let i = 0; i < this.waiters.length; ) {
      const waiter = this.waiters[i] as (typeof this.waiters)[number]
      if (room > 0 || waiter.deadline <= now) {
        if (waiter.deadline > now) room--
        this.waiters.splice(i, 1)
        waiter.go()
      } else i++
    }
    if (this.waiters.length === 0) {
      clearInterval(this.timer)
      this.timer = undefined
    }
  }

  /** Whether the backlog is over the mark; reports a change. */
  private check(): boolean {
    const backlog = this.options.backlog()
    const over = backlog > this.options.maxBacklog
    if (over !== this.over) {
      this.over = over
      this.options.onChange?.(over, backlog)
    }
    return over
  }
}
