import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { scanSettings } from '../../src/app.js'
import { loadConfig } from '../../src/config/load.js'
import { toErrorInfo } from '../../src/errors.js'
import { packageRoot } from '../../src/package-root.js'
import { createScanPool, type RunOptions, type ScanPool } from '../../src/pipeline/pool.js'
import type { ScanResult } from '../../src/pipeline/worker.js'
import { newQueueId } from '../../src/queue/ids.js'
import { SPOOL_FORMAT } from '../../src/queue/spool-file.js'

// The real piscina pool with the real worker module, running test plugins: `spins` blocks its
// thread for good on "spin me", `sleeps` waits on "sleep N".
let dir: string
let pool: ScanPool | undefined
let logs: Array<Record<string, unknown>>
const log = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) })

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailscreen-pool-'))
  logs = []
})

afterEach(async () => {
  await pool?.close()
  pool = undefined
  await rm(dir, { recursive: true, force: true })
})

async function startPool(options: {
  workers?: number
  concurrentTasksPerWorker: number
  taskTimeoutMs: number
  onThreadStart?: () => void
}): Promise<ScanPool> {
  const file = join(dir, 'mailscreen.yaml')
  const plugins = ['spins', 'sleeps', 'stray-throw', 'kills-worker', 'fails-to-load'].map(
    (name) => `  - use: ${join(packageRoot, 'test/fixtures/plugins', name)}`,
  )
  await writeFile(file, `spool: { dir: ${join(dir, 'spool')} }\nplugins:\n${plugins.join('\n')}\n`)
  const scan = await scanSettings(loadConfig(file))
  pool = createScanPool(
    { scan, spoolDir: join(dir, 'spool'), fsync: false, logLevel: 'silent' },
    { workers: 1, ...options, log },
  )
  return pool
}

/** Scan a message with this subject the milter way: nothing touches the spool. */
function scan(target: ScanPool, subject: string, options?: RunOptions): Promise<ScanResult> {
  const queueId = newQueueId()
  const client = { address: '127.0.0.1' }
  return target.run(
    {
      queueId,
      slot: '',
      front: 'milter',
      entry: {
        header: {
          v: SPOOL_FORMAT,
          id: queueId,
          envelope: {
            mailFrom: 'a@example.org',
            rcptTo: ['b@example.net'],
            client,
            peer: client,
            receivedAt: 0,
          },
        },
        message: Buffer.from(`Subject: ${subject}\r\n\r\nhello\r\n`),
      },
    },
    options,
  )
}

/** How `promise` settles: the verdict's category, or the error's code and message. */
async function outcome(promise: Promise<ScanResult>): Promise<string | { code: string; message: string }> {
  try {
    return (await promise).report.verdict.category
  } catch (err) {
    expect(err).toBeInstanceOf(Error)
    return toErrorInfo(err)
  }
}

/** Two warm threads, then one dies and its replacement fails to load: the pool is short of one. */
async function poolShortOfAThread(
  taskTimeoutMs: number,
  concurrentTasksPerWorker: number,
): Promise<ScanPool> {
  const target = await startPool({ workers: 2, concurrentTasksPerWorker, taskTimeoutMs })
  expect(await Promise.all([outcome(scan(target, 'hello')), outcome(scan(target, 'hello'))])).toEqual([
    'clean',
    'clean',
  ])
  process.env.MAILSCREEN_TEST_FAIL_LOAD = '1'
  try {
    expect(await outcome(scan(target, 'crash me'))).toMatchObject({ code: 'MSC_SCAN_FAILED' })
    await new Promise((resolve) => setTimeout(resolve, 300))
  } finally {
    delete process.env.MAILSCREEN_TEST_FAIL_LOAD
  }
  return target
}

const restarted = (): boolean =>
  logs.some((l) => l.msg === 'scan pool restarted: a worker thread failed to start and was not replaced')

describe('the scan pool', () => {
  it('treats a scan that crashes a thread of a pool started anew as a crash: not run again beside other mail', async () => {
    const target = await poolShortOfAThread(20_000, 2)
    // On the old pool's last thread, crashing after the pool was started anew.
    const poison = outcome(scan(target, 'crash me in 3500'))
    const deadline = Date.now() + 8_000
    while (!restarted() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
    expect(restarted()).toBe(true)
    const innocents = [outcome(scan(target, 'sleep 6000')), outcome(scan(target, 'sleep 6000'))]
    expect(await poison).toMatchObject({ code: 'MSC_SCAN_FAILED' })
    expect(await Promise.all(innocents)).toEqual(['clean', 'clean'])
  })

  it('ends a scan that hangs on a thread of a pool started anew, and leaves no thread spinning', async () => {
    const target = await poolShortOfAThread(3_000, 1)
    expect(await outcome(scan(target, 'spin me'))).toMatchObject({
      code: 'MSC_SCAN_FAILED',
      message: 'scan did not finish within 3000 ms',
    })
    expect(restarted()).toBe(true)
    await target.close()
    pool = undefined
    await new Promise((resolve) => setTimeout(resolve, 500))
    const before = process.cpuUsage()
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    const used = process.cpuUsage(before)
    // A thread still spinning would use most of a core.
    expect((used.user + used.system) / 1000).toBeLessThan(500)
  })

  it('starts its threads anew when a replacement thread fails to start, which piscina never retries', async () => {
    const target = await startPool({ concurrentTasksPerWorker: 1, taskTimeoutMs: 10_000 })
    expect(await outcome(scan(target, 'hello'))).toBe('clean')
    // The thread dies; its replacement, started with this environment, fails to load a plugin,
    // and so does the one piscina starts for the next scan: that scan waits in its queue, and
    // piscina starts no thread again.
    process.env.MAILSCREEN_TEST_FAIL_LOAD = '1'
    let waiting: Promise<string | { code: string; message: string }>
    try {
      expect(await outcome(scan(target, 'crash me'))).toMatchObject({ code: 'MSC_SCAN_FAILED' })
      waiting = outcome(scan(target, 'hello'))
      await new Promise((resolve) => setTimeout(resolve, 500))
    } finally {
      delete process.env.MAILSCREEN_TEST_FAIL_LOAD
    }
    // It runs once the pool is started anew.
    expect(await waiting).toBe('clean')
    expect(
      logs.find((l) => l.msg === 'scan pool restarted: a worker thread failed to start and was not replaced'),
    ).toMatchObject({
      pool: 'shared',
      threads: 0,
      wanted: 1,
    })
  })

  it('counts the task timeout from when a worker begins a scan, not from when it was queued', async () => {
    // One thread, one scan at a time: the third scan waits 0.9 s and ends 1.35 s after it was
    // sent, more than the timeout.
    const target = await startPool({ concurrentTasksPerWorker: 1, taskTimeoutMs: 1_000 })
    const results = await Promise.all(
      ['sleep 450', 'sleep 450', 'sleep 450'].map((s) => outcome(scan(target, s))),
    )
    expect(results).toEqual(['clean', 'clean', 'clean'])
  })

  it('runs many scans on one thread at once', async () => {
    // Each scan waits until all eight wait together: they finish only if they run at once.
    const target = await startPool({ concurrentTasksPerWorker: 8, taskTimeoutMs: 10_000 })
    const results = await Promise.all(Array.from({ length: 8 }, () => scan(target, 'meet 8')))
    expect(results.map((r) => r.report.failedChecks)).toEqual(Array.from({ length: 8 }, () => []))
  })

  it('replaces a thread whose scan hangs, says so in the log, and goes on', async () => {
    const target = await startPool({ concurrentTasksPerWorker: 4, taskTimeoutMs: 1_000 })
    const beside = outcome(scan(target, 'sleep 5000'))
    // The spinning scan blocks the thread, so the one beside it cannot finish either: both
    // are past the limit when the watchdog looks.
    const spinning = outcome(scan(target, 'spin me'))
    const [spun, slept] = await Promise.all([spinning, beside])
    expect(spun).toEqual({ code: 'MSC_SCAN_FAILED', message: 'scan did not finish within 1000 ms' })
    expect(slept).toEqual({ code: 'MSC_SCAN_FAILED', message: 'scan did not finish within 1000 ms' })
    expect(logs.find((l) => l.level === 40)).toMatchObject({
      msg: 'worker thread terminated: a scan ran past pool.taskTimeout',
      overran: 2,
      beside: 0,
      timeoutMs: 1_000,
    })
    expect(await outcome(scan(target, 'after the trouble'))).toBe('clean')
  })

  it('says when a worker thread starts, a replacement too (for thread-scheduling.ts)', async () => {
    let started = 0
    const target = await startPool({
      concurrentTasksPerWorker: 4,
      taskTimeoutMs: 1_000,
      onThreadStart: () => started++,
    })
    // The shared thread and the suspects' thread.
    for (let waited = 0; started < 2 && waited < 10_000; waited += 10)
      await new Promise((resolve) => setTimeout(resolve, 10))
    expect(started).toBe(2)
    expect(await outcome(scan(target, 'spin me'))).toMatchObject({ code: 'MSC_SCAN_FAILED' })
    expect(await outcome(scan(target, 'after the trouble'))).toBe('clean')
    expect(started).toBe(3)
  })

  it('replaces a thread stuck outside any scan: the scans sent to it since fail, and the pool goes on', async () => {
    const target = await startPool({ concurrentTasksPerWorker: 4, taskTimeoutMs: 1_000 })
    // The check answers, then a timer of the plugin blocks the thread 200 ms later.
    expect(await outcome(scan(target, 'spin later'))).toBe('clean')
    await new Promise((r) => setTimeout(r, 400))
    // Sent to the stuck thread: it never begins, so no task on the board can overrun.
    const stuck = outcome(scan(target, 'an ordinary message'))
    const late = new Promise((r) => setTimeout(() => r('still waiting after 8 s'), 8_000))
    expect(await Promise.race([stuck, late])).toMatchObject({ code: 'MSC_SCAN_FAILED' })
    const warning = logs.find((l) => l.level === 40)
    expect(warning).toMatchObject({
      msg: 'worker thread terminated: stuck outside any scan for longer than pool.taskTimeout',
      timeoutMs: 1_000,
    })
    expect(warning?.stuckMs).toBeGreaterThan(1_000)
    expect(await outcome(scan(target, 'after the trouble'))).toBe('clean')
  })

  it('leaves idle threads alone: their heartbeat goes on between scans', async () => {
    const target = await startPool({ concurrentTasksPerWorker: 4, taskTimeoutMs: 1_000 })
    expect(await outcome(scan(target, 'warm up'))).toBe('clean')
    // Three times the timeout with nothing to do.
    await new Promise((r) => setTimeout(r, 3_000))
    expect(logs.filter((l) => (l.level as number) >= 40)).toEqual([])
    expect(await outcome(scan(target, 'still the same thread'))).toBe('clean')
  })

  it('names a scan that only shared the thread of one that overran', async () => {
    // The watchdog looks every 500 ms: the second scan is well inside the limit when it does.
    const target = await startPool({ concurrentTasksPerWorker: 4, taskTimeoutMs: 2_000 })
    // A thread that is still starting would begin both scans at the same moment, and both would
    // overrun: on a loaded machine that start can take longer than the second apart.
    expect(await outcome(scan(target, 'warm up'))).toBe('clean')
    const overrunning = outcome(scan(target, 'sleep 8000'))
    await new Promise((r) => setTimeout(r, 1_000))
    const beside = outcome(scan(target, 'sleep 8000'))
    expect(await overrunning).toEqual({
      code: 'MSC_SCAN_FAILED',
      message: 'scan did not finish within 2000 ms',
    })
    expect(await beside).toEqual({
      code: 'MSC_SCAN_FAILED',
      message: 'its worker thread was replaced: another scan on it ran past 2000 ms',
    })
  })

  it('gives a scan run alone a thread of its own: what it hangs takes nothing else down', async () => {
    const target = await startPool({ concurrentTasksPerWorker: 4, taskTimeoutMs: 1_000 })
    const spinning = outcome(scan(target, 'spin me', { alone: true }))
    // Sent while the suspect's thread spins.
    await new Promise((r) => setTimeout(r, 300))
    const other = outcome(scan(target, 'an ordinary message'))
    expect(await spinning).toEqual({
      code: 'MSC_SCAN_FAILED',
      message: 'scan did not finish within 1000 ms',
    })
    expect(await other).toBe('clean')
  })

  it('runs the suspects queued behind one that hung, once their thread is replaced', async () => {
    const target = await startPool({ concurrentTasksPerWorker: 4, taskTimeoutMs: 1_000 })
    const spinning = outcome(scan(target, 'spin me', { alone: true }))
    const next = outcome(scan(target, 'an ordinary message', { alone: true }))
    expect(await spinning).toMatchObject({ code: 'MSC_SCAN_FAILED' })
    expect(await next).toBe('clean')
  })

  it('runs a scan sent alone at once, even while every shared thread is busy', async () => {
    // One scan per shared thread: had the alone scan gone there, it would wait for the first.
    const target = await startPool({ concurrentTasksPerWorker: 1, taskTimeoutMs: 10_000 })
    const busy = scan(target, 'sleep 3000').then(() => 'the shared thread went idle')
    const alone = scan(target, 'an ordinary message', { alone: true }).then((r) => r.report.verdict.category)
    expect(await Promise.race([alone, busy])).toBe('clean')
    await busy
  })

  it('without alone, a scan sent beside a hanging one goes down with it', async () => {
    // The counterpart of the test above: what `alone` changes.
    const target = await startPool({ concurrentTasksPerWorker: 4, taskTimeoutMs: 1_000 })
    const spinning = outcome(scan(target, 'spin me'))
    const other = outcome(scan(target, 'an ordinary message'))
    expect(await spinning).toMatchObject({ code: 'MSC_SCAN_FAILED' })
    expect(await other).toMatchObject({ code: 'MSC_SCAN_FAILED' })
  })

  it('drops a scan still waiting for a place once its caller gave up; the scan before it runs', async () => {
    const target = await startPool({ concurrentTasksPerWorker: 1, taskTimeoutMs: 10_000 })
    const first = outcome(scan(target, 'sleep 1500'))
    const controller = new AbortController()
    const waiting = outcome(scan(target, 'sleep 1500', { signal: controller.signal }))
    controller.abort()
    // Dropped while the first still runs (it holds the only place).
    expect(await Promise.race([waiting, first.then(() => 'first finished')])).toEqual({
      code: 'AbortError',
      message: 'the answer is no longer wanted',
    })
    expect(await first).toBe('clean')
  })

  it('replaces a thread that fails between scans, and logs it; the process and the pool go on', async () => {
    const target = await startPool({ concurrentTasksPerWorker: 4, taskTimeoutMs: 10_000 })
    expect(await outcome(scan(target, 'throw later'))).toBe('clean')
    const deadline = Date.now() + 5_000
    while (!logs.some((l) => l.level === 50) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(logs.find((l) => l.level === 50)).toMatchObject({
      msg: 'worker thread failed between scans: replaced',
      err: { message: 'a stray throw from a plugin timer' },
    })
    expect(await outcome(scan(target, 'after the trouble'))).toBe('clean')
  })

  it('closing lets running scans finish and turns the waiting ones away as MSC_POOL_CLOSED', async () => {
    const target = await startPool({ concurrentTasksPerWorker: 1, taskTimeoutMs: 10_000 })
    // The thread up and its plugins set up, so that the next scan starts at once.
    expect(await outcome(scan(target, 'warm up'))).toBe('clean')
    const running = outcome(scan(target, 'sleep 500'))
    const waiting = outcome(scan(target, 'an ordinary message'))
    await new Promise((r) => setTimeout(r, 100))
    pool = undefined
    const closing = target.close()
    expect(await waiting).toMatchObject({ code: 'MSC_POOL_CLOSED' })
    expect(await running).toBe('clean')
    await closing
    expect(await outcome(scan(target, 'too late'))).toMatchObject({ code: 'MSC_POOL_CLOSED' })
  })

  it('does not wait out a scan that hangs while it closes: the watchdog ends it', async () => {
    const target = await startPool({ concurrentTasksPerWorker: 4, taskTimeoutMs: 1_000 })
    const spinning = outcome(scan(target, 'spin me'))
    await new Promise((r) => setTimeout(r, 100))
    pool = undefined
    // piscina's own close would wait 30 s (its closeTimeout) for the terminated thread's task.
    const closed = target.close().then(() => 'closed')
    const late = new Promise((r) => setTimeout(() => r('still closing after 15 s'), 15_000))
    expect(await Promise.race([closed, late])).toBe('closed')
    expect(await spinning).toEqual({
      code: 'MSC_SCAN_FAILED',
      message: 'scan did not finish within 1000 ms',
    })
    expect(
      logs.some(
        (l) =>
          (l.level as number) >= 40 && l.msg !== 'worker thread terminated: a scan ran past pool.taskTimeout',
      ),
    ).toBe(false)
  })

  it("does not wait out piscina's close timeout when a thread dies by itself while it closes", async () => {
    const target = await startPool({ concurrentTasksPerWorker: 4, taskTimeoutMs: 60_000 })
    expect(await outcome(scan(target, 'warm up'))).toBe('clean')
    // The thread takes the scan, then exits in the middle of it, after the close began.
    const crashing = outcome(scan(target, 'crash me in 300'))
    await new Promise((resolve) => setTimeout(resolve, 100))
    const closing = target.close().then(() => 'closed')
    const later = new Promise((resolve) => setTimeout(() => resolve('still closing after 15 s'), 15_000))
    expect(await Promise.race([closing, later])).toBe('closed')
    expect(await crashing).toMatchObject({ code: 'MSC_POOL_CLOSED' })
  })

  it('forgets a thread that exits in the middle of a scan: no overrun is reported for it later', async () => {
    const target = await startPool({ concurrentTasksPerWorker: 4, taskTimeoutMs: 1_000 })
    expect(await outcome(scan(target, 'crash me'))).toEqual({
      code: 'MSC_SCAN_FAILED',
      message: 'worker exited with code: 1',
    })
    // Past the timeout and a few watchdog rounds.
    await new Promise((r) => setTimeout(r, 2_000))
    expect(
      logs.filter((l) => l.msg === 'worker thread terminated: a scan ran past pool.taskTimeout'),
    ).toEqual([])
    expect(await outcome(scan(target, 'after the trouble'))).toBe('clean')
  })
})
