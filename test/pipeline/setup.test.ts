import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { scanSettings } from '../../src/app.js'
import { loadConfig } from '../../src/config/load.js'
import { createMessageView } from '../../src/mail/message.js'
import type { CheckContext } from '../../src/pipeline/plugin.js'
import { createScanPool, type ScanPool } from '../../src/pipeline/pool.js'
import { loadPlugin, toRef } from '../../src/pipeline/registry.js'
import { SETUP_RETRY_MS, SETUP_STALL_MS, setupPlugins } from '../../src/pipeline/setup.js'
import type { ScanResult } from '../../src/pipeline/worker.js'
import { newQueueId } from '../../src/queue/ids.js'
import { SPOOL_FORMAT } from '../../src/queue/spool-file.js'
import { silentLog, testEnvelope } from '../support/check.js'

// Plugins as a JavaScript author writes them; `setup` fails as a backend that is not up would.
const ANY_OPTIONS = '{ safeParse: (v) => ({ success: true, data: v }) }'
const FLAKY = `let calls = 0
export default { name: 'flaky', description: 'setup fails the first time', options: ${ANY_OPTIONS},
  symbols: {}, setup: async () => { if (++calls === 1) throw new Error('backend not ready yet'); return async () => [] } }
export const setups = () => calls
`
const HANGS_ONCE = `let calls = 0
export default { name: 'hangs', description: 'setup never ends the first time', options: ${ANY_OPTIONS},
  symbols: {}, setup: () => (++calls === 1 ? new Promise(() => {}) : async () => []) }
export const setups = () => calls
`
const SLOW = `let calls = 0
export default { name: 'slow', description: 'setup takes 70 s', options: ${ANY_OPTIONS}, symbols: {},
  setup: () => { calls++; return new Promise((resolve) => setTimeout(() => resolve(async () => []), 70_000)) } }
export const setups = () => calls
`
const BROKEN = `export default { name: 'broken', description: 'setup always fails', options: ${ANY_OPTIONS},
  symbols: {}, setup: async () => { throw new Error('cannot open the database') } }
`
const VIRUS = `export default { name: 'finds', description: 'finds a virus in everything', options: ${ANY_OPTIONS},
  symbols: { FOUND: { description: 'x', weight: 0, category: 'virus' } }, setup: () => async () => [{ symbol: 'FOUND' }] }
`

let dir: string
let pool: ScanPool | undefined

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailscreen-setup-'))
})

afterEach(async () => {
  vi.useRealTimers()
  await pool?.close()
  pool = undefined
  await rm(dir, { recursive: true, force: true })
})

const context = (): CheckContext => ({
  queueId: newQueueId(),
  envelope: testEnvelope,
  message: createMessageView(Buffer.from('Subject: hi\r\n\r\nhello\r\n')),
  log: silentLog,
  signal: new AbortController().signal,
  deadline: Number.POSITIVE_INFINITY,
})

describe('a plugin whose setup fails', () => {
  it('fails its checks with the setup error, and tries setup again after SETUP_RETRY_MS', async () => {
    vi.useFakeTimers({ toFake: ['performance', 'setTimeout', 'clearTimeout'] })
    await writeFile(join(dir, 'flaky.mjs'), FLAKY)
    const { setups } = (await import(join(dir, 'flaky.mjs'))) as { setups: () => number }
    const [ready] = await setupPlugins(
      [toRef(await loadPlugin({ use: './flaky.mjs', options: {} }, dir))],
      silentLog,
    )
    expect(setups()).toBe(1)
    await expect(ready?.check(context())).rejects.toMatchObject({
      code: 'MSC_PLUGIN_FAILED',
      message: 'flaky setup failed: backend not ready yet',
    })
    vi.advanceTimersByTime(SETUP_RETRY_MS - 1)
    await expect(ready?.check(context())).rejects.toThrow('backend not ready yet')
    expect(setups()).toBe(1)
    vi.advanceTimersByTime(1)
    expect(await ready?.check(context())).toEqual([])
    expect(setups()).toBe(2)
  })

  it('starts no set-up wait of its own: a setup that never ends holds nothing but its own checks', async () => {
    vi.useFakeTimers({ toFake: ['performance', 'setTimeout', 'clearTimeout'] })
    await writeFile(join(dir, 'hangs.mjs'), HANGS_ONCE)
    await writeFile(join(dir, 'hangs2.mjs'), HANGS_ONCE.replace("name: 'hangs'", "name: 'hangs2'"))
    const { setups } = (await import(join(dir, 'hangs.mjs'))) as { setups: () => number }
    const refs = [
      toRef(await loadPlugin({ use: './hangs.mjs', options: {} }, dir)),
      toRef(await loadPlugin({ use: './hangs2.mjs', options: {} }, dir)),
    ]
    // Two hung setups: the thread's first scan does not wait for them one after the other.
    const [ready] = await setupPlugins(refs, silentLog)
    expect(setups()).toBe(1)
    // This check waits on the hung try (the check's own timeout would end it in a scan).
    void ready?.check(context())
    vi.advanceTimersByTime(SETUP_STALL_MS + 1)
    // Stalled that long: another try, beside it, and that one is used.
    expect(await ready?.check(context())).toEqual([])
    expect(setups()).toBe(2)
  })

  it('uses a setup slower than the checks that waited for it, once it is done', async () => {
    vi.useFakeTimers({ toFake: ['performance', 'setTimeout', 'clearTimeout'] })
    await writeFile(join(dir, 'slow.mjs'), SLOW)
    const { setups } = (await import(join(dir, 'slow.mjs'))) as { setups: () => number }
    const [ready] = await setupPlugins(
      [toRef(await loadPlugin({ use: './slow.mjs', options: {} }, dir))],
      silentLog,
    )
    const first = ready?.check(context())
    await vi.advanceTimersByTimeAsync(70_000)
    expect(await first).toEqual([])
    expect(await ready?.check(context())).toEqual([])
    // The second check came after SETUP_STALL_MS, but the first try had ended by then.
    expect(setups()).toBe(1)
  })

  async function startPool(plugin: string, source: string, onError?: string): Promise<ScanPool> {
    await writeFile(join(dir, `${plugin}.mjs`), source)
    const file = join(dir, 'mailscreen.yaml')
    const entry = `  - use: ./${plugin}.mjs${onError ? `\n    onError: ${onError}` : ''}`
    await writeFile(file, `spool: { dir: ${join(dir, 'spool')} }\nplugins:\n${entry}\n`)
    const scan = await scanSettings(loadConfig(file))
    pool = createScanPool(
      { scan, spoolDir: join(dir, 'spool'), fsync: false, logLevel: 'silent' },
      { workers: 1, concurrentTasksPerWorker: 2, taskTimeoutMs: 5_000, log: silentLog },
    )
    return pool
  }

  /** A scan as the content filter (its quarantine copy is staged in tmp/) or the milter asks it. */
  function scan(target: ScanPool, filter = false): Promise<ScanResult> {
    const queueId = newQueueId()
    return target.run({
      queueId,
      slot: `slot-${queueId}`,
      ...(filter ? {} : { front: 'milter' as const }),
      entry: {
        header: { v: SPOOL_FORMAT, id: queueId, envelope: testEnvelope },
        message: Buffer.from('Subject: hi\r\n\r\nhello\r\n'),
      },
    })
  }

  it('gets its failure policy in a worker, message after message: no scan fails as a crash', async () => {
    const tempfail = await startPool('broken', BROKEN)
    for (let i = 0; i < 2; i++) {
      const { report } = await scan(tempfail)
      expect(report.verdict).toMatchObject({
        final: false,
        tempfail: ['broken: broken setup failed: cannot open the database'],
      })
    }
    await tempfail.close()
    const goOn = await startPool('broken', BROKEN, 'continue')
    const { report } = await scan(goOn)
    expect(report.verdict).toMatchObject({ final: true, category: 'clean' })
    expect(report.verdict.hits.map((h) => [h.symbol, h.evidence])).toEqual([
      ['BROKEN_FAIL', ['broken setup failed: cannot open the database']],
    ])
  })

  it('a worker that cannot write the spool says so as a spool failure, not as a crash of the scan', async () => {
    const target = await startPool('finds', VIRUS)
    // The quarantined original is staged in tmp/: a file in its place fails that write.
    await mkdir(join(dir, 'spool'))
    await writeFile(join(dir, 'spool', 'tmp'), '')
    await expect(scan(target, true)).rejects.toMatchObject({ code: 'MSC_SPOOL_WRITE_FAILED' })
  })
})
