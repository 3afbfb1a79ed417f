/**
 * Mail for integration tests: messages to send, sending them to a running mailscreen, reading
 * what the next hop (the bench sink) received, and looking into the instance's spool and CLI.
 */
import { readdir } from 'node:fs/promises'
import net from 'node:net'
import { join } from 'node:path'
import { expect, onTestFinished } from 'vitest'
import { BenchClient } from '../../src/bench/client.js'
import { type Sink, type SinkMessage, startSink } from '../../src/bench/sink.js'
import { type MailscreenProcess, startMailscreen, stopAll } from './mailscreen.js'
import { freePort } from './ports.js'

export { CORPUS_DIR } from './corpus.js'

/** Resolve after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/**
 * For the running test: a fresh sink and a mailscreen relaying to it (`config` merged over
 * that), both stopped and removed when the test ends.
 */
export async function startFilter(
  config: Record<string, unknown> = {},
): Promise<{ ms: MailscreenProcess; sink: Sink }> {
  const sink = await startSink()
  let ms: MailscreenProcess | undefined
  onTestFinished(() => stopAll(ms, sink))
  ms = await startMailscreen(await freePort(), {
    ...config,
    delivery: { relay: `127.0.0.1:${sink.port}`, ...(config.delivery as object) },
  })
  return { ms, sink }
}

// ---------------------------------------------------------------------------------------------
// Messages

/** A plain-text message `<tag@example.org>` from a@example.org to b@example.net, CRLF throughout. */
export function textMessage({
  tag,
  subject = tag,
  from = 'a@example.org',
  to = 'b@example.net',
  date = true,
  body = 'hello',
}: {
  readonly tag: string
  readonly subject?: string
  readonly from?: string
  readonly to?: string
  /** Give the message a Date field (a fixed one). */
  readonly date?: boolean
  readonly body?: string
}): Buffer {
  return Buffer.from(
    [
      `From: ${from}`,
      `To: ${to}`,
      `Subject: ${subject}`,
      ...(date ? ['Date: Mon, 23 Nov 2026 20:00:00 +0000'] : []),
      `Message-ID: <${tag}@example.org>`,
      '',
      body,
      '',
    ].join('\r\n'),
  )
}

/** A plain business mail (no spam traits at all) with this Message-ID, CRLF throughout. */
export function businessMail(messageId: string): Buffer {
  return Buffer.from(
    [
      'Received: from mail.example.org (mail.example.org [192.0.2.1])',
      '\tby mx.example.net (Postfix) with ESMTPS id 4AB12C0042',
      '\tfor <orders@example.net>; Tue, 5 Mar 2024 09:14:02 +0100 (CET)',
      'From: Anna Berg <anna.berg@example.org>',
      'To: Orders <orders@example.net>',
      'Subject: Re: delivery schedule for purchase order 4711',
      'Date: Tue, 5 Mar 2024 09:13:58 +0100',
      `Message-ID: ${messageId}`,
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
}

/** A file as an MTA passes it on: CRLF line ends, ending in CRLF. */
export function crlfMessage(raw: Buffer): Buffer {
  const crlf = raw.toString('latin1').replace(/\r?\n/g, '\r\n')
  return Buffer.from(crlf.endsWith('\r\n') ? crlf : `${crlf}\r\n`, 'latin1')
}

/** Base64 in lines of 76 characters, CRLF between them. */
export function base64Lines(data: Buffer): string {
  return (data.toString('base64').match(/.{1,76}/g) ?? []).join('\r\n')
}

// ---------------------------------------------------------------------------------------------
// Sending

/** Who a test message is from and to; `xforward` attributes (e.g. `{ ADDR: '192.0.2.7' }`) name the client. */
export interface SmtpEnvelope {
  readonly from?: string
  readonly to?: readonly string[]
  readonly xforward?: Readonly<Record<string, string>>
}

/** The queue ID in mailscreen's `250 2.0.0 Ok: queued as <ID>` reply; throws when there is none. */
export function queuedId(reply: string): string {
  const id = /queued as ([0-9A-Za-z]{16})\b/.exec(reply)?.[1]
  if (id === undefined) throw new Error(`no queue ID in ${reply}`)
  return id
}

/** The DATA bytes for CRLF content: a dot at the start of a line doubled. */
function dotStuff(content: Buffer): Buffer {
  return Buffer.from(content.toString('latin1').replace(/^\./gm, '..'), 'latin1')
}

/**
 * Send CRLF messages (default from a@example.org to b@example.net) to mailscreen on 127.0.0.1:`port`
 * in one SMTP session; resolves with their queue IDs. Without XFORWARD through the pipelining
 * BenchClient; with it (which BenchClient cannot send) one command at a time.
 */
export async function sendAll(
  port: number,
  messages: readonly Buffer[],
  { from = 'a@example.org', to = ['b@example.net'], xforward }: SmtpEnvelope = {},
): Promise<string[]> {
  if (xforward !== undefined) return sendForwarded(port, messages, from, to, xforward)
  const client = await BenchClient.open('127.0.0.1', port)
  try {
    const ids: string[] = []
    for (const data of messages) ids.push(queuedId(await client.send(from, to, dotStuff(data))))
    return ids
  } finally {
    await client.close()
  }
}

/** `sendAll` for one message: its queue ID. */
export async function send(port: number, data: Buffer, envelope: SmtpEnvelope = {}): Promise<string> {
  const [id] = await sendAll(port, [data], envelope)
  return id as string
}

/** One command at a time, each reply checked for its code; XFORWARD before each MAIL. */
async function sendForwarded(
  port: number,
  messages: readonly Buffer[],
  from: string,
  to: readonly string[],
  xforward: Readonly<Record<string, string>>,
): Promise<string[]> {
  const socket = net.connect({ host: '127.0.0.1', port })
  socket.setEncoding('latin1')
  let buffer = ''
  const finals: string[] = []
  let wake: (() => void) | undefined
  socket.on('data', (chunk: string) => {
    buffer += chunk
    for (let eol = buffer.indexOf('\r\n'); eol !== -1; eol = buffer.indexOf('\r\n')) {
      const line = buffer.slice(0, eol)
      buffer = buffer.slice(eol + 2)
      if (line[3] !== '-') finals.push(line)
    }
    wake?.()
  })
  const closed = new Promise<never>((_, reject) => {
    socket.on('error', reject)
    socket.on('close', () => reject(new Error('connection closed')))
  })
  closed.catch(() => undefined)
  const reply = async (expected: number): Promise<string> => {
    while (finals.length === 0) await Promise.race([new Promise<void>((r) => (wake = r)), closed])
    const line = finals.shift() as string
    if (!line.startsWith(String(expected))) throw new Error(`expected ${expected}, got: ${line}`)
    return line
  }
  const attributes = Object.entries(xforward)
    .map(([name, value]) => `${name}=${value}`)
    .join(' ')
  try {
    await reply(220)
    socket.write('EHLO client.example.test\r\n')
    await reply(250)
    const ids: string[] = []
    for (const data of messages) {
      socket.write(`XFORWARD ${attributes}\r\n`)
      await reply(250)
      socket.write(`MAIL FROM:<${from}>\r\n`)
      await reply(250)
      for (const rcpt of to) {
        socket.write(`RCPT TO:<${rcpt}>\r\n`)
        await reply(250)
      }
      socket.write('DATA\r\n')
      await reply(354)
      socket.write(Buffer.concat([dotStuff(data), Buffer.from('.\r\n')]))
      ids.push(queuedId(await reply(250)))
    }
    socket.write('QUIT\r\n')
    return ids
  } finally {
    socket.end()
  }
}

// ---------------------------------------------------------------------------------------------
// What the sink received

/** The header section of a received message with folded lines unfolded ('' for none). */
export function headers(m: { readonly data: Buffer } | undefined): string {
  const text = m?.data.toString('latin1') ?? ''
  return text.slice(0, text.indexOf('\r\n\r\n') + 2).replace(/\r\n[ \t]+/g, ' ')
}

/** Every value of header field `name` in a received message, in order. */
export function fields(m: { readonly data: Buffer } | undefined, name: string): string[] {
  return [...headers(m).matchAll(new RegExp(`^${name}: *(.*)$`, 'gmi'))].map((x) => x[1] as string)
}

/** The first value of header field `name` in a received message. */
export function field(m: { readonly data: Buffer } | undefined, name: string): string | undefined {
  return fields(m, name)[0]
}

/** The sink's messages with this Message-ID (angle brackets included), oldest first. */
export function byMessageId(sink: Sink, messageId: string): SinkMessage[] {
  return sink.messages.filter((m) => field(m, 'Message-ID') === messageId)
}

/** The sink's messages with Message-ID `<tag@example.org>` (as `textMessage` writes it), oldest first. */
export function byTag(sink: Sink, tag: string): SinkMessage[] {
  return byMessageId(sink, `<${tag}@example.org>`)
}

/** The queue ID mailscreen put into a delivered message's X-mailscreen-Scanned field. */
export function scannedId(m: SinkMessage | undefined): string | undefined {
  return /\(id ([0-9A-Za-z]{16})\)$/.exec(field(m, 'X-mailscreen-Scanned') ?? '')?.[1]
}

// ---------------------------------------------------------------------------------------------
// The instance's spool and CLI

/**
 * The quarantine's listing once it holds all of `ids` (or after `timeoutMs`): the verdict is
 * logged just before the quarantined copy is committed, so a listing right after the log line
 * can miss it.
 */
export async function quarantineHolding(
  ms: MailscreenProcess,
  ids: readonly string[],
  timeoutMs = 10_000,
): Promise<string[]> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const files = await readdir(join(ms.spoolDir, 'quarantine'))
    if (ids.every((id) => files.includes(id)) || Date.now() > deadline) return files
    await sleep(50)
  }
}

/** Run `mailscreen ARGS --json` against the instance; expects exit 0 and resolves with the parsed output. */
export async function cliJson<T = Array<Record<string, unknown>>>(
  ms: MailscreenProcess,
  args: readonly string[],
): Promise<T> {
  const out = await ms.cli([...args, '--json'])
  expect(out.code, out.stderr).toBe(0)
  return JSON.parse(out.stdout) as T
}
