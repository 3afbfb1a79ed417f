import { describe, expect, it } from 'vitest'
import { type Action, formatActionList, parseActionList, splitWords } from '../../src/pipeline/action-list.js'

describe('splitWords', () => {
  it('splits on any run of blanks, tabs and line breaks', () => {
    expect(splitWords('  tag\tdeliver \r\n quarantine  ')).toEqual(['tag', 'deliver', 'quarantine'])
  })

  it('returns no words for an empty or blank text', () => {
    expect(splitWords('')).toEqual([])
    expect(splitWords(' \t ')).toEqual([])
  })

  it('keeps a double-quoted word whole, without the quotes', () => {
    expect(splitWords('header "X-Spam: yes, very" deliver')).toEqual([
      'header',
      'X-Spam: yes, very',
      'deliver',
    ])
  })

  it('unescapes \\" and \\\\ inside quotes', () => {
    expect(splitWords('"say \\"hi\\"" "back\\\\slash"')).toEqual(['say "hi"', 'back\\slash'])
  })

  it('keeps backslashes of an unquoted word as written', () => {
    expect(splitWords('a\\b')).toEqual(['a\\b'])
  })

  it('gives an empty word for ""', () => {
    expect(splitWords('tag "" deliver')).toEqual(['tag', '', 'deliver'])
  })

  it('splits a word glued to a quoted word into two words', () => {
    expect(splitWords('a"b c"')).toEqual(['a', 'b c'])
  })

  it('throws on an unbalanced quote', () => {
    expect(() => splitWords('tag "{Spam?} deliver')).toThrow('unbalanced double quote')
    expect(() => splitWords('deliver "')).toThrow('unbalanced double quote')
  })

  it('does not take an escaped quote as the closing one', () => {
    expect(() => splitWords('"abc\\"')).toThrow('unbalanced double quote')
  })
})

describe('parseActionList: the words', () => {
  it('parses each simple action', () => {
    for (const kind of ['deliver', 'quarantine', 'strip', 'drop', 'bounce'] as const)
      expect(parseActionList(kind)).toEqual([{ kind }])
  })

  it('reads action words case-insensitively', () => {
    expect(parseActionList('Quarantine DELIVER')).toEqual([{ kind: 'quarantine' }, { kind: 'deliver' }])
  })

  it('keeps the order the actions were written in', () => {
    expect(parseActionList('quarantine tag header "X-A: 1" deliver').map((a) => a.kind)).toEqual([
      'quarantine',
      'tag',
      'header',
      'deliver',
    ])
  })

  it('parses tag without text when an action word follows', () => {
    expect(parseActionList('tag deliver')).toEqual([{ kind: 'tag' }, { kind: 'deliver' }])
  })

  it('parses tag without text at the end of the list', () => {
    expect(parseActionList('deliver tag')).toEqual([{ kind: 'deliver' }, { kind: 'tag' }])
  })

  it('parses tag with a quoted text', () => {
    expect(parseActionList('tag "{Spam?} ***" deliver')).toEqual([
      { kind: 'tag', text: '{Spam?} ***' },
      { kind: 'deliver' },
    ])
  })

  it('refuses an unquoted word after tag that is no action, so a typo is an error', () => {
    expect(() => parseActionList('tag [SPAM] deliver')).toThrow('unknown action "[SPAM]"')
    expect(() => parseActionList('tag delivr deliver')).toThrow('unknown action "delivr"')
    expect(() => parseActionList('tag headers deliver')).toThrow('unknown action "headers"')
  })

  it('reads an unquoted action word after tag as the next action, a quoted one as the text', () => {
    expect(parseActionList('tag DELIVER')).toEqual([{ kind: 'tag' }, { kind: 'deliver' }])
    expect(parseActionList('tag "Quarantine" deliver')).toEqual([
      { kind: 'tag', text: 'Quarantine' },
      { kind: 'deliver' },
    ])
    expect(parseActionList('tag "deliver me" deliver')).toEqual([
      { kind: 'tag', text: 'deliver me' },
      { kind: 'deliver' },
    ])
  })

  it('refuses an empty tag text', () => {
    expect(() => parseActionList('tag "" deliver')).toThrow('tag: the text must not be empty')
  })

  it('parses forward with its address', () => {
    expect(parseActionList('forward spam-trap@example.org')).toEqual([
      { kind: 'forward', address: 'spam-trap@example.org' },
    ])
  })

  it('allows several forwards', () => {
    expect(parseActionList('forward a@example.org forward b@example.org deliver')).toEqual([
      { kind: 'forward', address: 'a@example.org' },
      { kind: 'forward', address: 'b@example.org' },
      { kind: 'deliver' },
    ])
  })
})

describe('parseActionList: header', () => {
  it('splits the field at the first colon and trims name and value', () => {
    expect(parseActionList('header "X-Spam: yes" deliver')).toEqual([
      { kind: 'header', name: 'X-Spam', value: 'yes' },
      { kind: 'deliver' },
    ])
    expect(parseActionList('header "X-Time:  12:30:00 " deliver')[0]).toEqual({
      kind: 'header',
      name: 'X-Time',
      value: '12:30:00',
    })
  })

  it('keeps escaped double quotes and backslashes in the value', () => {
    expect(parseActionList('header "X-Note: said \\"hi\\" to C:\\\\temp" deliver')[0]).toEqual({
      kind: 'header',
      name: 'X-Note',
      value: 'said "hi" to C:\\temp',
    })
  })

  it('accepts an unquoted Name:value word', () => {
    expect(parseActionList('header X-Spam:yes deliver')[0]).toEqual({
      kind: 'header',
      name: 'X-Spam',
      value: 'yes',
    })
  })

  it('accepts an empty value', () => {
    expect(parseActionList('header "X-Empty:" deliver')[0]).toEqual({
      kind: 'header',
      name: 'X-Empty',
      value: '',
    })
  })

  it('throws when the field is missing', () => {
    expect(() => parseActionList('deliver header')).toThrow('header needs "Name: value"')
  })

  it('throws when the field has no colon or no name', () => {
    expect(() => parseActionList('header X-Spam deliver')).toThrow('header needs "Name: value"')
    expect(() => parseActionList('header ":yes" deliver')).toThrow('header needs "Name: value"')
  })

  it('throws on a name that is not a header field name', () => {
    expect(() => parseActionList('header "X Spam: yes" deliver')).toThrow(
      'header: "X Spam" is not a header field name',
    )
    expect(() => parseActionList('header "X-Spä: yes" deliver')).toThrow('is not a header field name')
  })

  it('throws on a value that spans lines (header injection)', () => {
    expect(() => parseActionList('header "X-A: 1\r\nBcc: victim@example.org" deliver')).toThrow(
      'header: value must be one line',
    )
    expect(() => parseActionList('header "X-A: 1\nBcc: x@example.org" deliver')).toThrow('one line')
  })
})

describe('parseActionList: errors', () => {
  it('names an unknown word as written and lists the known ones', () => {
    expect(() => parseActionList('deliver Deliverr')).toThrow(
      'unknown action "Deliverr" (known: deliver tag header quarantine strip forward drop bounce reject)',
    )
  })

  it('throws on forward without an address', () => {
    expect(() => parseActionList('deliver forward')).toThrow('forward needs an address (user@domain)')
  })

  it('throws on forward with something that is not an address', () => {
    for (const bad of ['postmaster', '<a@example.org>', 'a@b@c', '@example.org', 'a@', 'deliver'])
      expect(() => parseActionList(`forward ${JSON.stringify(bad)}`), bad).toThrow('forward needs an address')
  })

  it('throws when no action says where the message goes', () => {
    expect(() => parseActionList('tag')).toThrow('no destination')
    expect(() => parseActionList('tag "{Spam?}" header "X-Spam: yes"')).toThrow('no destination')
  })

  it('throws on an empty list', () => {
    expect(() => parseActionList('')).toThrow('no destination')
    expect(() => parseActionList('   ')).toThrow('no destination')
  })

  it('refuses drop together with a delivery', () => {
    for (const list of ['drop deliver', 'deliver drop', 'drop strip', 'forward a@example.org drop'])
      expect(() => parseActionList(list), list).toThrow(
        'drop cannot be combined with deliver, strip, forward or reject',
      )
  })

  it('allows drop with quarantine or bounce, and drop alone', () => {
    expect(parseActionList('quarantine drop')).toEqual([{ kind: 'quarantine' }, { kind: 'drop' }])
    expect(parseActionList('drop bounce')).toEqual([{ kind: 'drop' }, { kind: 'bounce' }])
    expect(parseActionList('drop')).toEqual([{ kind: 'drop' }])
  })

  it('passes on the unbalanced-quote error', () => {
    expect(() => parseActionList('header "X-A: 1 deliver')).toThrow('unbalanced double quote')
  })
})

describe('formatActionList', () => {
  it('writes simple actions as their words', () => {
    expect(formatActionList([{ kind: 'quarantine' }, { kind: 'drop' }, { kind: 'bounce' }])).toBe(
      'quarantine drop bounce',
    )
  })

  it('quotes only what needs quoting', () => {
    const actions: Action[] = [
      { kind: 'tag' },
      { kind: 'tag', text: '[SPAM]' },
      { kind: 'tag', text: '{Spam?} ***' },
      { kind: 'header', name: 'X-Spam', value: 'yes' },
      { kind: 'header', name: 'X-Note', value: 'said "hi" to C:\\temp' },
      { kind: 'forward', address: 'a@example.org' },
      { kind: 'deliver' },
    ]
    expect(formatActionList(actions)).toBe(
      'tag tag "[SPAM]" tag "{Spam?} ***" header "X-Spam: yes" header "X-Note: said \\"hi\\" to C:\\\\temp" forward a@example.org deliver',
    )
  })

  it('round-trips through the parser', () => {
    for (const text of [
      'deliver',
      'tag deliver',
      'TAG "{Spam?}" Deliver',
      'tag "a \\"quoted\\" tag" deliver',
      'tag "a\\b" deliver',
      'tag "back\\\\ slash" deliver',
      'header "X-Spam: yes" header X-B:2 deliver forward x@example.org',
      'header "X-Q: \\"q\\" and \\\\" strip',
      'header "X-Empty:" deliver',
      'quarantine drop bounce',
      'tag "multi\nline" deliver',
    ]) {
      const parsed = parseActionList(text)
      const formatted = formatActionList(parsed)
      expect(parseActionList(formatted), text).toEqual(parsed)
      expect(formatActionList(parseActionList(formatted)), text).toBe(formatted)
    }
  })
})
