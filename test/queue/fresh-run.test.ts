import { describe, expect, it } from 'vitest'
import { FreshRun } from '../../src/queue/fresh-run.js'

describe('FreshRun', () => {
  it('gives callers during a run one shared next run, and a failed run still lets the next one start', async () => {
    let runs = 0
    let fail = true
    const fresh = new FreshRun(async () => {
      runs++
      await new Promise((resolve) => setTimeout(resolve, 10))
      if (fail) {
        fail = false
        throw new Error('first run fails')
      }
    })
    const first = fresh.request()
    const later = [fresh.request(), fresh.request()]
    await expect(first).rejects.toThrow('first run fails')
    await Promise.all(later)
    expect(runs).toBe(2)
    await fresh.request()
    expect(runs).toBe(3)
  })
})
