import { spawnSync } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createLogger } from '../src/log.js'
import { BatchedDestination } from '../src/log-destination.js'
import { packageRoot } from '../src/package-root.js'

describe('BatchedDestination', () => {
  let dir: string
  let path: string
  let fd: number

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mailscreen-log-'))
    path = join(dir, 'log')
    fd = openSync(path, 'w')
  })

  afterEach(() => {
    closeSync(fd)
    rmSync(dir, { recursive: true, force: true })
  })

  const written = (): string[] => readFileSync(path, 'utf8').split('\n').filter(Boolean)

  it('writes the lines of one event-loop turn together, when the turn ends, in order', async () => {
    const log = createLogger({ level: 'info' }, new BatchedDestination(fd))
    log.info({ qid: 'Q1' }, 'received')
    log.info({ qid: 'Q1' }, 'delivered')
    expect(written()).toEqual([])
    await new Promise((resolve) => setImmediate(resolve))
    expect(written().map((line) => JSON.parse(line).msg)).toEqual(['received', 'delivered'])
  })

  it('writes at once when 4 KiB have gathered', () => {
    const log = createLogger({ level: 'info' }, new BatchedDestination(fd))
    for (let i = 0; i < 40; i++) log.info({ i, pad: 'x'.repeat(100) }, 'line')
    const lines = written()
    expect(lines.length).toBeGreaterThan(20)
    expect(lines.length).toBeLessThan(40)
    expect(JSON.parse(lines[0] as string).i).toBe(0)
    log.flush()
    expect(written().map((line) => JSON.parse(line).i)).toEqual(Array.from({ length: 40 }, (_, i) => i))
  })

  it('writes everything held back when the logger is flushed', () => {
    const log = createLogger({ level: 'info' }, new BatchedDestination(fd))
    log.warn('held')
    log.flush()
    expect(written().map((line) => JSON.parse(line).msg)).toEqual(['held'])
  })

  it('writes the lines held back when the process exits (the built module, in a child process)', () => {
    const dist = join(packageRoot, 'dist', 'src')
    const script = `import { createLogger } from ${JSON.stringify(join(dist, 'log.js'))}
import { BatchedDestination } from ${JSON.stringify(join(dist, 'log-destination.js'))}
const log = createLogger({ level: 'info' }, new BatchedDestination())
log.info('one')
log.error('two')
process.exit(3)`
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })
    expect(child.status).toBe(3)
    expect(
      child.stdout
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line).msg),
    ).toEqual(['one', 'two'])
  })

  it('drops lines it cannot write, says so once on stderr, and keeps the process going', () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true)
    // A descriptor open for reading only: every write(2) to it fails with EBADF.
    const readOnly = openSync(path, 'r')
    const log = createLogger({ level: 'info' }, new BatchedDestination(readOnly))
    log.info('lost')
    expect(() => log.flush()).not.toThrow()
    log.info('lost too')
    log.flush()
    expect(stderr).toHaveBeenCalledTimes(1)
    expect(String(stderr.mock.calls[0]?.[0])).toMatch(/log lines dropped: EBADF/)
    stderr.mockRestore()
    closeSync(readOnly)
  })
})
