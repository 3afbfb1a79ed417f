import { describe, expect, it } from 'vitest'
import { isLocalDomain, parseLocalHostNames } from '../../src/routing/local-host-names.js'

describe('parseLocalHostNames', () => {
  const file = '/etc/mail/local-host-names'
  const text = [
    '# local-host-names - include all aliases for your machine here.',
    'example.edu',
    '',
    '   Mail.Example.EDU.     # case and the trailing dot do not matter',
    'two words.example',
    'not_a..domain',
    '[192.0.2.25]',
    'example.edu',
    '\tcs.example.edu',
    'Bücher.Example',
  ].join('\n')
  const { map, problems } = parseLocalHostNames(text, file)

  it('loads every good line, normalized, with its line number', () => {
    expect([...map.domains.keys()]).toEqual([
      'example.edu',
      'mail.example.edu',
      '[192.0.2.25]',
      'cs.example.edu',
      'xn--bcher-kva.example',
    ])
    expect(map.domains.get('mail.example.edu')).toEqual({ file, line: 4 })
    expect(isLocalDomain(map, 'cs.example.edu')).toBe(true)
    expect(isLocalDomain(map, 'students.example.edu')).toBe(false)
    expect(map.domains.get('xn--bcher-kva.example')?.line).toBe(10)
  })

  it('reports bad lines with file and line, and keeps the first of a repeated domain silently', () => {
    expect(problems).toEqual([
      { file, line: 5, reason: expect.stringContaining('one domain per line') },
      { file, line: 6, reason: expect.stringContaining('not a domain name') },
    ])
    expect(map.domains.get('example.edu')?.line).toBe(2)
  })
})
