import type { Envelope } from '../ingress/envelope.js'
import { rfc5322Date } from '../mail/date.js'
import type { HeaderEdit } from '../mail/edits.js'
import type { QueueId } from '../queue/ids.js'
import type { Verdict } from './verdict.js'

/** Settings the header actions need. */
export interface ActionSettings {
  readonly hostname: string
  readonly scannedHeader: string
  readonly spamSubjectTag: string
}

/** The `Received:` field mailscreen adds for its own hop (RFC 5321 §4.4). */
export function receivedHeader(envelope: Envelope, queueId: QueueId, hostname: string): string {
  const client = envelope.client
  const from = `${client.helo ?? client.address} (${client.name ? `${client.name} ` : ''}[${client.address}])`
  const rcpt = envelope.rcptTo.length === 1 ? ` for <${envelope.rcptTo[0]}>` : ''
  const protocol = envelope.smtpUtf8 ? 'UTF8SMTP' : 'ESMTP'
  return `from ${from} by ${hostname} (mailscreen) with ${protocol} id ${queueId}${rcpt}; ${rfc5322Date(new Date(envelope.receivedAt))}`
}

/** A one-line summary of a verdict for the `X-mailscreen-Verdict` header and logs. */
export function verdictSummary(verdict: Verdict): string {
  const symbols = verdict.hits.map((h) => (h.score === 0 ? h.symbol : `${h.symbol}=${h.score}`)).join(' ')
  return `${verdict.category}, score=${verdict.score} required=${verdict.required}${symbols ? ` symbols=${symbols}` : ''}`
}

/** The header edits a delivered message gets: its `Received:` line, scan headers, subject tag. */
export function headerActions(
  verdict: Verdict,
  envelope: Envelope,
  queueId: QueueId,
  settings: ActionSettings,
): HeaderEdit[] {
  const edits: HeaderEdit[] = [
    { op: 'prepend', name: 'Received', value: receivedHeader(envelope, queueId, settings.hostname) },
    {
      op: 'prepend',
      name: 'X-mailscreen-Scanned',
      value: `${settings.scannedHeader} on ${settings.hostname} (id ${queueId})`,
    },
    { op: 'prepend', name: 'X-mailscreen-Verdict', value: verdictSummary(verdict) },
  ]
  if (verdict.category === 'spam') edits.push({ op: 'tagSubject', tag: settings.spamSubjectTag })
  return edits
}
