import { describe, expect, it } from 'vitest'
import { WorkQueue } from '../../src/queue/work-queue.js'

interface Gate {
  readonly promise: Promise<void>
  open(): void
  fail(err: unknown): void
}

function gate(): Gate {
  let open!: () => void
  let fail!: (err: unknown) => void
  const promise = new Promise<void>((resolve, reject) => {
    open = resolve
    fail = reject
  })
  return { promise, open, fail }
}

/** Let every pending promise callback and I/O turn run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/** A work function whose runs block until the test opens their gate. */
function controlled<K>() {
  const runs: K[] = []
  const gates: Gate[] = []
  let running = 0
  let maxRunning = 0
  const work = async (key: K) => {
    runs.push(key)
    running++
    maxRunning = Math.max(maxRunning, running)
    const g = gate()
    gates.push(g)
    try {
      await g.promise
    } finally {
      running--
    }
  }
  return {
    work,
    runs,
    gates,
    get running() {
      return running
    },
    get maxRunning() {
      return maxRunning
    },
  }
}

const noError = (_key: unknown, err: unknown) => {
  throw err
}

describe('WorkQueue concurrency', () => {
  it('never runs more keys at once than its concurrency and runs them all in FIFO order', async () => {
    const c = controlled<number>()
    const queue = new WorkQueue(2, c.work, noError)
    for (let i = 0; i < 6; i++) queue.push(i)
    expect(c.running).toBe(2)
    expect(queue.size).toBe(6)
    while (c.runs.length < 6 || c.running > 0) {
      for (const g of c.gates.splice(0)) g.open()
      await settle()
      expect(c.running).toBeLessThanOrEqual(2)
    }
    expect(c.maxRunning).toBe(2)
    expect(c.runs).toEqual([0, 1, 2, 3, 4, 5])
    expect(queue.size).toBe(0)
  })

  it('starts queued work as soon as a running key finishes', async () => {
    const c = controlled<string>()
    const queue = new WorkQueue(1, c.work, noError)
    queue.push('a')
    queue.push('b')
    expect(c.runs).toEqual(['a'])
    c.gates[0]?.open()
    await settle()
    expect(c.runs).toEqual(['a', 'b'])
    expect(queue.has('a')).toBe(false)
    expect(queue.has('b')).toBe(true)
  })

  it('has room only while a pushed key would start at once, and none once stopped', async () => {
    const c = controlled<string>()
    const queue = new WorkQueue(2, c.work, noError)
    expect(queue.hasRoom()).toBe(true)
    queue.push('a')
    expect(queue.hasRoom()).toBe(true)
    queue.push('b')
    expect(queue.hasRoom()).toBe(false)
    queue.push('c')
    c.gates[0]?.open()
    await settle()
    // 'c' took the freed place.
    expect(c.runs).toEqual(['a', 'b', 'c'])
    expect(queue.hasRoom()).toBe(false)
    c.gates[1]?.open()
    await settle()
    expect(queue.hasRoom()).toBe(true)
    const stopped = queue.stop()
    expect(queue.hasRoom()).toBe(false)
    c.gates[2]?.open()
    await stopped
  })
})

describe('WorkQueue.push', () => {
  it('runs a key pushed twice while queued only once', async () => {
    const c = controlled<string>()
    const queue = new WorkQueue(1, c.work, noError)
    queue.push('a')
    expect(queue.push('b')).toBe(true)
    expect(queue.push('b')).toBe(false)
    for (let i = 0; i < 5; i++) {
      for (const g of c.gates.splice(0)) g.open()
      await settle()
    }
    expect(c.runs).toEqual(['a', 'b'])
  })

  it('runs a key pushed while it runs once more afterwards, however often it was pushed', async () => {
    const c = controlled<string>()
    const queue = new WorkQueue(2, c.work, noError)
    queue.push('a')
    expect(queue.push('a')).toBe(true)
    expect(queue.push('a')).toBe(false)
    expect(c.runs).toEqual(['a'])
    c.gates[0]?.open()
    await settle()
    expect(c.runs).toEqual(['a', 'a'])
    expect(c.running).toBe(1)
    c.gates[1]?.open()
    await settle()
    expect(c.runs).toEqual(['a', 'a'])
    expect(queue.size).toBe(0)
  })

  it('never runs the same key twice at once', async () => {
    const c = controlled<string>()
    const queue = new WorkQueue(4, c.work, noError)
    queue.push('a')
    queue.push('a')
    await settle()
    expect(c.running).toBe(1)
    c.gates[0]?.open()
    await settle()
    expect(c.running).toBe(1)
    c.gates[1]?.open()
    await settle()
  })

  it('lets a worker requeue its own key', async () => {
    const runs: string[] = []
    const queue: WorkQueue<string> = new WorkQueue<string>(
      1,
      async (key) => {
        runs.push(key)
        if (runs.length === 1) queue.push(key)
      },
      noError,
    )
    queue.push('self')
    for (let i = 0; i < 5; i++) await settle()
    expect(runs).toEqual(['self', 'self'])
  })

  it('reports a failed run to onError and carries on with the next key', async () => {
    const errors: Array<[string, unknown]> = []
    const boom = new Error('boom')
    const runs: string[] = []
    const queue = new WorkQueue<string>(
      1,
      async (key) => {
        runs.push(key)
        if (key === 'bad') throw boom
      },
      (key, err) => {
        errors.push([key, err])
      },
    )
    queue.push('bad')
    queue.push('good')
    for (let i = 0; i < 5; i++) await settle()
    expect(errors).toEqual([['bad', boom]])
    expect(runs).toEqual(['bad', 'good'])
  })
})

describe('WorkQueue.stop', () => {
  it('waits for running work to finish', async () => {
    const c = controlled<string>()
    const queue = new WorkQueue(1, c.work, noError)
    queue.push('a')
    let stopped = false
    const stopping = queue.stop().then(() => {
      stopped = true
    })
    await settle()
    expect(stopped).toBe(false)
    c.gates[0]?.open()
    await stopping
    expect(stopped).toBe(true)
    expect(c.running).toBe(0)
  })

  it('drops waiting keys and the re-run of a running key', async () => {
    const c = controlled<string>()
    const queue = new WorkQueue(1, c.work, noError)
    queue.push('a')
    queue.push('a')
    queue.push('b')
    const stopping = queue.stop()
    c.gates[0]?.open()
    await stopping
    await settle()
    expect(c.runs).toEqual(['a'])
  })

  it('refuses new keys after stop', async () => {
    const c = controlled<string>()
    const queue = new WorkQueue(1, c.work, noError)
    await queue.stop()
    expect(queue.push('a')).toBe(false)
    expect(c.runs).toEqual([])
  })

  it('resolves at once when nothing runs', async () => {
    const queue = new WorkQueue<string>(1, async () => undefined, noError)
    await expect(queue.stop()).resolves.toBeUndefined()
  })

  it('resolves when the running work fails', async () => {
    const c = controlled<string>()
    const errors: unknown[] = []
    const queue = new WorkQueue(1, c.work, (_key, err) => {
      errors.push(err)
    })
    queue.push('a')
    const stopping = queue.stop()
    c.gates[0]?.fail(new Error('late failure'))
    await stopping
    expect(errors).toHaveLength(1)
  })
})
