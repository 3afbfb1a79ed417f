import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  type AliasEntry,
  type AliasTarget,
  findAliasLoops,
  flattenTargets,
  lookupAlias,
  parseAliases,
} from '../../src/routing/aliases.js'

let dir: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailscreen-aliases-'))
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** A target as short text: `ann@x`, `name`, `\name`, `:include:path[n]`. */
function show(target: AliasTarget): string {
  if (target.kind === 'address')
    return target.address.domain ? `${target.address.local}@${target.address.domain}` : target.address.local
  if (target.kind === 'mailbox') return `\\${target.local}`
  return `:include:${target.path}[${target.targets.map(show).join(',')}]`
}

function targetsOf(entry: AliasEntry | undefined): string[] {
  return (entry?.targets ?? []).map(show)
}

describe('parseAliases on a realistic file', () => {
  let file: string
  let parsed: ReturnType<typeof parseAliases>

  beforeAll(async () => {
    await mkdir(join(dir, 'lists'), { recursive: true })
    await writeFile(
      join(dir, 'lists', 'staff'),
      [
        '# staff list',
        'ann@unix.example.edu',
        '',
        'carol@students.example.edu,  dave',
        ' "|/bin/false"',
      ].join('\n'),
    )
    await writeFile(join(dir, 'lists', 'nested'), 'erin@example.net\n:include:staff\n')
    await writeFile(join(dir, 'lists', 'self'), ':include:self\n')
    file = join(dir, 'aliases')
    await writeFile(
      file,
      [
        '#',
        '#  Aliases in this file will NOT be expanded in the header from',
        '#  Mail, but WILL be visible over networks or from /bin/mail.',
        '#',
        '',
        '# Basic system aliases -- these MUST be present.',
        'MAILER-DAEMON:\tpostmaster',
        'postmaster:\troot',
        '',
        'root:  \\root,   sysadm@unix.example.edu',
        'webmaster : ann@unix.example.edu,',
        '            bob@cs.example.edu,',
        '# a comment between continuation lines',
        '\t     <carol@students.example.edu>',
        '"help desk":  helpdesk',
        'staff:        :include:lists/staff',
        'nested:       ":include:lists/nested"',
        'selfish:      :include:lists/self',
        'missing:      :include:/nonexistent/list',
        'bad line without a colon',
        'ann@example.edu: someone',
        'owner-staff:  sysadm',
        'staff-request: sysadm',
        'prog:         "|/usr/bin/vacation ann", ann',
        'onlyprog:     |/usr/local/bin/handler',
        'empty:',
        'postmaster:   someone-else',
      ].join('\n'),
    )
    parsed = parseAliases(readFileSync(file, 'utf8'), file)
  })

  it('loads names case-insensitively with targets in order, joining continuation lines', () => {
    const { entries } = parsed.map
    expect(targetsOf(entries.get('mailer-daemon'))).toEqual(['postmaster'])
    expect(targetsOf(entries.get('root'))).toEqual(['\\root', 'sysadm@unix.example.edu'])
    expect(targetsOf(entries.get('webmaster'))).toEqual([
      'ann@unix.example.edu',
      'bob@cs.example.edu',
      'carol@students.example.edu',
    ])
    expect(targetsOf(entries.get('help desk'))).toEqual(['helpdesk'])
    expect(entries.get('webmaster')?.source).toEqual({ file, line: 11 })
  })

  it('reads :include: lists relative to the aliases file, nested, and reports problems inside them', () => {
    const staff = join(dir, 'lists', 'staff')
    expect(targetsOf(parsed.map.entries.get('staff'))).toEqual([
      `:include:${staff}[ann@unix.example.edu,carol@students.example.edu,dave]`,
    ])
    expect(targetsOf(parsed.map.entries.get('nested'))).toEqual([
      `:include:${join(dir, 'lists', 'nested')}[erin@example.net,:include:${staff}[ann@unix.example.edu,carol@students.example.edu,dave]]`,
    ])
    expect(parsed.problems).toContainEqual({
      file: staff,
      line: 5,
      reason: expect.stringContaining('program delivery is not supported'),
    })
  })

  it('reports an unreadable or self-including list as a problem at the alias line, not a crash', () => {
    expect(parsed.problems).toContainEqual({
      file,
      line: 19,
      reason: expect.stringMatching(/:include:\/nonexistent\/list: cannot read .*ENOENT/),
    })
    expect(parsed.problems).toContainEqual({
      file: join(dir, 'lists', 'self'),
      line: 1,
      reason: expect.stringContaining('includes itself'),
    })
    const missing = parsed.map.entries.get('missing')?.targets[0]
    expect(missing).toMatchObject({ kind: 'include', targets: [], error: expect.stringContaining('ENOENT') })
  })

  it('reports bad lines with file and line and still loads the rest', () => {
    const mine = parsed.problems.filter((p) => p.file === file).map((p) => [p.line, p.reason])
    expect(mine).toEqual([
      [19, expect.stringContaining('cannot read')],
      [20, expect.stringContaining('expected "name: target')],
      [21, expect.stringContaining('alias names have no domain')],
      [24, expect.stringContaining('program delivery is not supported')],
      [25, expect.stringContaining('program delivery is not supported')],
      [26, 'alias empty has no targets'],
      [27, expect.stringContaining('duplicate alias postmaster (first on line 8)')],
    ])
    // The lines after the bad ones loaded.
    expect(targetsOf(parsed.map.entries.get('owner-staff'))).toEqual(['sysadm'])
    expect(targetsOf(parsed.map.entries.get('staff-request'))).toEqual(['sysadm'])
    expect(targetsOf(parsed.map.entries.get('prog'))).toEqual(['ann'])
    expect(targetsOf(parsed.map.entries.get('postmaster'))).toEqual(['root'])
  })

  it('keeps an alias whose targets are all unusable, with no targets (mail to it is refused)', () => {
    expect(parsed.map.entries.get('onlyprog')?.targets).toEqual([])
  })
})

describe('parseAliases edge cases', () => {
  it('reports a continuation line at the top of the file and an alias with no targets', () => {
    const { map, problems } = parseAliases('  stray\nempty:\nok: x', 'aliases')
    expect(problems).toEqual([
      { file: 'aliases', line: 1, reason: expect.stringContaining('continuation line') },
      { file: 'aliases', line: 2, reason: 'alias empty has no targets' },
    ])
    expect([...map.entries.keys()]).toEqual(['empty', 'ok'])
  })

  it('drops RFC 822 comments in targets, as Postfix does, also with commas and nesting inside', () => {
    const { map, problems } = parseAliases(
      [
        'bob: bob@example.com (Bob Smith, sales), "ann (not a comment)"@example.com',
        'root: \\root (the real one (nested)), ops (night shift \\) still comment)',
        'list: :include:/l/team (the team)',
      ].join('\n'),
      'aliases',
      { readFile: () => 'erin@example.net (Erin), frank (Frank, temp)\n' },
    )
    expect(problems).toEqual([])
    expect(targetsOf(map.entries.get('bob'))).toEqual([
      'bob@example.com',
      '"ann (not a comment)"@example.com',
    ])
    expect(targetsOf(map.entries.get('root'))).toEqual(['\\root', 'ops'])
    expect(targetsOf(map.entries.get('list'))).toEqual([':include:/l/team[erin@example.net,frank]'])
  })

  it('drops a comment inside an address as if it were not there', () => {
    const { map, problems } = parseAliases('d: frank(the boss)@example.com, (x)ann', 'aliases')
    expect(problems).toEqual([])
    expect(targetsOf(map.entries.get('d'))).toEqual(['frank@example.com', 'ann'])
  })

  it('reports a comment left open and keeps the targets before it', () => {
    const { map, problems } = parseAliases('staff: ann (Ann, bob\nok: x', 'aliases')
    expect(problems).toEqual([
      { file: 'aliases', line: 1, reason: 'a "(" comment is not closed: the rest of the line is ignored' },
    ])
    expect(targetsOf(map.entries.get('staff'))).toEqual(['ann'])
    expect(targetsOf(map.entries.get('ok'))).toEqual(['x'])
  })

  it('uses the injected reader for includes and stops at the nesting limit', () => {
    const reads: string[] = []
    const { problems } = parseAliases('deep: :include:/l/0', 'aliases', {
      readFile: (path) => {
        reads.push(path)
        return `:include:/l/${Number(path.slice(3)) + 1}\n`
      },
      maxIncludeDepth: 3,
    })
    expect(reads).toEqual(['/l/0', '/l/1', '/l/2'])
    expect(problems).toEqual([
      { file: '/l/2', line: 1, reason: expect.stringContaining('more than 3 nested') },
    ])
  })
})

describe('lookupAlias', () => {
  const { map } = parseAliases(
    'ann: a@x.example\nstaff-request: b@x.example\nowner-staff: c@x.example',
    'aliases',
  )

  it('matches case-insensitively and falls back from name+ext to name, dropping the extension', () => {
    expect(lookupAlias(map, 'ANN')?.entry.name).toBe('ann')
    expect(lookupAlias(map, 'ann+news')).toMatchObject({ entry: { name: 'ann' }, extension: '+news' })
  })

  it('does not treat - as an extension: owner-NAME and NAME-request are names of their own', () => {
    expect(lookupAlias(map, 'ann-news')).toBeUndefined()
    expect(lookupAlias(map, 'staff-request')?.entry.name).toBe('staff-request')
    expect(lookupAlias(map, 'owner-staff+x')?.entry.name).toBe('owner-staff')
  })
})

describe('findAliasLoops', () => {
  const isLocal = (domain: string): boolean => domain === 'example.edu'

  it('reports each loop once, at the line of its first alias, with the chain', () => {
    const { map } = parseAliases(
      [
        'a: b',
        'b: c@example.edu, ann@elsewhere.example',
        'c: a',
        'root: \\root, root, ops',
        'ops: root',
        'fine: a',
        'me: me',
      ].join('\n'),
      'aliases',
    )
    expect(findAliasLoops(map, isLocal)).toEqual([
      { file: 'aliases', line: 1, reason: 'alias loop: a → b → c → a' },
      { file: 'aliases', line: 4, reason: 'alias loop: root → ops → root' },
    ])
  })

  it('walks a chain of 20,000 aliases without overflowing the stack, and finds the loop at its end', () => {
    const lines = Array.from({ length: 20_000 }, (_, i) => `a${i}: a${i + 1}`)
    expect(findAliasLoops(parseAliases(lines.join('\n'), 'aliases').map, isLocal)).toEqual([])
    lines.push('a20000: a19999')
    expect(findAliasLoops(parseAliases(lines.join('\n'), 'aliases').map, isLocal)).toEqual([
      { file: 'aliases', line: 20_000, reason: 'alias loop: a19999 → a20000 → a19999' },
    ])
  })

  it('follows :include: lists and ignores foreign domains', () => {
    const { map } = parseAliases('list: :include:/l\nx: y@other.example\ny: x@other.example', 'aliases', {
      readFile: () => 'list@example.edu\n',
    })
    expect(flattenTargets(map.entries.get('list')?.targets ?? [])).toHaveLength(1)
    // list → list is a self-reference (local mailbox), not a loop; x/y are in a foreign domain.
    expect(findAliasLoops(map, isLocal)).toEqual([])
    const { map: two } = parseAliases('l1: :include:/l\nl2: l1', 'aliases', { readFile: () => 'l2\n' })
    expect(findAliasLoops(two, isLocal)).toEqual([
      { file: 'aliases', line: 1, reason: 'alias loop: l1 → l2 → l1' },
    ])
  })
})
