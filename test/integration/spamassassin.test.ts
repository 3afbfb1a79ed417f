/**
 * The spamassassin plugin against a real spamd (test/support/spamd.ts): the corpus' GTUBE
 * messages score ≥ 5 with GTUBE among the rules, a plain business mail scores < 5, a stopped
 * spamd makes the check throw.
 */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import spamassassin from '../../plugins/spamassassin/index.js'
import type { Envelope } from '../../src/ingress/envelope.js'
import { createMessageView } from '../../src/mail/message.js'
import { packageRoot } from '../../src/package-root.js'
import type { Check, Hit } from '../../src/pipeline/plugin.js'
import { newQueueId } from '../../src/queue/ids.js'
import { type SpamdInstance, startSpamd } from '../support/spamd.js'

const log = pino({ level: 'silent' })
const GTUBE_DIR = join(packageRoot, '..', 'shared', 'corpus', 'gtube')

const envelope: Envelope = {
  mailFrom: 'anna.berg@example.org',
  rcptTo: ['orders@example.net'],
  client: { address: '192.0.2.1' },
  peer: { address: '127.0.0.1' },
  receivedAt: 0,
}

const BUSINESS = Buffer.from(
  [
    'Received: from mail.example.org (mail.example.org [192.0.2.1])',
    '\tby mx.example.net (Postfix) with ESMTPS id 4AB12C0042',
    '\tfor <orders@example.net>; Tue, 5 Mar 2024 09:14:02 +0100 (CET)',
    'From: Anna Berg <anna.berg@example.org>',
    'To: Orders <orders@example.net>',
    'Subject: Re: delivery schedule for purchase order 4711',
    'Date: Tue, 5 Mar 2024 09:13:58 +0100',
    'Message-ID: <20240305081358.12345@mail.example.org>',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 7bit',
    '',
    'Hello Tom,',
    '',
    'thanks for the update. We can take the first half of purchase order 4711',
    '(the 40 brackets and the mounting rails) on Thursday as planned; the',
    'remaining items can follow next week together with the invoice.',
    '',
    'Could you confirm the delivery address is still our warehouse at',
    'Industriestrasse 12? Our receiving desk is staffed from 7:00 to 15:00.',
    '',
    'Best regards,',
    'Anna',
    '',
    '--',
    'Anna Berg, Purchasing',
    'Example Org GmbH',
    '',
  ].join('\r\n'),
)

let spamd: SpamdInstance
let check: Check

function run(raw: Buffer, signal = AbortSignal.timeout(20_000)): Promise<readonly Hit[]> {
  return check({ queueId: newQueueId(), envelope, message: createMessageView(raw), log, signal })
}

function score(hits: readonly Hit[]): { factor: number; rules: readonly string[] } {
  expect(hits).toHaveLength(1)
  const hit = hits[0]
  expect(hit?.symbol).toBe('SPAMD_SCORE')
  expect(hit?.evidence?.[0]).toMatch(/^-?\d+\.\d\/\d+\.\d$/)
  return { factor: hit?.factor ?? Number.NaN, rules: hit?.evidence?.slice(1) ?? [] }
}

beforeAll(async () => {
  spamd = await startSpamd()
  check = await spamassassin.setup(spamassassin.options.parse({ host: spamd.host, port: spamd.port }), {
    log,
  })
}, 120_000)

afterAll(async () => {
  await spamd?.stop()
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
      spamassassin.options.parse({ host: spamd.host, port: spamd.port, maxSize: 100 }),
      { log },
    )
    const hits = await small({
      queueId: newQueueId(),
      envelope,
      message: createMessageView(BUSINESS),
      log,
      signal: AbortSignal.timeout(5000),
    })
    expect(hits).toEqual([
      { symbol: 'SPAMD_SKIPPED_TOO_BIG', evidence: [`${BUSINESS.length} bytes > maxSize 100`] },
    ])
  })

  it('throws when spamd has been stopped', async () => {
    await spamd.stop(true)
    await expect(run(BUSINESS)).rejects.toThrow(/spamd 127\.0\.0\.1:\d+: cannot connect/)
  })
})
