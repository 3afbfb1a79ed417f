import { describe, expect, it } from 'vitest'
import { retryDelay } from '../../src/queue/backoff.js'

describe('retryDelay', () => {
  const schedule = [60_000, 300_000, 900_000, 3_600_000]

  it('waits the first step after the first attempt', () => {
    expect(retryDelay(schedule, 1)).toBe(60_000)
  })

  it('steps through the schedule attempt by attempt', () => {
    expect([2, 3, 4].map((n) => retryDelay(schedule, n))).toEqual([300_000, 900_000, 3_600_000])
  })

  it('repeats the last step once the schedule runs out', () => {
    expect(retryDelay(schedule, 5)).toBe(3_600_000)
    expect(retryDelay(schedule, 1000)).toBe(3_600_000)
  })

  it('treats zero attempts as the first step', () => {
    expect(retryDelay(schedule, 0)).toBe(60_000)
  })

  it('repeats a one-step schedule forever', () => {
    expect(retryDelay([5000], 1)).toBe(5000)
    expect(retryDelay([5000], 9)).toBe(5000)
  })

  it('throws on an empty schedule', () => {
    expect(() => retryDelay([], 1)).toThrow('empty retry schedule')
  })
})
