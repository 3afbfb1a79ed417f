/**
 * What every routing map parser shares: the problem type (a bad line is reported with its
 * file and line and the rest of the file still loads), the logical-line reader (comments,
 * blank lines, continuation lines), and address/domain helpers.
 */
import { isIP } from 'node:net'
import { domainToASCII } from 'node:url'
import { isNonAscii } from '../mail/ascii.js'

/** A bad line (or an unreadable file, line 0) in a routing map. The rest of the map still loads. */
export interface MapProblem {
  readonly file: string
  /** 1-based line number; 0 when the problem concerns the whole file. */
  readonly line: number
  readonly reason: string
}

/** Where a map entry came from, so a routing decision can name the line that made it. */
export interface SourceRef {
  readonly file: string
  readonly line: number
}

/** A parsed map and the problems found while parsing it. */
export interface Parsed<T> {
  readonly map: T
  readonly problems: readonly MapProblem[]
}

/** One logical line: its text and the physical line it starts on. */
export interface LogicalLine {
  readonly line: number
  readonly text: string
  /** A continuation line with no entry before it to continue (a problem for the caller). */
  readonly orphan?: boolean
}

/** `file:line` for messages. */
export function where(source: SourceRef): string {
  return source.line > 0 ? `${source.file}:${source.line}` : source.file
}

/**
 * Remove a trailing comment: `#` at the start of the text or after whitespace, outside
 * double quotes. (`a#b` keeps its `#`: it may be part of an address.)
 */
export function stripComment(text: string): string {
  if (!text.includes('#')) return text
  let quoted = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (c === '\\' && quoted) i++
    else if (c === '"') quoted = !quoted
    else if (c === '#' && !quoted && (i === 0 || /\s/.test(text[i - 1] as string))) return text.slice(0, i)
  }
  return text
}

/**
 * Split a map file into logical lines. Blank lines and comment lines (first non-blank
 * character `#`) are skipped; trailing ` # comments` are removed. With `continuation`
 * (Postfix/Sendmail aliases and Postfix tables), a line that starts with whitespace continues
 * the previous logical line, even across skipped comment or blank lines; without it, leading
 * whitespace is just spacing.
 */
export function logicalLines(text: string, continuation: boolean): LogicalLine[] {
  const out: { line: number; text: string; orphan?: boolean }[] = []
  const lines = text.split(/\r?\n/)
  for (const [index, raw] of lines.entries()) {
    const body = stripComment(raw).trimEnd()
    if (body.trim() === '') continue
    const indented = /^\s/.test(body)
    const last = out[out.length - 1]
    if (continuation && indented) {
      if (last && !last.orphan) last.text = `${last.text} ${body.trim()}`
      else out.push({ line: index + 1, text: body.trim(), orphan: true })
      continue
    }
    out.push({ line: index + 1, text: body.trim() })
  }
  return out
}

/** Split a line into whitespace-separated words, keeping double-quoted strings whole. */
export function words(text: string): string[] {
  // Most lines quote nothing: one split instead of a character loop (maps have 100,000s of lines).
  if (!text.includes('"')) {
    const trimmed = text.trim()
    return trimmed === '' ? [] : trimmed.split(/\s+/)
  }
  const out: string[] = []
  let current = ''
  let quoted = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string
    if (c === '\\' && quoted && i + 1 < text.length) {
      current += c + (text[i + 1] as string)
      i++
    } else if (c === '"') {
      quoted = !quoted
      current += c
    } else if (/\s/.test(c) && !quoted) {
      if (current) out.push(current)
      current = ''
    } else current += c
  }
  if (current) out.push(current)
  return out
}

const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/

/**
 * Lower-case a domain and drop one trailing dot (`Example.ORG.` → `example.org`). An
 * internationalized name (SMTPUTF8 mail, or a map written in Unicode) becomes its A-labels
 * (`Bücher.example` → `xn--bcher-kva.example`, UTS #46), the one form maps, DNS and next hops
 * agree on; one that is not a valid IDN becomes `''`, which no check accepts.
 */
export function normalizeDomain(domain: string): string {
  const lower = domain.trim().toLowerCase()
  const name = lower.length > 1 && lower.endsWith('.') ? lower.slice(0, -1) : lower
  // Only non-ASCII names go through the URL host parser: it would also rewrite ASCII forms
  // such as `0x7f.1` into IPv4 addresses, and it decodes `%2e` (never part of a domain).
  if (!isNonAscii(name)) return name
  return name.includes('%') ? '' : domainToASCII(name)
}

/**
 * A domain literal `[192.0.2.1]` / `[IPv6:2001:db8::1]` holding a real address: `[dead.beef]`
 * is no literal (it would be looked up as a host name, which a sender must not steer).
 */
export function isDomainLiteral(domain: string): boolean {
  const literal = /^\[(ipv6:)?([^\]]+)\]$/i.exec(domain)
  return literal !== null && isIP(literal[2] as string) === (literal[1] ? 6 : 4)
}

/** The address a domain literal holds (`[IPv6:2001:db8::1]` → `2001:db8::1`). */
export function literalAddress(domain: string): string {
  return domain.slice(1, -1).replace(/^ipv6:/i, '')
}

/** A host or domain name (already normalized): dot-separated labels of letters, digits, `-`, `_`. */
export function isDomainName(domain: string): boolean {
  if (domain.length === 0 || domain.length > 253) return false
  return domain.split('.').every((label) => LABEL.test(label))
}

/** A mail address split into its local part (case kept) and domain (normalized). */
export interface MailAddress {
  readonly local: string
  /** Lower case, no trailing dot; empty for an unqualified name. */
  readonly domain: string
}

/**
 * Parse `user@domain`, `<user@domain>`, `"quoted name"@domain` or a bare `name`. Returns
 * undefined for something that is not an address (empty local part, bad domain, spaces,
 * stray `@`/`<>`).
 */
export function parseAddress(text: string): MailAddress | undefined {
  let value = text.trim()
  const angle = value.includes('<') ? /^[^<>]*<([^<>]*)>\s*$/.exec(value) : null
  if (angle) value = (angle[1] as string).trim()
  if (value === '') return undefined
  let local: string
  let rest: string
  if (value.startsWith('"')) {
    const end = closingQuote(value)
    if (end < 0) return undefined
    local = value.slice(0, end + 1)
    rest = value.slice(end + 1)
    if (rest !== '' && !rest.startsWith('@')) return undefined
  } else {
    const at = value.lastIndexOf('@')
    local = at < 0 ? value : value.slice(0, at)
    rest = at < 0 ? '' : value.slice(at)
    if (!/^[^\s@<>(),;:\\"[\]]+$/.test(local)) return undefined
  }
  if (local === '' || local === '""') return undefined
  if (rest === '') return { local, domain: '' }
  const domain = addressDomain(rest.slice(1))
  return domain === undefined ? undefined : { local, domain }
}

/**
 * Domains seen by {@link addressDomain}: maps name the same few domains in 100,000s of
 * addresses, and normalizing and checking one costs more than the rest of a line.
 */
const knownDomains = new Map<string, string | undefined>()
const KNOWN_DOMAINS_MAX = 10_000

/** The normalized domain of an address, or undefined when it is neither a name nor a literal. */
function addressDomain(text: string): string | undefined {
  if (knownDomains.has(text)) return knownDomains.get(text)
  const domain = normalizeDomain(text)
  const valid = isDomainName(domain) || isDomainLiteral(domain) ? own(domain) : undefined
  if (knownDomains.size >= KNOWN_DOMAINS_MAX) knownDomains.clear()
  knownDomains.set(own(text), valid)
  return valid
}

/**
 * A copy of a string that does not point into the one it was cut from: V8 keeps a substring
 * as a view of its parent, and a cache entry cut from a map file would keep the whole file's
 * text alive after a reload.
 */
function own(text: string): string {
  return Buffer.from(text, 'utf8').toString('utf8')
}

function closingQuote(value: string): number {
  for (let i = 1; i < value.length; i++) {
    if (value[i] === '\\') i++
    else if (value[i] === '"') return i
  }
  return -1
}

/** `local@domain` (or `local` when unqualified). */
export function formatAddress(address: MailAddress): string {
  return address.domain ? `${address.local}@${address.domain}` : address.local
}

/** The lookup key of an address: lower case throughout. */
export function addressKey(address: MailAddress): string {
  return formatAddress(address).toLowerCase()
}

/** A local part split into a base and an extension (`jos-list` → `jos` + `-list`). */
export interface ExtensionSplit {
  readonly base: string
  /** Starts with its delimiter: `-list`, `+news`. */
  readonly extension: string
}

/**
 * The ways to read `local` as base + extension, longest base first (`a-b+c` with `-+` →
 * `a-b` + `+c`, then `a` + `-b+c`), so the most specific map entry wins. Following
 * Sendmail/Postfix (`owner_request_special`), `owner-list` and `list-request` are never
 * split at a `-`; they may still carry a `+` extension.
 */
export function extensionSplits(local: string, delimiters: string): ExtensionSplit[] {
  const name = local.toLowerCase().split('+')[0] as string
  const special = name.startsWith('owner-') || name.endsWith('-request')
  const allowed = special ? delimiters.replaceAll('-', '') : delimiters
  const out: ExtensionSplit[] = []
  for (let i = local.length - 1; i > 0; i--) {
    if (allowed.includes(local[i] as string)) out.push({ base: local.slice(0, i), extension: local.slice(i) })
  }
  return out
}

/** Parse a TCP port (1–65535) or return undefined. */
export function parsePort(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined
  const port = Number(text)
  return port >= 1 && port <= 65_535 ? port : undefined
}

/** A quoted local part as the mailbox it names (`"jos"` is `jos`, RFC 5321 4.1.2); case kept. */
export function unquoteLocal(local: string): string {
  return local.length >= 2 && local.startsWith('"') && local.endsWith('"')
    ? local.slice(1, -1).replace(/\\(.)/g, '$1')
    : local
}

/** RFC 5321 Dot-string (atext runs joined by dots); UTF-8 counts as atext (RFC 6531). */
const DOT_STRING =
  /^[\w!#$%&'*+/=?^`{|}~\u0080-\u{10ffff}-]+(?:\.[\w!#$%&'*+/=?^`{|}~\u0080-\u{10ffff}-]+)*$/u

/** A local part as it must be written in an address: quoted when it is no Dot-string (`"help desk"`). */
export function quoteLocal(local: string): string {
  return DOT_STRING.test(local) ? local : `"${local.replace(/["\\]/g, '\\$&')}"`
}
