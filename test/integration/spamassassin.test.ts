/**
 * The spamassassin plugin against a real spamd (test/support/spamd.ts): the corpus' GTUBE
 * messages score ≥ 5 with GTUBE among the rules, a plain business mail scores < 5, a stopped
 * spamd makes the check throw.
 */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import spamassassin from '../../plugins/spamassassin/index.js'
import type { Check, Hit } from '../../src/pipeline/plugin.js'
import { parseOptions } from '../../src/pipeline/plugin.js'
import { runCheck, silentLog } from '../support/check.js'
import { useDaemon } from '../support/hooks.js'
import { businessMail, CORPUS_DIR } from '../support/mail.js'
import { startSpamd } from '../support/spamd.js'

const GTUBE_DIR = join(CORPUS_DIR, 'gtube')
const BUSINESS = businessMail('<20240305081358.12345@mail.example.org>')

const spamd = useDaemon(startSpamd)
let check: Check

function run(raw: Buffer, signal = AbortSignal.timeout(20_000)): Promise<readonly Hit[]> {
  return runCheck(check, raw, signal)
}

function score(hits: readonly Hit[]): { factor: number; rules: readonly string[] } {
  expect(hits).toHaveLength(1)
  const hit = hits[0]
  expect(hit?.symbol).toBe('SPAMD_SCORE')
  expect(hit?.evidence?.[0]).toMatch(/^-?\d+\.\d\/\d+\.\d$/)
  return { factor: hit?.factor ?? Number.NaN, rules: hit?.evidence?.slice(1) ?? [] }
}

beforeAll(async () => {
  check = await spamassassin.setup(parseOptions(spamassassin, { host: spamd().host, port: spamd().port }), {
    log: silentLog,
  })
})

describe('spamassassin plugin against a real spamd', () => {
  it('scores the corpus GTUBE messages as spam, naming GTUBE', async () => {
    const files = (await readdir(GTUBE_DIR)).filter((f) => f.endsWith('.eml'))
    expect(files.length).toBeGreaterThan(0)
    for (const f of files) {
      const { factor, rules } = score(await run(await readFile(join(GTUBE_DIR, f))))
      expect(factor, f).toBeGreaterThanOrEqual(5)
      expect(rules, f).toContain('GTUBE')
    }
  })

  it('scores a plain business mail below 5', async () => {
    const { factor, rules } = score(await run(BUSINESS))
    expect(factor).toBeLessThan(5)
    expect(rules).not.toContain('GTUBE')
  })

  it('skips a message above maxSize without asking spamd', async () => {
    const small = await spamassassin.setup(
      parseOptions(spamassassin, { host: spamd().host, port: spamd().port, maxSize: 100 }),
      { log: silentLog },
    )
    const hits = await runCheck(small, BUSINESS, AbortSignal.timeout(5000))
    expect(hits).toEqual([
      { symbol: 'SPAMD_SKIPPED_TOO_BIG', evidence: [`${BUSINESS.length} bytes > maxSize 100`] },
    ])
  })

  it('throws when spamd has been stopped', async () => {
    await spamd().stop(true)
    await expect(run(BUSINESS)).rejects.toThrow(/spamd 127\.0\.0\.1:\d+: cannot connect/)
  })
})
