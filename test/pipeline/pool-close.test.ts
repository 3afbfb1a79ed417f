import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { scanSettings } from '../../src/app.js'
import { loadConfig } from '../../src/config/load.js'
import { packageRoot } from '../../src/package-root.js'
import { createScanPool } from '../../src/pipeline/pool.js'
import { newQueueId } from '../../src/queue/ids.js'
import { SPOOL_FORMAT } from '../../src/queue/spool-file.js'
import { silentLog, testEnvelope } from '../support/check.js'

let dir: string

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailscreen-pool-close-'))
})

afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

// On Node 20 a worker thread terminated while it loads modules may abort the whole process
// with a V8 fatal error ("IsGraphAsync must be used on an instantiated module"). SIGHUPs in
// quick succession did that: each reload closed the pool the one before had just started.
it('lets new threads finish loading their modules before it terminates them', async () => {
  const file = join(dir, 'mailscreen.yaml')
  // This plugin takes a second to import: the threads load for that long.
  const slow = join(packageRoot, 'test/fixtures/plugins/slow-to-load')
  await writeFile(file, `spool: { dir: ${join(dir, 'spool')} }\nplugins:\n  - use: ${slow}\n`)
  const scan = await scanSettings(loadConfig(file))
  const pool = createScanPool(
    { scan, spoolDir: join(dir, 'spool'), fsync: false, logLevel: 'silent' },
    { workers: 2, concurrentTasksPerWorker: 2, taskTimeoutMs: 5_000, log: silentLog },
  )
  const started = performance.now()
  await pool.close()
  expect(performance.now() - started).toBeGreaterThan(900)
})

it('holds a scan until its thread has loaded its plugins, and runs it then', async () => {
  // Its import takes 1.5 s in workers (say, a top-level await on a backend that is slow to answer).
  await writeFile(
    join(dir, 'slow-in-workers.mjs'),
    `import { isMainThread } from 'node:worker_threads'
if (!isMainThread) await new Promise((resolve) => setTimeout(resolve, 1_500))
export default { name: 'slow-in-workers', description: 'x', options: { safeParse: (v) => ({ success: true, data: v }) },
  symbols: {}, setup: () => async () => [] }
`,
  )
  const file = join(dir, 'mailscreen.yaml')
  await writeFile(file, `spool: { dir: ${join(dir, 'spool')} }\nplugins:\n  - use: ./slow-in-workers.mjs\n`)
  const scan = await scanSettings(loadConfig(file))
  // The task timeout is shorter than the import: it counts from when the thread begins the scan.
  const pool = createScanPool(
    { scan, spoolDir: join(dir, 'spool'), fsync: false, logLevel: 'silent' },
    { workers: 1, concurrentTasksPerWorker: 1, taskTimeoutMs: 1_000, log: silentLog },
  )
  const queueId = newQueueId()
  const started = performance.now()
  const result = await pool.run({
    queueId,
    slot: '',
    front: 'milter',
    entry: {
      header: { v: SPOOL_FORMAT, id: queueId, envelope: testEnvelope },
      message: Buffer.from('Subject: hi\r\n\r\nhello\r\n'),
    },
  })
  expect(result.report.verdict.category).toBe('clean')
  expect(performance.now() - started).toBeGreaterThan(1_400)
  await pool.close()
})
