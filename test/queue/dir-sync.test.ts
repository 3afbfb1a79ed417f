import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { DirSync } from '../../src/queue/dir-sync.js'

let dir: string

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailscreen-dirsync-'))
})

afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('DirSync.sync', () => {
  it('resolves a single call', async () => {
    await expect(new DirSync(dir).sync()).resolves.toBeUndefined()
  })

  it('resolves all of 100 concurrent calls, and a call after them still works', async () => {
    const syncer = new DirSync(dir)
    const results = await Promise.all(Array.from({ length: 100 }, () => syncer.sync()))
    expect(results).toHaveLength(100)
    await expect(syncer.sync()).resolves.toBeUndefined()
  })

  it('shares one queued sync among the callers that arrive while a sync runs', () => {
    const syncer = new DirSync(dir)
    const first = syncer.sync()
    const second = syncer.sync()
    const third = syncer.sync()
    expect(second).not.toBe(first)
    expect(third).toBe(second)
    return Promise.all([first, second, third])
  })

  it('keeps working over several rounds of concurrent calls', async () => {
    const syncer = new DirSync(dir)
    for (let round = 0; round < 5; round++) await Promise.all(Array.from({ length: 20 }, () => syncer.sync()))
    await expect(syncer.sync()).resolves.toBeUndefined()
  })

  it('rejects when the directory does not exist, and recovers once it does', async () => {
    const missing = join(dir, 'later')
    const syncer = new DirSync(missing)
    await expect(syncer.sync()).rejects.toMatchObject({ code: 'ENOENT' })
    await mkdir(missing)
    await expect(syncer.sync()).resolves.toBeUndefined()
  })

  it('rejects every concurrent caller when the directory does not exist', async () => {
    const syncer = new DirSync(join(dir, 'missing'))
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => syncer.sync()))
    expect(results.every((r) => r.status === 'rejected')).toBe(true)
  })

  it('resolves at once without touching the directory when disabled', async () => {
    await expect(new DirSync(join(dir, 'missing'), false).sync()).resolves.toBeUndefined()
  })
})
