/**
 * `mailertable` in the Sendmail format: `key value`, one per line.
 *
 *     students.example.edu   smtp:[students.example.edu]       # brackets: this host, no MX lookup
 *     unix.example.edu       smtp:[192.0.2.10]:2525            # ... on another port
 *     .example.edu           smtp:relay.example.edu            # every subdomain; MX lookup of the host
 *     lab.example.edu        esmtp:                            # no host: the recipient domain's MX
 *     old.example.edu        error:5.1.2:550 moved to example.edu
 *     spam.example           error:nouser no such users here
 *     mail.example.edu       local                             # the local MTA
 *     .                      smtp:[outbound.example.edu]       # everything else (default relay)
 *
 * Keys: `domain` matches that domain only; `.domain` every subdomain of it (not the domain
 * itself); `.` everything. The longest match wins: `a.b.example` tries `a.b.example`,
 * `.b.example`, `.example`, then `.`.
 *
 * Values: `smtp:`, `esmtp:`, `smtp8:`, `dsmtp:` or `relay:` (all SMTP) followed by
 * `[host]` (that host's A/AAAA, no MX lookup), `host` (MX lookup of host), either with
 * `:port`, or nothing (MX of the recipient domain); `[IPv6:2001:db8::1]` for IPv6.
 * `error:` followed by `D.S.N:text`, `D.S.N:NNN text`, `NNN D.S.N text` or a Sendmail
 * name (`nouser`, `nohost`, `unavailable`, `tempfail`) and text: refused with that reply.
 * `local`: handed to the local MTA (the re-injection relay) for local delivery.
 */
import { isIP } from 'node:net'
import {
  isDomainName,
  logicalLines,
  type MapProblem,
  normalizeDomain,
  type Parsed,
  parsePort,
  type SourceRef,
  words,
} from './text.js'

/** What a mailertable entry says to do. */
export type MailerRoute =
  | {
      readonly kind: 'smtp'
      readonly host: string
      readonly port: number
      /** True for `smtp:host` (look up host's MX), false for `smtp:[host]`. */
      readonly mx: boolean
    }
  | {
      /** `smtp:` without a host: the recipient domain's MX hosts. */
      readonly kind: 'mx'
    }
  | {
      readonly kind: 'error'
      /** SMTP reply code, 4xx or 5xx. */
      readonly code: number
      /** Enhanced status code, e.g. `5.1.1`. */
      readonly status: string
      readonly text: string
    }
  | { readonly kind: 'local' }

export interface MailertableEntry {
  /** `domain`, `.domain` or `.`, lower case. */
  readonly key: string
  readonly route: MailerRoute
  readonly source: SourceRef
}

export interface Mailertable {
  readonly entries: ReadonlyMap<string, MailertableEntry>
}

const SMTP_MAILERS = new Set(['smtp', 'esmtp', 'smtp8', 'dsmtp', 'relay'])

/** Sendmail's error names (sysexits) and the replies they stand for. */
const ERROR_NAMES: Readonly<Record<string, { code: number; status: string }>> = {
  nouser: { code: 550, status: '5.1.1' },
  nohost: { code: 550, status: '5.1.2' },
  unavailable: { code: 550, status: '5.0.0' },
  tempfail: { code: 451, status: '4.0.0' },
}

/** Parse the part after `error:`. Throws with a reason. */
export function parseErrorRoute(text: string): MailerRoute & { kind: 'error' } {
  let status: string | undefined
  let code: number | undefined
  let rest = text.trim()
  const named = /^([a-z]+)(?::|\s+|$)(.*)$/i.exec(rest)
  const known = named && ERROR_NAMES[(named[1] as string).toLowerCase()]
  if (named && known) {
    ;({ code, status } = known)
    rest = (named[2] as string).trim()
  } else {
    const dsn = /^(\d)\.(\d{1,3})\.(\d{1,3})(?::|\s+|$)(.*)$/.exec(rest)
    if (dsn) {
      status = `${dsn[1]}.${dsn[2]}.${dsn[3]}`
      rest = (dsn[4] as string).trim()
    }
    const reply = /^(\d{3})(?::|\s+|$)(.*)$/.exec(rest)
    if (reply) {
      code = Number(reply[1])
      rest = (reply[2] as string).trim()
      const after = status === undefined && /^(\d)\.(\d{1,3})\.(\d{1,3})(?:\s+|$)(.*)$/.exec(rest)
      if (after) {
        status = `${after[1]}.${after[2]}.${after[3]}`
        rest = (after[4] as string).trim()
      }
    }
    if (status === undefined && code === undefined)
      throw new Error(
        `error: needs a status (error:5.1.1:text, error:550 5.1.1 text or error:nouser text), got ${JSON.stringify(text)}`,
      )
  }
  status ??= `${String(code).charAt(0)}.0.0`
  const cls = status.charAt(0)
  if (cls !== '4' && cls !== '5') throw new Error(`error: status ${status} is not 4.x.x or 5.x.x`)
  code ??= cls === '5' ? 550 : 451
  if (code < 400 || code > 599) throw new Error(`error: reply code ${code} is not 4xx or 5xx`)
  if (String(code).charAt(0) !== cls)
    throw new Error(`error: reply code ${code} and status ${status} disagree`)
  return { kind: 'error', code, status, text: rest || 'refused by the mailertable' }
}

/** Parse the host part of an SMTP value: `[host]`, `[host]:port`, `host`, `host:port`, or empty. */
function parseSmtpRoute(text: string): MailerRoute {
  if (text === '') return { kind: 'mx' }
  const bracket = /^\[([^\]]+)\](?::(.*))?$/.exec(text)
  if (bracket) {
    const host = (bracket[1] as string).replace(/^ipv6:/i, '')
    const named = normalizeDomain(host)
    if (isIP(host) === 0 && !isDomainName(named)) throw new Error(`not a host name or address: [${host}]`)
    const port = bracket[2] === undefined ? 25 : parsePort(bracket[2])
    if (port === undefined) throw new Error(`not a port: ${JSON.stringify(bracket[2])}`)
    return { kind: 'smtp', host: isIP(host) === 0 ? named : host, port, mx: false }
  }
  const colon = text.indexOf(':')
  const hostText = colon < 0 ? text : text.slice(0, colon)
  const port = colon < 0 ? 25 : parsePort(text.slice(colon + 1))
  if (port === undefined) throw new Error(`not a port: ${JSON.stringify(text.slice(colon + 1))}`)
  // An IPv4 address has no MX records: connect to it as if bracketed.
  if (isIP(hostText) === 4) return { kind: 'smtp', host: hostText, port, mx: false }
  const host = normalizeDomain(hostText)
  if (!isDomainName(host)) throw new Error(`not a host name: ${JSON.stringify(hostText)}`)
  return { kind: 'smtp', host, port, mx: true }
}

/** Parse a mailertable value (everything after the key). Throws with a reason. */
export function parseMailerRoute(value: string): MailerRoute {
  const colon = value.indexOf(':')
  const mailer = (colon < 0 ? value : value.slice(0, colon)).toLowerCase()
  const rest = colon < 0 ? '' : value.slice(colon + 1)
  if (mailer === 'error') return parseErrorRoute(rest)
  if (words(value).length !== 1) throw new Error(`unexpected spaces in ${JSON.stringify(value)}`)
  if (mailer === 'local') {
    if (rest !== '') throw new Error(`local:${rest}: a local user here is not supported; use aliases`)
    return { kind: 'local' }
  }
  if (colon < 0)
    throw new Error(`expected mailer:host (e.g. smtp:[host]:port), local or error:…, got ${value}`)
  if (!SMTP_MAILERS.has(mailer))
    throw new Error(`unknown mailer ${mailer}: (use smtp, esmtp, smtp8, dsmtp, relay, local or error)`)
  return parseSmtpRoute(rest.trim())
}

/** Parse a mailertable key: `domain`, `.domain` or `.`; undefined when invalid. */
function parseKey(text: string): string | undefined {
  if (text === '.') return '.'
  const dot = text.startsWith('.')
  const domain = normalizeDomain(dot ? text.slice(1) : text)
  if (!isDomainName(domain)) return undefined
  return dot ? `.${domain}` : domain
}

/** Parse a mailertable file. Bad lines are reported and skipped. */
export function parseMailertable(text: string, file: string): Parsed<Mailertable> {
  const entries = new Map<string, MailertableEntry>()
  const problems: MapProblem[] = []
  for (const { line, text: body } of logicalLines(text, false)) {
    const source = { file, line }
    const match = /^(\S+)\s+(.+)$/.exec(body)
    if (!match) {
      problems.push({
        ...source,
        reason: 'expected "domain mailer:host" (e.g. example.com smtp:[mx.example.com])',
      })
      continue
    }
    const key = parseKey(match[1] as string)
    if (key === undefined) {
      problems.push({ ...source, reason: `not a domain, .domain or "." key: ${JSON.stringify(match[1])}` })
      continue
    }
    let route: MailerRoute
    try {
      route = parseMailerRoute((match[2] as string).trim())
    } catch (err) {
      problems.push({ ...source, reason: (err as Error).message })
      continue
    }
    const first = entries.get(key)
    if (first) {
      problems.push({
        ...source,
        reason: `duplicate key ${key} (first on line ${first.source.line}); ignored`,
      })
      continue
    }
    entries.set(key, { key, route, source })
  }
  return { map: { entries }, problems }
}

/** The keys tried for a domain, most specific first: `a.b.c`, `.b.c`, `.c`, `.`. */
export function mailertableKeys(domain: string): string[] {
  if (domain.startsWith('[')) return [domain, '.']
  const keys = [domain]
  const labels = domain.split('.')
  for (let i = 1; i < labels.length; i++) keys.push(`.${labels.slice(i).join('.')}`)
  keys.push('.')
  return keys
}

/** The entry for a domain by longest match, or undefined. */
export function lookupMailertable(table: Mailertable, domain: string): MailertableEntry | undefined {
  for (const key of mailertableKeys(normalizeDomain(domain))) {
    const entry = table.entries.get(key)
    if (entry) return entry
  }
  return undefined
}
