/**
 * The example sites of docs/routing.md (test/fixtures/sites/): each has a `rules/` folder, a
 * `site.json` and a `cases` table (address → final recipient → next hop), checked both through
 * `route()` (test/routing/sites.test.ts) and through the running filter
 * (test/integration/routing-sites.test.ts).
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { packageRoot } from '../../src/package-root.js'

export const SITES = join(packageRoot, 'test', 'fixtures', 'sites')

/** One row of a site's `cases` table. */
export interface Case {
  readonly line: number
  readonly address: string
  readonly recipient: string
  readonly nextHop: string
}

/** Read a site's `cases` table (`#` comments and blank lines skipped; a bad row throws). */
export function cases(site: string): Case[] {
  const out: Case[] = []
  const lines = readFileSync(join(SITES, site, 'cases'), 'utf8').split('\n')
  for (const [index, raw] of lines.entries()) {
    const text = raw.replace(/#.*$/, '').trim()
    if (!text) continue
    const [address, recipient, nextHop, ...rest] = text.split(/\s+/)
    if (!address || !recipient || !nextHop || rest.length)
      throw new Error(`${site}/cases:${index + 1}: bad row`)
    out.push({ line: index + 1, address, recipient, nextHop })
  }
  return out
}
