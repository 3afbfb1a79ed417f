import { execFileSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { Worker } from 'node:worker_threads'
import { afterEach, describe, expect, it } from 'vitest'
import { HelperScheduling, SCHED_BATCH, SCHED_OTHER, threadPolicy } from '../src/thread-scheduling.js'

// These change the scheduling of this test process's own threads (vitest runs each file in a
// process of its own) with the real chrt(1), and read them back from /proc.
const workers: Worker[] = []
let failures: string[] = []

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.terminate()))
  execFileSync('chrt', ['--all-tasks', '--other', '--pid', '0', String(process.pid)])
  failures = []
})

/** The policy of every thread of this process, by thread ID. */
function policies(): Map<number, number> {
  const found = new Map<number, number>()
  for (const name of readdirSync('/proc/self/task')) {
    try {
      found.set(Number(name), threadPolicy(Number(name)))
    } catch {
      // The thread exited between the listing and the read.
    }
  }
  return found
}

function others(): number[] {
  return [...policies()].filter(([tid]) => tid !== process.pid).map(([, policy]) => policy)
}

/** Start a worker thread that idles; resolves with its thread ID once it runs. */
async function startWorker(): Promise<number> {
  const before = new Set(policies().keys())
  const worker = new Worker('setInterval(() => {}, 1000)', { eval: true })
  workers.push(worker)
  await new Promise((resolve) => worker.once('online', resolve))
  const fresh = [...policies().keys()].filter((tid) => !before.has(tid))
  expect(fresh.length).toBeGreaterThanOrEqual(1)
  return fresh[0] as number
}

const scheduling = (chrt?: string) => new HelperScheduling((reason) => failures.push(reason), chrt)

describe('helper thread scheduling', () => {
  it('batch puts every thread but the main one under SCHED_BATCH; normal takes it back', async () => {
    await startWorker()
    const helpers = scheduling()
    await helpers.use('batch')
    expect(failures).toEqual([])
    expect(threadPolicy(process.pid)).toBe(SCHED_OTHER)
    expect(others().length).toBeGreaterThan(1)
    expect(new Set(others())).toEqual(new Set([SCHED_BATCH]))

    await helpers.use('normal')
    expect(failures).toEqual([])
    expect(new Set(policies().values())).toEqual(new Set([SCHED_OTHER]))
  })

  it('a thread started later runs as its creator does until the next refresh', async () => {
    const helpers = scheduling()
    await helpers.use('batch')
    const late = await startWorker()
    expect(threadPolicy(late)).toBe(SCHED_OTHER)
    await helpers.refresh()
    expect(threadPolicy(late)).toBe(SCHED_BATCH)
    expect(threadPolicy(process.pid)).toBe(SCHED_OTHER)
  })

  it('normal, never having batched, touches nothing', async () => {
    execFileSync('chrt', ['--batch', '--pid', '0', String(await startWorker())])
    await scheduling().use('normal')
    expect(others()).toContain(SCHED_BATCH)
  })

  it('says why when chrt cannot be run, and mail goes on: the promise still resolves', async () => {
    await scheduling('/nonexistent/chrt').use('batch')
    expect(failures).toHaveLength(1)
    expect(failures[0]).toContain('ENOENT')
    expect(threadPolicy(process.pid)).toBe(SCHED_OTHER)
  })

  it("leaves every thread alone when the main thread was started under a policy of the administrator's", async () => {
    const worker = await startWorker()
    execFileSync('chrt', ['--batch', '--pid', '0', String(process.pid)])
    await scheduling().use('batch')
    expect(failures).toEqual([
      'the main thread runs under a scheduling policy of its own: threads left as they are',
    ])
    expect(threadPolicy(worker)).toBe(SCHED_OTHER)
    expect(threadPolicy(process.pid)).toBe(SCHED_BATCH)
  })
})
