import { describe, expect, it } from 'vitest'
import {
  extensionSplits,
  logicalLines,
  parseAddress,
  parsePort,
  quoteLocal,
  stripComment,
  words,
} from '../../src/routing/text.js'

describe('logicalLines', () => {
  const text = [
    '# a comment',
    '',
    'one: a,',
    '   b,',
    '# a comment inside an entry does not end it',
    '\tc',
    'two: d   # trailing comment',
    '   ',
    'three: "e # not a comment"',
  ].join('\r\n')

  it('joins continuation lines and skips comments and blank lines, keeping the first line number', () => {
    expect(logicalLines(text, true)).toEqual([
      { line: 3, text: 'one: a, b, c' },
      { line: 7, text: 'two: d' },
      { line: 9, text: 'three: "e # not a comment"' },
    ])
  })

  it('treats leading whitespace as spacing when the format has no continuations', () => {
    expect(logicalLines('  example.org\n\texample.net  \n', false)).toEqual([
      { line: 1, text: 'example.org' },
      { line: 2, text: 'example.net' },
    ])
  })

  it('marks a continuation line that has nothing to continue', () => {
    expect(logicalLines('   stray\nname: x', true)).toEqual([
      { line: 1, text: 'stray', orphan: true },
      { line: 2, text: 'name: x' },
    ])
  })
})

describe('stripComment and words', () => {
  it('keeps a # inside an address or quotes', () => {
    expect(stripComment('a#b@example.org  # note')).toBe('a#b@example.org  ')
    expect(stripComment('"x # y"@example.org')).toBe('"x # y"@example.org')
  })

  it('splits on whitespace but keeps quoted strings whole', () => {
    expect(words('  "john doe"@example.org \t home.example.org ')).toEqual([
      '"john doe"@example.org',
      'home.example.org',
    ])
  })
})

describe('parseAddress', () => {
  it('lower-cases the domain, drops a trailing dot and angle brackets, keeps the local part', () => {
    expect(parseAddress('<Ann.Lee@Corp.Example.>')).toEqual({ local: 'Ann.Lee', domain: 'corp.example' })
  })

  it('accepts quoted local parts, bare names and address literals', () => {
    expect(parseAddress('"john doe"@example.org')).toEqual({ local: '"john doe"', domain: 'example.org' })
    expect(parseAddress('postmaster')).toEqual({ local: 'postmaster', domain: '' })
    expect(parseAddress('root@[192.0.2.1]')).toEqual({ local: 'root', domain: '[192.0.2.1]' })
  })

  it('takes an internationalized domain (SMTPUTF8) as its A-labels, keeping a UTF-8 local part', () => {
    expect(parseAddress('Jörg@Bücher.Example.')).toEqual({ local: 'Jörg', domain: 'xn--bcher-kva.example' })
    expect(parseAddress('info@xn--bcher-kva.example')).toEqual({
      local: 'info',
      domain: 'xn--bcher-kva.example',
    })
    // The URL host parser is not let loose on ASCII: a hex label stays a (bad) name, not an IP.
    expect(parseAddress('a@0x7f.1')).toEqual({ local: 'a', domain: '0x7f.1' })
  })

  it('refuses things that are not addresses', () => {
    for (const bad of [
      '',
      '<>',
      '@example.org',
      'a b@example.org',
      'a@exa mple.org',
      'a@-bad.example',
      'a@@b',
      'a@bü cher.example',
      'a@xn--ü.example',
      'a@ü%2eour.example',
    ])
      expect(parseAddress(bad), bad).toBeUndefined()
  })
})

describe('extensionSplits', () => {
  it('lists base + extension with the longest base first', () => {
    expect(extensionSplits('mary-jane+x', '-+')).toEqual([
      { base: 'mary-jane', extension: '+x' },
      { base: 'mary', extension: '-jane+x' },
    ])
  })

  it('never splits owner-NAME or NAME-request at a dash', () => {
    expect(extensionSplits('owner-staff', '-+')).toEqual([])
    expect(extensionSplits('staff-request+a', '-+')).toEqual([{ base: 'staff-request', extension: '+a' }])
  })
})

describe('parsePort', () => {
  it('accepts 1-65535 only', () => {
    expect(parsePort('2525')).toBe(2525)
    expect(parsePort('0')).toBeUndefined()
    expect(parsePort('65536')).toBeUndefined()
    expect(parsePort('25x')).toBeUndefined()
  })
})

describe('quoteLocal', () => {
  it('quotes only what is no Dot-string, escaping quotes and backslashes', () => {
    expect(quoteLocal('owner-sales')).toBe('owner-sales')
    expect(quoteLocal('jörg.x')).toBe('jörg.x')
    expect(quoteLocal('help desk')).toBe('"help desk"')
    expect(quoteLocal('a..b')).toBe('"a..b"')
    expect(quoteLocal('say "hi"\\')).toBe('"say \\"hi\\"\\\\"')
  })
})
