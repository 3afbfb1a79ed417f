import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
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

describe('ScanScheduler', () => {
  it('sends a message whose scan failed half-way back to incoming/ and scans it again', async () => {
    const id = newQueueId()
    await spool.write('incoming', header(id), MESSAGE)
    const tasks: QueueId[] = []
    const pool: ScanPool = {
      run: async (task) => {
        tasks.push(task.queueId)
        return clean(task, header(task.queueId))
      },
      close: async () => undefined,
    }
    // The scanned copy's first write into outgoing/ fails (a full disk, say).
    const write = spool.write.bind(spool)
    let failures = 1
    spool.write = async (state, ...rest) => {
      if (state === 'outgoing' && failures-- > 0)
        throw Object.assign(new Error('ENOSPC: no space left'), { code: 'ENOSPC' })
      return write(state, ...rest)
    }
    const logs: Array<Record<string, unknown>> = []
    const log = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) })
    const scanned: QueueId[] = []
    const scheduler = new ScanScheduler({
      spool,
      pool,
      log,
      maxInFlight: 4,
      maxAttempts: 3,
      taskTimeoutMs: 5_000,
      retry: [50],
      deliverNow: () => false,
      onScanned: (scannedId: QueueId, _entry: SpoolEntry) => scanned.push(scannedId),
      onBounce: async () => undefined,
    })
    try {
      scheduler.enqueue(id)
      const deadline = Date.now() + 5_000
      while (scanned.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
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
})
