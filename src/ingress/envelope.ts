/** Who connected, as the MTA in front saw it (XFORWARD/XCLIENT) or as we saw it. */
export interface ClientInfo {
  /** The client's IP address (IPv4 or IPv6, no brackets). */
  readonly address: string
  /** Reverse-DNS name as the MTA reported it, if any ("[UNAVAILABLE]" becomes undefined). */
  readonly name?: string
  /** The HELO/EHLO name the client gave. */
  readonly helo?: string
  /** The protocol the client used with the MTA (SMTP, ESMTP, ...). */
  readonly protocol?: string
}

/**
 * The SMTP envelope of one message: plain data, identical whichever front end received it,
 * and safe to pass between threads.
 */
export interface Envelope {
  /** Reverse path; the empty string is the null sender `<>`. */
  readonly mailFrom: string
  readonly rcptTo: readonly string[]
  /** The client the message came from (the original one when the MTA forwarded it). */
  readonly client: ClientInfo
  /** The peer that actually talked to us (the MTA, for a content filter). */
  readonly peer: ClientInfo
  /** Milliseconds since the epoch when the message was accepted. */
  readonly receivedAt: number
  /** BODY= from MAIL FROM (7BIT, 8BITMIME), if given. */
  readonly body?: string
  /** SMTPUTF8 was given on MAIL FROM. */
  readonly smtpUtf8?: boolean
  /** What the sender asked of delivery status notifications (RFC 3461), when it asked anything. */
  readonly dsn?: DsnRequest
}

/** When a recipient wants to hear (RCPT's NOTIFY=): never, or on these events. */
export type Notify = readonly ['NEVER'] | readonly ('SUCCESS' | 'FAILURE' | 'DELAY')[]

/** A recipient's DSN parameters (RCPT TO). */
export interface RecipientDsn {
  /** NOTIFY=; absent: failures (and delays) are reported, as without DSN. */
  readonly notify?: Notify
  /** ORCPT=, decoded: `addr-type;address`, the recipient as the first MTA received it. */
  readonly orcpt?: string
}

/** The DSN parameters of a transaction (RFC 3461), as the MTA in front passed them on. */
export interface DsnRequest {
  /** RET=: a failure DSN returns the FULL message or only its headers (HDRS, the default). */
  readonly ret?: 'FULL' | 'HDRS'
  /** ENVID=, decoded: the sender's own ID of the transaction, quoted in every DSN. */
  readonly envid?: string
  /** Per recipient as given in RCPT TO, for those that gave NOTIFY= or ORCPT=. */
  readonly recipients?: Readonly<Record<string, RecipientDsn>>
}

/**
 * The DSN parameters the sender gave for one recipient, if any: by the address as written in
 * RCPT TO, or as routing spells it (the domain in lower case).
 */
export function dsnOf(request: DsnRequest | undefined, address: string): RecipientDsn | undefined {
  const recipients = request?.recipients
  if (!recipients) return undefined
  if (Object.hasOwn(recipients, address)) return recipients[address]
  const wanted = domainFolded(address)
  for (const [given, dsn] of Object.entries(recipients)) if (domainFolded(given) === wanted) return dsn
  return undefined
}

/** An address with its domain in lower case (a domain is case-insensitive; a local part need not be). */
function domainFolded(address: string): string {
  const at = address.lastIndexOf('@')
  return at === -1 ? address : address.slice(0, at + 1) + address.slice(at + 1).toLowerCase()
}

/** Whether a failure is to be reported to the sender for a recipient with these parameters. */
export function wantsFailureReport(dsn: RecipientDsn | undefined): boolean {
  return dsn?.notify === undefined || (dsn.notify as readonly string[]).includes('FAILURE')
}
