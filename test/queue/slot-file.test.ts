import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { SlotFile } from '../../src/queue/slot-file.js'

let dir: string

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailscreen-slot-'))
})

afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('SlotFile', () => {
  it('creates a slot that does not exist yet', async () => {
    const path = join(dir, 'new')
    const file = SlotFile.open(path)
    await file.writev([Buffer.from('abc'), Buffer.from('def')])
    await file.seal(true)
    file.close()
    expect(await readFile(path, 'latin1')).toBe('abcdef')
  })

  it('overwrites an existing slot in place and cuts off the tail of the longer old content', async () => {
    const path = join(dir, 'old')
    await writeFile(path, 'x'.repeat(10_000))
    const inode = (await stat(path)).ino
    const file = SlotFile.open(path)
    await file.writev([Buffer.from('short')])
    await file.seal(false)
    file.close()
    expect(await readFile(path, 'latin1')).toBe('short')
    expect((await stat(path)).ino).toBe(inode)
  })

  it('writes each call after the previous one', async () => {
    const path = join(dir, 'seq')
    const file = SlotFile.open(path)
    await file.writev([Buffer.from('one ')])
    await file.writev([Buffer.from('two')])
    await file.seal(true)
    file.close()
    expect(await readFile(path, 'latin1')).toBe('one two')
  })

  it('refuses to write after close, and a second close does nothing', async () => {
    const file = SlotFile.open(join(dir, 'closed'))
    file.close()
    expect(() => file.close()).not.toThrow()
    await expect(file.writev([Buffer.from('late')])).rejects.toThrow(/closed/)
    await expect(file.seal(true)).rejects.toThrow(/closed/)
  })

  it('fails to open a slot in a directory that is gone, with the system error', () => {
    expect(() => SlotFile.open(join(dir, 'missing', 'slot'))).toThrow(/ENOENT/)
  })
})
