import { execFileSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { afterEach, describe, expect, it } from 'vitest'
import { HelperScheduling, SCHED_BATCH, SCHED_OTHER, threadPolicy } from '../src/thread-scheduling.js'

// These change the scheduling of this test process's own threads (vitest runs each file in a
// process of its own) with the real chrt(1), and read them back from /proc.
const workers: Worker[] = []
const dirs: string[] = []
let failures: string[] = []

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.terminate()))
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
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

/** A chrt stand-in: `body` runs first (it may exit), then the real chrt. */
async function fakeChrt(body: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mailscreen-chrt-'))
  dirs.push(dir)
  const file = join(dir, 'chrt')
  await writeFile(file, `#!/bin/sh\n${body}\nexec chrt "$@"\n`)
  await chmod(file, 0o755)
  return file
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

  it('normal gives back only the threads it batched', async () => {
    const theirs = await startWorker()
    execFileSync('chrt', ['--batch', '--pid', '0', String(theirs)])
    await scheduling().use('normal')
    expect(threadPolicy(theirs)).toBe(SCHED_BATCH)

    const helpers = scheduling()
    await helpers.use('batch')
    await helpers.use('normal')
    expect(threadPolicy(theirs)).toBe(SCHED_BATCH)
    expect(others().filter((policy) => policy === SCHED_BATCH)).toHaveLength(1)
  })

  it('normal asked for while a batch run is under way undoes it once that run ends', async () => {
    await startWorker()
    const helpers = scheduling(await fakeChrt('sleep 0.02'))
    const batching = helpers.use('batch')
    const back = helpers.use('normal')
    await Promise.all([batching, back])
    expect(failures).toEqual([])
    expect(new Set(policies().values())).toEqual(new Set([SCHED_OTHER]))
  })

  it('a thread chrt cannot change is reported; the others are changed all the same', async () => {
    const stubborn = await startWorker()
    const willing = await startWorker()
    const chrt = await fakeChrt(
      `[ "$4" = "${stubborn}" ] && { echo "chrt: failed to set pid $4's policy: Operation not permitted" >&2; exit 1; }`,
    )
    await scheduling(chrt).use('batch')
    expect(threadPolicy(stubborn)).toBe(SCHED_OTHER)
    expect(threadPolicy(willing)).toBe(SCHED_BATCH)
    expect(threadPolicy(process.pid)).toBe(SCHED_OTHER)
    expect(failures).toHaveLength(1)
    expect(failures[0]).toMatch(
      new RegExp(
        `^1 of \\d+ threads left as they were: chrt: failed to set pid ${stubborn}'s policy: Operation not permitted$`,
      ),
    )
  })

  it('says why when chrt cannot be run, once however often it is tried; the promise still resolves', async () => {
    await startWorker()
    const helpers = scheduling('/nonexistent/chrt')
    await helpers.use('batch')
    await helpers.refresh()
    await helpers.refresh()
    expect(failures).toHaveLength(1)
    expect(failures[0]).toMatch(/threads left as they were: .*\/nonexistent\/chrt: not found/)
    expect(new Set(policies().values())).toEqual(new Set([SCHED_OTHER]))
  })

  it("leaves every thread alone when the main thread was started under a policy of the administrator's", async () => {
    const worker = await startWorker()
    execFileSync('chrt', ['--batch', '--pid', '0', String(process.pid)])
    await scheduling().use('batch')
    expect(failures).toEqual([
      'the main thread runs under a scheduling policy of its own: helper threads left as they are',
    ])
    expect(threadPolicy(worker)).toBe(SCHED_OTHER)
    expect(threadPolicy(process.pid)).toBe(SCHED_BATCH)
  })
})
