/**
 * Scanners going away under a running filter with clamav (onError tempfail) and spamassassin
 * (onError continue), mail flowing all the while:
 *  - spamd stops: mail is still delivered, marked SPAMASSASSIN_FAIL (spam scoring is advisory);
 *  - clamd stops: new mail is not delivered unscanned; it waits in deferred/ (phase scan) and
 *    `queue list` shows it;
 *  - a new clamd comes up on the same port and `mailscreen queue flush` rescans the waiting
 *    mail: it is delivered (a virus among it quarantined).
 * In the end every accepted message is delivered exactly once or quarantined, none lost.
 */
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Sink, type SinkMessage, startSink } from '../../src/bench/sink.js'
import { type ClamdInstance, EICAR, EICAR_NAME, startClamd } from '../support/clamd.js'
import { cliJson, field, quarantineHolding, scannedId, send, sleep } from '../support/mail.js'
import { type LogLine, type MailscreenProcess, startMailscreen, stopAll } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'
import { type SpamdInstance, startSpamd } from '../support/spamd.js'

function message(tag: string, attachment?: string): Buffer {
  const head = [
    'From: Anna Berg <anna.berg@example.org>',
    'To: Orders <orders@example.net>',
    `Subject: order update ${tag}`,
    'Date: Tue, 5 Mar 2024 09:13:58 +0100',
    `Message-ID: <${tag}@example.org>`,
    'MIME-Version: 1.0',
  ]
  if (attachment === undefined)
    return Buffer.from(
      [
        ...head,
        'Content-Type: text/plain; charset=us-ascii',
        '',
        `Hello Tom, the second half of the order (${tag}) ships on Thursday.`,
        '',
        'Anna',
        '',
      ].join('\r\n'),
    )
  return Buffer.from(
    [
      ...head,
      'Content-Type: multipart/mixed; boundary="b1"',
      '',
      '--b1',
      'Content-Type: text/plain; charset=us-ascii',
      '',
      `the file (${tag})`,
      '--b1',
      'Content-Type: application/octet-stream; name="tool.com"',
      'Content-Transfer-Encoding: base64',
      '',
      Buffer.from(attachment, 'latin1').toString('base64'),
      '--b1--',
      '',
    ].join('\r\n'),
  )
}

const ORDERS = { from: 'anna.berg@example.org', to: ['orders@example.net'] }

let spamd: SpamdInstance | undefined
let clamd: ClamdInstance | undefined
let sink: Sink
let ms: MailscreenProcess

beforeAll(async () => {
  ;[spamd, clamd] = await Promise.all([startSpamd(), startClamd()])
  sink = await startSink()
  ms = await startMailscreen(await freePort(), {
    // A scan that tempfails waits an hour: only `queue flush` brings it back within the test.
    // No periodic sweep either: a flush that arrives while an unforced sweep runs is merged
    // into it and so ignored (DeliveryQueue.sweep), which would make this test flaky.
    delivery: { relay: `127.0.0.1:${sink.port}`, retry: ['1h'], queueRunInterval: '1h' },
    plugins: [
      { use: 'clamav', onError: 'tempfail', options: { host: '127.0.0.1', port: clamd.port } },
      {
        use: 'spamassassin',
        onError: 'continue',
        timeout: '10s',
        options: { host: spamd.host, port: spamd.port },
      },
    ],
  })
}, 120_000)

afterAll(async () => {
  await stopAll(ms, sink)
  await spamd?.stop()
  await clamd?.stop()
})

describe('scanners down while mail flows', () => {
  /** Every accepted queue ID and what must become of it. */
  const sent = new Map<string, { tag: string; outcome: 'deliver' | 'quarantine' }>()
  const verdictOf = (id: string): Promise<LogLine> =>
    ms.waitForLog((l) => l.msg === 'verdict' && l.qid === id && l.actions !== undefined, 30_000)
  const deliveredCopies = (id: string): SinkMessage[] => sink.messages.filter((m) => scannedId(m) === id)

  /** Send `count` messages `prefix-i`, one every `gapMs`, calling `during` after the `at`-th. */
  async function stream(
    prefix: string,
    count: number,
    at: number,
    during: () => Promise<void>,
  ): Promise<{ before: string[]; after: string[] }> {
    const before: string[] = []
    const after: string[] = []
    let duty: Promise<void> | undefined
    for (let i = 0; i < count; i++) {
      if (i === at) duty = during()
      // Messages sent once the duty is done land in `after`; those racing it in neither list.
      const done =
        duty === undefined ? false : await Promise.race([duty.then(() => true), sleep(0).then(() => false)])
      const tag = `${prefix}-${i}`
      const id = await send(ms.port, message(tag), ORDERS)
      sent.set(id, { tag, outcome: 'deliver' })
      if (duty === undefined) before.push(id)
      else if (done) after.push(id)
      await sleep(100)
    }
    await duty
    return { before, after }
  }

  it('all up: delivered with a spamd score and no failure', async () => {
    const ids: string[] = []
    for (let i = 0; i < 3; i++) {
      const id = await send(ms.port, message(`up-${i}`), ORDERS)
      sent.set(id, { tag: `up-${i}`, outcome: 'deliver' })
      ids.push(id)
    }
    for (const id of ids) {
      const verdict = await verdictOf(id)
      expect(verdict).toMatchObject({ verdict: 'clean', symbols: ['SPAMD_SCORE'], actions: 'deliver' })
      await ms.waitForLog((l) => l.msg === 'delivered' && l.qid === id)
      expect(field(deliveredCopies(id)[0], 'X-mailscreen-Verdict')).not.toMatch(/_FAIL/)
    }
  })

  it('spamd stops mid-stream: every message still delivered; those after the stop with SPAMASSASSIN_FAIL', async () => {
    const { before, after } = await stream('no-spamd', 10, 3, async () => {
      await spamd?.stop()
      spamd = undefined
    })
    expect(before).toHaveLength(3)
    expect(after.length).toBeGreaterThanOrEqual(3)
    for (const id of [...before, ...after])
      await ms.waitForLog((l) => l.msg === 'delivered' && l.qid === id, 30_000)
    for (const id of after) {
      const verdict = await verdictOf(id)
      expect(verdict).toMatchObject({ verdict: 'clean', symbols: ['SPAMASSASSIN_FAIL'], actions: 'deliver' })
      const copy = deliveredCopies(id)[0]
      expect(field(copy, 'X-mailscreen-Verdict')).toBe('clean, score=0 required=5 symbols=SPAMASSASSIN_FAIL')
      expect(field(copy, 'X-Spam-Flag')).toBe('NO')
      const failed = await ms.waitForLog((l) => l.msg === 'check failed' && l.qid === id)
      expect(failed).toMatchObject({ plugin: 'spamassassin', policy: 'continue' })
    }
    // Nothing deferred: spam scoring is advisory.
    const queue = await cliJson(ms, ['queue', 'list'])
    expect(queue).toEqual([])
  })

  let waiting: string[] = []
  let virusId = ''

  it('clamd stops mid-stream: nothing after the stop is delivered; it waits in deferred/ (phase scan), none lost', async () => {
    const received = sink.received
    const { before, after } = await stream('no-clamd', 10, 3, async () => {
      await clamd?.stop()
    })
    virusId = await send(ms.port, message('no-clamd-virus', EICAR), ORDERS)
    sent.set(virusId, { tag: 'no-clamd-virus', outcome: 'quarantine' })
    after.push(virusId)
    expect(before).toHaveLength(3)
    expect(after.length).toBeGreaterThanOrEqual(4)

    for (const id of after) {
      const deferred = await ms.waitForLog((l) => l.msg === 'scan deferred' && l.qid === id, 30_000)
      expect(String(deferred.reason), id).toContain('clamav')
      expect(deferred.attempts).toBe(1)
    }
    // Every message sent since the stop began gets an outcome: delivered (scanned before clamd
    // went) or deferred; wait for each, then for the deferred ones to show in the queue.
    const ids = [...sent.keys()].filter((id) => sent.get(id)?.tag.startsWith('no-clamd'))
    const outcomes = await Promise.all(
      ids.map((id) =>
        ms.waitForLog((l) => l.qid === id && (l.msg === 'delivered' || l.msg === 'scan deferred'), 30_000),
      ),
    )
    const deferredIds = ids.filter((_, i) => outcomes[i]?.msg === 'scan deferred')
    for (const id of after) expect(deferredIds).toContain(id)
    let rows: Array<Record<string, unknown>> = []
    for (let i = 0; i < 50; i++) {
      rows = await cliJson(ms, ['queue', 'list'])
      if (rows.length === deferredIds.length && rows.every((r) => r.state === 'deferred')) break
      await sleep(100)
    }
    for (const id of after)
      expect(rows.find((r) => r.id === id)).toMatchObject({
        id,
        state: 'deferred',
        phase: 'scan',
        attempts: 1,
        to: ['orders@example.net'],
      })
    for (const row of rows) expect(row).toMatchObject({ state: 'deferred', phase: 'scan' })
    waiting = rows.map((r) => r.id as string)
    expect([...waiting].sort()).toEqual([...deferredIds].sort())
    for (const id of ids) {
      const delivered = ms.logs.some((l) => l.msg === 'delivered' && l.qid === id)
      expect(delivered !== waiting.includes(id), `${id} delivered or waiting`).toBe(true)
    }
    for (const id of waiting) {
      expect(
        ms.logs.some((l) => l.msg === 'delivered' && l.qid === id),
        id,
      ).toBe(false)
      expect(deliveredCopies(id), id).toEqual([])
    }
    // A second look a moment later: still nothing of it went out unscanned.
    await sleep(1_500)
    expect(sink.received).toBe(received + (ids.length - waiting.length))
    expect(ms.logs.some((l) => l.msg === 'verdict' && waiting.includes(l.qid as string) && l.actions)).toBe(
      false,
    )
  })

  it('a new clamd on the same port and `queue flush`: the waiting mail is scanned and delivered, the virus quarantined', async () => {
    expect(waiting.length).toBeGreaterThanOrEqual(4)
    const port = clamd?.port as number
    clamd = await startClamd({ port })
    expect(clamd.port).toBe(port)
    expect(await clamd.ping()).toBe(true)

    const flush = await ms.cli(['queue', 'flush'])
    expect(flush.code, flush.stderr).toBe(0)
    expect(flush.stdout).toBe(`flush requested from mailscreen (pid ${ms.child.pid})\n`)

    for (const id of waiting) {
      const verdict = await verdictOf(id)
      if (id === virusId) {
        expect(verdict).toMatchObject({ verdict: 'virus', actions: 'quarantine strip' })
        expect(String(verdict.reason)).toContain(EICAR_NAME)
      } else {
        // spamd is still down: clean, with the advisory failure; clamav answered this time.
        expect(verdict).toMatchObject({
          verdict: 'clean',
          symbols: ['SPAMASSASSIN_FAIL'],
          actions: 'deliver',
        })
        await ms.waitForLog((l) => l.msg === 'delivered' && l.qid === id, 30_000)
      }
    }
    expect(await quarantineHolding(ms, [virusId])).toEqual([virusId])
  })

  it('in the end: every accepted message delivered exactly once or quarantined, queues empty', async () => {
    // The virus' stripped copy (a notice) is delivered too: one copy, without the virus.
    await ms.waitForLog((l) => l.msg === 'delivered' && l.qid === virusId, 30_000)
    await sleep(1_000)
    const quarantined = new Set(await readdir(join(ms.spoolDir, 'quarantine')))
    expect(sent.size).toBe(3 + 10 + 10 + 1)
    for (const [id, { tag, outcome }] of sent) {
      const copies = deliveredCopies(id)
      expect(copies, `${tag} (${id})`).toHaveLength(1)
      expect(quarantined.has(id), tag).toBe(outcome === 'quarantine')
      expect(field(copies[0], 'Message-ID'), tag).toBe(`<${tag}@example.org>`)
    }
    expect(deliveredCopies(virusId)[0]?.data.toString('latin1')).not.toContain(
      Buffer.from(EICAR, 'latin1').toString('base64'),
    )
    // Nothing else arrived: the sink holds exactly one copy per accepted message.
    expect(sink.received).toBe(sent.size)
    expect(await cliJson(ms, ['queue', 'list'])).toEqual([])
    expect(await readdir(join(ms.spoolDir, 'failed'))).toEqual([])
    expect(ms.child.exitCode).toBeNull()
  })
})
