/**
 * INTERFACE SKETCH — to be implemented (see helper task). Our own small SMTP/LMTP server.
 */
import type { Readable } from 'node:stream'
import type { ClientInfo } from './envelope.js'
import type { SmtpReply } from './smtp-reply.js'

/** The state of one SMTP transaction, handed to the handlers. */
export interface Transaction {
  /** The peer on the socket. */
  readonly peer: ClientInfo
  /** The original client per XFORWARD/XCLIENT, else the peer. */
  readonly client: ClientInfo
  readonly mailFrom: string
  readonly rcptTo: readonly string[]
  readonly body?: string
  readonly smtpUtf8: boolean
  /** SIZE= declared on MAIL FROM, if any. */
  readonly declaredSize?: number
}

export interface SmtpServerOptions {
  /** Our host name, used in the greeting and replies. */
  readonly hostname: string
  /** Speak LMTP (LHLO, one reply per accepted recipient after DATA) instead of SMTP. */
  readonly lmtp?: boolean
  /** Largest message in bytes (advertised as SIZE, enforced on the real stream). */
  readonly maxSize: number
  readonly maxRecipients?: number
  /** Socket idle timeout in ms. */
  readonly idleTimeoutMs?: number
  /** Decide on a new connection; return a reply to refuse it (sent instead of the greeting). */
  onConnect?(peer: ClientInfo): SmtpReply | undefined
  /** Whether XCLIENT / XFORWARD are accepted (and advertised) for this peer. */
  allowForwarding?(peer: ClientInfo): boolean
  /** Decide on one RCPT TO; return a reply to refuse that recipient. */
  onRecipient?(address: string, tx: Transaction): SmtpReply | undefined | Promise<SmtpReply | undefined>
  /**
   * Take the message. `data` yields the dot-unstuffed bytes (CRLF line ends as received);
   * it errors with an `SmtpReplyError` (552 5.3.4) when the message exceeds `maxSize`.
   * Resolve with the reply to DATA, or under LMTP with one reply per recipient.
   */
  onMessage(tx: Transaction, data: Readable): Promise<SmtpReply | readonly SmtpReply[]>
}
