/**
 * A circuit breaker for one DNSBL zone: after `failures` consecutive failed lookups the zone
 * is paused for `pauseMs` (no queries at all, so a dead server stops costing a timeout per
 * message); then one caller probes it and the probe's outcome closes or re-opens it.
 * Pure state, no I/O; the clock is injected.
 */

/** `closed`: query as usual. `open`: paused. `probing`: paused, one probe in flight. */
export type BreakerState = 'closed' | 'open' | 'probing'

/** What a caller may do now: look up, probe first, or skip the zone. */
export type Admission = 'query' | 'probe' | 'skip'

export interface BreakerOptions {
  /** Consecutive failures that open the breaker (at least 1). */
  readonly failures: number
  /** Milliseconds the zone stays paused before a probe. */
  readonly pauseMs: number
  /** Milliseconds, e.g. `Date.now`. */
  readonly now: () => number
}

export class CircuitBreaker {
  private current: BreakerState = 'closed'
  private consecutive = 0
  private openedAt = 0

  constructor(private readonly options: BreakerOptions) {}

  get state(): BreakerState {
    return this.current
  }

  /** Failures in a row so far (while closed). */
  get failureCount(): number {
    return this.consecutive
  }

  /** When the pause ends (ms), while open or probing; undefined while closed. */
  get pausedUntil(): number | undefined {
    return this.current === 'closed' ? undefined : this.openedAt + this.options.pauseMs
  }

  /**
   * Ask before a lookup. Once the pause is over, exactly one caller gets `probe` (and must
   * report {@link probeSucceeded} or {@link probeFailed}); the others skip until then.
   */
  admit(): Admission {
    if (this.current === 'closed') return 'query'
    if (this.current === 'open' && this.options.now() >= this.openedAt + this.options.pauseMs) {
      this.current = 'probing'
      return 'probe'
    }
    return 'skip'
  }

  /** A lookup admitted with `query` got an answer. Only a probe closes an open breaker. */
  succeeded(): void {
    if (this.current === 'closed') this.consecutive = 0
  }

  /** A lookup admitted with `query` failed. True when this failure opened the breaker. */
  failed(): boolean {
    if (this.current !== 'closed') return false
    this.consecutive++
    if (this.consecutive < this.options.failures) return false
    this.open()
    return true
  }

  /** The probe got an answer: close. */
  probeSucceeded(): void {
    this.current = 'closed'
    this.consecutive = 0
  }

  /** The probe failed (or was abandoned): pause again for a full period. */
  probeFailed(): void {
    this.open()
  }

  private open(): void {
    this.current = 'open'
    this.openedAt = this.options.now()
  }
}
