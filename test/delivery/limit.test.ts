import { afterEach, describe, expect, it, vi } from 'vitest'
import { Semaphore } from '../../src/delivery/limit.js'
import { settledNow } from '../support/settled.js'

afterEach(() => {
  vi.useRealTimers()
})

describe('Semaphore', () => {
  it('grants up to its size at once, then hands each released permit to the oldest waiter', async () => {
    const s = new Semaphore(2)
    expect(await s.acquire()).toBe(true)
    expect(await s.acquire()).toBe(true)
    const third = s.acquire()
    const fourth = s.acquire()
    expect(s.queued).toBe(2)
    s.release()
    expect(await settledNow(third)).toEqual({ value: true })
    expect(await settledNow(fourth)).toBeUndefined()
    expect(s.inUse).toBe(2)
    s.release()
    expect(await settledNow(fourth)).toEqual({ value: true })
    s.release()
    s.release()
    expect(s.inUse).toBe(0)
  })

  it('gives up after the limit when giveUp says so, and leaves the queue as it was', async () => {
    vi.useFakeTimers()
    const s = new Semaphore(1)
    await s.acquire()
    const tired = s.acquire({ ms: 1_000, giveUp: () => true })
    const patient = s.acquire()
    await vi.advanceTimersByTimeAsync(999)
    expect(await settledNow(tired)).toBeUndefined()
    await vi.advanceTimersByTimeAsync(1)
    expect(await settledNow(tired)).toEqual({ value: false })
    expect(s.queued).toBe(1)
    s.release()
    expect(await settledNow(patient)).toEqual({ value: true })
    expect(s.inUse).toBe(1)
  })

  it('waits on, asking again every period, while giveUp says no', async () => {
    vi.useFakeTimers()
    const s = new Semaphore(1)
    await s.acquire()
    let others = false
    let asked = 0
    const waiter = s.acquire({
      ms: 100,
      giveUp: () => {
        asked++
        return others
      },
    })
    await vi.advanceTimersByTimeAsync(350)
    expect(asked).toBe(3)
    expect(await settledNow(waiter)).toBeUndefined()
    others = true
    await vi.advanceTimersByTimeAsync(100)
    expect(await settledNow(waiter)).toEqual({ value: false })
  })

  it('stops the timer of a waiter that got its permit', async () => {
    vi.useFakeTimers()
    const s = new Semaphore(1)
    await s.acquire()
    let asked = 0
    const waiter = s.acquire({ ms: 100, giveUp: () => ++asked > 0 })
    s.release()
    expect(await settledNow(waiter)).toEqual({ value: true })
    await vi.advanceTimersByTimeAsync(500)
    expect(asked).toBe(0)
    expect(s.inUse).toBe(1)
  })

  it('wakes every waiter with false on cancelWaiting', async () => {
    const s = new Semaphore(1)
    await s.acquire()
    const a = s.acquire({ ms: 60_000, giveUp: () => true })
    const b = s.acquire()
    s.cancelWaiting()
    expect(await a).toBe(false)
    expect(await b).toBe(false)
    expect(s.queued).toBe(0)
  })
})
