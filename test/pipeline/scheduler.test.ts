import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { MailscreenError } from '../../src/errors.js'
import type { ScanPool } from '../../src/pipeline/pool.js'
import type { ScanReport } from '../../src/pipeline/scan.js'
import { ScanScheduler } from '../../src/pipeline/scheduler.js'
import type { ScanResult, ScanTask } from '../../src/pipeline/worker.js'
import { newQueueId, type QueueId } from '../../src/queue/ids.js'
import { Spool, type SpoolEntry } from '../../src/queue/spool.js'
import { SPOOL_FORMAT, type SpoolHeader } from '../../src/queue/spool-file.js'

let dir: string
let spool: Spool

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailscreen-scheduler-'))
  spool = new Spool(dir, false)
  await spool.init()
})

afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

const MESSAGE = Buffer.from('Subject: hi\r\n\r\nhello\r\n')

function header(id: QueueId): SpoolHeader {
  const client = { address: '127.0.0.1' }
  return {
    v: SPOOL_FORMAT,
    id,
    envelope: {
      mailFrom: 'a@example.org',
      rcptTo: ['b@example.net'],
      client,
      peer: client,
      receivedAt: Date.now(),
    },
  }
}

/** A clean verdict that delivers the message as it is: what the worker would answer. */
function clean(task: ScanTask, entry: SpoolHeader): ScanResult {
  const report: ScanReport = {
    queueId: task.queueId,
    verdict: { category: 'clean', final: true, score: 0, required: 5, hits: [], tempfail: [], reasons: [] },
    timings: {},
    failedChecks: [],
    disposition: {
      actions: 'deliver',
      rule: 'policy.actions.clean',
      deliverTo: entry.envelope.rcptTo,
      toRecipients: true,
      quarantine: false,
      bounce: false,
      reject: false,
      edits: [],
    },
  }
  return { report, deliver: { header: entry, message: MESSAGE } }
}

/** A scheduler over `pool` that logs into `logs` and notes each message it hands on in `scanned`. */
function schedule(pool: ScanPool, options: { maxAttempts: number }) {
  const logs: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) })
  const scanned: QueueId[] = []
  const scheduler = new ScanScheduler({
    spool,
    pool,
    log,
    maxInFlight: 4,
    maxAttempts: options.maxAttempts,
    retry: [50],
    deliverNow: () => false,
    onScanned: (scannedId: QueueId, _entry: SpoolEntry) => scanned.push(scannedId),
    onBounce: async () => undefined,
  })
  return { scheduler, logs, scanned }
}

/** Wait (at most 5 s) until `done()`. */
async function until(done: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
}

/**
 * One message through a scheduler whose pool answers each scan with `answer` (given the task,
 * the scan's number from 1, and whether it was sent alone), until the message is handed on
 * or moved to failed/. Returns what the pool was asked (`alone` of each scan) and the logs.
 */
async function scanOne(
  options: { maxAttempts: number },
  answer: (task: ScanTask, n: number, alone: boolean | undefined) => ScanResult,
) {
  const id = newQueueId()
  await spool.create('incoming', header(id), MESSAGE)
  const runs: Array<boolean | undefined> = []
  const pool: ScanPool = {
    run: async (task, runOptions) => {
      runs.push(runOptions?.alone)
      return answer(task, runs.length, runOptions?.alone)
    },
    close: async () => undefined,
  }
  const { scheduler, logs, scanned } = schedule(pool, options)
  try {
    scheduler.enqueue(id)
    await until(() => scanned.length > 0 || logs.some((line) => line.msg === 'scan failed: moved to failed'))
  } finally {
    await scheduler.stop()
  }
  return { id, runs, logs, scanned }
}

describe('ScanScheduler', () => {
  /** A pool that answers every scan clean, noting each message it scanned. */
  function cleanPool(tasks: QueueId[]): ScanPool {
    return {
      run: async (task) => {
        tasks.push(task.queueId)
        return clean(task, header(task.queueId))
      },
      close: async () => undefined,
    }
  }

  /** `spool.move` from `from` to `to` fails once (EIO) for every message; `after` says whether the file moved first. */
  function failMoveOnce(from: string, to: string, after = false): void {
    const move = spool.move.bind(spool)
    let failures = 1
    spool.move = async (id, source, target, ...rest) => {
      if (source === from && target === to && failures-- > 0) {
        if (after) await move(id, source, target, ...rest)
        throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' })
      }
      return move(id, source, target, ...rest)
    }
  }

  it('scans a message again later when taking it from incoming/ failed, instead of leaving it there', async () => {
    const id = newQueueId()
    await spool.create('incoming', header(id), MESSAGE)
    const tasks: QueueId[] = []
    failMoveOnce('incoming', 'processing')
    const { scheduler, logs, scanned } = schedule(cleanPool(tasks), { maxAttempts: 3 })
    try {
      scheduler.enqueue(id)
      await until(() => scanned.length > 0)
      expect(scanned).toEqual([id])
      expect(logs.find((line) => line.msg === 'scan error')).toMatchObject({ qid: id, outcome: 'requeued' })
      expect(await readdir(join(dir, 'incoming'))).toEqual([])
    } finally {
      await scheduler.stop()
    }
  })

  it('tries again to put a failed scan back when that failed too (the move made, its fsync not)', async () => {
    const id = newQueueId()
    await spool.create('incoming', header(id), MESSAGE)
    const tasks: QueueId[] = []
    // The first scan fails half-way; putting it back moves the file but reports a failure.
    const create = spool.create.bind(spool)
    let failures = 1
    spool.create = async (state, ...rest) => {
      if (state === 'outgoing' && failures-- > 0) throw Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' })
      return create(state, ...rest)
    }
    failMoveOnce('processing', 'incoming', true)
    const { scheduler, logs, scanned } = schedule(cleanPool(tasks), { maxAttempts: 3 })
    try {
      scheduler.enqueue(id)
      await until(() => scanned.length > 0)
      expect(scanned).toEqual([id])
      expect(tasks).toEqual([id, id])
      expect(logs.map((line) => line.msg)).toContain('scan error: message not put back for a new scan yet')
    } finally {
      await scheduler.stop()
    }
  })

  it('hands on a scanned copy written into outgoing/ even when its original cannot be retired', async () => {
    const id = newQueueId()
    await spool.create('incoming', header(id), MESSAGE)
    const remove = spool.remove.bind(spool)
    let failures = 1
    spool.remove = async (state, removed) => {
      if (state === 'processing' && failures-- > 0) throw Object.assign(new Error('EIO'), { code: 'EIO' })
      return remove(state, removed)
    }
    const tasks: QueueId[] = []
    const { scheduler, logs, scanned } = schedule(cleanPool(tasks), { maxAttempts: 3 })
    try {
      scheduler.enqueue(id)
      await until(() => scanned.length > 0)
      expect(scanned).toEqual([id])
      expect(tasks).toEqual([id])
      expect(logs.map((line) => line.msg)).toContain('original not retired yet: tried again every 5 s')
      expect(await readdir(join(dir, 'outgoing'))).toEqual([id])
      // Retired a moment later: a restart after the copy went out must not scan it again.
      const deadline = Date.now() + 8_000
      while ((await readdir(join(dir, 'processing'))).length > 0 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 100))
      expect(await readdir(join(dir, 'processing'))).toEqual([])
    } finally {
      await scheduler.stop()
    }
  })

  it('sends a message whose scan failed half-way back to incoming/ and scans it again', async () => {
    const id = newQueueId()
    await spool.create('incoming', header(id), MESSAGE)
    const tasks: QueueId[] = []
    const pool: ScanPool = {
      run: async (task) => {
        tasks.push(task.queueId)
        return clean(task, header(task.queueId))
      },
      close: async () => undefined,
    }
    // The scanned copy's first write into outgoing/ fails (a full disk, say).
    const create = spool.create.bind(spool)
    let failures = 1
    spool.create = async (state, ...rest) => {
      if (state === 'outgoing' && failures-- > 0)
        throw Object.assign(new Error('ENOSPC: no space left'), { code: 'ENOSPC' })
      return create(state, ...rest)
    }
    const { scheduler, logs, scanned } = schedule(pool, { maxAttempts: 3 })
    try {
      scheduler.enqueue(id)
      await until(() => scanned.length > 0)
      expect(scanned).toEqual([id])
      expect(tasks).toEqual([id, id])
      expect(logs.find((line) => line.msg === 'scan error')).toMatchObject({
        qid: id,
        outcome: 'requeued',
        retryMs: 50,
      })
      expect(await readdir(join(dir, 'outgoing'))).toEqual([id])
      expect(await readdir(join(dir, 'processing'))).toEqual([])
      expect(await readdir(join(dir, 'incoming'))).toEqual([])
    } finally {
      await scheduler.stop()
    }
  })

  it('scans again, and hands on once, a message whose scanned copy could not be fsynced into outgoing/', async () => {
    const id = newQueueId()
    await spool.create('incoming', header(id), MESSAGE)
    const pool: ScanPool = {
      run: async (task) => clean(task, header(task.queueId)),
      close: async () => undefined,
    }
    // The rename into outgoing/ is done, its directory fsync fails: the copy is not durable.
    const syncing = spool as unknown as { syncDir: (state: string) => Promise<void> }
    const syncDir = syncing.syncDir.bind(spool)
    let failures = 1
    syncing.syncDir = (state) =>
      state === 'outgoing' && failures-- > 0
        ? Promise.reject(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }))
        : syncDir(state)
    const { scheduler, logs, scanned } = schedule(pool, { maxAttempts: 3 })
    try {
      scheduler.enqueue(id)
      await until(() => scanned.length > 0)
      // Handed to delivery: not left in outgoing/ with nobody to deliver it until a restart.
      expect(scanned).toEqual([id])
      expect(logs.find((line) => line.msg === 'scan error')).toMatchObject({ qid: id, outcome: 'requeued' })
      expect(await readdir(join(dir, 'outgoing'))).toEqual([id])
      expect(await readdir(join(dir, 'processing'))).toEqual([])
    } finally {
      await scheduler.stop()
    }
  })

  it('retries a scan whose worker died alone; one that only shared the worker never goes to failed/', async () => {
    // The first scan shares a worker that dies; alone, the message scans fine. maxAttempts 1:
    // the crash would send the message to failed/, had it been alone.
    const { id, runs, logs, scanned } = await scanOne({ maxAttempts: 1 }, (task, _n, alone) => {
      if (!alone) throw new Error('worker exited with code: 1')
      return clean(task, header(task.queueId))
    })
    expect(scanned).toEqual([id])
    expect(runs).toEqual([undefined, true])
    expect(logs.find((line) => line.msg === 'scan crashed: retrying')).toMatchObject({
      qid: id,
      attempts: 1,
      alone: false,
      reason: 'worker exited with code: 1',
    })
    expect(await readdir(join(dir, 'failed'))).toEqual([])
  })

  it('moves a message to failed/ once its scan crashed maxAttempts times, the last one alone', async () => {
    const { id, runs, logs } = await scanOne({ maxAttempts: 3 }, () => {
      throw new Error('scan did not finish within 1000 ms')
    })
    expect(runs).toEqual([undefined, true, true])
    expect(logs.find((line) => line.msg === 'scan failed: moved to failed')).toMatchObject({
      qid: id,
      attempts: 3,
      reason: 'scan did not finish within 1000 ms',
    })
    expect(await readdir(join(dir, 'failed'))).toEqual([id])
  })

  it('scans again later, never counting it as a crash, a message whose worker could not write the spool', async () => {
    const { id, runs, logs, scanned } = await scanOne({ maxAttempts: 1 }, (task, n) => {
      if (n === 1) throw new MailscreenError('MSC_SPOOL_WRITE_FAILED', 'spool write failed: ENOSPC')
      return clean(task, header(task.queueId))
    })
    expect(scanned).toEqual([id])
    expect(runs).toEqual([undefined, undefined])
    expect(logs.some((line) => line.msg === 'scan crashed: retrying')).toBe(false)
    expect(logs.find((line) => line.msg === 'scan error')).toMatchObject({ qid: id, outcome: 'requeued' })
  })

  it('leaves no retry behind when it stops while a failed scan is being put back', async () => {
    const id = newQueueId()
    await spool.create('incoming', header(id), MESSAGE)
    let release = (): void => undefined
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    let running = false
    const pool: ScanPool = {
      run: async (task) => {
        running = true
        await held
        throw new MailscreenError('MSC_SPOOL_WRITE_FAILED', `spool write failed for ${task.queueId}`)
      },
      close: async () => undefined,
    }
    const { scheduler } = schedule(pool, { maxAttempts: 3 })
    scheduler.enqueue(id)
    await until(() => running)
    const stopping = scheduler.stop()
    release()
    await stopping
    // A timer left would hold the process up to retry[0] after "stopped" (a minute by default).
    const retries = (scheduler as unknown as { retries: ReadonlySet<NodeJS.Timeout> }).retries
    expect(retries.size).toBe(0)
    // Put back where the next start finds it.
    expect(await readdir(join(dir, 'incoming'))).toEqual([id])
  })

  it('does not scan a message requeued from failed/ as its last chance because an earlier scan was', async () => {
    const id = newQueueId()
    await spool.create('incoming', header(id), MESSAGE)
    const seen: Array<boolean | undefined> = []
    let crash = true
    const pool: ScanPool = {
      run: async (task) => {
        seen.push(task.lastChance)
        if (crash) throw new Error('worker exited with code: 1')
        return clean(task, header(task.queueId))
      },
      close: async () => undefined,
    }
    const { scheduler, logs, scanned } = schedule(pool, { maxAttempts: 1 })
    try {
      scheduler.enqueue(id, { tempfails: 4, lastChance: true })
      await until(() => logs.some((line) => line.msg === 'scan failed: moved to failed'))
      crash = false
      // What `queue requeue` leads to: back in incoming/, rescanned with a fresh lifetime.
      await spool.move(id, 'failed', 'incoming')
      scheduler.enqueue(id, { tempfails: 0, lastChance: false })
      await until(() => scanned.length > 0)
      expect(seen).toEqual([true, true, undefined])
    } finally {
      await scheduler.stop()
    }
  })

  it('scans again, with nothing counted, a message whose scan the pool closed under (a reload)', async () => {
    const { id, runs, logs, scanned } = await scanOne({ maxAttempts: 1 }, (task, n) => {
      if (n === 1) throw new MailscreenError('MSC_POOL_CLOSED', 'the scan pool closed')
      return clean(task, header(task.queueId))
    })
    expect(scanned).toEqual([id])
    // Not a crash: the second scan shares a thread like any other.
    expect(runs).toEqual([undefined, undefined])
    expect(logs.some((line) => line.msg === 'scan crashed: retrying')).toBe(false)
    const interrupted = logs.find((line) => line.msg === 'scan interrupted by a pool restart: queued again')
    expect(interrupted).toMatchObject({ qid: id })
  })
})
