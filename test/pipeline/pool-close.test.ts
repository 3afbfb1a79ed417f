import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { scanSettings } from '../../src/app.js'
import { loadConfig } from '../../src/config/load.js'
import { packageRoot } from '../../src/package-root.js'
import { createScanPool } from '../../src/pipeline/pool.js'
import { silentLog } from '../support/check.js'

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
