/**
 * mailscreen as an after-queue content filter behind a real Postfix:
 *
 *   client → Postfix smtpd → content_filter (scan, XFORWARD) → mailscreen
 *          → Postfix re-injection smtpd → relayhost → sink
 *
 * 200 distinct messages (some 8-bit UTF-8, some large, many with lines that start with a dot)
 * must arrive exactly once (mailscreen hands them back to Postfix as BDAT), scanned, with their bodies byte for byte; mailscreen must report the
 * original client as Postfix forwarded it; both queues must end empty. And a peer outside
 * `smtp.trusted` is refused with 554.
 */
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { afterAll, describe, expect, it } from 'vitest'
import { type Sink, type SinkMessage, startSink } from '../../src/bench/sink.js'
import { cleanup, type LogLine, type MailscreenProcess, startMailscreen } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'
import { type PostfixInstance, startPostfix } from '../support/postfix.js'
import { RawSmtpClient } from '../support/raw-smtp.js'

const MESSAGES = 200
const CONNECTIONS = 8
/** The EHLO name our client gives Postfix; Postfix itself is mta.mailscreen.test. */
const CLIENT_HELO = 'client-host.example.test'
const RUN = randomBytes(4).toString('hex')
const SENDER = 'alice@example.org'

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

async function waitUntil(cond: () => boolean | Promise<boolean>, what: string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(100)
  }
}

interface TestMessage {
  readonly n: number
  readonly tag: string
  readonly rcpt: string
  readonly eightBit: boolean
  /** The message as the client means it (headers, blank line, body; CRLF line ends). */
  readonly raw: Buffer
  /** The bytes after the header/body separator. */
  readonly body: Buffer
}

const UTF8_LINES = [
  'Grüße aus Köln – naïve café, œuvre, smørrebrød.',
  'Ελληνικά: καλημέρα κόσμε. Русский: съешь же ещё этих мягких французских булок.',
  '日本語のテキスト、中文文本、한국어 텍스트 ☃ ✓ 🙂',
  '.Ünïcödé line that starts with a dot',
]

/** A deterministic, varied body for message `n`; every line is well under 990 bytes. */
function bodyLines(n: number, eightBit: boolean): string[] {
  const lines: string[] = []
  // Dot lines at the very start (right after the separator) in some messages.
  if (n % 4 === 0) lines.push('.starts the body with a dot')
  if (n % 7 === 0) lines.push('.')
  lines.push(`Message ${n} of run ${RUN}.`)
  const count = n % 25 === 0 ? 1500 : 3 + ((n * 37) % 60)
  for (let i = 0; i < count; i++) {
    if (i % 11 === 5) lines.push(`.line ${i} starts with a dot`)
    else if (i % 17 === 3) lines.push('..two dots, both must survive')
    else if (i % 23 === 9) lines.push('.')
    else if (i % 19 === 0) lines.push('')
    else if (eightBit && i % 5 === 1) lines.push(UTF8_LINES[(n + i) % UTF8_LINES.length] as string)
    else lines.push(`${n}:${i} ${'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(1 + ((n + i) % 7))}`)
  }
  // And at the very end, just before the final CRLF.
  if (n % 3 === 0) lines.push('.last line starts with a dot')
  if (n % 5 === 0) lines.push('.')
  return lines
}

function buildMessage(n: number): TestMessage {
  const eightBit = n % 3 !== 1
  const tag = `${RUN}-${n}`
  const rcpt = `bob${n}@example.net`
  const headers = [
    'From: Alice <alice@example.org>',
    `To: Bob <${rcpt}>`,
    `Subject: content filter ${n}${eightBit ? ' (8bit body)' : ''}`,
    'Date: Mon, 23 Nov 2026 20:00:00 +0000',
    `Message-ID: <cf-${tag}@example.org>`,
    `X-Test-Id: ${tag}`,
    'MIME-Version: 1.0',
    `Content-Type: text/plain; charset=${eightBit ? 'utf-8' : 'us-ascii'}`,
    `Content-Transfer-Encoding: ${eightBit ? '8bit' : '7bit'}`,
  ]
  const body = Buffer.from(`${bodyLines(n, eightBit).join('\r\n')}\r\n`, 'utf8')
  const raw = Buffer.concat([Buffer.from(`${headers.join('\r\n')}\r\n\r\n`, 'utf8'), body])
  return { n, tag, rcpt, eightBit, raw, body }
}

/** RFC 5321 4.5.2: a dot at the start of a line is doubled on the wire. */
function dotStuff(raw: Buffer): Buffer {
  // latin1 maps bytes 1:1, so 8-bit bytes survive the round trip.
  return Buffer.from(raw.toString('latin1').replace(/(^|\r\n)\./g, '$1..'), 'latin1')
}

function splitMessage(data: Buffer): { header: string; body: Buffer } {
  const end = data.indexOf('\r\n\r\n')
  if (end === -1) return { header: data.toString('latin1'), body: Buffer.alloc(0) }
  return { header: data.subarray(0, end + 2).toString('utf8'), body: data.subarray(end + 4) }
}

/** Header block with folded lines joined (foldHeader folds with CRLF TAB at a single space). */
function unfold(header: string): string {
  return header.replace(/\r\n[ \t]+/g, ' ')
}

/** A plain sequential SMTP client: we choose the EHLO name, BODY= and the exact bytes. */
class SmtpClient {
  private buffer = ''
  private lines: string[] = []
  private waiter: (() => void) | undefined
  private closed: Error | undefined

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => {
      this.buffer += chunk
      let eol = this.buffer.indexOf('\r\n')
      while (eol !== -1) {
        this.lines.push(this.buffer.slice(0, eol))
        this.buffer = this.buffer.slice(eol + 2)
        eol = this.buffer.indexOf('\r\n')
      }
      this.wake()
    })
    socket.on('error', (err) => {
      this.closed ??= err
      this.wake()
    })
    socket.on('close', () => {
      this.closed ??= new Error('connection closed')
      this.wake()
    })
  }

  static async open(port: number, helo: string): Promise<SmtpClient> {
    const client = new SmtpClient(connect({ host: '127.0.0.1', port }))
    await client.expect(220)
    await client.command(`EHLO ${helo}`, 250)
    return client
  }

  private wake(): void {
    const waiter = this.waiter
    this.waiter = undefined
    waiter?.()
  }

  /** The next complete (possibly multi-line) reply, as its last line. */
  private async reply(): Promise<string> {
    for (;;) {
      const at = this.lines.findIndex((line) => line[3] !== '-')
      if (at !== -1) return this.lines.splice(0, at + 1)[at] as string
      if (this.closed) throw this.closed
      await new Promise<void>((resolve) => {
        this.waiter = resolve
      })
    }
  }

  private async expect(code: number): Promise<string> {
    const line = await this.reply()
    if (!line.startsWith(String(code))) throw new Error(`expected ${code}, got: ${line}`)
    return line
  }

  async command(line: string, code: number): Promise<string> {
    this.socket.write(`${line}\r\n`)
    return this.expect(code)
  }

  /** One transaction; resolves with the final reply to the data. */
  async send(from: string, to: string, raw: Buffer, eightBit: boolean): Promise<string> {
    await this.command(`MAIL FROM:<${from}>${eightBit ? ' BODY=8BITMIME' : ''}`, 250)
    await this.command(`RCPT TO:<${to}>`, 250)
    await this.command('DATA', 354)
    this.socket.write(dotStuff(raw))
    this.socket.write('.\r\n')
    return this.expect(250)
  }

  async quit(): Promise<void> {
    await this.command('QUIT', 221).catch(() => undefined)
    this.socket.destroy()
  }
}

/** The first line a server sends to a connection from `localAddress`; whether it hung up on its own. */
function greeting(port: number, localAddress: string): Promise<{ line: string; closedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress })
    let text = ''
    let quitting = false
    socket.setEncoding('latin1')
    socket.setTimeout(10_000, () => {
      socket.destroy()
      reject(new Error(`no answer from 127.0.0.1:${port} to ${localAddress}; got ${JSON.stringify(text)}`))
    })
    socket.on('error', reject)
    socket.on('data', (chunk: string) => {
      text += chunk
      // An accepted client: say goodbye ourselves.
      if (!quitting && text.startsWith('220') && text.includes('\r\n')) {
        quitting = true
        socket.write('QUIT\r\n')
      }
    })
    socket.on('close', () => resolve({ line: text.split('\r\n')[0] ?? '', closedByServer: !quitting }))
  })
}

describe('mailscreen behind a real Postfix (after-queue content_filter)', () => {
  const cleanups: Array<() => Promise<unknown>> = []
  afterAll(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => undefined)
  })

  it('filters 200 messages: each delivered once, scanned, body intact, XFORWARD honoured, queues empty', {
    timeout: 100_000,
  }, async () => {
    const sink: Sink = await startSink()
    cleanups.push(() => sink.close())
    const reinjectPort = await freePort()
    const filterPort = await freePort()
    const ms: MailscreenProcess = await startMailscreen(filterPort, {
      delivery: { relay: `127.0.0.1:${reinjectPort}` },
    })
    cleanups.push(async () => {
      await ms.stop()
      await cleanup(ms.dir)
    })
    const pf: PostfixInstance = await startPostfix({
      smtpPort: await freePort(),
      reinjectPort,
      contentFilter: { host: '127.0.0.1', port: filterPort },
      relay: { host: '127.0.0.1', port: sink.port },
    })
    cleanups.push(() => pf.stop())

    const messages = Array.from({ length: MESSAGES }, (_, n) => buildMessage(n))
    const byTag = new Map(messages.map((m) => [m.tag, m]))
    expect(messages.filter((m) => m.eightBit).length).toBeGreaterThan(100)
    expect(messages.some((m) => m.body.length > 50_000)).toBe(true)
    // The dot-stuffing cases are really there: a lone dot, a dot first and last in the body.
    expect(messages.filter((m) => m.body.includes('\r\n.\r\n')).length).toBeGreaterThan(100)
    expect(messages.filter((m) => m.body.subarray(0, 1).toString() === '.').length).toBeGreaterThan(40)
    expect(
      messages.filter((m) => /\r\n\.[^\r]*\r\n$/.test(m.body.toString('latin1'))).length,
    ).toBeGreaterThan(40)

    // Send over a few parallel connections, each message in its own transaction.
    const started = Date.now()
    let next = 0
    const acks: string[] = []
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async () => {
        const client = await SmtpClient.open(pf.smtpPort, CLIENT_HELO)
        try {
          for (let i = next++; i < MESSAGES; i = next++) {
            const m = messages[i] as TestMessage
            acks.push(await client.send(SENDER, m.rcpt, m.raw, m.eightBit))
          }
        } finally {
          await client.quit()
        }
      }),
    )
    expect(acks).toHaveLength(MESSAGES)
    for (const ack of acks) expect(ack).toMatch(/^250 2\.0\.0 Ok: queued as [0-9A-Za-z]+$/)

    await sink.waitFor(MESSAGES, 60_000)
    // Anything sent twice would show up shortly after.
    await sleep(1500)
    const elapsed = Date.now() - started

    // Exactly once each, matched by X-Test-Id.
    const seen = new Map<string, SinkMessage[]>()
    for (const msg of sink.messages) {
      const id = /^X-Test-Id: (\S+)\r$/m.exec(splitMessage(msg.data).header)?.[1]
      expect(id, 'every delivered message carries its X-Test-Id').toBeDefined()
      if (id === undefined) continue
      seen.set(id, [...(seen.get(id) ?? []), msg])
    }
    expect(sink.messages).toHaveLength(MESSAGES)
    expect([...seen.keys()].sort()).toEqual([...byTag.keys()].sort())
    for (const [id, copies] of seen) expect(copies, `copies of ${id}`).toHaveLength(1)

    // mailscreen's log: one `received` per message, with the client Postfix forwarded.
    const received = ms.logs.filter((l) => l.msg === 'received')
    expect(received).toHaveLength(MESSAGES)
    for (const line of received) {
      expect(line.client, 'XFORWARD ADDR').toBe('127.0.0.1')
      expect(line.helo, 'XFORWARD HELO').toBe(CLIENT_HELO)
      expect(line.helo).not.toBe(pf.hostname)
      expect(line.from).toBe(SENDER)
      expect(line.mtaQueueId, 'XFORWARD IDENT').toMatch(/^[0-9A-Za-z]+$/)
    }
    const receivedQids = new Set(received.map((l) => l.qid as string))
    expect(receivedQids.size).toBe(MESSAGES)
    expect(new Set(received.map((l) => l.mtaQueueId)).size).toBe(MESSAGES)

    // Every message mailscreen received was delivered (to Postfix's re-injection port).
    const deliveredQids = () => new Set(ms.logs.filter((l) => l.msg === 'delivered').map((l) => l.qid))
    await waitUntil(
      () => [...receivedQids].every((qid) => deliveredQids().has(qid)),
      'a delivered line for every received queue ID',
      15_000,
    )
    const delivered = ms.logs.filter((l): l is LogLine & { relay: string } => l.msg === 'delivered')
    expect(delivered).toHaveLength(MESSAGES)
    for (const line of delivered) expect(line.relay).toContain(String(reinjectPort))
    // Postfix's re-injection smtpd offers PIPELINING and CHUNKING, so mailscreen delivered these
    // as BDAT LAST (src/delivery/smtp-client.ts): the bodies checked below went that way.
    const ehlo = await RawSmtpClient.open(reinjectPort)
    try {
      expect(await ehlo.next()).toMatch(/^220 /)
      const capabilities = await ehlo.command('EHLO probe.test')
      expect(capabilities).toMatch(/^250-PIPELINING$/m)
      expect(capabilities).toMatch(/^250[- ]CHUNKING$/m)
    } finally {
      ehlo.socket.destroy()
    }

    for (const [tag, [msg]] of seen) {
      const sent = byTag.get(tag) as TestMessage
      if (!msg) continue
      expect(msg.mailFrom).toBe(SENDER)
      expect(msg.rcptTo).toEqual([sent.rcpt])
      const { header, body } = splitMessage(msg.data)
      const fields = unfold(header)
      expect(fields, `${tag}: X-mailscreen-Scanned`).toMatch(
        /^X-mailscreen-Scanned: mailscreen on mailscreen\.test \(id [0-9A-Za-z]{16}\)\r$/m,
      )
      expect(fields, `${tag}: X-mailscreen-Verdict`).toMatch(/^X-mailscreen-Verdict: clean, score=\S+ /m)
      const ours = new RegExp(
        `^Received: from ${CLIENT_HELO.replace(/\./g, '\\.')} \\((?:\\S+ )?\\[127\\.0\\.0\\.1\\]\\) ` +
          `by mailscreen\\.test \\(mailscreen\\) with ESMTP id ([0-9A-Za-z]{16}) for <${sent.rcpt}>; `,
        'm',
      ).exec(fields)
      expect(ours, `${tag}: mailscreen's Received: header\n${fields}`).not.toBeNull()
      const qid = ours?.[1] as string
      expect(receivedQids.has(qid), `${tag}: its queue ID ${qid} was logged as received`).toBe(true)
      expect(fields).toContain(`(id ${qid})`)
      // Postfix in front, mailscreen, Postfix re-injection.
      expect(fields.match(/^Received: /gm)).toHaveLength(3)
      // The body byte for byte; the original header block unchanged below the added fields.
      expect(body.equals(sent.body), `${tag}: body bytes (8bit=${sent.eightBit})`).toBe(true)
      expect(msg.data.subarray(msg.data.length - sent.raw.length).equals(sent.raw), `${tag}: suffix`).toBe(
        true,
      )
    }

    // Postfix's queue drains completely (the last removals may trail the sink by a moment).
    await waitUntil(async () => (await pf.mailq()).length === 0, "Postfix's queue to be empty", 15_000)
    expect(await pf.mailq()).toEqual([])
    const list = await ms.cli(['queue', 'list', '--json'])
    expect(list.code).toBe(0)
    expect(JSON.parse(list.stdout)).toEqual([])
    console.log(`content-filter: ${MESSAGES} messages through Postfix + mailscreen in ${elapsed} ms`)
  })

  it('refuses a client outside smtp.trusted with 554 and greets a trusted one', async () => {
    const ms = await startMailscreen(await freePort(), {
      smtp: { trusted: ['127.0.0.2/32'] },
      delivery: { relay: `127.0.0.1:${await freePort()}` },
    })
    cleanups.push(async () => {
      await ms.stop()
      await cleanup(ms.dir)
    })
    const refused = await greeting(ms.port, '127.0.0.1')
    expect(refused.line).toMatch(/^554 5\.7\.1 .*127\.0\.0\.1 is not a trusted MTA/)
    expect(refused.closedByServer).toBe(true)
    await ms.waitForLog((l) => l.msg === 'connection refused: not in smtp.trusted' && l.peer === '127.0.0.1')

    const accepted = await greeting(ms.port, '127.0.0.2')
    expect(accepted.line).toMatch(/^220 mailscreen\.test ESMTP/)
    expect(accepted.closedByServer).toBe(false)
  })
})
