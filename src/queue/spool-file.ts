import type { Envelope } from '../ingress/envelope.js'
import type { QueueId } from './ids.js'

/** Format version of spool files; bumped when the header line changes incompatibly. */
export const SPOOL_FORMAT = 1

/**
 * The first line of every spool file: JSON with the envelope (and, once scanned, the
 * verdict summary), then `\n`, then the message bytes exactly as they will be sent on.
 * One file holds envelope and data, so one rename moves both atomically.
 */
export interface SpoolHeader {
  readonly v: typeof SPOOL_FORMAT
  readonly id: QueueId
  readonly envelope: Envelope
  /** Set once the message has been scanned. */
  readonly scan?: ScanSummary
  /** Set on a DSN that mailscreen generated itself. */
  readonly dsnFor?: QueueId
  /** Set on a message released from quarantine: the quarantined message's ID. */
  readonly releasedFrom?: QueueId
  /**
   * Epoch ms the queue lifetime counts from, when not the arrival: a release from quarantine
   * or a requeue from `failed/` starts it again (like `postsuper -r`), so that mail the
   * administrator sent on is not bounced at its first 4xx for having waited on them.
   */
  readonly lifetimeFrom?: number
}

/** Milliseconds of the queue lifetime `header`'s message has used at `now`. */
export function timeInQueue(header: SpoolHeader, now = Date.now()): number {
  return now - (header.lifetimeFrom ?? header.envelope.receivedAt)
}

/** What the scan decided, kept with the message for listings and quarantine. */
export interface ScanSummary {
  /** The verdict category (clean, spam, highspam, virus, banned, unscannable). */
  readonly verdict: string
  readonly score: number
  readonly symbols: readonly string[]
  readonly messageId?: string
  /** Why the category (virus names, banned file names, the score), for people. */
  readonly reason?: string
  /** The action list that was applied. */
  readonly actions?: string
}

/** Serialise the header line (ends with `\n`). */
export function encodeHeader(header: SpoolHeader): Buffer {
  return Buffer.from(`${JSON.stringify(header)}\n`, 'utf8')
}

/** Split a spool file into header and message; throws on a file that is not ours. */
export function decodeSpoolFile(file: Buffer): { header: SpoolHeader; message: Buffer } {
  const newline = file.indexOf(0x0a)
  if (newline === -1) throw new Error('spool file has no header line')
  const header = JSON.parse(file.subarray(0, newline).toString('utf8')) as SpoolHeader
  if (header.v !== SPOOL_FORMAT || typeof header.id !== 'string' || !header.envelope)
    throw new Error('spool file header is not a mailscreen spool header')
  return { header, message: file.subarray(newline + 1) }
}

/** Retry state of a message in `deferred/`, kept beside it as `<id>.retry`. */
export interface RetryState {
  /** What failed: the scan (tempfail) or the delivery. */
  readonly phase: 'scan' | 'deliver'
  readonly attempts: number
  /** Epoch ms when the next attempt is due. */
  readonly nextAttemptAt: number
  /** Recipients still to deliver (the others got a final answer already). */
  readonly pending: readonly string[]
  readonly lastError?: string
}
