/**
 * The spamassassin plugin inside the running filter, against a real spamd: GTUBE (score
 * 1000 and more) is high-scoring spam, quarantined by default; with `highspam: tag deliver`
 * the delivered copy carries the SpamAssassin-style headers (X-Spam-Flag, X-Spam-Status),
 * ours (X-mailscreen-SpamCheck, X-mailscreen-SpamScore capped at 50) and the subject tag. A
 * plain business mail is clean with `X-Spam-Flag: NO`. Spam carrying forged `X-Spam-*` and
 * `X-mailscreen-*` fields arrives with ours only.
 */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { useDaemon } from '../support/hooks.js'
import {
  businessMail,
  byMessageId,
  CORPUS_DIR,
  cliJson,
  crlfMessage,
  field,
  fields,
  headers,
  quarantineHolding,
  send,
  sleep,
  startFilter,
} from '../support/mail.js'
import { startSpamd } from '../support/spamd.js'

const GTUBE_DIR = join(CORPUS_DIR, 'gtube')
const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'

const BUSINESS = businessMail('<business-4711@example.org>')

/** GTUBE with header fields a spammer forged to look clean and scanned. */
const FORGED = Buffer.from(
  [
    'From: Winner Desk <desk@example.org>',
    'To: orders@example.net',
    'Subject: Your prize',
    'Date: Tue, 5 Mar 2024 09:13:58 +0100',
    'Message-ID: <forged@example.org>',
    'X-Spam-Flag: NO',
    'X-Spam-Status: No, score=-10.0 required=5.0 tests=ALL_TRUSTED',
    'X-mailscreen-Verdict: clean, score=0 required=5',
    'X-mailscreen-SpamCheck: not spam, score=0 required=5',
    'X-mailscreen-Scanned: mailscreen on mailscreen.test (id 0000000000000000)',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    'Claim it now.',
    '',
    GTUBE,
    '',
  ].join('\r\n'),
)

const ORDERS = { from: 'anna.berg@example.org', to: ['orders@example.net'] }

const spamd = useDaemon(startSpamd)
let gtube: Array<{ file: string; data: Buffer; messageId: string }>

beforeAll(async () => {
  const files = (await readdir(GTUBE_DIR)).filter((f) => f.endsWith('.eml')).sort()
  gtube = await Promise.all(
    files.map(async (file) => {
      const data = crlfMessage(await readFile(join(GTUBE_DIR, file)))
      const messageId = /^Message-ID: *(.*)$/im.exec(data.toString('latin1'))?.[1]?.trim() ?? ''
      return { file, data, messageId }
    }),
  )
})

describe('spamassassin in the running filter', () => {
  const spamassassin = () => ({ use: 'spamassassin', options: { host: spamd().host, port: spamd().port } })

  it('default policy: GTUBE is high-scoring spam and quarantined; a business mail is clean with X-Spam-Flag: NO', async () => {
    expect(gtube.length).toBeGreaterThanOrEqual(2)
    const { ms, sink } = await startFilter({
      plugins: [spamassassin()],
    })
    const spamIds: string[] = []
    for (const g of gtube) spamIds.push(await send(ms.port, g.data, ORDERS))
    const hamId = await send(ms.port, BUSINESS, ORDERS)

    for (const [i, id] of spamIds.entries()) {
      const verdict = await ms.waitForLog((l) => l.msg === 'verdict' && l.qid === id)
      expect(verdict, gtube[i]?.file).toMatchObject({
        verdict: 'highspam',
        symbols: ['SPAMD_SCORE'],
        actions: 'quarantine',
        rule: 'policy.actions.highspam',
      })
      expect(verdict.score as number, gtube[i]?.file).toBeGreaterThanOrEqual(1000)
      expect(verdict.to).toBeUndefined()
    }
    const ham = await ms.waitForLog((l) => l.msg === 'verdict' && l.qid === hamId)
    expect(ham).toMatchObject({ verdict: 'clean', symbols: ['SPAMD_SCORE'], actions: 'deliver' })
    expect(ham.score as number).toBeLessThan(5)

    await sink.waitFor(1)
    const delivered = byMessageId(sink, '<business-4711@example.org>')[0]
    expect(fields(delivered, 'X-Spam-Flag')).toEqual(['NO'])
    expect(field(delivered, 'X-Spam-Status')).toMatch(/^No, score=-?\d+\.\d required=5\.0 tests=SPAMD_SCORE$/)
    expect(field(delivered, 'X-mailscreen-SpamCheck')).toMatch(/^not spam, score=-?[\d.]+ required=5\b/)
    expect(field(delivered, 'Subject')).toBe('Re: delivery schedule for purchase order 4711')
    // The business body is intact.
    expect(delivered?.data.subarray(delivered.data.indexOf('\r\n\r\n'))).toEqual(
      BUSINESS.subarray(BUSINESS.indexOf('\r\n\r\n')),
    )

    expect((await quarantineHolding(ms, spamIds)).sort()).toEqual([...spamIds].sort())
    const rows = await cliJson(ms, ['quarantine', 'list'])
    expect(rows.map((r) => r.id).sort()).toEqual([...spamIds].sort())
    for (const row of rows) {
      expect(row).toMatchObject({ verdict: 'highspam', symbols: ['SPAMD_SCORE'], actions: 'quarantine' })
      expect(String(row.reason)).toMatch(/^score [\d.]+ >= 10$/)
    }
    await sleep(500)
    expect(sink.received).toBe(1)
  })

  it('highspam "tag deliver": GTUBE delivered with X-Spam-Flag YES, X-Spam-Status, SpamCheck, 50 s and the tag; forged fields replaced', async () => {
    const { ms, sink } = await startFilter({
      policy: { actions: { highspam: 'tag deliver' } },
      plugins: [spamassassin()],
    })
    const ids: string[] = []
    for (const g of gtube) ids.push(await send(ms.port, g.data, ORDERS))
    const forgedId = await send(ms.port, FORGED, ORDERS)
    const hamId = await send(ms.port, BUSINESS, ORDERS)
    await sink.waitFor(gtube.length + 2, 20_000)

    for (const [i, g] of gtube.entries()) {
      const verdict = await ms.waitForLog((l) => l.msg === 'verdict' && l.qid === ids[i])
      expect(verdict).toMatchObject({
        verdict: 'highspam',
        actions: 'tag deliver',
        to: ['orders@example.net'],
      })
      const score = verdict.score as number
      expect(score, g.file).toBeGreaterThanOrEqual(1000)
      const m = byMessageId(sink, g.messageId)[0]
      expect(m, g.file).toBeDefined()
      expect(fields(m, 'X-Spam-Flag'), g.file).toEqual(['YES'])
      expect(fields(m, 'X-Spam-Status'), g.file).toEqual([
        `Yes, score=${score.toFixed(1)} required=5.0 tests=SPAMD_SCORE`,
      ])
      expect(fields(m, 'X-mailscreen-SpamCheck'), g.file).toEqual([
        `spam, high scoring, score=${score} required=5 (SPAMD_SCORE ${score})`,
      ])
      expect(fields(m, 'X-mailscreen-SpamScore'), g.file).toEqual(['s'.repeat(50)])
      expect(fields(m, 'X-mailscreen-Verdict'), g.file).toEqual([
        `highspam, score=${score} required=5 symbols=SPAMD_SCORE=${score}`,
      ])
      const original = /^Subject: *(.*)$/im.exec(g.data.toString('latin1'))?.[1]
      expect(field(m, 'Subject'), g.file).toBe(`{Spam?} ${original}`)
    }

    // Forged "clean" fields are gone; ours say spam, once each.
    const forged = byMessageId(sink, '<forged@example.org>')[0]
    const verdict = await ms.waitForLog((l) => l.msg === 'verdict' && l.qid === forgedId)
    expect(verdict.verdict).toBe('highspam')
    expect(fields(forged, 'X-Spam-Flag')).toEqual(['YES'])
    expect(fields(forged, 'X-Spam-Status')).toHaveLength(1)
    expect(field(forged, 'X-Spam-Status')).toMatch(/^Yes, score=\d+\.\d required=5\.0 tests=SPAMD_SCORE$/)
    expect(fields(forged, 'X-mailscreen-Verdict')).toEqual([
      `highspam, score=${verdict.score} required=5 symbols=SPAMD_SCORE=${verdict.score}`,
    ])
    expect(fields(forged, 'X-mailscreen-SpamCheck')).toHaveLength(1)
    expect(field(forged, 'X-mailscreen-SpamCheck')).toMatch(/^spam, high scoring, /)
    expect(fields(forged, 'X-mailscreen-Scanned')).toEqual([`mailscreen on mailscreen.test (id ${forgedId})`])
    expect(headers(forged)).not.toContain('ALL_TRUSTED')
    expect(field(forged, 'Subject')).toBe('{Spam?} Your prize')

    // The business mail, scanned by the same instance: clean, untagged, flag NO.
    const ham = byMessageId(sink, '<business-4711@example.org>')[0]
    expect((await ms.waitForLog((l) => l.msg === 'verdict' && l.qid === hamId)).verdict).toBe('clean')
    expect(fields(ham, 'X-Spam-Flag')).toEqual(['NO'])
    expect(fields(ham, 'X-mailscreen-SpamScore').every((s) => s.length < 5)).toBe(true)
    expect(field(ham, 'Subject')).toBe('Re: delivery schedule for purchase order 4711')

    expect(await cliJson(ms, ['quarantine', 'list'])).toEqual([])
    expect(sink.received).toBe(gtube.length + 2)
  })
})
