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
}
