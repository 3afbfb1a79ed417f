/**
 * A small spamd client (the SPAMC/SPAMD protocol of SpamAssassin's spamc/spamd).
 *
 * Request (one connection per command; the client half-closes after the body):
 *
 *   SYMBOLS SPAMC/1.5\r\n
 *   Content-length: <bytes>\r\n
 *   User: <user>\r\n            (optional)
 *   \r\n
 *   <message>
 *
 * Response:
 *
 *   SPAMD/1.1 0 EX_OK\r\n
 *   Content-length: <bytes>\r\n
 *   Spam: True ; 7.3 / 5.0\r\n
 *   \r\n
 *   <body>                      (SYMBOLS: comma-separated rule names; REPORT: the report text)
 *
 * A non-zero code (`SPAMD/1.0 76 Bad header line`, the sysexits EX_* values) is an error.
 * Building the request and parsing the response are pure functions; {@link spamdRequest} does
 * the socket I/O, honouring an AbortSignal and a timeout.
 */
import {
  describeAddress,
  type ExchangeOptions,
  type ExchangeProtocol,
  exchange,
  type ServiceAddress,
} from '../../src/pipeline/plugin.js'

/** Where spamd listens: TCP host/port, or a unix socket path. */
export type SpamdTarget = ServiceAddress

/** Commands this client sends. `PING` carries no message. */
export type SpamdCommand = 'SYMBOLS' | 'REPORT' | 'CHECK' | 'PING'

/** The protocol version we speak. */
export const PROTOCOL_VERSION = 'SPAMC/1.5'

/** sysexits(3) names of spamd's response codes. */
export const EX_CODES: Readonly<Record<number, string>> = {
  0: 'EX_OK',
  64: 'EX_USAGE',
  65: 'EX_DATAERR',
  66: 'EX_NOINPUT',
  67: 'EX_NOUSER',
  68: 'EX_NOHOST',
  69: 'EX_UNAVAILABLE',
  70: 'EX_SOFTWARE',
  71: 'EX_OSERR',
  72: 'EX_OSFILE',
  73: 'EX_CANTCREAT',
  74: 'EX_IOERR',
  75: 'EX_TEMPFAIL',
  76: 'EX_PROTOCOL',
  77: 'EX_NOPERM',
  78: 'EX_CONFIG',
}

/** spamd answered with a non-zero code, or something that is not a SPAMD response. */
export class SpamdError extends Error {
  override readonly name = 'SpamdError'
  /** The response code (EX_*), when spamd sent one. */
  readonly code: number | undefined
  constructor(message: string, code?: number) {
    super(message)
    this.code = code
  }
}

/** The parsed response to a SYMBOLS / REPORT / CHECK / PING. */
export interface SpamdResponse {
  /** `1.1` from `SPAMD/1.1`. */
  readonly version: string
  /** Always 0 (non-zero codes throw). */
  readonly code: number
  /** `EX_OK`, `PONG`. */
  readonly message: string
  /** Response headers, names lower-cased. */
  readonly headers: ReadonlyMap<string, string>
  /** From the `Spam:` header; undefined for PING. */
  readonly spam?: { readonly isSpam: boolean; readonly score: number; readonly threshold: number }
  /** The body after the blank line. */
  readonly body: string
  /** SYMBOLS: the rule names from the body ([] otherwise). */
  readonly symbols: readonly string[]
}

const TOKEN = /^[\x21-\x7e]+$/

/**
 * The request bytes for `command` over `message`:
 * `<COMMAND> SPAMC/1.5\r\nContent-length: <n>\r\n[User: <user>\r\n]\r\n<message>`.
 * PING has no headers and no body.
 */
export function buildRequest(command: SpamdCommand, message?: Buffer, user?: string): Buffer {
  if (command === 'PING') return Buffer.from(`PING ${PROTOCOL_VERSION}\r\n\r\n`, 'latin1')
  if (message === undefined) throw new Error(`spamd: ${command} needs a message`)
  if (user !== undefined && !TOKEN.test(user))
    throw new Error(`spamd: invalid user ${JSON.stringify(user)} (no spaces or control characters)`)
  const head =
    `${command} ${PROTOCOL_VERSION}\r\n` +
    `Content-length: ${message.length}\r\n` +
    (user !== undefined ? `User: ${user}\r\n` : '') +
    '\r\n'
  return Buffer.concat([Buffer.from(head, 'latin1'), message])
}

/** Index of the `\r\n\r\n` (or `\n\n`) ending the response head, and the separator length; -1 if none yet. */
function headEnd(buf: Buffer): { index: number; sep: number } {
  const crlf = buf.indexOf('\r\n\r\n')
  const lf = buf.indexOf('\n\n')
  if (crlf >= 0 && (lf < 0 || crlf <= lf)) return { index: crlf, sep: 4 }
  if (lf >= 0) return { index: lf, sep: 2 }
  return { index: -1, sep: 0 }
}

/**
 * True when `buf` holds a whole response: the status line says a non-zero code, or the head
 * is complete and the body has reached its Content-length (or there is none and the head
 * ended). Lets the client stop reading without waiting for spamd to close.
 */
export function responseComplete(buf: Buffer): boolean {
  const firstLine = buf.indexOf('\n')
  if (firstLine < 0) return false
  const status = /^SPAMD\/\S+ +(\d+)/.exec(buf.subarray(0, firstLine).toString('latin1'))
  if (status && status[1] !== '0') return true
  const { index, sep } = headEnd(buf)
  if (index < 0) return false
  const length = /^content-length: *(\d+) *\r?$/im.exec(buf.subarray(0, index).toString('latin1'))
  if (!length?.[1]) return true
  return buf.length - (index + sep) >= Number(length[1])
}

/**
 * Parse `SPAMD/1.1 0 EX_OK\r\n<headers>\r\n\r\n<body>`. Throws {@link SpamdError} for a
 * non-zero code, a malformed status line, a malformed `Spam:` header, or a body shorter than
 * its Content-length. `command` decides how the body is read (SYMBOLS: rule names).
 */
export function parseResponse(raw: Buffer | string, command: SpamdCommand = 'SYMBOLS'): SpamdResponse {
  const buf = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw
  if (buf.length === 0) throw new SpamdError('spamd: empty response')
  const nl = buf.indexOf('\n')
  const statusLine = buf
    .subarray(0, nl < 0 ? buf.length : nl)
    .toString('latin1')
    .replace(/\r$/, '')
  const status = /^SPAMD\/(\d+\.\d+) +(\d+) *(.*)$/.exec(statusLine)
  if (!status)
    throw new SpamdError(`spamd: not a SPAMD response: ${JSON.stringify(statusLine.slice(0, 200))}`)
  const version = status[1] ?? ''
  const code = Number(status[2])
  const message = (status[3] ?? '').trim()
  if (code !== 0) {
    const name = EX_CODES[code] ?? 'EX_UNKNOWN'
    throw new SpamdError(`spamd: error ${code} (${name})${message ? `: ${message}` : ''}`, code)
  }

  const { index, sep } = headEnd(buf)
  const headerText =
    index < 0
      ? nl < 0
        ? ''
        : buf.subarray(nl + 1).toString('latin1')
      : buf.subarray(nl + 1, index).toString('latin1')
  // With no blank line, a PING reply (`SPAMD/1.5 0 PONG\r\n`) has no head and no body.
  const bodyBytes = index < 0 ? Buffer.alloc(0) : buf.subarray(index + sep)
  const headers = new Map<string, string>()
  for (const line of headerText.split(/\r?\n/)) {
    if (line.trim() === '') continue
    const colon = line.indexOf(':')
    if (colon <= 0) throw new SpamdError(`spamd: bad response header ${JSON.stringify(line.slice(0, 200))}`)
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim())
  }

  let body = bodyBytes
  const length = headers.get('content-length')
  if (length !== undefined) {
    if (!/^\d+$/.test(length)) throw new SpamdError(`spamd: bad Content-length ${JSON.stringify(length)}`)
    const n = Number(length)
    if (bodyBytes.length < n)
      throw new SpamdError(`spamd: truncated response (${bodyBytes.length} of ${n} body bytes)`)
    body = bodyBytes.subarray(0, n)
  }

  let spam: SpamdResponse['spam']
  const spamHeader = headers.get('spam')
  if (spamHeader !== undefined) {
    const m = /^(true|false|yes|no)\s*;\s*(-?\d+(?:\.\d+)?)\s*\/\s*(-?\d+(?:\.\d+)?)$/i.exec(spamHeader)
    if (!m) throw new SpamdError(`spamd: bad Spam header ${JSON.stringify(spamHeader)}`)
    const flag = (m[1] ?? '').toLowerCase()
    spam = { isSpam: flag === 'true' || flag === 'yes', score: Number(m[2]), threshold: Number(m[3]) }
  } else if (command !== 'PING') {
    throw new SpamdError('spamd: response has no Spam header')
  }

  const bodyText = body.toString('utf8')
  const symbols =
    command === 'SYMBOLS'
      ? bodyText
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== '')
      : []
  return { version, code, message, headers, ...(spam ? { spam } : {}), body: bodyText, symbols }
}

/** spamd reads until EOF (spamc half-closes after the body) and answers once. */
const SPAMD: ExchangeProtocol = { service: 'spamd', complete: responseComplete, halfClose: true }

/** Result of {@link check}: the `Spam:` header and the rule names. */
export interface SpamdVerdict {
  readonly isSpam: boolean
  readonly score: number
  readonly threshold: number
  /** SYMBOLS: rule names; REPORT: []. */
  readonly symbols: readonly string[]
  /** The response body (SYMBOLS: the comma list; REPORT: the report). */
  readonly body: string
}

/** Send `message` with SYMBOLS (default) or REPORT and parse the verdict. Rejects on I/O or protocol errors. */
export async function check(
  target: SpamdTarget,
  message: Buffer,
  opts: ExchangeOptions & { readonly user?: string; readonly command?: 'SYMBOLS' | 'REPORT' } = {},
): Promise<SpamdVerdict> {
  const command = opts.command ?? 'SYMBOLS'
  const reply = await exchange(SPAMD, target, [buildRequest(command, message, opts.user)], opts)
  let response: SpamdResponse
  try {
    response = parseResponse(reply, command)
  } catch (err) {
    if (err instanceof SpamdError)
      throw new SpamdError(
        `spamd ${describeAddress(target)}: ${err.message.replace(/^spamd: /, '')}`,
        err.code,
      )
    throw err
  }
  const spam = response.spam
  if (!spam) throw new SpamdError(`spamd ${describeAddress(target)}: response has no Spam header`)
  return { ...spam, symbols: response.symbols, body: response.body }
}

/** `PING` → true when spamd answers `PONG`. */
export async function ping(target: SpamdTarget, opts: ExchangeOptions = {}): Promise<boolean> {
  try {
    const response = parseResponse(await exchange(SPAMD, target, [buildRequest('PING')], opts), 'PING')
    return response.message === 'PONG'
  } catch {
    return false
  }
}
