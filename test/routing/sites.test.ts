/**
 * The three sites of issue #4's first paragraph, as fixtures in test/fixtures/sites/<name>/:
 * `rules/` (the maps), `site.json` (description, default relay) and `cases` (a table of
 * address → final recipient → next hop; an address with several recipients has one row per
 * recipient). Checked here through route(); test/integration/routing-sites.test.ts runs the
 * same tables through the running filter.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parseHostPort } from '../../src/config/address.js'
import { loadRoutingMaps } from '../../src/routing/maps.js'
import { formatNextHop, route } from '../../src/routing/router.js'
import { type Case, cases, SITES } from '../support/sites.js'

/** The table grouped by address, in table order. */
function byAddress(rows: readonly Case[]): Map<string, Case[]> {
  const groups = new Map<string, Case[]>()
  for (const row of rows) groups.set(row.address, [...(groups.get(row.address) ?? []), row])
  return groups
}

for (const site of ['university', 'hub', 'organisation']) {
  describe(`site: ${site}`, () => {
    const meta = JSON.parse(readFileSync(join(SITES, site, 'site.json'), 'utf8')) as {
      description: string
      defaultRelay: string | null
    }
    const maps = loadRoutingMaps(join(SITES, site, 'rules'))
    const relay = meta.defaultRelay ? parseHostPort(meta.defaultRelay) : undefined
    const table = byAddress(cases(site))

    it('loads its maps without a problem', () => {
      expect(maps.problems).toEqual([])
      expect(table.size).toBeGreaterThan(5)
    })

    for (const [address, rows] of table) {
      const expected = rows.map((r) => `${r.recipient} ${r.nextHop}`)
      it(`${address} → ${expected.join(', ')}`, async () => {
        const decision = await route(address, maps, relay ? { defaultRelay: relay } : {})
        const got = decision.recipients.map((r) => `${r.address} ${formatNextHop(r.nextHop)}`)
        expect(got, `cases:${rows[0]?.line}`).toEqual(expected)
        expect(decision.accepted).toBe(!expected.every((e) => e.includes(' error:')))
      })
    }
  })
}

describe('site details beyond the tables', () => {
  it('university: the staff list is mailed with owner-staff as the envelope sender', async () => {
    const maps = loadRoutingMaps(join(SITES, 'university', 'rules'))
    const decision = await route('staff@example.edu', maps, { from: 'dean@example.edu' })
    expect(new Set(decision.recipients.map((r) => r.from))).toEqual(new Set(['owner-staff@example.edu']))
  })

  it('organisation: moving a user is editing one row', async () => {
    const dir = join(SITES, 'organisation', 'rules')
    const moved = loadRoutingMaps(dir, {
      readFile: (path) => {
        const text = readFileSync(path, 'utf8')
        return path.endsWith('/users')
          ? text.replace(/^(ann@corp\.example\s+)a\.corp\.example/m, '$1c.corp.example')
          : text
      },
    })
    const decision = await route('ann@a.corp.example', moved)
    expect(decision.recipients.map((r) => `${r.address} ${formatNextHop(r.nextHop)}`)).toEqual([
      'ann@c.corp.example smtp:[127.0.30.3]:2525',
    ])
  })
})
