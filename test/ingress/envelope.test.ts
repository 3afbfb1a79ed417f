import { describe, expect, it } from 'vitest'
import { dsnOf, wantsFailureReport } from '../../src/ingress/envelope.js'

describe('dsnOf', () => {
  const request = {
    recipients: {
      'Bob@Example.NET': { notify: ['NEVER'] as const },
      'carol@example.net': { orcpt: 'rfc822;Carol@example.net' },
    },
  }

  it('finds a recipient as written in RCPT TO, or as routing spells it (the domain in lower case)', () => {
    expect(dsnOf(request, 'Bob@Example.NET')).toEqual({ notify: ['NEVER'] })
    expect(dsnOf(request, 'Bob@example.net')).toEqual({ notify: ['NEVER'] })
    expect(dsnOf(request, 'carol@EXAMPLE.net')).toEqual({ orcpt: 'rfc822;Carol@example.net' })
  })

  it('keeps local parts apart, and knows no key from the object prototype', () => {
    expect(dsnOf(request, 'bob@example.net')).toBeUndefined()
    expect(dsnOf(request, '__proto__')).toBeUndefined()
    expect(dsnOf(undefined, 'Bob@Example.NET')).toBeUndefined()
  })

  it('reports failures unless NOTIFY leaves FAILURE out', () => {
    expect(wantsFailureReport(undefined)).toBe(true)
    expect(wantsFailureReport({ notify: ['FAILURE', 'DELAY'] })).toBe(true)
    expect(wantsFailureReport({ notify: ['NEVER'] })).toBe(false)
    expect(wantsFailureReport({ notify: ['SUCCESS'] })).toBe(false)
  })
})
