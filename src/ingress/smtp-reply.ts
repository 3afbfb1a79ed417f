/** One SMTP reply: basic code, enhanced status code (RFC 3463) and text. */
export interface SmtpReply {
  readonly code: number
  /** e.g. `2.0.0`; omitted only for replies that take none (220 greeting, 221 does take one). */
  readonly status?: string
  readonly text: string
}

/** Shorthand for building a reply. */
export function reply(code: number, status: string | undefined, text: string): SmtpReply {
  return status === undefined ? { code, text } : { code, status, text }
}
