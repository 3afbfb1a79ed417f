import { describe, expect, it } from 'vitest'
import { newQueueId, parseQueueId } from '../../src/queue/ids.js'

describe('newQueueId', () => {
  it('makes 16 characters from [0-9A-Za-z]', () => {
    for (let i = 0; i < 100; i++) expect(newQueueId()).toMatch(/^[0-9A-Za-z]{16}$/)
  })

  it('makes 10,000 unique IDs that sort in creation order', () => {
    const ids = Array.from({ length: 10_000 }, () => newQueueId())
    expect(new Set(ids).size).toBe(ids.length)
    expect([...ids].sort()).toEqual(ids)
  })

  it('keeps IDs made in the same millisecond in creation order', () => {
    const now = Date.now() + 1_000_000
    const ids = Array.from({ length: 500 }, () => newQueueId(now))
    expect(new Set(ids).size).toBe(ids.length)
    expect([...ids].sort()).toEqual(ids)
    expect(new Set(ids.map((id) => id.slice(0, 7))).size).toBe(1)
  })

  it('draws a fresh random tail for every ID, also across refills of the random pool', () => {
    // 3,000 IDs use ~4 pools' worth of bytes; a reused or stuck pool would repeat tails.
    const tails = Array.from({ length: 3_000 }, () => newQueueId().slice(10))
    expect(new Set(tails).size).toBeGreaterThan(2_990)
    // Every character of the alphabet turns up in the tails (no byte stuck at one value).
    expect(new Set(tails.join('')).size).toBe(62)
  })

  it('sorts an ID of a later millisecond after one of an earlier millisecond', () => {
    const earlier = newQueueId(1_700_000_000_000)
    const later = newQueueId(1_700_000_000_001)
    expect(earlier < later).toBe(true)
  })

  it('passes its own check', () => {
    const id = newQueueId()
    expect(parseQueueId(id)).toBe(id)
  })
})

describe('parseQueueId', () => {
  it('accepts 16 characters of [0-9A-Za-z]', () => {
    expect(parseQueueId('0123456789abcdEF')).toBe('0123456789abcdEF')
  })

  it('rejects path tricks, empty text and wrong lengths', () => {
    for (const bad of [
      '../x',
      '',
      '0123456789abcdE',
      '0123456789abcdEFG',
      '../../etc/passwd',
      '0123456789abcd/F',
      '0123456789abcd.F',
    ]) {
      expect(parseQueueId(bad), bad).toBeUndefined()
    }
  })

  it('rejects surrounding whitespace and a trailing newline', () => {
    expect(parseQueueId(' 0123456789abcdEF')).toBeUndefined()
    expect(parseQueueId('0123456789abcdEF\n')).toBeUndefined()
  })
})
