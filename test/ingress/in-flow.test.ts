import { describe, expect, it } from 'vitest'
import { InFlow } from '../../src/ingress/in-flow.js'

function flow(backlog: { n: number }, delayMs = 200) {
  const changes: Array<[boolean, number]> = []
  const inFlow = new InFlow({
    backlog: () => backlog.n,
    maxBacklog: 5,
    delayMs,
    onChange: (over, n) => changes.push([over, n]),
  })
  return { inFlow, changes }
}

describe('InFlow', () => {
  it('does not wait while the backlog is at or below the mark', async () => {
    const { inFlow, changes } = flow({ n: 5 })
    expect(inFlow.pacing).toBe(false)
    expect(await inFlow.wait()).toBe(0)
    expect(changes).toEqual([])
  })

  it('waits until the backlog falls to the mark, and says when it went over and came back', async () => {
    const backlog = { n: 9 }
    const { inFlow, changes } = flow(backlog, 5_000)
    expect(inFlow.pacing).toBe(true)
    setTimeout(() => {
      backlog.n = 5
    }, 50)
    const waited = await inFlow.wait()
    expect(waited).toBeGreaterThanOrEqual(40)
    expect(waited).toBeLessThan(5_000)
    expect(changes).toEqual([
      [true, 9],
      [false, 5],
    ])
  })

  it('lets waiters go oldest first once there is room', async () => {
    const backlog = { n: 9 }
    const { inFlow } = flow(backlog, 5_000)
    const order: number[] = []
    const waits = [0, 1, 2, 3].map((i) => inFlow.wait().then(() => order.push(i)))
    await new Promise((resolve) => setTimeout(resolve, 30))
    expect(order).toEqual([])
    backlog.n = 4
    await Promise.all(waits)
    expect(order).toEqual([0, 1, 2, 3])
  })

  it('goes on after the delay even if the backlog stays over the mark', async () => {
    const { inFlow } = flow({ n: 100 }, 60)
    const waited = await inFlow.wait()
    expect(waited).toBeGreaterThanOrEqual(55)
    expect(inFlow.pacing).toBe(true)
  })

  it('never waits with a delay of 0 (pacing off)', async () => {
    const { inFlow } = flow({ n: 100 }, 0)
    expect(await inFlow.wait()).toBe(0)
  })
})
