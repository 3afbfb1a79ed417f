import { describe, expect, it } from 'vitest'
import { isNonAscii } from '../../src/mail/ascii.js'

describe('isNonAscii', () => {
  it('spots characters beyond US-ASCII', () => {
    expect(isNonAscii('user@example.org')).toBe(false)
    expect(isNonAscii('\x7f')).toBe(false)
    expect(isNonAscii('jürgen@example.org')).toBe(true)
    expect(isNonAscii('\x80')).toBe(true)
  })
})
