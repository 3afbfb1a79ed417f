import { describe, expect, it } from 'vitest'
import {
  lookupDomainDefault,
  lookupRecipient,
  parseRecipientMap,
  type RecipientMap,
} from '../../src/routing/recipient-map.js'
import { formatAddress, parseAddress } from '../../src/routing/text.js'

const file = '/etc/mail/recipientmap'
const text = [
  '# recipientmap of the example.org hub',
  'jos@example.org:jos@jos.example.org',
  'Marie@Example.ORG  :  marie@marie.example.org   # odd spacing',
  '',
  'mary-jane@example.org\tmj@home.example.org',
  'mary@example.org:mary@mary.example.org',
  'pierre@example.org:@pierre.example.org',
  '   # an indented comment is a comment',
  'owner-list@example.org:keeper@example.org',
  '@example.net:@mail.example.net',
  '@lists.example.org:listmaster@example.org',
  'split@example.org:',
  '    split@split.example.org',
  'jos@example.org:somebody@else.example',
  'nodomain:x@example.org',
  'two@example.org: a@example.org b@example.org',
  'bad@example.org:not-an-address',
  'just-one-word',
].join('\n')
const { map, problems } = parseRecipientMap(text, file)

/** The rewritten address for an address, exact or by extension; domain defaults not included. */
function rewrite(m: RecipientMap, address: string): string | undefined {
  const match = lookupRecipient(m, parseAddress(address) ?? { local: '', domain: '' })
  return match && formatAddress(match.rewritten)
}

describe('parseRecipientMap', () => {
  it('loads address entries and domain defaults, with colons, whitespace and continuations', () => {
    expect([...map.addresses.keys()]).toEqual([
      'jos@example.org',
      'marie@example.org',
      'mary-jane@example.org',
      'mary@example.org',
      'pierre@example.org',
      'owner-list@example.org',
      'split@example.org',
    ])
    expect([...map.domains.keys()]).toEqual(['example.net', 'lists.example.org'])
    expect(map.addresses.get('split@example.org')).toMatchObject({
      target: { local: 'split', domain: 'split.example.org' },
      source: { file, line: 12 },
    })
  })

  it('reports bad lines with file and line and keeps the first of a duplicate', () => {
    expect(problems.map((p) => [p.line, p.reason])).toEqual([
      [14, expect.stringContaining('duplicate entry jos@example.org (first on line 2)')],
      [15, expect.stringContaining('key must be user@domain or @domain')],
      [16, expect.stringContaining('one target per entry')],
      [17, expect.stringContaining('target must be user@domain or @domain')],
      [18, expect.stringContaining('expected "user@domain:user@host.domain"')],
    ])
    expect(problems.every((p) => p.file === file)).toBe(true)
    expect(rewrite(map, 'jos@example.org')).toBe('jos@jos.example.org')
  })
})

describe('lookupRecipient', () => {
  it('rewrites an exact address, case-insensitively', () => {
    expect(rewrite(map, 'JOS@Example.Org')).toBe('jos@jos.example.org')
    expect(rewrite(map, 'marie@example.org')).toBe('marie@marie.example.org')
  })

  it('takes a quoted local part for the mailbox it names, in lookups and in keys', () => {
    expect(rewrite(map, '"jos"@example.org')).toBe('jos@jos.example.org')
    expect(rewrite(map, '"jos+news"@example.org')).toBe('jos+news@jos.example.org')
    const quoted = parseRecipientMap('"ann"@example.org:ann@ann.example.org', file).map
    expect(rewrite(quoted, 'ann@example.org')).toBe('ann@ann.example.org')
  })

  it('user-ext and user+ext follow the entry for user, keeping the extension', () => {
    expect(rewrite(map, 'jos-anything@example.org')).toBe('jos-anything@jos.example.org')
    expect(rewrite(map, 'jos+news@example.org')).toBe('jos+news@jos.example.org')
    expect(rewrite(map, 'jos-a-b+c@example.org')).toBe('jos-a-b+c@jos.example.org')
    expect(lookupRecipient(map, { local: 'jos-x', domain: 'example.org' })).toMatchObject({
      extension: '-x',
      entry: { key: 'jos@example.org' },
    })
  })

  it('the longest known base wins, and the extension goes after the target local part', () => {
    expect(rewrite(map, 'mary-jane-x@example.org')).toBe('mj-x@home.example.org')
    expect(rewrite(map, 'mary-jane@example.org')).toBe('mj@home.example.org')
    expect(rewrite(map, 'mary-ann@example.org')).toBe('mary-ann@mary.example.org')
  })

  it('an @domain target keeps the whole local part', () => {
    expect(rewrite(map, 'pierre@example.org')).toBe('pierre@pierre.example.org')
    expect(rewrite(map, 'pierre-x@example.org')).toBe('pierre-x@pierre.example.org')
  })

  it('does not split owner-NAME at the dash, and knows nothing of unlisted users', () => {
    expect(rewrite(map, 'owner-list@example.org')).toBe('keeper@example.org')
    expect(rewrite(map, 'owner-jos@example.org')).toBeUndefined()
    expect(rewrite(map, 'nobody@example.org')).toBeUndefined()
    expect(rewrite(map, 'anyone@example.net')).toBeUndefined()
  })
})

describe('lookupDomainDefault', () => {
  it('@domain:@host keeps the local part; @domain:user@host sends all to one mailbox', () => {
    const at = (a: string) => {
      const m = lookupDomainDefault(map, parseAddress(a) ?? { local: '', domain: '' })
      return m && formatAddress(m.rewritten)
    }
    expect(at('anyone+x@Example.NET')).toBe('anyone+x@mail.example.net')
    expect(at('whoever@lists.example.org')).toBe('listmaster@example.org')
    expect(at('jos@example.org')).toBeUndefined()
  })
})
