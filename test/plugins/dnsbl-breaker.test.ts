import { describe, expect, it } from 'vitest'
import { CircuitBreaker } from '../../plugins/dnsbl/breaker.js'

/** A breaker on a clock the test moves by hand. */
function breaker(failures = 3, pauseMs = 60_000) {
  const clock = { now: 1_000_000 }
  return { clock, b: new CircuitBreaker({ failures, pauseMs, now: () => clock.now }) }
}

describe('CircuitBreaker', () => {
  it('stays closed below the threshold, and a success resets the count', () => {
    const { b } = breaker(3)
    expect(b.admit()).toBe('query')
    expect(b.failed()).toBe(false)
    expect(b.failed()).toBe(false)
    expect(b.failureCount).toBe(2)
    b.succeeded()
    expect(b.failureCount).toBe(0)
    expect(b.failed()).toBe(false)
    expect(b.failed()).toBe(false)
    expect(b.state).toBe('closed')
    expect(b.pausedUntil).toBeUndefined()
  })

  it('opens on the Nth consecutive failure (reported once) and skips until the pause is over', () => {
    const { b, clock } = breaker(3, 60_000)
    b.failed()
    b.failed()
    expect(b.failed()).toBe(true)
    expect(b.state).toBe('open')
    expect(b.pausedUntil).toBe(clock.now + 60_000)
    // Late failures of lookups that were already in flight do not re-report or extend the pause.
    expect(b.failed()).toBe(false)
    expect(b.pausedUntil).toBe(clock.now + 60_000)
    expect(b.admit()).toBe('skip')
    clock.now += 59_999
    expect(b.admit()).toBe('skip')
  })

  it('after the pause admits exactly one probe; the others skip while it runs', () => {
    const { b, clock } = breaker(1, 1000)
    b.failed()
    clock.now += 1000
    expect(b.admit()).toBe('probe')
    expect(b.state).toBe('probing')
    expect(b.admit()).toBe('skip')
    expect(b.admit()).toBe('skip')
  })

  it('a successful probe closes it; lookups go through again', () => {
    const { b, clock } = breaker(2, 1000)
    b.failed()
    b.failed()
    clock.now += 1500
    expect(b.admit()).toBe('probe')
    b.probeSucceeded()
    expect(b.state).toBe('closed')
    expect(b.failureCount).toBe(0)
    expect(b.admit()).toBe('query')
    // It takes the full threshold again to re-open.
    expect(b.failed()).toBe(false)
    expect(b.failed()).toBe(true)
  })

  it('a failed probe pauses it for another full period from the probe', () => {
    const { b, clock } = breaker(1, 1000)
    b.failed()
    clock.now += 5000
    expect(b.admit()).toBe('probe')
    b.probeFailed()
    expect(b.state).toBe('open')
    expect(b.pausedUntil).toBe(clock.now + 1000)
    clock.now += 999
    expect(b.admit()).toBe('skip')
    clock.now += 1
    expect(b.admit()).toBe('probe')
  })

  it('ignores a success of an in-flight lookup while open: only a probe closes it', () => {
    const { b } = breaker(1, 1000)
    b.failed()
    b.succeeded()
    expect(b.state).toBe('open')
    expect(b.admit()).toBe('skip')
  })
})
