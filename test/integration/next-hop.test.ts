import { afterEach, describe, expect, it } from 'vitest'
import { BenchClient } from '../../src/bench/client.js'
import { type Sink, type SinkMessage, startSink } from '../../src/bench/sink.js'
import { reply } from '../../src/ingress/smtp-reply.js'
import { type LogLine, type MailscreenProcess, startMailscreen, stopAll } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'

/** A complete message (From, To, Subject, Date, Message-ID), CRLF and dot-safe. */
function message(tag: string, to = 'b@example.net'): Buffer {
  return Buffer.from(
    [
      'From: Alice <a@example.org>',
      `To: <${to}>`,
      `Subject: next hop ${tag}`,
      'Date: Mon, 23 Nov 2026 20:00:00 +0000',
      `Message-ID: <${tag}@example.org>`,
      '',
      `body of ${tag}`,
      '',
    ].join('\r\n'),
  )
}

/** Send one message to mailscreen; returns the queue ID from `250 2.0.0 Ok: queued as <ID>`. */
async function send(port: number, from: string, to: readonly string[], data: Buffer): Promise<string> {
  const client = await BenchClient.open('127.0.0.1', port)
  try {
    const line = await client.send(from, to, data)
    const id = /queued as ([0-9A-Za-z]{16})\b/.exec(line)?.[1]
    if (!id) throw new Error(`no queue ID in ${line}`)
    return id
  } finally {
    await client.close()
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

interface QueueJsonRow {
  id: string
  state: string
  messageId: string | null
  from: string
  to: string[]
  attempts: number
  nextAttempt: string | null
  lastError: string | null
}

async function queueJson(ms: MailscreenProcess): Promise<QueueJsonRow[]> {
  const out = await ms.cli(['queue', 'list', '--json'])
  expect(out.code, out.stderr).toBe(0)
  return JSON.parse(out.stdout) as QueueJsonRow[]
}

/** Poll `queue list --json` until `ready` holds (the log line comes just before the spool move). */
async function queueWhen(
  ms: MailscreenProcess,
  ready: (rows: QueueJsonRow[]) => boolean,
): Promise<QueueJsonRow[]> {
  let rows = await queueJson(ms)
  for (let i = 0; i < 50 && !ready(rows); i++) {
    await sleep(100)
    rows = await queueJson(ms)
  }
  return rows
}

/** Index of the first log line with this qid and message, or -1. */
function logIndex(logs: readonly LogLine[], qid: string, msg: string): number {
  return logs.findIndex((l) => l.qid === qid && l.msg === msg)
}

const text = (m: SinkMessage | undefined): string => m?.data.toString('latin1') ?? ''

describe('next hop', () => {
  let ms: MailscreenProcess | undefined
  let sink: Sink | undefined
  afterEach(() => stopAll(ms, sink))

  it('defers on 451 at DATA, lists the message as deferred, and delivers each message once after recovery', async () => {
    let failing = true
    let refused = 0
    sink = await startSink({
      onMessageReply: () => {
        if (!failing) return undefined
        refused++
        return reply(451, '4.3.0', 'try again later')
      },
    })
    ms = await startMailscreen(await freePort(), { delivery: { relay: `127.0.0.1:${sink.port}` } })
    const ids = [
      await send(ms.port, 'a@example.org', ['b@example.net'], message('defer-one')),
      await send(ms.port, 'a@example.org', ['c@example.net', 'd@example.net'], message('defer-two')),
    ]
    for (const id of ids) await ms.waitForLog((l) => l.qid === id && l.msg === 'deferred')

    const rows = await queueWhen(ms, (r) => r.length === 2 && r.every((row) => row.state === 'deferred'))
    expect(rows.map((r) => r.id).sort()).toEqual([...ids].sort())
    for (const row of rows) {
      expect(row.state).toBe('deferred')
      expect(row.lastError).toContain('451')
      expect(row.lastError).toContain('4.3.0')
      expect(row.from).toBe('a@example.org')
      expect(row.attempts).toBeGreaterThanOrEqual(1)
    }
    expect(rows.find((r) => r.id === ids[1])?.to.sort()).toEqual(['c@example.net', 'd@example.net'])
    expect(rows.find((r) => r.id === ids[0])?.messageId).toBe('<defer-one@example.org>')
    expect(sink.received).toBe(0)
    expect(refused).toBeGreaterThanOrEqual(2)

    // The next hop recovers: every message goes, once.
    failing = false
    for (const id of ids) await ms.waitForLog((l) => l.qid === id && l.msg === 'delivered', 15_000)
    await sink.waitFor(2, 15_000)
    // A few more queue runs (1 s apart) must not send anything again.
    await sleep(3_000)
    expect(sink.received).toBe(2)
    const byId = sink.messages.map((m) => /^Message-ID: (.*)$/im.exec(text(m))?.[1]?.trim())
    expect(byId.sort()).toEqual(['<defer-one@example.org>', '<defer-two@example.org>'])
    const two = sink.messages.find((m) => text(m).includes('defer-two'))
    expect([...(two?.rcptTo ?? [])].sort()).toEqual(['c@example.net', 'd@example.net'])
    expect(await queueJson(ms)).toEqual([])
    const list = await ms.cli(['queue', 'list'])
    expect(list.stdout).toContain('Mail queue is empty')

    // (e) the story of one message in the log: received → verdict → deferred → delivered.
    const logs = ms.logs
    for (const id of ids) {
      const received = logIndex(logs, id, 'received')
      const verdict = logIndex(logs, id, 'verdict')
      const deferred = logIndex(logs, id, 'deferred')
      const delivered = logIndex(logs, id, 'delivered')
      expect(received, `received for ${id}`).toBeGreaterThanOrEqual(0)
      expect(verdict).toBeGreaterThan(received)
      expect(deferred).toBeGreaterThan(verdict)
      expect(delivered).toBeGreaterThan(deferred)
      const d = logs[deferred]
      expect(d?.relay).toBe(`127.0.0.1:${sink.port}`)
      expect(String(d?.reply)).toContain('451 4.3.0')
      expect(logs[delivered]?.relay).toBe(`127.0.0.1:${sink.port}`)
      expect(String(logs[delivered]?.reply)).toMatch(/^250/)
    }
  })

  it('queue flush makes a deferred message go at once; without a running mailscreen it fails with MSC_NOT_RUNNING', async () => {
    let failing = true
    sink = await startSink({
      onMessageReply: () => (failing ? reply(451, '4.3.0', 'not now') : undefined),
    })
    ms = await startMailscreen(await freePort(), {
      delivery: { relay: `127.0.0.1:${sink.port}`, retry: ['1h'] },
    })
    const id = await send(
      ms.port,
      'sender@example.org',
      ['rcpt1@example.net', 'rcpt2@example.net'],
      message('flush'),
    )
    await ms.waitForLog((l) => l.qid === id && l.msg === 'deferred')
    const rows = await queueWhen(ms, (r) => r[0]?.state === 'deferred')

    // (4) mailq-like human output: header, ID, state, sender, recipients, last error.
    const list = await ms.cli(['queue', 'list'])
    expect(list.code, list.stderr).toBe(0)
    const lines = list.stdout.split('\n')
    expect(lines[0]).toMatch(/^ID\s+STATE\s+AGE\s+SIZE\s+SENDER$/)
    const row = lines.find((l) => l.startsWith(id))
    expect(row).toBeDefined()
    expect(row).toMatch(new RegExp(`^${id}\\s+deferred\\s+\\d+[smhd]\\s+\\d+\\s+<sender@example\\.org>$`))
    const rowAt = lines.indexOf(row as string)
    expect(lines[rowAt + 1]).toMatch(
      /^ {4}\(delivery: 451 4\.3\.0 not now; attempts 1, next \d{4}-\d\d-\d\dT/,
    )
    expect(lines.slice(rowAt + 2, rowAt + 4).sort()).toEqual([
      '    rcpt1@example.net',
      '    rcpt2@example.net',
    ])
    expect(list.stdout).toMatch(/-- \d+ Kbytes in 1 Request\.\n$/)

    // (4) --json objects carry id, state, messageId, from, to.
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({
      id,
      state: 'deferred',
      messageId: '<flush@example.org>',
      from: 'sender@example.org',
      to: ['rcpt1@example.net', 'rcpt2@example.net'],
    })
    expect(rows[0]?.lastError).toContain('451')

    // The next hop recovers, but the retry is an hour away: queue runs leave it alone.
    failing = false
    await sleep(2_500)
    expect(sink.received).toBe(0)

    const flush = await ms.cli(['queue', 'flush'])
    expect(flush.code, flush.stderr).toBe(0)
    expect(flush.stdout).toContain(`pid ${ms.child.pid}`)
    await sink.waitFor(1, 5_000)
    await ms.waitForLog((l) => l.msg === 'flush: retrying deferred mail now', 1_000)
    expect(text(sink.messages[0])).toContain('Message-ID: <flush@example.org>')
    await ms.waitForLog((l) => l.qid === id && l.msg === 'delivered')
    expect(await queueJson(ms)).toEqual([])

    // Not running: no PID file, nothing to signal.
    expect(await ms.stop()).toBe(0)
    const down = await ms.cli(['queue', 'flush'])
    expect(down.code).not.toBe(0)
    expect(down.stderr).toContain('MSC_NOT_RUNNING')
  })

  it('delivers to the accepted recipient and sends a DSN for the one refused with 550', async () => {
    sink = await startSink({
      decide: (_tx, rcpt) =>
        rcpt === 'nobody@example.net'
          ? reply(550, '5.1.1', '<nobody@example.net>: Recipient address rejected: User unknown')
          : undefined,
    })
    ms = await startMailscreen(await freePort(), { delivery: { relay: `127.0.0.1:${sink.port}` } })
    const id = await send(
      ms.port,
      'alice@example.org',
      ['good@example.net', 'nobody@example.net'],
      message('bounce'),
    )
    await sink.waitFor(2, 15_000)

    const original = sink.messages.find((m) => m.mailFrom === 'alice@example.org')
    expect(original?.rcptTo).toEqual(['good@example.net'])
    expect(text(original)).toContain('Message-ID: <bounce@example.org>')

    const dsn = sink.messages.find((m) => m.mailFrom === '')
    expect(dsn, 'a DSN with envelope sender <>').toBeDefined()
    expect(dsn?.rcptTo).toEqual(['alice@example.org'])
    const body = text(dsn)
    const headerBlock = body.slice(0, body.indexOf('\r\n\r\n')).replace(/\r\n[ \t]+/g, ' ')
    expect(headerBlock).toMatch(/^From: .*<MAILER-DAEMON@mailscreen\.test>$/m)
    expect(headerBlock).toMatch(/^To: <alice@example\.org>$/m)
    expect(headerBlock).toMatch(/^Content-Type: multipart\/report; report-type=delivery-status; boundary=/m)
    expect(body).toContain('Content-Type: message/delivery-status')
    expect(body).toContain('Final-Recipient: rfc822; nobody@example.net')
    expect(body).not.toContain('Final-Recipient: rfc822; good@example.net')
    expect(body).toContain('Action: failed')
    expect(body).toContain('Status: 5.1.1')
    expect(body.replace(/\r\n[ \t]+/g, ' ')).toMatch(
      /^Diagnostic-Code: smtp; 550 5\.1\.1 <nobody@example\.net>: Recipient address rejected: User unknown$/m,
    )
    // The original headers, in a text/rfc822-headers part; no body.
    const headersPart = body.slice(body.indexOf('Content-Type: text/rfc822-headers'))
    expect(headersPart).not.toBe(body)
    expect(headersPart).toContain('Subject: next hop bounce')
    expect(headersPart).toContain('Message-ID: <bounce@example.org>')
    expect(headersPart).toContain('X-mailscreen-Verdict:')
    expect(headersPart).not.toContain('body of bounce')

    // (e) received → verdict → bounced with the same qid; the DSN has its own qid.
    await ms.waitForLog((l) => l.msg === 'dsn queued' && l.dsnFor === id)
    const logs = ms.logs
    const received = logIndex(logs, id, 'received')
    const verdict = logIndex(logs, id, 'verdict')
    const bounced = logIndex(logs, id, 'bounced')
    const delivered = logIndex(logs, id, 'delivered')
    expect(received).toBeGreaterThanOrEqual(0)
    expect(verdict).toBeGreaterThan(received)
    expect(bounced).toBeGreaterThan(verdict)
    expect(delivered).toBeGreaterThan(verdict)
    expect(logs[bounced]).toMatchObject({ to: 'nobody@example.net', relay: `127.0.0.1:${sink.port}` })
    expect(String(logs[bounced]?.reply)).toContain('550 5.1.1')
    expect(logs[delivered]?.to).toBe('good@example.net')
    const dsnQueued = logs.find((l) => l.msg === 'dsn queued' && l.dsnFor === id)
    expect(dsnQueued?.qid).not.toBe(id)
    await ms.waitForLog((l) => l.qid === dsnQueued?.qid && l.msg === 'delivered')
    expect(await queueJson(ms)).toEqual([])
  })

  it('never sends a DSN for a message from <>', async () => {
    sink = await startSink({
      decide: (_tx, rcpt) =>
        rcpt === 'nobody@example.net' ? reply(550, '5.1.1', 'User unknown') : undefined,
    })
    ms = await startMailscreen(await freePort(), { delivery: { relay: `127.0.0.1:${sink.port}` } })
    const id = await send(ms.port, '', ['nobody@example.net'], message('null-sender', 'nobody@example.net'))
    const bounced = await ms.waitForLog((l) => l.qid === id && l.msg === 'bounced')
    expect(String(bounced.reply)).toContain('550 5.1.1')
    expect(bounced.delay).toEqual(expect.any(Number))
    const noDsn = await ms.waitForLog((l) => l.qid === id && l.msg.startsWith('no DSN'))
    expect(noDsn.from).toBe('')
    // Give a wrongly queued DSN time to show up.
    await sleep(2_000)
    expect(ms.logs.some((l) => l.msg === 'dsn queued')).toBe(false)
    expect(sink.received).toBe(0)
    expect(await queueJson(ms)).toEqual([])
  })
})
