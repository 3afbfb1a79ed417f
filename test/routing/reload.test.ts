import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { loadRoutingMaps } from '../../src/routing/maps.js'
import { newProblems, reloadRoutingMaps } from '../../src/routing/reload.js'
import { route } from '../../src/routing/router.js'

describe('reloadRoutingMaps (keep last good)', () => {
  let dir: string
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailscreen-maps-'))
  })
  afterEach(() => rm(dir, { recursive: true, force: true }))

  const write = (name: string, text: string) => writeFile(join(dir, name), text)
  const targets = async (maps: ReturnType<typeof loadRoutingMaps>, address: string) =>
    (await route(address, maps)).recipients.map((r) => r.address)

  it('applies maps without new problems', async () => {
    await write('local-host-names', 'example.org\n')
    await write('aliases', 'sales: ann@a.example\n')
    const running = loadRoutingMaps(dir)
    await write('aliases', 'sales: bob@b.example\n')
    const result = reloadRoutingMaps(running, dir)
    expect(result.applied).toBe(true)
    expect(await targets(result.maps, 'sales@example.org')).toEqual(['bob@b.example'])
  })

  it('keeps the running maps when a file has a new bad line, and says which', async () => {
    await write('local-host-names', 'example.org\n')
    await write('aliases', 'sales: ann@a.example\n')
    const running = loadRoutingMaps(dir)
    // A half-written file: the second entry lost its colon.
    await write('aliases', 'sales: bob@b.example\nsupport carol@c.example\n')
    const result = reloadRoutingMaps(running, dir)
    expect(result.applied).toBe(false)
    expect(result.maps).toBe(running)
    expect(result.fresh).toHaveLength(1)
    expect(result.fresh[0]).toMatchObject({ file: join(dir, 'aliases'), line: 2 })
    expect(await targets(result.maps, 'sales@example.org')).toEqual(['ann@a.example'])
  })

  it('keeps the running maps when a file becomes unreadable or the folder goes away', async () => {
    await write('mailertable', 'example.net smtp:[127.0.0.2]:25\n')
    const running = loadRoutingMaps(dir)
    await rm(dir, { recursive: true })
    const result = reloadRoutingMaps(running, dir)
    expect(result.applied).toBe(false)
    expect(result.fresh[0]?.reason).toMatch(/no routing maps folder/)
  })

  it('a problem the running maps already had does not block a reload, even when its line moved', async () => {
    await write('local-host-names', 'example.org\n')
    await write('aliases', 'broken line\nsales: ann@a.example\n')
    const running = loadRoutingMaps(dir)
    expect(running.problems).toHaveLength(1)
    await write('aliases', '# moved down\nsales: bob@b.example\nbroken line\n')
    const result = reloadRoutingMaps(running, dir)
    expect(result.applied).toBe(true)
    expect(result.problems).toHaveLength(1)
    expect(await targets(result.maps, 'sales@example.org')).toEqual(['bob@b.example'])
  })

  it('a duplicate entry the running maps had does not block a reload after lines above it moved', async () => {
    await write('local-host-names', 'example.org\n')
    await write('aliases', 'sales: ann@a.example\nsales: dup@a.example\n')
    const running = loadRoutingMaps(dir)
    expect(running.problems[0]?.reason).toMatch(/first on line 1/)
    await write('aliases', 'new: bob@b.example\nsales: ann@a.example\nsales: dup@a.example\n')
    const result = reloadRoutingMaps(running, dir)
    expect(result.applied).toBe(true)
    expect(await targets(result.maps, 'new@example.org')).toEqual(['bob@b.example'])
  })

  it('keeps the running maps when a map file that was loaded is gone (moved aside while edited)', async () => {
    await write('local-host-names', 'example.org\n')
    await write('aliases', 'sales: ann@a.example\n')
    const running = loadRoutingMaps(dir)
    await rm(join(dir, 'aliases'))
    const result = reloadRoutingMaps(running, dir)
    expect(result.applied).toBe(false)
    expect(result.fresh[0]?.reason).toMatch(/aliases is gone/)
    expect(await targets(result.maps, 'sales@example.org')).toEqual(['ann@a.example'])
  })

  it('counts the same problem twice when it appears twice', () => {
    const p = { file: 'aliases', line: 1, reason: 'no colon' }
    expect(newProblems([p], [p, { ...p, line: 9 }])).toEqual([{ ...p, line: 9 }])
    expect(newProblems([p, p], [p])).toEqual([])
  })
})
