import { constants, readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { SlotFile, writeAll } from '../../src/queue/slot-file.js'

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

/** The open flags of this process's descriptor for `path` (from /proc), or undefined when none is open. */
function openFlags(path: string): number | undefined {
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`)
    } catch {
      continue
    }
    if (target !== path) continue
    const line = readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1').match(/^flags:\s+([0-7]+)$/m)
    if (line) return Number.parseInt(line[1] as string, 8)
  }
  return undefined
}

describe('SlotFile.write', () => {
  it('creates a slot with the whole content', async () => {
    const path = join(dir, 'new')
    await SlotFile.write(path, [Buffer.from('head\n'), Buffer.from('body')], true)
    expect(await readFile(path, 'latin1')).toBe('head\nbody')
  })

  it('overwrites a longer old slot in place, leaving none of its tail', async () => {
    const path = join(dir, 'old')
    await writeFile(path, 'x'.repeat(10_000))
    const inode = (await stat(path)).ino
    await SlotFile.write(path, [Buffer.from('short')], true)
    expect(await readFile(path, 'latin1')).toBe('short')
    expect((await stat(path)).ino).toBe(inode)
  })

  it('overwrites a shorter old slot with the longer content', async () => {
    const path = join(dir, 'grow')
    await writeFile(path, 'old')
    await SlotFile.write(path, [Buffer.from('a'.repeat(5000)), Buffer.from('b')], false)
    expect(await readFile(path, 'latin1')).toBe(`${'a'.repeat(5000)}b`)
  })

  it('writes a durable slot through an O_DSYNC descriptor, and a non-durable one without', async () => {
    const durable = join(dir, 'durable')
    const pending = SlotFile.write(durable, [Buffer.from('x')], true)
    // Opened synchronously: the descriptor is there while the write runs in the threadpool.
    const flags = openFlags(durable)
    await pending
    expect(flags).toBeDefined()
    expect((flags as number) & constants.O_DSYNC).toBe(constants.O_DSYNC)
    expect(openFlags(durable)).toBeUndefined()

    const fast = join(dir, 'fast')
    const quick = SlotFile.write(fast, [Buffer.from('x')], false)
    const fastFlags = openFlags(fast)
    await quick
    expect(fastFlags).toBeDefined()
    expect((fastFlags as number) & constants.O_DSYNC).toBe(0)
  })

  it('fails with the system error and leaves no descriptor open', async () => {
    const path = join(dir, 'missing', 'slot')
    await expect(SlotFile.write(path, [Buffer.from('x')], true)).rejects.toThrow(/ENOENT/)
    expect(openFlags(path)).toBeUndefined()
  })
})

describe('writeAll', () => {
  /** A file handle whose writev takes at most `max` bytes a call, as on a disk that fills up. */
  function shortWriter(max: number) {
    const written: Buffer[] = []
    const handle = {
      async writev(buffers: Buffer[]) {
        const all = Buffer.concat(buffers).subarray(0, max)
        written.push(all)
        return { bytesWritten: all.length, buffers }
      },
    }
    return { handle: handle as unknown as Parameters<typeof writeAll>[0], written }
  }

  it('writes the rest after short writes, across buffer boundaries, in order', async () => {
    const { handle, written } = shortWriter(7)
    const parts = [
      Buffer.from('header line\n'),
      Buffer.alloc(0),
      Buffer.from('Subject: x\r\n'),
      Buffer.from('body'),
    ]
    await writeAll(handle, parts)
    expect(Buffer.concat(written).toString()).toBe('header line\nSubject: x\r\nbody')
    expect(written.length).toBe(Math.ceil(Buffer.concat(parts).length / 7))
  })

  it('fails instead of spinning when a write takes nothing', async () => {
    const { handle } = shortWriter(0)
    await expect(writeAll(handle, [Buffer.from('x')])).rejects.toThrow(/no progress/)
  })
})
