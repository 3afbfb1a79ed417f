/**
 * The quarantine through the running filter and the `mailscreen quarantine` CLI: a virus
 * (EICAR, found by a real clamd) lands in quarantine/; `list --json` and `show` say what and
 * why; `release` hands the original, untagged, to the running mailscreen
 * for delivery (to its recipients or to --to); `delete` removes one for good; an unknown ID
 * is MSC_NOT_FOUND. With `policy.actions.virus: quarantine` nothing reaches the next hop; with
 * the default `quarantine strip` the recipient gets the message without the virus and a notice.
 */
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { SinkMessage } from '../../src/bench/sink.js'
import { newQueueId } from '../../src/queue/ids.js'
import { EICAR, EICAR_NAME, startClamd } from '../support/clamd.js'
import { useDaemon } from '../support/hooks.js'
import {
  byTag,
  cliJson,
  field,
  headers,
  quarantineHolding,
  send,
  sleep,
  startFilter,
} from '../support/mail.js'

const SENDER = 'anna@example.org'
const RECIPIENT = 'bob@example.net'
const ENVELOPE = { from: SENDER, to: [RECIPIENT] }
const EICAR_B64 = Buffer.from(EICAR, 'latin1').toString('base64')

/** A message with a text part and an attachment `content` (base64), CRLF throughout. */
function withAttachment(tag: string, subject: string, content: string): Buffer {
  const b64 = Buffer.from(content, 'latin1').toString('base64')
  return Buffer.from(
    [
      `From: Anna <${SENDER}>`,
      `To: Bob <${RECIPIENT}>`,
      `Subject: ${subject}`,
      'Date: Mon, 23 Nov 2026 20:00:00 +0000',
      `Message-ID: <${tag}@example.org>`,
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="b1"',
      '',
      'This is a multi-part message in MIME format.',
      '--b1',
      'Content-Type: text/plain; charset=us-ascii',
      '',
      `see attached (${tag})`,
      '--b1',
      'Content-Type: application/octet-stream; name="tool.com"',
      'Content-Disposition: attachment; filename="tool.com"',
      'Content-Transfer-Encoding: base64',
      '',
      b64,
      '--b1--',
      '',
    ].join('\r\n'),
  )
}

/** Undo quoted-printable (soft line breaks and =XX), for reading a notice part. */
function unQp(text: string): string {
  return text
    .replace(/=\r\n/g, '')
    .replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)))
}

function body(data: Buffer): Buffer {
  return data.subarray(data.indexOf('\r\n\r\n') + 4)
}

const clamd = useDaemon(startClamd)

describe('quarantine: list, show, release, delete against a running mailscreen', () => {
  it('virus action "quarantine": nothing delivered; listed with its reason; released original goes to --to byte for byte; delete; unknown IDs', async () => {
    const { ms, sink } = await startFilter({
      policy: { actions: { virus: 'quarantine' } },
      plugins: [{ use: 'clamav', options: { host: '127.0.0.1', port: clamd().port } }],
    })
    const firstSent = withAttachment('virus-one', 'Invoice 4711', EICAR)
    const secondSent = withAttachment('virus-two', 'Invoice 4712', EICAR)
    const cleanSent = withAttachment('clean-one', 'Invoice 4713', 'just a text file\r\n')
    const first = await send(ms.port, firstSent, ENVELOPE)
    const second = await send(ms.port, secondSent, ENVELOPE)
    const clean = await send(ms.port, cleanSent, ENVELOPE)

    for (const id of [first, second]) {
      const verdict = await ms.waitForLog((l) => l.msg === 'verdict' && l.qid === id)
      expect(verdict).toMatchObject({
        verdict: 'virus',
        symbols: ['CLAMAV_VIRUS'],
        actions: 'quarantine',
        rule: 'policy.actions.virus',
      })
      // Quarantine alone delivers to nobody.
      expect(verdict.to).toBeUndefined()
      expect(String(verdict.reason)).toContain(EICAR_NAME)
    }
    await ms.waitForLog((l) => l.msg === 'delivered' && l.qid === clean)
    await sink.waitFor(1)
    // Give a wrongly delivered virus time to show up, then check only the clean one arrived.
    await sleep(500)
    expect(sink.received).toBe(1)
    expect(byTag(sink, 'clean-one')).toHaveLength(1)
    expect((await quarantineHolding(ms, [first, second])).sort()).toEqual([first, second].sort())

    // list --json: one object per message, oldest first, with what an administrator needs.
    const rows = await cliJson(ms, ['quarantine', 'list'])
    expect(rows.map((r) => r.id)).toEqual([first, second])
    expect(rows[0]).toMatchObject({
      id: first,
      messageId: '<virus-one@example.org>',
      from: SENDER,
      to: [RECIPIENT],
      subject: 'Invoice 4711',
      verdict: 'virus',
      symbols: ['CLAMAV_VIRUS'],
      actions: 'quarantine',
      size: firstSent.length,
    })
    expect(String(rows[0]?.reason)).toContain(EICAR_NAME)
    expect(rows[0]?.score).toBeGreaterThanOrEqual(100)
    expect(Date.parse(String(rows[0]?.receivedAt))).toBeGreaterThan(Date.now() - 60_000)
    expect(rows[1]).toMatchObject({ id: second, messageId: '<virus-two@example.org>', verdict: 'virus' })

    // The human list names the ID, the verdict and the reason too.
    const human = await ms.cli(['quarantine', 'list'])
    expect(human.code, human.stderr).toBe(0)
    expect(human.stdout).toMatch(new RegExp(`^${first} +virus +`, 'm'))
    expect(human.stdout).toContain(`reason: ${EICAR_NAME}`)
    expect(human.stdout).toContain('-- 2 messages in quarantine.')

    // show: why (reason, symbols, actions) and the original header.
    const shown = await ms.cli(['quarantine', 'show', first])
    expect(shown.code, shown.stderr).toBe(0)
    expect(shown.stdout).toContain(first)
    expect(shown.stdout).toContain(`reason: ${EICAR_NAME}`)
    expect(shown.stdout).toContain('symbols: CLAMAV_VIRUS')
    expect(shown.stdout).toContain('actions: quarantine')
    expect(shown.stdout).toContain('Subject: Invoice 4711\r\n')
    expect(shown.stdout).toContain('Message-ID: <virus-one@example.org>')
    const raw = await ms.cli(['quarantine', 'show', first, '--raw'])
    expect(raw.code, raw.stderr).toBe(0)
    expect(raw.stdout).toBe(firstSent.toString('latin1'))
    expect(await cliJson(ms, ['quarantine', 'show', second])).toMatchObject({
      id: second,
      verdict: 'virus',
      to: [RECIPIENT],
    })

    // release --to: the running mailscreen delivers the original to the new address only.
    const released = await ms.cli(['quarantine', 'release', first, '--to', 'other@example.net'])
    expect(released.code, released.stderr).toBe(0)
    const releasedId = new RegExp(
      `^${first} released as ([0-9A-Za-z]{16}); delivery requested from mailscreen \\(pid ${ms.child.pid}\\)$`,
      'm',
    ).exec(released.stdout)?.[1]
    expect(releasedId, released.stdout).toBeDefined()
    expect(releasedId).not.toBe(first)
    await sink.waitFor(2, 15_000)
    const delivered = await ms.waitForLog((l) => l.msg === 'delivered' && l.qid === releasedId)
    expect(delivered.to).toBe('other@example.net')
    const audit = await ms.waitForLog((l) => l.msg === 'released by administrator' && l.qid === first)
    expect(audit).toMatchObject({ was: ['quarantine'], as: releasedId, to: ['other@example.net'] })
    const copies = byTag(sink, 'virus-one')
    expect(copies).toHaveLength(1)
    const copy = copies[0] as SinkMessage
    expect(copy.mailFrom).toBe(SENDER)
    expect(copy.rcptTo).toEqual(['other@example.net'])
    // The original as received, untagged, with one field of ours saying where it came from.
    expect(body(copy.data).equals(body(firstSent))).toBe(true)
    expect(field(copy, 'Subject')).toBe('Invoice 4711')
    expect(headers(copy).match(/^X-mailscreen-[^:]*/gim)).toEqual(['X-mailscreen-Released'])
    expect(field(copy, 'X-mailscreen-Released')).toMatch(new RegExp(`^from quarantine id ${first}; `))
    expect(headers(copy)).not.toMatch(/^X-Spam-/im)
    expect(copy.data.subarray(copy.data.length - firstSent.length).equals(firstSent)).toBe(true)
    expect(copy.data.toString('latin1')).toContain(EICAR_B64)

    // It left the quarantine; the other one is still there.
    expect((await cliJson(ms, ['quarantine', 'list'])).map((r) => r.id)).toEqual([second])
    // The queue holds nothing of it any more either.
    expect(await cliJson(ms, ['queue', 'list'])).toEqual([])

    // delete: gone for good, never delivered.
    const deleted = await ms.cli(['quarantine', 'delete', second])
    expect(deleted.code, deleted.stderr).toBe(0)
    expect(deleted.stdout).toContain(`${second} deleted from quarantine`)
    await ms.waitForLog((l) => l.msg === 'deleted by administrator' && l.qid === second)
    expect(await cliJson(ms, ['quarantine', 'list'])).toEqual([])
    expect(await readdir(join(ms.spoolDir, 'quarantine'))).toEqual([])
    const empty = await ms.cli(['quarantine', 'list'])
    expect(empty.stdout).toBe('Quarantine is empty\n')

    // Unknown IDs (never seen, already released, already deleted, not an ID at all): MSC_NOT_FOUND.
    const unknown = newQueueId()
    const attempts = [
      ['show', unknown],
      ['release', unknown, '--to', 'x@example.net'],
      ['delete', unknown],
      ['release', first],
      ['show', first],
      ['release', second],
      ['delete', second],
      ['show', 'not-an-id'],
    ]
    for (const command of attempts) {
      const out = await ms.cli(['quarantine', ...command])
      expect(out.code, `${command.join(' ')}: ${out.stdout}`).toBe(1)
      expect(out.stderr, command.join(' ')).toContain('MSC_NOT_FOUND')
      expect(out.stdout, command.join(' ')).toBe('')
    }

    await sleep(1_500)
    // The clean message and the one released copy, nothing else: the virus was never sent on.
    expect(sink.received).toBe(2)
    expect(byTag(sink, 'virus-two')).toEqual([])
    expect(ms.child.exitCode).toBeNull()
  })

  it('default virus actions "quarantine strip": a notice without the virus goes out; releasing the kept original delivers it to its recipients', async () => {
    const { ms, sink } = await startFilter({
      plugins: [{ use: 'clamav', options: { host: '127.0.0.1', port: clamd().port } }],
    })
    const sent = withAttachment('virus-strip', 'Your order', EICAR)
    const id = await send(ms.port, sent, { from: SENDER, to: [RECIPIENT, 'carol@example.net'] })
    const verdict = await ms.waitForLog((l) => l.msg === 'verdict' && l.qid === id)
    expect(verdict).toMatchObject({
      verdict: 'virus',
      actions: 'quarantine strip',
      rule: 'policy.actions.virus',
      to: [RECIPIENT, 'carol@example.net'],
    })
    await sink.waitFor(1)
    const notice = sink.messages[0] as SinkMessage
    expect(notice.rcptTo).toEqual([RECIPIENT, 'carol@example.net'])
    const text = unQp(notice.data.toString('latin1'))
    expect(field(notice, 'X-mailscreen-Virus')).toContain(EICAR_NAME)
    expect(field(notice, 'X-mailscreen-Verdict')).toMatch(/^virus, /)
    expect(text).toContain(`removed content from this message (id ${id})`)
    expect(text).toContain(`${EICAR_NAME}`)
    expect(text).toContain(
      `The original is kept in quarantine. To receive it, ask your mail administrator, quoting id ${id}.`,
    )
    // The virus itself is gone, in any encoding; the harmless text part is still there.
    expect(text).not.toContain('EICAR-STANDARD-ANTIVIRUS-TEST-FILE')
    expect(text).not.toContain(EICAR_B64)
    expect(text).toContain('see attached (virus-strip)')

    const rows = await cliJson(ms, ['quarantine', 'list'])
    expect(rows).toEqual([
      expect.objectContaining({
        id,
        messageId: '<virus-strip@example.org>',
        from: SENDER,
        to: [RECIPIENT, 'carol@example.net'],
        verdict: 'virus',
        actions: 'quarantine strip',
      }),
    ])
    expect(String(rows[0]?.reason)).toContain(EICAR_NAME)

    // Release without --to: the original recipients get the original.
    const released = await ms.cli(['quarantine', 'release', id])
    expect(released.code, released.stderr).toBe(0)
    await sink.waitFor(2, 15_000)
    const original = sink.messages[1] as SinkMessage
    expect(original.rcptTo).toEqual([RECIPIENT, 'carol@example.net'])
    expect(original.mailFrom).toBe(SENDER)
    // The original, after the one field that says it was released.
    expect(original.data.subarray(original.data.length - sent.length).equals(sent)).toBe(true)
    expect(field(original, 'X-mailscreen-Released')).toMatch(new RegExp(`^from quarantine id ${id}; `))
    expect(await cliJson(ms, ['quarantine', 'list'])).toEqual([])
    await sleep(500)
    expect(sink.received).toBe(2)
  })
})
