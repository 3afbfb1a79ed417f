import { describe, expect, it } from 'vitest'
import { findDirectoryUser, memoryUserDirectory, parseUserRows, parseUsers } from '../../src/routing/users.js'

const file = '/srv/mailscreen/rules/users'
const text = [
  '# official address        home subdomain',
  'ann@corp.example          a.corp.example',
  'Bob@Corp.Example\t\tA.Corp.Example.',
  '',
  '   carol@corp.example     b.corp.example     # odd spacing',
  'dave@corp.example         c.corp.example',
  'erin@corp.example         corp.example',
  'zoe@lab.corp.example      x.lab.corp.example',
  'ann@corp.example          b.corp.example',
  'all@corp.example          a.corp.example',
  'frank@corp.example        a.other.example',
  'gina@corp.example',
  'not-an-address            a.corp.example',
  'h+x@corp.example          a.corp.example',
  'ivan@corp.example         bad_domain!',
].join('\n')

describe('parseUsers', () => {
  const { map: rows, problems } = parseUserRows(text, file)

  it('loads one user per good line, normalized, with its line', () => {
    expect(rows.map((u) => `${u.address} ${u.home}`)).toEqual([
      'ann@corp.example a.corp.example',
      'bob@corp.example a.corp.example',
      'carol@corp.example b.corp.example',
      'dave@corp.example c.corp.example',
      'erin@corp.example corp.example',
      'zoe@lab.corp.example x.lab.corp.example',
    ])
    expect(rows[1]).toEqual({
      address: 'bob@corp.example',
      local: 'bob',
      domain: 'corp.example',
      home: 'a.corp.example',
      source: { file, line: 3 },
    })
  })

  it('reports bad lines with file and line and loads the rest', () => {
    expect(problems.map((p) => [p.line, p.reason])).toEqual([
      [9, expect.stringContaining('duplicate user ann@corp.example (first on line 2)')],
      [10, expect.stringContaining('"all" is reserved')],
      [11, expect.stringContaining('home a.other.example is not corp.example or a subdomain of it')],
      [12, expect.stringContaining('expected "user@domain  home.subdomain"')],
      [13, expect.stringContaining('not a user@domain address')],
      [14, expect.stringContaining('cannot contain "+"')],
      [15, expect.stringContaining('not a domain name')],
    ])
  })
})

describe('the text UserDirectory', () => {
  const { map: directory } = parseUsers(text, file)

  it('user@domain and user@sub.domain both reach the user, case-insensitively', async () => {
    expect((await directory.findUser('ann', 'corp.example'))?.home).toBe('a.corp.example')
    expect((await directory.findUser('ANN', 'a.corp.example'))?.home).toBe('a.corp.example')
    expect((await directory.findUser('ann', 'b.corp.example'))?.home).toBe('a.corp.example')
    expect((await directory.findUser('ann', 'deep.b.corp.example'))?.home).toBe('a.corp.example')
    expect(await directory.findUser('ann', 'example')).toBeUndefined()
    expect(await directory.findUser('ann', 'corp.example.net')).toBeUndefined()
    expect(await directory.findUser('nobody', 'corp.example')).toBeUndefined()
  })

  it('the most specific main domain wins', async () => {
    expect((await directory.findUser('zoe', 'x.lab.corp.example'))?.address).toBe('zoe@lab.corp.example')
    expect(await directory.findUser('zoe', 'corp.example')).toBeUndefined()
  })

  it('all@domain lists every user of the domain; all@sub.domain the users living there, in file order', async () => {
    expect((await directory.members('corp.example')).map((u) => u.local)).toEqual([
      'ann',
      'bob',
      'carol',
      'dave',
      'erin',
    ])
    expect((await directory.members('A.Corp.Example')).map((u) => u.local)).toEqual(['ann', 'bob'])
    expect((await directory.members('c.corp.example')).map((u) => u.local)).toEqual(['dave'])
    expect(await directory.members('unknown.example')).toEqual([])
    expect(await directory.count()).toBe(6)
  })

  it('findDirectoryUser falls back from user+ext to user and reports the extension', async () => {
    expect(await findDirectoryUser(directory, 'bob+lists', 'corp.example')).toMatchObject({
      user: { address: 'bob@corp.example' },
      extension: '+lists',
    })
    expect(await findDirectoryUser(directory, 'bob-lists', 'corp.example')).toBeUndefined()
  })

  it('is immutable', () => {
    expect(Object.isFrozen(directory)).toBe(true)
    expect(Object.isFrozen(memoryUserDirectory('x', []))).toBe(true)
  })
})
