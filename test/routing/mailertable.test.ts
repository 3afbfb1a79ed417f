import { describe, expect, it } from 'vitest'
import {
  lookupMailertable,
  mailertableKeys,
  parseErrorRoute,
  parseMailerRoute,
  parseMailertable,
} from '../../src/routing/mailertable.js'

describe('parseMailerRoute', () => {
  it('brackets mean this host without an MX lookup; the port is optional', () => {
    expect(parseMailerRoute('smtp:[Relay.Example.EDU]')).toEqual({
      kind: 'smtp',
      host: 'relay.example.edu',
      port: 25,
      mx: false,
    })
    expect(parseMailerRoute('esmtp:[192.0.2.10]:2525')).toEqual({
      kind: 'smtp',
      host: '192.0.2.10',
      port: 2525,
      mx: false,
    })
    expect(parseMailerRoute('smtp:[IPv6:2001:db8::25]:587')).toEqual({
      kind: 'smtp',
      host: '2001:db8::25',
      port: 587,
      mx: false,
    })
  })

  it('a bare host is looked up by MX; no host at all means the recipient domain MX', () => {
    expect(parseMailerRoute('relay:mx.example.net')).toEqual({
      kind: 'smtp',
      host: 'mx.example.net',
      port: 25,
      mx: true,
    })
    expect(parseMailerRoute('smtp:mx.example.net:2526')).toMatchObject({ port: 2526, mx: true })
    expect(parseMailerRoute('smtp:')).toEqual({ kind: 'mx' })
  })

  it('local is the local MTA', () => {
    expect(parseMailerRoute('local')).toEqual({ kind: 'local' })
    expect(parseMailerRoute('local:')).toEqual({ kind: 'local' })
    expect(() => parseMailerRoute('local:bob')).toThrow(/use aliases/)
  })

  it('refuses unknown mailers, bad ports and bad hosts', () => {
    expect(() => parseMailerRoute('uucp:host')).toThrow(/unknown mailer/)
    expect(() => parseMailerRoute('smtp:[host.example]:99999')).toThrow(/not a port/)
    expect(() => parseMailerRoute('smtp:[host.example]:[other.example]')).toThrow(/not a port/)
    expect(() => parseMailerRoute('smtp:bad_host!')).toThrow(/not a host name/)
    expect(() => parseMailerRoute('mx.example.net')).toThrow(/expected mailer:host/)
  })
})

describe('parseErrorRoute', () => {
  it('reads D.S.N:text, D.S.N:code text, code D.S.N text and Sendmail names', () => {
    expect(parseErrorRoute('5.1.1:no such user here')).toEqual({
      kind: 'error',
      code: 550,
      status: '5.1.1',
      text: 'no such user here',
    })
    expect(parseErrorRoute('5.7.1:554 go away')).toEqual({
      kind: 'error',
      code: 554,
      status: '5.7.1',
      text: 'go away',
    })
    expect(parseErrorRoute('553 5.1.2 moved')).toEqual({
      kind: 'error',
      code: 553,
      status: '5.1.2',
      text: 'moved',
    })
    expect(parseErrorRoute('nouser Unknown user')).toEqual({
      kind: 'error',
      code: 550,
      status: '5.1.1',
      text: 'Unknown user',
    })
    expect(parseErrorRoute('4.4.1:try later')).toMatchObject({ code: 451, status: '4.4.1' })
    expect(parseErrorRoute('5.1.1:')).toMatchObject({ text: 'refused by the mailertable' })
  })

  it('refuses a missing status, a 2.x.x status and a code that disagrees with the status', () => {
    expect(() => parseErrorRoute('go away')).toThrow(/needs a status/)
    expect(() => parseErrorRoute('2.0.0:fine')).toThrow(/not 4\.x\.x or 5\.x\.x/)
    expect(() => parseErrorRoute('5.1.1:451 mixed')).toThrow(/disagree/)
  })
})

describe('parseMailertable', () => {
  const file = '/etc/mail/mailertable'
  const text = [
    '# campus mailertable',
    'students.example.edu\tsmtp:[students.example.edu]',
    'unix.example.edu       smtp:[192.0.2.10]:2525    # the unix server',
    '',
    '.example.edu     smtp:relay.example.edu',
    'old.example.edu  error:5.1.2:550 old.example.edu is retired, use example.edu',
    'local.example.edu local',
    'Broken.Example   uucp:gateway',
    'lonely.example.edu',
    'bad_key!  smtp:[x.example]',
    '.example.edu     smtp:[other.example]',
    '   .    smtp:[outbound.example.edu]',
  ].join('\n')
  const { map, problems } = parseMailertable(text, file)

  it('loads every good line and keeps the error text whole', () => {
    expect([...map.entries.keys()]).toEqual([
      'students.example.edu',
      'unix.example.edu',
      '.example.edu',
      'old.example.edu',
      'local.example.edu',
      '.',
    ])
    expect(map.entries.get('old.example.edu')?.route).toEqual({
      kind: 'error',
      code: 550,
      status: '5.1.2',
      text: 'old.example.edu is retired, use example.edu',
    })
    expect(map.entries.get('.')?.source).toEqual({ file, line: 12 })
  })

  it('reports bad lines with file and line', () => {
    expect(problems.map((p) => [p.line, p.reason])).toEqual([
      [8, expect.stringContaining('unknown mailer uucp')],
      [9, expect.stringContaining('expected "domain mailer:host"')],
      [10, expect.stringContaining('not a domain, .domain or "." key')],
      [11, expect.stringContaining('duplicate key .example.edu (first on line 5)')],
    ])
    expect(problems.every((p) => p.file === file)).toBe(true)
  })
})

describe('lookupMailertable', () => {
  const { map } = parseMailertable(
    [
      'example.edu           smtp:[hub.example.edu]',
      '.example.edu          smtp:[dept.example.edu]',
      '.students.example.edu smtp:[students.example.edu]',
      'students.example.edu  smtp:[students-hub.example.edu]',
      '.                     smtp:[outbound.example.edu]',
    ].join('\n'),
    'mailertable',
  )
  const host = (domain: string): string | undefined => {
    const route = lookupMailertable(map, domain)?.route
    return route?.kind === 'smtp' ? route.host : route?.kind
  }

  it('tries the domain, then each .parent, then "."', () => {
    expect(mailertableKeys('a.b.example')).toEqual(['a.b.example', '.b.example', '.example', '.'])
  })

  it('the longest match wins; .domain matches subdomains but not the domain itself', () => {
    expect(host('example.edu')).toBe('hub.example.edu')
    expect(host('cs.example.edu')).toBe('dept.example.edu')
    expect(host('students.example.edu')).toBe('students-hub.example.edu')
    expect(host('lab.students.example.edu')).toBe('students.example.edu')
    expect(host('Deep.Lab.Students.Example.EDU')).toBe('students.example.edu')
    expect(host('example.com')).toBe('outbound.example.edu')
  })

  it('finds nothing without a "." entry for a foreign domain', () => {
    const { map: small } = parseMailertable('.example.edu smtp:[x.example.edu]', 'mailertable')
    expect(lookupMailertable(small, 'example.com')).toBeUndefined()
    expect(lookupMailertable(small, 'example.edu')).toBeUndefined()
  })
})
