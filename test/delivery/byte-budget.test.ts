import { describe, expect, it } from 'vitest'
import { ByteBudget } from '../../src/delivery/byte-budget.js'
import { settledNow } from '../support/settled.js'

const done = async (promise: Promise<void>): Promise<boolean> => (await settledNow(promise)) !== undefined

describe('ByteBudget', () => {
  it('holds what fits, makes the rest wait, and serves waiters in order as bytes come back', async () => {
    const budget = new ByteBudget(100)
    await budget.acquire(60)
    await budget.acquire(40)
    const big = budget.acquire(70)
    const small = budget.acquire(10)
    // The small one would fit after 40 come back, but the big one asked first.
    budget.release(40)
    expect(await done(big)).toBe(false)
    expect(await done(small)).toBe(false)
    budget.release(60)
    expect(await done(big)).toBe(true)
    expect(await done(small)).toBe(true)
    expect(budget.inUse).toBe(80)
  })

  it('lets a message larger than the whole budget go, alone', async () => {
    const budget = new ByteBudget(100)
    await budget.acquire(10)
    const huge = budget.acquire(500)
    expect(await done(huge)).toBe(false)
    budget.release(10)
    expect(await done(huge)).toBe(true)
    const next = budget.acquire(1)
    expect(await done(next)).toBe(false)
    budget.release(500)
    expect(await done(next)).toBe(true)
  })
})
