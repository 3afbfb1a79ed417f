import { isAscii } from 'node:buffer'
import type { Envelope } from '../ingress/envelope.js'
import { isNonAscii } from '../mail/ascii.js'
import { rfc5322Date } from '../mail/date.js'
import { encodeXtext } from '../mail/xtext.js'
import type { QueueId } from '../queue/ids.js'
import type { RecipientResult } from './transport.js'

/** A failed recipient to report: its result, and the ORCPT its sender gave (`addr-type;address`). */
export type ReportedRecipient = RecipientResult & { readonly orcpt?: string }

/** What {@link buildDsn} needs to report on one message. */
export interface DsnInput {
  /** Our host name, as in `Reporting-MTA` and `MAILER-DAEMON@...`. */
  readonly reportingMta: string
  readonly queueId: QueueId
  /** The original message's envelope. */
  readonly envelope: Envelope
  /** Recipients that failed, or (when expired) stayed deferred too long. */
  readonly failed: readonly ReportedRecipient[]
  readonly reason: 'failed' | 'expired'
  /** The original message's header block. */
  readonly originalHeaders: Buffer
  /** The whole original, to return instead of its headers (RET=FULL). */
  readonly original?: Buffer
  /** The sender's ENVID, quoted as `Original-Envelope-Id`. */
  readonly envid?: string
  readonly arrivalDate: Date
  readonly now: Date
}

/** A DSN ready to queue: null sender, addressed to the original sender. */
export interface Dsn {
  mailFrom: ''
  rcptTo: string[]
  message: Buffer
  /** `8BITMIME` when it quotes 8-bit headers (or reply text): MAIL FROM must say BODY=8BITMIME. */
  body?: '8BITMIME'
}

const FOLD_AT = 78
const MAX_LINE = 998
const CRLF = '\r\n'

/**
 * Build an RFC 3464 delivery status notification (multipart/report with a human part,
 * message/delivery-status and text/rfc822-headers). Pure. Returns undefined when the original
 * sender is `<>` or the original is itself a DSN: a bounce is never bounced.
 */
export function buildDsn(input: DsnInput): Dsn | undefined {
  const sender = input.envelope.mailFrom
  if (sender === '' || isDsn(input.originalHeaders)) return undefined
  const mta = ascii(input.reportingMta)
  const returned = input.original ? messagePart(input.original) : headersPart(input.originalHeaders)
  const parts = [humanPart(input, mta), statusPart(input, mta), returned]
  const boundary = uniqueBoundary(`=_dsn_${input.queueId}_${input.now.getTime()}`, parts)
  const head = [
    `From: Mail Delivery System <MAILER-DAEMON@${mta}>`,
    ...(!isNonAscii(sender) ? [`To: <${ascii(sender)}>`] : []),
    'Subject: Undelivered Mail Returned to Sender',
    `Date: ${rfc5322Date(input.now)}`,
    `Message-ID: <${input.queueId}.${input.now.getTime()}@${mta}>`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status;',
    ` boundary="${boundary}"`,
    '',
    'This is a MIME-encapsulated message.',
    '',
  ].join(CRLF)
  const chunks: Buffer[] = [Buffer.from(head)]
  for (const part of parts) chunks.push(Buffer.from(`--${boundary}${CRLF}`), part, Buffer.from(CRLF))
  chunks.push(Buffer.from(`--${boundary}--${CRLF}`))
  const message = Buffer.concat(chunks)
  return { mailFrom: '', rcptTo: [sender], message, ...(isAscii(message) ? {} : { body: '8BITMIME' }) }
}

/**
 * The RFC 3463 status for a recipient: the reply's enhanced code when its class agrees with the
 * reply code (a `550 4.2.2` is no temporary failure), else a default by outcome.
 */
export function dsnStatus(result: RecipientResult): string {
  const match = /^([245])\d\d[ -]([245]\.\d{1,3}\.\d{1,3})(?=\s|$)/.exec(result.reply)
  if (result.code !== 0 && match?.[2] && match[2][0] === match[1]) return match[2]
  return result.status === 'failed' ? '5.0.0' : '4.4.7'
}

function humanPart(input: DsnInput, mta: string): Buffer {
  const why =
    input.reason === 'expired'
      ? [
          'Your message could not be delivered to one or more recipients. It has been',
          `waiting in the queue for ${age(input.arrivalDate, input.now)}, and we have given up.`,
        ]
      : ['Your message could not be delivered to one or more recipients.']
  const lines = [
    `This is the mail system at host ${mta}.`,
    '',
    ...why,
    'The reasons are listed below; the headers of your message are attached.',
    '',
  ]
  for (const r of input.failed) {
    const said = r.code === 0 || !r.remoteMta ? '' : ` host ${r.remoteMta} said:`
    const original = r.originalRecipient ? ` (expanded from <${r.originalRecipient}>)` : ''
    lines.push(...fold(`<${r.recipient}>${original}:${said}`, r.reply, '    '), '')
  }
  const body = lines.join(CRLF)
  const cte = isNonAscii(body) ? '8bit' : '7bit'
  return Buffer.from(
    `Content-Description: Notification${CRLF}Content-Type: text/plain; charset=utf-8${CRLF}` +
      `Content-Transfer-Encoding: ${cte}${CRLF}${CRLF}${body}`,
  )
}

function statusPart(input: DsnInput, mta: string): Buffer {
  const lines = [
    'Content-Description: Delivery report',
    'Content-Type: message/delivery-status',
    '',
    ...(input.envid ? [`Original-Envelope-Id: ${encodeXtext(input.envid)}`] : []),
    `Reporting-MTA: dns; ${mta}`,
    `X-Mailscreen-Queue-ID: ${input.queueId}`,
    `X-Mailscreen-Sender: ${addressField(input.envelope.mailFrom)}`,
    `Arrival-Date: ${rfc5322Date(input.arrivalDate)}`,
  ]
  const hostOf = (hop: string | undefined): string | undefined =>
    hop && ascii(hop.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1'))
  for (const r of input.failed) {
    const remote = hostOf(r.remoteMta)
    lines.push('')
    // The sender's ORCPT first: what the first MTA received, before any rewriting of ours.
    if (r.orcpt) lines.push(`Original-Recipient: ${orcptField(r.orcpt)}`)
    else if (r.originalRecipient) lines.push(`Original-Recipient: ${addressField(r.originalRecipient)}`)
    lines.push(`Final-Recipient: ${addressField(r.recipient)}`, 'Action: failed', `Status: ${dsnStatus(r)}`)
    if (r.code !== 0 && remote) lines.push(`Remote-MTA: dns; ${remote}`)
    // Only a remote host's reply is an SMTP diagnostic: not a reply-less failure (refused
    // connection, timeout), nor a refusal decided here (routing, a loop, the bounce action).
    const type = r.code !== 0 && remote ? 'smtp' : 'X-Mailscreen'
    lines.push(...fold('Diagnostic-Code:', `${type}; ${ascii(r.reply)}`, ' '))
  }
  lines.push('')
  return Buffer.from(lines.join(CRLF))
}

function headersPart(original: Buffer): Buffer {
  // latin1 maps bytes 1:1, so 8-bit header bytes pass through unchanged.
  const lines = original.toString('latin1').split(/\r?\n/)
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop()
  const kept = lines.flatMap((line) =>
    splitLong(line, MAX_LINE - 8).map((piece, i) => (i === 0 ? piece : ` ${piece}`)),
  )
  const body = kept.join(CRLF)
  const cte = isNonAscii(body) ? '8bit' : '7bit'
  return Buffer.from(
    `Content-Description: Undelivered Message Headers${CRLF}Content-Type: text/rfc822-headers${CRLF}` +
      `Content-Transfer-Encoding: ${cte}${CRLF}${CRLF}${body}${CRLF}`,
    'latin1',
  )
}

/** The whole original as a message/rfc822 part (RET=FULL). */
function messagePart(original: Buffer): Buffer {
  const cte = isAscii(original) ? '7bit' : '8bit'
  const head = `Content-Description: Undelivered Message${CRLF}Content-Type: message/rfc822${CRLF}Content-Transfer-Encoding: ${cte}${CRLF}${CRLF}`
  const end = original.subarray(-2).equals(Buffer.from(CRLF)) ? '' : CRLF
  return Buffer.concat([Buffer.from(head), original, Buffer.from(end)])
}

/** Whether a header block declares a delivery status report (RFC 3464, or RFC 6533's global one). */
function isDsn(headers: Buffer): boolean {
  const unfolded = headers.toString('latin1').replace(/\r?\n[ \t]+/g, ' ')
  const contentType = /^content-type:(.*)$/im.exec(unfolded)?.[1] ?? ''
  return (
    /multipart\/report/i.test(contentType) &&
    /report-type\s*=\s*"?(global-)?delivery-status/i.test(contentType)
  )
}

/**
 * `rfc822; addr`, or for a non-ASCII address RFC 6533's `utf-8; ` form in its xtext spelling:
 * every character but QCHAR (printable ASCII less `+`, `=` and `\`) as `\x{HEX}`.
 */
function addressField(address: string): string {
  if (!isNonAscii(address)) return `rfc822; ${ascii(address)}`
  let out = ''
  for (const ch of address) {
    const cp = ch.codePointAt(0) as number
    const qchar = cp >= 0x21 && cp <= 0x7e && ch !== '+' && ch !== '=' && ch !== '\\'
    out += qchar ? ch : `\\x{${cp.toString(16).toUpperCase()}}`
  }
  return `utf-8; ${out}`
}

/** An ORCPT (`addr-type;address`) as a field value: `rfc822; address`, or RFC 6533's form when not ASCII. */
function orcptField(orcpt: string): string {
  const semi = orcpt.indexOf(';')
  const address = orcpt.slice(semi + 1)
  return isNonAscii(address) ? addressField(address) : `${ascii(orcpt.slice(0, semi))}; ${ascii(address)}`
}

/** Fold `head` + the words of `text` into lines of about 78 chars, never over 998. */
function fold(head: string, text: string, indent: string): string[] {
  const words = text
    .split(/\s+/)
    .filter((w) => w !== '')
    .map((w) => w.replace(/\p{Cc}/gu, '?'))
    .flatMap((w) => splitLong(w, MAX_LINE - indent.length - 1))
  const lines: string[] = []
  let line = head
  let empty = true
  for (const word of words) {
    if (line.length + 1 + word.length > (empty ? MAX_LINE : FOLD_AT)) {
      lines.push(line)
      line = indent + word
    } else line += ` ${word}`
    empty = false
  }
  lines.push(line)
  return lines
}

function splitLong(text: string, max: number): string[] {
  if (text.length <= max) return [text]
  const pieces: string[] = []
  for (let at = 0; at < text.length; at += max) pieces.push(text.slice(at, at + max))
  return pieces
}

function uniqueBoundary(base: string, parts: readonly Buffer[]): string {
  let boundary = base
  for (let n = 1; parts.some((p) => p.includes(`--${boundary}`)); n++) boundary = `${base}.${n}`
  return boundary
}

function age(from: Date, to: Date): string {
  const hours = Math.max(0, Math.round((to.getTime() - from.getTime()) / 3_600_000))
  if (hours < 48) return hours === 1 ? '1 hour' : `${hours} hours`
  return `${Math.round(hours / 24)} days`
}

/** Printable ASCII only: what our own header fields may carry. */
function ascii(text: string): string {
  return text.replace(/\s+/g, ' ').replace(/[^\x20-\x7e]/g, '?')
}
