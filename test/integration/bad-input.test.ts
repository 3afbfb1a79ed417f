// Nasty input through a running mailscreen (the real CLI as a child process) relaying to a
// keep:true sink. Every message must get a defined outcome (250 and then delivered, or a
// clear 5xx), the process must stay up, and nothing that got a 250 may be lost or altered.
//
// What "unaltered" means here, precisely. The test sends the message bytes M as follows:
//  - M is made to end with CRLF, as SMTP requires before the terminating dot: a final bare LF
//    becomes CRLF, a message ending in neither gets CRLF appended (the delivery client would
//    add that line break anyway). Call the result C (the content sent).
//  - C is dot-stuffed only where mailscreen's DATA decoder unstuffs: a dot at the very start
//    and a dot right after CRLF. A dot after a bare LF is content to that decoder (a dot line
//    ended by bare LF is never end-of-data, against smuggling), so it is sent as is.
//  - Bare LF line ends inside C are sent as they are; so are bare CR, NUL and 8-bit bytes.
// On the way out the delivery client turns every bare LF into CRLF (SMTP requires CRLF line
// ends). So both C and the delivered bytes D are normalised by turning each LF that is not
// preceded by CR into CRLF, nothing else (bare CR, NUL, 8-bit bytes, long lines all stay).
// Then:
//  1. body: the bytes after the first empty line (the first CRLFCRLF, or a leading CRLF when
//     the header section is empty) are byte-for-byte equal in C and D; a message without an
//     empty line has no body on either side;
//  2. D ends with the whole of C: mailscreen only prepends its own header fields
//     (Received, X-mailscreen-*). The example plugin with its default options scores at most
//     2, under the spam threshold of 5, so no subject is ever tagged.
import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Sink, type SinkMessage, startSink } from '../../src/bench/sink.js'
import { CORPUS_DIR } from '../support/mail.js'
import { cleanup, type MailscreenProcess, startMailscreen } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'

const MB = 1024 * 1024
const CRLF = Buffer.from('\r\n')
const STATES = ['incoming', 'processing', 'outgoing', 'deferred', 'quarantine', 'failed'] as const
const QUEUE_ID = /^[0-9A-Za-z]{16}$/

// ---------------------------------------------------------------------------------------------
// Bytes

/** C: the message made to end with CRLF (see the header comment). */
function smtpContent(raw: Buffer): Buffer {
  if (raw.length === 0) return raw
  const n = raw.length
  if (raw[n - 1] === 0x0a && n > 1 && raw[n - 2] === 0x0d) return raw
  if (raw[n - 1] === 0x0a) return Buffer.concat([raw.subarray(0, n - 1), CRLF])
  return Buffer.concat([raw, CRLF])
}

/** The DATA bytes for C, without the terminator: a dot at the start or after CRLF is doubled. */
function dotStuff(content: Buffer): Buffer {
  const parts: Buffer[] = []
  let from = 0
  if (content[0] === 0x2e) {
    parts.push(Buffer.from('.'))
  }
  for (let at = content.indexOf('\r\n.'); at !== -1; at = content.indexOf('\r\n.', at + 2)) {
    parts.push(content.subarray(from, at + 2), Buffer.from('.'))
    from = at + 2
  }
  parts.push(content.subarray(from))
  return Buffer.concat(parts)
}

/** Every LF not preceded by CR becomes CRLF; nothing else changes. */
function toCrlf(buf: Buffer): Buffer {
  const parts: Buffer[] = []
  let from = 0
  for (let lf = buf.indexOf(0x0a); lf !== -1; lf = buf.indexOf(0x0a, lf + 1)) {
    if (lf > 0 && buf[lf - 1] === 0x0d) continue
    parts.push(buf.subarray(from, lf), CRLF)
    from = lf + 1
  }
  if (from === 0) return buf
  parts.push(buf.subarray(from))
  return Buffer.concat(parts)
}

/** The body of a CRLF message: after the first empty line; `undefined` when there is none. */
function bodyOf(crlf: Buffer): Buffer | undefined {
  if (crlf[0] === 0x0d && crlf[1] === 0x0a) return crlf.subarray(2)
  const at = crlf.indexOf('\r\n\r\n')
  return at === -1 ? undefined : crlf.subarray(at + 4)
}

/** How many `Received:` fields the header of a message carries (its hop count). */
function receivedCount(raw: Buffer): number {
  const lf = raw.indexOf('\n\n')
  const crlf = raw.indexOf('\r\n\r\n')
  const end = [lf, crlf].filter((i) => i !== -1).reduce((a, b) => Math.min(a, b), raw.length)
  return (
    raw
      .subarray(0, end)
      .toString('latin1')
      .match(/^received[ \t]*:/gim)?.length ?? 0
  )
}

/** Where two buffers first differ, for failure messages that do not dump megabytes. */
function firstDifference(a: Buffer, b: Buffer): string {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a[i] === b[i]) i++
  const show = (buf: Buffer) => JSON.stringify(buf.subarray(Math.max(0, i - 20), i + 40).toString('latin1'))
  return `lengths ${a.length} vs ${b.length}, first difference at ${i}: ${show(a)} vs ${show(b)}`
}

/** The fields mailscreen writes itself; a sender's copies of them are not passed on. */
const SCAN_FIELDS = /^(x-mailscreen-(scanned|verdict|spamcheck|spamscore|virus)|x-spam-(flag|status))[ \t]*:/i

/** A CRLF message without the {@link SCAN_FIELDS} of its header (continuation lines included). */
function withoutScanFields(crlf: Buffer): Buffer {
  const body = bodyOf(crlf)
  const head = crlf
    .subarray(0, body === undefined ? crlf.length : crlf.length - body.length)
    .toString('latin1')
  // A first line that is a field but for its indent becomes that field (see applyEdits).
  const lines = head.replace(/^[ \t]+(?=[!-9;-~]+:)/, '').split(/(?<=\r\n)/)
  let dropping = false
  const out = lines.filter((line) => {
    if (line[0] === ' ' || line[0] === '\t') return !dropping
    dropping = SCAN_FIELDS.test(line)
    return !dropping
  })
  return Buffer.concat([Buffer.from(out.join(''), 'latin1'), body ?? Buffer.alloc(0)])
}

/** Problems with one delivered message against the content sent (empty when it is fine). */
function compareDelivered(delivered: Buffer, content: Buffer): string[] {
  const want = toCrlf(content)
  const got = toCrlf(delivered)
  const problems: string[] = []
  const wantBody = bodyOf(want)
  const gotBody = bodyOf(got)
  if (wantBody === undefined) {
    // No empty line in what was sent: mailscreen's fields are prepended, so none appears.
    if (gotBody !== undefined) problems.push('an empty line appeared in a message that had none')
  } else if (gotBody === undefined) {
    problems.push('the delivered message has no body')
  } else if (!gotBody.equals(wantBody)) {
    problems.push(`body differs: ${firstDifference(gotBody, wantBody)}`)
  }
  // mailscreen drops the sender's own copies of the fields it writes (a forged X-Spam-Flag):
  // apart from those (and an indented first field), the message sent is the tail of the one
  // delivered.
  const kept = withoutScanFields(want)
  const tail = got.subarray(got.length - kept.length)
  if (got.length < kept.length || !tail.equals(kept)) {
    problems.push(`the delivered message does not end with the message sent: ${firstDifference(tail, kept)}`)
  }
  return problems
}

// ---------------------------------------------------------------------------------------------
// A raw SMTP client that reports every reply (5xx included) instead of throwing

interface Reply {
  readonly code: number
  /** All lines, `\n`-joined, codes included. */
  readonly text: string
}

interface SendOptions {
  readonly from: string
  readonly to: readonly string[]
  /** ESMTP parameters for MAIL FROM, e.g. `SIZE=100 BODY=8BITMIME`. */
  readonly params?: string
  /** The message bytes M (made to end with CRLF and dot-stuffed here). */
  readonly raw: Buffer
  /** Send DATA in chunks of this many bytes with pauses, the terminator byte by byte. */
  readonly slow?: { readonly chunk: number; readonly pauseMs: number }
}

interface SendResult {
  readonly mail: Reply
  readonly rcpt: readonly Reply[]
  readonly data?: Reply
  /** The reply after the terminating dot. */
  readonly final?: Reply
  /** C: what the message content was on the wire (before dot-stuffing). */
  readonly content: Buffer
}

class RawSmtp {
  greeting: Reply | undefined
  ehlo: Reply | undefined
  private buffer = ''
  private lines: string[] = []
  private readonly replies: Reply[] = []
  private waiter: { resolve: (r: Reply) => void; reject: (e: Error) => void } | undefined
  private failure: Error | undefined

  private constructor(readonly socket: Socket) {
    socket.setNoDelay(true)
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => this.onData(chunk))
    socket.on('error', (err) => this.fail(err))
    socket.on('close', () => this.fail(new Error('connection closed')))
  }

  static async open(port: number, hello = true): Promise<RawSmtp> {
    const socket = connect({ host: '127.0.0.1', port })
    const client = new RawSmtp(socket)
    client.greeting = await client.read(10_000)
    if (hello) client.ehlo = await client.command('EHLO client.bad-input.test')
    return client
  }

  private onData(chunk: string): void {
    this.buffer += chunk
    let eol = this.buffer.indexOf('\n')
    while (eol !== -1) {
      const line = this.buffer.slice(0, eol).replace(/\r$/, '')
      this.buffer = this.buffer.slice(eol + 1)
      eol = this.buffer.indexOf('\n')
      this.lines.push(line)
      if (line[3] === '-') continue
      const reply = { code: Number(line.slice(0, 3)), text: this.lines.join('\n') }
      this.lines = []
      const waiter = this.waiter
      this.waiter = undefined
      if (waiter) waiter.resolve(reply)
      else this.replies.push(reply)
    }
  }

  private fail(err: Error): void {
    this.failure ??= err
    const waiter = this.waiter
    this.waiter = undefined
    waiter?.reject(err)
  }

  read(timeoutMs = 60_000): Promise<Reply> {
    const ready = this.replies.shift()
    if (ready) return Promise.resolve(ready)
    if (this.failure) return Promise.reject(this.failure)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined
        reject(new Error(`no SMTP reply within ${timeoutMs} ms`))
      }, timeoutMs)
      this.waiter = {
        resolve: (r) => {
          clearTimeout(timer)
          resolve(r)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      }
    })
  }

  command(line: string): Promise<Reply> {
    this.socket.write(`${line}\r\n`, 'utf8')
    return this.read()
  }

  /** One transaction, one command at a time; stops at the first refusal (RSET after RCPT refusals). */
  async send(opts: SendOptions): Promise<SendResult> {
    const content = smtpContent(opts.raw)
    const mail = await this.command(`MAIL FROM:<${opts.from}>${opts.params ? ` ${opts.params}` : ''}`)
    if (mail.code !== 250) return { mail, rcpt: [], content }
    const rcpt: Reply[] = []
    for (const to of opts.to) rcpt.push(await this.command(`RCPT TO:<${to}>`))
    if (!rcpt.some((r) => r.code === 250)) {
      await this.command('RSET')
      return { mail, rcpt, content }
    }
    const data = await this.command('DATA')
    if (data.code !== 354) return { mail, rcpt, data, content }
    const wire = Buffer.concat([dotStuff(content), Buffer.from('.\r\n')])
    if (opts.slow) {
      const { chunk, pauseMs } = opts.slow
      const bulk = wire.length - 5 // the last five bytes are always CRLF "." CRLF
      for (let i = 0; i < bulk; i += chunk) {
        this.socket.write(wire.subarray(i, Math.min(i + chunk, bulk)))
        await sleep(pauseMs)
      }
      for (let i = bulk; i < wire.length; i++) {
        this.socket.write(wire.subarray(i, i + 1))
        await sleep(pauseMs)
      }
    } else {
      this.socket.write(wire)
    }
    const final = await this.read(120_000)
    return { mail, rcpt, data, final, content }
  }

  async close(): Promise<void> {
    if (!this.failure) {
      this.socket.write('QUIT\r\n')
      await this.read(5_000).catch(() => undefined)
    }
    this.socket.destroy()
  }
}

/** `552 5.3.4 ...`: the reply for a message over smtp.maxSize. */
function expectTooBig(r: Reply | undefined): void {
  expect(r?.text).toMatch(/^552 5\.3\.4 /)
}

// ---------------------------------------------------------------------------------------------

describe('bad input through a running mailscreen', () => {
  let sink: Sink
  let ms: MailscreenProcess
  /** A second instance with smtp.maxSize of 1 MB, for the size limits. */
  let small: MailscreenProcess
  const byRecipient = new Map<string, SinkMessage[]>()
  let serial = 0

  const config = (maxSize: number) => ({
    smtp: { maxSize },
    delivery: { relay: `127.0.0.1:${sink.port}` },
    plugins: [{ use: 'example' }],
  })

  beforeAll(async () => {
    sink = await startSink({ keep: true })
    sink.on('message', (m) => {
      for (const rcpt of m.rcptTo) byRecipient.set(rcpt, [...(byRecipient.get(rcpt) ?? []), m])
    })
    ms = await startMailscreen(await freePort(), config(20 * MB))
    small = await startMailscreen(await freePort(), config(MB))
  }, 60_000)

  afterAll(async () => {
    await ms?.stop()
    await small?.stop()
    await sink?.close()
    if (ms) await cleanup(ms.dir)
    if (small) await cleanup(small.dir)
  })

  /** A recipient no other message has, to find a message in the sink. */
  const recipient = (label: string) => `${label}-${++serial}@example.net`

  /** Resolve with the sink's messages for each recipient once all have one (or throw). */
  async function waitDelivered(rcpts: readonly string[], timeoutMs = 30_000): Promise<SinkMessage[]> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const missing = rcpts.filter((r) => !byRecipient.has(r))
      if (missing.length === 0) break
      if (Date.now() > deadline) {
        throw new Error(`not delivered after ${timeoutMs} ms: ${missing.slice(0, 10).join(', ')}`)
      }
      await sleep(25)
    }
    return rcpts.map((r) => {
      const got = byRecipient.get(r) ?? []
      expect(got.length, `deliveries to ${r}`).toBe(1)
      return got[0] as SinkMessage
    })
  }

  /** Send M on a fresh connection to `to` (a fresh recipient); expect 250, delivery, same bytes. */
  async function passesThrough(
    label: string,
    raw: Buffer,
    options: {
      from?: string
      params?: string
      to?: string
      /** The recipient as the sink sees it, when routing normalizes it (an IDN domain). */
      arrivesAs?: string
      slow?: SendOptions['slow']
    } = {},
    target: MailscreenProcess = ms,
  ): Promise<SinkMessage> {
    const to = options.to ?? recipient(label)
    const client = await RawSmtp.open(target.port)
    let result: SendResult
    try {
      result = await client.send({
        from: options.from ?? 'sender@example.org',
        to: [to],
        raw,
        ...(options.params === undefined ? {} : { params: options.params }),
        ...(options.slow === undefined ? {} : { slow: options.slow }),
      })
    } finally {
      await client.close()
    }
    expect(result.final?.text, `${label}: reply after DATA`).toMatch(
      /^250 2\.0\.0 Ok: queued as [0-9A-Za-z]{16}$/,
    )
    const [message] = await waitDelivered([options.arrivesAs ?? to])
    expect(compareDelivered((message as SinkMessage).data, result.content), label).toEqual([])
    return message as SinkMessage
  }

  /** The process is up, answers a new connection with 220, and has logged no error. */
  async function expectAlive(target: MailscreenProcess): Promise<void> {
    expect(target.child.exitCode).toBeNull()
    expect(target.child.signalCode).toBeNull()
    const client = await RawSmtp.open(target.port, false)
    expect(client.greeting?.text).toMatch(/^220 mailscreen\.test ESMTP/)
    await client.close()
    expect(target.logs.filter((l) => l.level >= 50)).toEqual([])
  }

  /**
   * Every file of the instance's directory is where it belongs: the config and the spool at
   * the top, the spool's own directories in it, and in those only queue-ID-named files (plus
   * `<ID>.retry`, and tmp/'s reusable `s<ID>-<n>` slots). With `drained`, no message is left.
   */
  async function expectSpoolTidy(target: MailscreenProcess, drained: boolean): Promise<void> {
    expect((await readdir(target.dir)).sort()).toEqual(['mailscreen.yaml', 'spool'])
    expect((await readdir(target.spoolDir)).sort()).toEqual(
      [...STATES, 'admin', 'mailscreen.pid', 'tmp'].sort(),
    )
    // No administrator's action was taken: the journal is empty.
    expect(await readdir(join(target.spoolDir, 'admin'))).toEqual([])
    const deadline = Date.now() + 30_000
    for (;;) {
      let left = 0
      for (const state of STATES) {
        for (const entry of await readdir(join(target.spoolDir, state), { withFileTypes: true })) {
          expect(entry.isFile(), `${state}/${entry.name} is a file`).toBe(true)
          const id = entry.name.endsWith('.retry') ? entry.name.slice(0, -'.retry'.length) : entry.name
          expect(id, `${state}/${entry.name}`).toMatch(QUEUE_ID)
          if (!entry.name.endsWith('.retry')) left++
        }
      }
      for (const entry of await readdir(join(target.spoolDir, 'tmp'), { withFileTypes: true })) {
        expect(entry.isFile(), `tmp/${entry.name} is a file`).toBe(true)
        expect(entry.name).toMatch(/^(s[0-9A-Za-z]{16}-\d+|[0-9A-Za-z]{16}\.retry)$/)
      }
      if (!drained || left === 0) return
      if (Date.now() > deadline) throw new Error(`${left} message(s) still in the spool`)
      await sleep(50)
    }
  }

  it('bare LF line endings throughout', async () => {
    const lines = [
      'From: Bare <bare@example.org>',
      'To: <to@example.net>',
      'Subject: bare LF only',
      'Date: Mon, 23 Nov 2026 20:00:00 +0000',
      'Message-ID: <bare-lf@example.org>',
      '',
      'first line',
      '.leading dot',
      '.',
      '..',
      '',
      '',
      'a line with a bare CR\r in it',
      'last line',
    ]
    // Ending in a bare LF (sent as CRLF), and ending in no line break at all.
    await passesThrough('bare-lf', Buffer.from(`${lines.join('\n')}\n`))
    await passesThrough('bare-lf-unterminated', Buffer.from(lines.join('\n')))
    // A dot line ended by a bare LF right before the real end of data is content, not the end.
    await passesThrough('bare-lf-dot-last', Buffer.from(`${lines.slice(0, 7).join('\n')}\n.\n`))
    await expectAlive(ms)
  })

  it('NUL bytes in headers and body', async () => {
    const raw = Buffer.from(
      [
        'From: Nul <nul@example.org>',
        'To: <to@example.net>',
        'Subject: nul \0 in the subject',
        'X-Nul: \0\0\0',
        'X-\0Name: value',
        'Date: Mon, 23 Nov 2026 20:00:00 +0000',
        '',
        'body \0 with NUL',
        '\0',
        '\0\0\0\0 and more \0',
        '',
      ].join('\r\n'),
      'latin1',
    )
    expect(raw.includes(0)).toBe(true)
    await passesThrough('nul', raw)
    await expectAlive(ms)
  })

  it('broken MIME boundaries', async () => {
    const head = (type: string) =>
      [
        'From: Mime <mime@example.org>',
        'To: <to@example.net>',
        'Subject: broken MIME',
        'Date: Mon, 23 Nov 2026 20:00:00 +0000',
        'MIME-Version: 1.0',
        `Content-Type: ${type}`,
        '',
      ].join('\r\n')
    const messages: Record<string, string> = {
      // Declared, used, never closed.
      'never-closed': `${head('multipart/mixed; boundary="b1"')}\r\npreamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\npart one\r\n--b1\r\nContent-Type: text/plain\r\n\r\npart two, no closing delimiter\r\n`,
      // A nested multipart whose Content-Type has no boundary parameter.
      'nested-no-boundary': `${head('multipart/mixed; boundary="outer"')}\r\n--outer\r\nContent-Type: multipart/alternative\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\ninner text\r\n--inner--\r\n--outer\r\nContent-Type: text/plain\r\n\r\nafter\r\n--outer--\r\n`,
      // A nested multipart whose boundary never appears, inside an outer one never closed.
      'nested-missing': `${head('multipart/mixed; boundary="o"')}\r\n--o\r\nContent-Type: multipart/related; boundary="missing"\r\n\r\nno delimiter here\r\n--o\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA!!!not base64===\r\n`,
      // Declared, never used at all; and an empty boundary.
      'never-used': `${head('multipart/mixed; boundary="nothere"')}\r\njust text\r\n`,
      'empty-boundary': `${head('multipart/mixed; boundary=""')}\r\n--\r\n\r\nx\r\n----\r\n`,
      // A closing delimiter before any opening one, and a delimiter line 2000 characters long.
      'close-first': `${head(`multipart/mixed; boundary="${'z'.repeat(2000)}"`)}\r\n--${'z'.repeat(2000)}--\r\n--${'z'.repeat(2000)}\r\n\r\nafter the end\r\n`,
    }
    for (const [label, text] of Object.entries(messages)) await passesThrough(label, Buffer.from(text))
    await expectAlive(ms)
  })

  it('5,000 MIME parts', async () => {
    const parts: string[] = []
    for (let i = 0; i < 5000; i++) {
      parts.push(`--many\r\nContent-Type: text/plain; name="p${i}.txt"\r\n\r\npart ${i}\r\n`)
    }
    const raw = Buffer.from(
      [
        'From: Many <many@example.org>',
        'To: <to@example.net>',
        'Subject: 5000 parts',
        'Date: Mon, 23 Nov 2026 20:00:00 +0000',
        'Message-ID: <many@example.org>',
        'MIME-Version: 1.0',
        'Content-Type: multipart/mixed; boundary="many"',
        '',
        `${parts.join('')}--many--`,
        '',
      ].join('\r\n'),
    )
    await passesThrough('many-parts', raw)
    await expectAlive(ms)
  }, 60_000)

  it('no headers at all', async () => {
    // Starting with the empty line (an empty header section), and without any empty line.
    await passesThrough('headerless-blank', Buffer.from('\r\nbody only\r\nsecond: line\r\n'))
    await passesThrough('headerless-noblank', Buffer.from('body only, no header\r\nnot: a header either\r\n'))
    await passesThrough('headerless-later-blank', Buffer.from('text first\r\n\r\nthen a blank line\r\n'))
    // And an empty message: DATA, then the dot straight away.
    await passesThrough('empty', Buffer.alloc(0))
    await expectAlive(ms)
  })

  it('8-bit headers, with and without SMTPUTF8', async () => {
    const probe = await RawSmtp.open(ms.port)
    expect(probe.ehlo?.text).toMatch(/^250-SMTPUTF8$/m)
    expect(probe.ehlo?.text).toMatch(/^250-8BITMIME$/m)
    // A UTF-8 address without SMTPUTF8 is refused (RFC 6531), with a clear 553.
    const refused = await probe.command('MAIL FROM:<jürgen@example.org>')
    expect(refused.text).toMatch(/^553 5\.6\.7 /)
    await probe.close()

    const utf8 = (subject: string) =>
      Buffer.from(
        [
          'From: Jürgen Müller <jürgen@bücher.example>',
          'To: <δοκιμή@example.net>',
          `Subject: ${subject}`,
          'Date: Mon, 23 Nov 2026 20:00:00 +0000',
          '',
          'Grüße, 日本語, ελληνικά',
          '',
        ].join('\r\n'),
        'utf8',
      )
    // SMTPUTF8 and BODY=8BITMIME, with UTF-8 addresses in the envelope too.
    // Domains go on in A-labels, the form routing judged them in; local parts as they were.
    const local = `δοκιμή-${++serial}`
    const arrivesAs = `${local}@xn--hxajbheg2az3al.example`
    const got = await passesThrough(
      'smtputf8',
      utf8('Grüße aus Köln'),
      {
        from: 'jürgen@bücher.example',
        to: `${local}@παράδειγμα.example`,
        arrivesAs,
        params: 'BODY=8BITMIME SMTPUTF8',
      },
      ms,
    )
    expect(got.rcptTo).toEqual([arrivesAs])
    expect(got.mailFrom).toBe('jürgen@xn--bcher-kva.example')
    // Raw UTF-8 in the header, ASCII envelope, no SMTPUTF8, no BODY=: only addresses are checked.
    await passesThrough('8bit-plain', utf8('ünïcödé without SMTPUTF8'))
    // Latin-1 bytes (not UTF-8) in the header, declared 8BITMIME.
    const latin1 = Buffer.from(
      'From: x@example.org\r\nSubject: caf\xe9 cr\xe8me\r\n\r\nna\xefve\r\n',
      'latin1',
    )
    await passesThrough('latin1', latin1, { params: 'BODY=8BITMIME' })
    await expectAlive(ms)
  })

  it('100 KB single lines', async () => {
    const long = 'x'.repeat(100 * 1024)
    const headers = 'From: Long <long@example.org>\r\nTo: <to@example.net>\r\nSubject: long line\r\n'
    await passesThrough('long-body-line', Buffer.from(`${headers}\r\n${long}\r\nshort\r\n`))
    await passesThrough('long-header-line', Buffer.from(`${headers}X-Long: ${long}\r\n\r\nbody\r\n`))
    // The whole message one line with no line break at all.
    await passesThrough('one-line', Buffer.from(`X-Only: ${long}`))
    await expectAlive(ms)
  })

  it('refuses a message over smtp.maxSize with 552 5.3.4, and the session stays usable', async () => {
    const big = (label: string, size: number): Buffer => {
      const head = Buffer.from(`From: a@example.org\r\nSubject: ${label}\r\n\r\n`)
      const line = `${'y'.repeat(98)}\r\n`
      const body = Buffer.from(line.repeat(Math.ceil(size / line.length))).subarray(0, size - head.length - 2)
      const raw = Buffer.concat([head, body, CRLF])
      expect(raw.length).toBe(size)
      return raw
    }
    const refusedTo: string[] = []
    const client = await RawSmtp.open(small.port)
    expect(client.ehlo?.text).toMatch(new RegExp(`^250-SIZE ${MB}$`, 'm'))
    try {
      // An honest SIZE= over the limit: refused at MAIL FROM.
      let r = await client.send({
        from: 'a@example.org',
        to: [recipient('declared')],
        params: 'SIZE=2000000',
        raw: big('x', 2000),
      })
      expectTooBig(r.mail)
      // No SIZE=, 2 MB of data: refused after the data.
      let to = recipient('undeclared')
      refusedTo.push(to)
      r = await client.send({ from: 'a@example.org', to: [to], raw: big('undeclared', 2 * MB) })
      expect(r.data?.code).toBe(354)
      expectTooBig(r.final)
      // A lying SIZE=100 with 2 MB of data: refused after the data all the same.
      to = recipient('lying')
      refusedTo.push(to)
      r = await client.send({
        from: 'a@example.org',
        to: [to],
        params: 'SIZE=100',
        raw: big('lying', 2 * MB),
      })
      expect(r.mail.code).toBe(250)
      expectTooBig(r.final)
      // One byte over: refused. Exactly the limit: taken.
      to = recipient('over-by-one')
      refusedTo.push(to)
      r = await client.send({ from: 'a@example.org', to: [to], raw: big('over-by-one', MB + 1) })
      expectTooBig(r.final)
      const exact = big('exact', MB)
      to = recipient('exact')
      r = await client.send({ from: 'a@example.org', to: [to], params: `SIZE=${MB}`, raw: exact })
      expect(r.final?.code).toBe(250)
      const [atLimit] = await waitDelivered([to])
      expect(compareDelivered((atLimit as SinkMessage).data, r.content)).toEqual([])
      // The same session still carries a normal message.
      to = recipient('after')
      r = await client.send({
        from: 'a@example.org',
        to: [to],
        raw: Buffer.from('From: a@example.org\r\nSubject: after\r\n\r\nstill here\r\n'),
      })
      expect(r.final?.code).toBe(250)
      const [after] = await waitDelivered([to])
      expect(compareDelivered((after as SinkMessage).data, r.content)).toEqual([])
    } finally {
      await client.close()
    }
    for (const to of refusedTo) expect(byRecipient.has(to), `${to} was refused, not delivered`).toBe(false)
    expect(small.logs.filter((l) => l.msg === 'rejected')).toHaveLength(3)
    await expectAlive(small)
    await expectSpoolTidy(small, true)
  }, 60_000)

  it('addresses with paths in them never leave the spool', async () => {
    const raw = (label: string) =>
      Buffer.from(
        `From: p@example.org\r\nSubject: ${label}\r\nDate: Mon, 23 Nov 2026 20:00:00 +0000\r\n\r\n${label}\r\n`,
      )
    // `delivered`: the recipient as it goes on (a source route is accepted and ignored, RFC 5321 4.1.2).
    const tries: Array<{ from: string; to: string; delivered?: string }> = [
      { from: 'sender@example.org', to: '../../etc/passwd@x' },
      { from: 'sender@example.org', to: '"a/b"@example.org' },
      { from: 'sender@example.org', to: '"../../../../../../tmp/mailscreen-evil"@example.org' },
      { from: 'sender@example.org', to: '/etc/passwd' },
      { from: 'sender@example.org', to: '..' },
      {
        from: 'sender@example.org',
        to: '@a.example,@b.example:../../route@example.org',
        delivered: '../../route@example.org',
      },
      { from: '../../../etc/shadow@x', to: 'plain-path-sender@example.net' },
      { from: '"/dev/null"@example.org', to: 'quoted-path-sender@example.net' },
      // Angle brackets inside a quoted local part: valid (RFC 5321 4.1.2) and accepted, so
      // they must go on too, as recipient and as sender.
      { from: 'sender@example.org', to: '"a<b>c"@example.org' },
      { from: '"s<x>"@example.org', to: 'quoted-angle-sender@example.net' },
    ]
    const outcomes: string[] = []
    for (const { from, to, delivered = to } of tries) {
      const client = await RawSmtp.open(ms.port)
      let result: SendResult
      try {
        result = await client.send({ from, to: [to], raw: raw(to) })
      } finally {
        await client.close()
      }
      const last = result.final ?? result.rcpt[0] ?? result.mail
      outcomes.push(`${from} -> ${to}: ${last.text}`)
      if (last.code >= 500 && last.code < 600) continue // a clear refusal is fine
      expect(last.text, `${from} -> ${to}`).toMatch(/^250 2\.0\.0 Ok: queued as /)
      const [got] = await waitDelivered([delivered])
      expect(got?.rcptTo).toEqual([delivered])
      expect(got?.mailFrom).toBe(from)
      expect(compareDelivered((got as SinkMessage).data, result.content)).toEqual([])
    }
    // Control characters in a path are refused outright.
    const client = await RawSmtp.open(ms.port)
    expect((await client.command('MAIL FROM:<sender@example.org>')).code).toBe(250)
    expect((await client.command('RCPT TO:<a\0b@example.org>')).text).toMatch(/^501 5\.1\.3 /)
    expect((await client.command('RCPT TO:<a\tb@example.org>')).text).toMatch(/^501 5\.1\.3 /)
    await client.close()
    console.info(`path addresses:\n${outcomes.join('\n')}`)
    expect(existsSync('/tmp/mailscreen-evil')).toBe(false)
    await expectSpoolTidy(ms, true)
    await expectAlive(ms)
  }, 60_000)

  it('a slow client that sends DATA in small chunks with pauses', async () => {
    const lines = [
      'From: Slow <slow@example.org>',
      'Subject: slow',
      'Date: Mon, 23 Nov 2026 20:00:00 +0000',
      '',
    ]
    for (let i = 0; i < 40; i++) lines.push(i % 7 === 0 ? `.dot line ${i}` : `line ${i} ${'s'.repeat(i)}`)
    lines.push('.', '..', '')
    await passesThrough('slow', Buffer.from(lines.join('\r\n')), { slow: { chunk: 13, pauseMs: 10 } })
    await expectAlive(ms)
  }, 60_000)

  it(
    'passes every message of the shared corpus through with its body unchanged',
    async () => {
      const manifest = join(CORPUS_DIR, 'MANIFEST.tsv')
      expect(existsSync(manifest), `the shared corpus is missing: ${manifest}`).toBe(true)
      const files = (await readFile(manifest, 'utf8'))
        .split('\n')
        .slice(1)
        .filter((line) => line.trim() !== '')
        .map((line) => line.split('\t')[0] as string)
      expect(files).toHaveLength(346)
      expect(files.filter((f) => f.startsWith('huge/'))).toHaveLength(2)

      const started = Date.now()
      interface Outcome {
        readonly file: string
        readonly to: string
        readonly reply: string
        readonly content: Buffer
      }
      const outcomes: Outcome[] = []
      let next = 0
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          let client = await RawSmtp.open(ms.port)
          try {
            for (let i = next++; i < files.length; i = next++) {
              const file = files[i] as string
              const raw = await readFile(join(CORPUS_DIR, file))
              const to = recipient(`corpus${i}`)
              const eightBit = raw.some((b) => b >= 0x80)
              const result = await client.send({
                from: 'corpus@example.org',
                to: [to],
                raw,
                ...(eightBit ? { params: 'BODY=8BITMIME' } : {}),
              })
              const last = result.final ?? result.data ?? result.rcpt[0] ?? result.mail
              outcomes.push({ file, to, reply: last.text, content: result.content })
              if (last.code !== 250) {
                // Whatever went wrong, go on with the rest on a new session.
                await client.close()
                client = await RawSmtp.open(ms.port)
              }
            }
          } finally {
            await client.close()
          }
        }),
      )
      const sentMs = Date.now() - started
      expect(outcomes).toHaveLength(files.length)
      const accepted = outcomes.filter((o) => /^250 2\.0\.0 Ok: queued as [0-9A-Za-z]{16}$/.test(o.reply))
      // None is over smtp.maxSize and mailscreen judges no content at SMTP time: all are taken.
      expect(
        outcomes.filter((o) => !accepted.includes(o)).map((o) => `${o.file}: ${o.reply}`),
        'refused corpus messages',
      ).toEqual([])

      // More Received: fields than routing.hopLimit (30 by default) is a mail loop: such a
      // message is bounced to its sender with 5.4.6, never delivered (the corpus has one with
      // 100,000 of them). Every other one is delivered.
      const loops = accepted.filter((o) => receivedCount(o.content) > 30)
      expect(loops.map((o) => o.file)).toContain('huge/gen__huge-many-headers-100000.eml')
      const delivered = accepted.filter((o) => !loops.includes(o))
      await waitDelivered(
        delivered.map((o) => o.to),
        90_000,
      )
      const problems: string[] = []
      for (const o of delivered) {
        const got = byRecipient.get(o.to) ?? []
        if (got.length !== 1) problems.push(`${o.file}: delivered ${got.length} times`)
        for (const p of compareDelivered((got[0] as SinkMessage).data, o.content))
          problems.push(`${o.file}: ${p}`)
      }
      expect(problems).toEqual([])
      const deliveredCount = delivered.filter((o) => byRecipient.has(o.to)).length
      expect(deliveredCount).toBe(delivered.length)
      const deadline = Date.now() + 30_000
      const bounceFor = (o: Outcome) =>
        (byRecipient.get('corpus@example.org') ?? []).find((m) =>
          m.data.toString('latin1').includes(`Final-Recipient: rfc822; ${o.to}`),
        )
      while (loops.some((o) => !bounceFor(o)) && Date.now() < deadline) await sleep(50)
      for (const o of loops) {
        expect(byRecipient.has(o.to), `${o.file} was delivered despite its hop count`).toBe(false)
        const dsn = bounceFor(o)?.data.toString('latin1') ?? ''
        expect(dsn, `${o.file}: a DSN to the sender`).toMatch(/Status: 5\.4\.6/)
      }
      console.info(
        `corpus: ${files.length} sent in ${sentMs} ms, ${accepted.length} accepted, ${deliveredCount} delivered, ${loops.length} bounced as loops, in ${Date.now() - started} ms`,
      )
      await expectSpoolTidy(ms, true)
      await expectAlive(ms)
    },
    5 * 60_000,
  )
})
