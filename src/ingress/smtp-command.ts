import { isIP } from 'node:net'
import { decodeXtext } from '../mail/xtext.js'
import type { Notify } from './envelope.js'
import { reply, type SmtpReply } from './smtp-reply.js'

/** Parsing outcome: a value, or the reply that tells the client what was wrong. */
export type Parsed<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly reply: SmtpReply }

/** One ESMTP parameter of MAIL or RCPT (`KEY=VALUE` or `KEY`), key upper-cased. */
export interface MailParam {
  readonly key: string
  readonly value: string | undefined
}

/** A forwarded attribute value; `undefined` when the MTA sent `[UNAVAILABLE]` or `[TEMPUNAVAIL]`. */
export type Attributes = ReadonlyMap<string, string | undefined>

/** Render a reply, multi-line when its text has newlines (RFC 5321 4.2.1). */
export function formatReply(r: SmtpReply): string {
  const status = r.status === undefined ? '' : `${r.status} `
  const text = r.text.includes('\r') ? r.text.replaceAll('\r', '') : r.text
  if (!text.includes('\n')) return `${r.code} ${status}${text}\r\n`
  const lines = text.split('\n')
  const last = lines.length - 1
  let out = ''
  for (let i = 0; i <= last; i++) out += `${r.code}${i === last ? ' ' : '-'}${status}${lines[i]}\r\n`
  return out
}

/** Parse `FROM:<path> params` (or `TO:`), allowing a space after the colon. */
export function parsePath(arg: string, keyword: 'FROM' | 'TO'): Parsed<{ path: string; params: string }> {
  if (arg.length <= keyword.length || arg.slice(0, keyword.length + 1).toUpperCase() !== `${keyword}:`) {
    return syntaxError(keyword)
  }
  let i = keyword.length + 1
  while (arg[i] === ' ') i++
  if (arg[i] !== '<') return syntaxError(keyword)
  const open = i
  let quoted = false
  for (i = open + 1; i < arg.length; i++) {
    const ch = arg[i]
    if (ch === '\\' && quoted) i++
    else if (ch === '"') quoted = !quoted
    else if (ch === '>' && !quoted) break
  }
  if (i >= arg.length) return syntaxError(keyword)
  const rest = arg.slice(i + 1)
  if (rest.length > 0 && rest[0] !== ' ') return syntaxError(keyword)
  const path = stripSourceRoute(arg.slice(open + 1, i))
  if (path === undefined || !validPath(path)) {
    return keyword === 'FROM'
      ? fail(501, '5.1.7', 'Bad sender address syntax')
      : fail(501, '5.1.3', 'Bad recipient address syntax')
  }
  return { ok: true, value: { path, params: rest } }
}

/** Split ESMTP parameters. */
export function parseParams(text: string): MailParam[] {
  const params: MailParam[] = []
  for (const word of text.split(' ')) {
    if (word === '') continue
    const eq = word.indexOf('=')
    params.push(
      eq === -1
        ? { key: word.toUpperCase(), value: undefined }
        : { key: word.slice(0, eq).toUpperCase(), value: word.slice(eq + 1) },
    )
  }
  return params
}

/**
 * Parse XCLIENT / XFORWARD `NAME=value` attributes (values are xtext, RFC 3461), accepting
 * only the names in `allowed`. ADDR is checked, loses an `IPV6:` prefix and is normalised.
 */
export function parseAttributes(
  text: string,
  allowed: ReadonlySet<string>,
  command: string,
): Parsed<Attributes> {
  const attrs = new Map<string, string | undefined>()
  for (const word of text.split(' ')) {
    if (word === '') continue
    const eq = word.indexOf('=')
    const name = (eq === -1 ? word : word.slice(0, eq)).toUpperCase()
    if (eq === -1 || !allowed.has(name)) return fail(501, '5.5.4', `Bad ${command} attribute name: ${name}`)
    let value = decodeXtext(word.slice(eq + 1))
    if (value === undefined) return fail(501, '5.5.4', `Bad ${command} attribute value for ${name}`)
    if (value === '[UNAVAILABLE]' || value === '[TEMPUNAVAIL]') {
      attrs.set(name, undefined)
      continue
    }
    if (name === 'ADDR') {
      if (value.slice(0, 5).toUpperCase() === 'IPV6:') value = value.slice(5)
      if (isIP(value) === 0) return fail(501, '5.5.4', `Bad ${command} address syntax: ${value}`)
      value = normalizeIp(value)
    }
    attrs.set(name, value)
  }
  if (attrs.size === 0) return fail(501, '5.5.4', `Syntax: ${command} attribute=value...`)
  return { ok: true, value: attrs }
}

/** An IP address as we report it: IPv4-mapped IPv6 becomes plain IPv4, IPv6 lower case. */
export function normalizeIp(address: string): string {
  const lower = address.toLowerCase()
  if (lower.startsWith('::ffff:') && isIP(lower.slice(7)) === 4) return lower.slice(7)
  return lower
}

function syntaxError(keyword: 'FROM' | 'TO'): { ok: false; reply: SmtpReply } {
  return fail(501, '5.5.4', `Syntax: ${keyword === 'FROM' ? 'MAIL FROM' : 'RCPT TO'}:<address>`)
}

function fail(code: number, status: string, text: string): { ok: false; reply: SmtpReply } {
  return { ok: false, reply: reply(code, status, text) }
}

// RFC 5321 4.1.2: a source route `@a,@b:user@c` must be accepted and ignored.
function stripSourceRoute(path: string): string | undefined {
  if (path[0] !== '@') return path
  const colon = path.indexOf(':')
  return colon === -1 ? undefined : path.slice(colon + 1)
}

// No controls anywhere, no spaces outside a quoted local part, no stray angle brackets.
function validPath(path: string): boolean {
  let quoted = false
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return false
    if (c === 0x5c && quoted) i++
    else if (c === 0x22) quoted = !quoted
    else if (!quoted && (c === 0x20 || c === 0x3c || c === 0x3e)) return false
  }
  return !quoted
}

const invalid = (what: string): Parsed<never> => ({
  ok: false,
  reply: reply(501, '5.5.4', `Invalid ${what} parameter`),
})

/** RET= of MAIL FROM (RFC 3461 4.3): FULL or HDRS. */
export function parseRet(value: string | undefined): Parsed<'FULL' | 'HDRS'> {
  const ret = value?.toUpperCase()
  return ret === 'FULL' || ret === 'HDRS' ? { ok: true, value: ret } : invalid('RET')
}

/** ENVID= of MAIL FROM (RFC 3461 4.4): xtext of at most 100 printable ASCII characters. */
export function parseEnvid(value: string | undefined): Parsed<string> {
  const envid = value === undefined ? undefined : decodeXtext(value)
  return envid !== undefined && /^[\x21-\x7e]{1,100}$/.test(envid)
    ? { ok: true, value: envid }
    : invalid('ENVID')
}

const NOTIFY_EVENTS = new Set(['SUCCESS', 'FAILURE', 'DELAY'])

/** NOTIFY= of RCPT TO (RFC 3461 4.1): NEVER alone, or some of SUCCESS, FAILURE and DELAY. */
export function parseNotify(value: string | undefined): Parsed<Notify> {
  const words = value?.toUpperCase().split(',') ?? []
  if (words.length === 1 && words[0] === 'NEVER') return { ok: true, value: ['NEVER'] }
  const events = new Set(words)
  if (words.length === 0 || events.size !== words.length || !words.every((w) => NOTIFY_EVENTS.has(w)))
    return invalid('NOTIFY')
  return { ok: true, value: words as ('SUCCESS' | 'FAILURE' | 'DELAY')[] }
}

/** ORCPT= of RCPT TO (RFC 3461 4.2): `addr-type;xtext`, decoded, at most 500 characters. */
export function parseOrcpt(value: string | undefined): Parsed<string> {
  const semi = value?.indexOf(';') ?? -1
  if (value === undefined || semi < 1 || !/^[A-Za-z0-9-]+$/.test(value.slice(0, semi)))
    return invalid('ORCPT')
  const address = decodeXtext(value.slice(semi + 1))
  if (address === undefined || address === '' || address.length > 500 || /\p{Cc}/u.test(address))
    return invalid('ORCPT')
  return { ok: true, value: `${value.slice(0, semi)};${address}` }
}
