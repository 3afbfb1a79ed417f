import { describe, expect, it } from 'vitest'
import { TtlCache } from '../../plugins/dnsbl/cache.js'

function cache(max = 10) {
  const clock = { now: 0 }
  return { clock, c: new TtlCache<string | null>(max, () => clock.now) }
}

describe('TtlCache', () => {
  it('returns an entry until its TTL has passed, then forgets it', () => {
    const { c, clock } = cache()
    c.set('a', 'x', 10_000)
    clock.now = 9_999
    expect(c.get('a')).toBe('x')
    clock.now = 10_000
    expect(c.get('a')).toBeUndefined()
    expect(c.size).toBe(0)
  })

  it('keeps null (a negative answer) as a value, distinct from a miss', () => {
    const { c } = cache()
    c.set('nx', null, 1000)
    expect(c.get('nx')).toBeNull()
    expect(c.get('other')).toBeUndefined()
  })

  it('stores nothing for a TTL of 0 or a size of 0', () => {
    const { c } = cache()
    c.set('a', 'x', 0)
    expect(c.get('a')).toBeUndefined()
    const off = new TtlCache<string>(0, () => 0)
    off.set('a', 'x', 1000)
    expect(off.get('a')).toBeUndefined()
    expect(off.size).toBe(0)
  })

  it('is bounded: the least recently used entry goes first', () => {
    const { c } = cache(2)
    c.set('a', '1', 1000)
    c.set('b', '2', 1000)
    expect(c.get('a')).toBe('1') // a is now the most recently used
    c.set('c', '3', 1000)
    expect(c.size).toBe(2)
    expect(c.get('b')).toBeUndefined()
    expect(c.get('a')).toBe('1')
    expect(c.get('c')).toBe('3')
  })

  it('a new answer replaces the old one with its own TTL', () => {
    const { c, clock } = cache()
    c.set('a', 'old', 1000)
    c.set('a', 'new', 5000)
    clock.now = 4000
    expect(c.get('a')).toBe('new')
  })
})
