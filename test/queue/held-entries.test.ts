import { describe, expect, it } from 'vitest'
import { HeldEntries } from '../../src/queue/held-entries.js'
import type { QueueId } from '../../src/queue/ids.js'
import type { SpoolEntry } from '../../src/queue/spool.js'

const entry = (bytes: number) => ({ header: {}, message: Buffer.alloc(bytes) }) as unknown as SpoolEntry
const id = (s: string) => s as QueueId

describe('HeldEntries', () => {
  it('holds entries up to its budget of bytes and frees their bytes when taken', () => {
    const held = new HeldEntries(100)
    expect(held.hold(id('a'), entry(60))).toBe(true)
    expect(held.hold(id('b'), entry(41))).toBe(false)
    expect(held.hold(id('b'), entry(40))).toBe(true)
    expect(held.get(id('b'))?.message.length).toBe(40)
    expect(held.take(id('a'))?.message.length).toBe(60)
    expect(held.take(id('a'))).toBeUndefined()
    expect(held.hold(id('c'), entry(60))).toBe(true)
    held.clear()
    expect(held.get(id('b'))).toBeUndefined()
    expect(held.hold(id('d'), entry(100))).toBe(true)
  })

  it('does not hold a second entry for an ID it holds', () => {
    const held = new HeldEntries(100)
    const first = entry(10)
    expect(held.hold(id('a'), first)).toBe(true)
    expect(held.hold(id('a'), entry(10))).toBe(false)
    expect(held.get(id('a'))).toBe(first)
  })
})
