import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  buildRoutingMaps,
  emptyRoutingMaps,
  loadRoutingMaps,
  MAP_FILES,
  routingSection,
} from '../../src/routing/maps.js'
import { memoryUserDirectory } from '../../src/routing/users.js'

let root: string

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'mailscreen-maps-'))
})

afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

/** Write a rules folder with the given files and return its path. */
async function rules(name: string, files: Record<string, string>): Promise<string> {
  const dir = join(root, name)
  await mkdir(dir, { recursive: true })
  for (const [file, text] of Object.entries(files)) {
    await mkdir(join(dir, file, '..'), { recursive: true })
    await writeFile(join(dir, file), text)
  }
  return dir
}

describe('loadRoutingMaps', () => {
  it('loads all five files into one frozen value and collects every problem with file and line', async () => {
    const dir = await rules('all', {
      'local-host-names': '# ours\ncorp.example\nbad domain\n',
      aliases: 'postmaster: ann\nloop1: loop2\nloop2: loop1@corp.example\nnocolon\n',
      recipientmap: 'jos@corp.example:jos@jos.example\nbroken\n',
      mailertable: 'a.corp.example smtp:[127.0.0.1]:2525\nb.corp.example uucp:x\n',
      users: 'ann@corp.example a.corp.example\nbob@other.example other.example\nbob@corp.example\n',
    })
    const maps = loadRoutingMaps(dir)
    expect(maps.dir).toBe(dir)
    expect(maps.files).toEqual(Object.fromEntries(MAP_FILES.map((name) => [name, join(dir, name)])))
    expect(maps.localHostNames.domains.has('corp.example')).toBe(true)
    expect(maps.aliases.entries.has('postmaster')).toBe(true)
    expect(maps.recipientMap.addresses.has('jos@corp.example')).toBe(true)
    expect(maps.mailertable.entries.has('a.corp.example')).toBe(true)
    expect(await maps.users.count()).toBe(2)
    expect(maps.problems.map((p) => `${p.file.slice(dir.length + 1)}:${p.line}`)).toEqual([
      'local-host-names:3',
      'aliases:2',
      'aliases:4',
      'recipientmap:2',
      'mailertable:2',
      'users:2',
      'users:3',
    ])
    expect(maps.problems[1]?.reason).toBe('alias loop: loop1 → loop2 → loop1')
    expect(maps.problems[5]?.reason).toContain('other.example is not in local-host-names')
    expect(Object.isFrozen(maps)).toBe(true)
    expect(Object.isFrozen(maps.problems)).toBe(true)
    expect(Object.isFrozen(maps.mailertable)).toBe(true)
  })

  it('treats each file as optional: a missing one is an empty map, not a problem', async () => {
    const dir = await rules('some', { mailertable: '. smtp:[127.0.0.1]:2525\n' })
    const maps = loadRoutingMaps(dir)
    expect(maps.problems).toEqual([])
    expect(maps.files.mailertable).toBe(join(dir, 'mailertable'))
    expect(maps.files.aliases).toBeUndefined()
    expect(maps.aliases.entries.size).toBe(0)
    expect(await maps.users.count()).toBe(0)
  })

  it('reports an unreadable file and a missing folder at line 0, and loads the rest', async () => {
    const dir = await rules('unreadable', { 'local-host-names': 'corp.example\n' })
    await mkdir(join(dir, 'aliases'))
    const maps = loadRoutingMaps(dir)
    expect(maps.problems).toEqual([{ file: join(dir, 'aliases'), line: 0, reason: 'cannot read: EISDIR' }])
    expect(maps.localHostNames.domains.has('corp.example')).toBe(true)
    const none = loadRoutingMaps(join(root, 'no-such-dir'))
    expect(none.problems).toEqual([
      { file: join(root, 'no-such-dir'), line: 0, reason: 'no routing maps folder (ENOENT)' },
    ])
  })

  it('reads :include: files relative to the aliases file', async () => {
    const dir = await rules('include', {
      aliases: 'staff: :include:lists/staff\n',
      'lists/staff': 'ann@x.example\n',
    })
    const maps = loadRoutingMaps(dir)
    expect(maps.problems).toEqual([])
    expect(maps.aliases.entries.get('staff')?.targets[0]).toMatchObject({
      kind: 'include',
      path: join(dir, 'lists', 'staff'),
      targets: [{ kind: 'address', address: { local: 'ann', domain: 'x.example' } }],
    })
  })

  it('takes a user directory from elsewhere instead of the users file', async () => {
    const dir = await rules('db', { users: 'ann@corp.example a.corp.example\n' })
    const directory = memoryUserDirectory('postgres:users', [])
    const maps = loadRoutingMaps(dir, { users: directory })
    expect(maps.users).toBe(directory)
    expect(maps.files.users).toBe('postgres:users')
  })
})

describe('buildRoutingMaps and emptyRoutingMaps', () => {
  it('builds from texts already read', () => {
    const maps = buildRoutingMaps({ 'local-host-names': { file: 'lhn', text: 'a.example\n' } })
    expect(maps.localHostNames.domains.get('a.example')).toEqual({ file: 'lhn', line: 1 })
    expect(maps.files['local-host-names']).toBe('lhn')
  })

  it('empty maps know no domain and have no problems', () => {
    const maps = emptyRoutingMaps()
    expect(maps.localHostNames.domains.size).toBe(0)
    expect(maps.problems).toEqual([])
  })
})

describe('routingSection', () => {
  it('defaults dir to ./rules, hopLimit to 30 and the resolver to the system one', () => {
    expect(routingSection.parse({})).toEqual({ dir: './rules', hopLimit: 30, resolver: { servers: [] } })
  })

  it('accepts resolver servers as ip, ip:port or [ipv6]:port and refuses the rest and unknown keys', () => {
    expect(
      routingSection.parse({
        dir: '/etc/mailscreen/maps',
        resolver: { servers: ['127.0.0.1', '127.0.0.1:5353', '[::1]:53'] },
      }),
    ).toMatchObject({
      dir: '/etc/mailscreen/maps',
      resolver: { servers: ['127.0.0.1', '127.0.0.1:5353', '[::1]:53'] },
    })
    expect(routingSection.safeParse({ resolver: { servers: ['dns.example:53'] } }).success).toBe(false)
    expect(routingSection.safeParse({ hopLimit: 0 }).success).toBe(false)
    expect(routingSection.safeParse({ directory: './rules' }).success).toBe(false)
  })
})
