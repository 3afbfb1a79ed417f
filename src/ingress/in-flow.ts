/**
 * Inflow pacing, as Postfix's in_flow_delay: when more accepted messages wait for a scan or a
 * delivery place than `smtp.maxBacklog`, a new MAIL FROM waits until the backlog is below the
 * mark again, or until `smtp.inFlowDelay` has passed, and then goes on either way. The MTA in
 * front keeps the mail it has not handed over yet, and sends at the pace mailscreen works
 * instead of piling a backlog into mailscreen's spool. It never refuses anything.
 */

/** How often a waiting MAIL FROM looks at the backlog again. */
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

  constructor(private readonly options: InFlowOptions) {}

  /** Whether a MAIL FROM now would wait. */
  get pacing(): boolean {
    return this.check()
  }

  /** Resolves once the backlog is at or below the mark, or after the delay: the ms waited. */
  async wait(): Promise<number> {
    if (this.options.delayMs <= 0 || !this.check()) return 0
    const started = performance.now()
    const deadline = started + this.options.delayMs
    while (performance.now() < deadline && this.check())
      await new Promise((resolve) => setTimeout(resolve, Math.min(POLL_MS, deadline - performance.now())))
    return performance.now() - started
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
