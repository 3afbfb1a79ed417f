/**
 * `recipientmap`: whole-address rewrites, one per line, `address:target` (spaces around the
 * colon, or whitespace alone instead of it, are fine; a line starting with whitespace
 * continues the previous one, as in Postfix tables):
 *
 *     jos@example.org:jos@jos.example.org
 *     marie@example.org : marie.curie@lab.example.org
 *     @example.net:@mail.example.net           # domain default: keep the local part
 *     @lists.example.org:listmaster@example.org # domain default: one mailbox for all
 *
 * - `user-ext@domain` and `user+ext@domain` follow the entry for `user@domain`, keeping the
 *   extension: `jos-anything@example.org` → `jos-anything@jos.example.org`. An exact entry
 *   for `user-ext@domain` wins; with several delimiters the longest known base wins
 *   (`mary-jane-x` uses `mary-jane@…` before `mary@…`). `owner-x` and `x-request` are not split
 *   at `-` (Postfix's `owner_request_special`).
 * - `@domain:@host.domain` is the domain default (rewrites the domain, keeps the local part
 *   and any extension); `@domain:user@host` sends every address of the domain to one mailbox.
 *   For our own domains the default is consulted last, after aliases and the user directory.
 * - A target `@host.domain` on an address entry keeps that address's local part.
 * - An address listed twice: the first entry counts, the second is reported.
 */
import {
  extensionSplits,
  logicalLines,
  type MailAddress,
  type MapProblem,
  normalizeDomain,
  type Parsed,
  parseAddress,
  type SourceRef,
  unquoteLocal,
  words,
} from './text.js'

/** The right-hand side: a whole address, or `@domain` (local part kept). */
export interface RecipientTarget {
  /** Undefined for `@domain` targets: the looked-up local part is kept. */
  readonly local?: string
  readonly domain: string
}

export interface RecipientEntry {
  /** `user@domain` or `@domain`, lower case. */
  readonly key: string
  readonly target: RecipientTarget
  readonly source: SourceRef
}

export interface RecipientMap {
  /** Entries for whole addresses, by `user@domain`. */
  readonly addresses: ReadonlyMap<string, RecipientEntry>
  /** Domain defaults, by domain. */
  readonly domains: ReadonlyMap<string, RecipientEntry>
}

/** A matched entry and the address it rewrites to. */
export interface RecipientMatch {
  readonly entry: RecipientEntry
  readonly rewritten: MailAddress
  /** The extension carried over (`-list`, `+news`), if the match used one. */
  readonly extension?: string
}

/** The characters that start an extension in recipientmap lookups. */
export const RECIPIENT_DELIMITERS = '-+'

/** Split `key:target` at the first `:` outside quotes, or at whitespace. */
function splitEntry(body: string): [string, string] | undefined {
  let quoted = false
  for (let i = 0; i < body.length; i++) {
    const c = body[i]
    if (c === '\\' && quoted) i++
    else if (c === '"') quoted = !quoted
    else if (!quoted && c === ':') return [body.slice(0, i).trim(), body.slice(i + 1).trim()]
  }
  const fields = words(body)
  if (fields.length === 2) return [fields[0] as string, fields[1] as string]
  return undefined
}

/** `@domain` → the domain, or undefined. */
function atDomain(text: string): string | undefined {
  if (!text.startsWith('@')) return undefined
  const parsed = parseAddress(`x${text}`)
  return parsed?.domain || undefined
}

/** Parse a recipientmap file. Bad lines are reported and skipped. */
export function parseRecipientMap(text: string, file: string): Parsed<RecipientMap> {
  const addresses = new Map<string, RecipientEntry>()
  const domains = new Map<string, RecipientEntry>()
  const problems: MapProblem[] = []
  for (const { line, text: body, orphan } of logicalLines(text, true)) {
    const source = { file, line }
    const problem = (reason: string): void => {
      problems.push({ ...source, reason })
    }
    if (orphan) {
      problem('continuation line (starts with whitespace) with no entry before it')
      continue
    }
    const parts = splitEntry(body)
    if (!parts || parts[0] === '' || parts[1] === '') {
      problem('expected "user@domain:user@host.domain" or "@domain:@host.domain"')
      continue
    }
    const [keyText, targetText] = parts
    if (words(targetText).length !== 1) {
      problem(`one target per entry (got ${JSON.stringify(targetText)}); use aliases for lists`)
      continue
    }
    let target: RecipientTarget
    const targetDomain = atDomain(targetText)
    if (targetDomain) target = { domain: targetDomain }
    else {
      const parsed = parseAddress(targetText)
      if (!parsed || parsed.domain === '') {
        problem(`target must be user@domain or @domain: ${JSON.stringify(targetText)}`)
        continue
      }
      target = { local: parsed.local, domain: parsed.domain }
    }
    const keyDomain = atDomain(keyText)
    let key: string
    let table: Map<string, RecipientEntry>
    if (keyDomain) {
      key = `@${keyDomain}`
      table = domains
    } else {
      const parsed = parseAddress(keyText)
      if (!parsed || parsed.domain === '') {
        problem(`key must be user@domain or @domain: ${JSON.stringify(keyText)}`)
        continue
      }
      key = `${unquoteLocal(parsed.local)}@${parsed.domain}`.toLowerCase()
      table = addresses
    }
    const first = table.get(keyDomain ?? key)
    if (first) {
      problem(`duplicate entry ${key} (first on line ${first.source.line}); ignored`)
      continue
    }
    table.set(keyDomain ?? key, { key, target, source })
  }
  return { map: { addresses, domains }, problems }
}

/** Apply an entry: `@host` targets keep the looked-up local part (extension included). */
function rewrite(entry: RecipientEntry, local: string, extension: string): MailAddress {
  const { target } = entry
  if (target.local === undefined) return { local, domain: target.domain }
  return { local: `${target.local}${extension}`, domain: target.domain }
}

/**
 * Look an address up by its whole address: exact first, then `user` + `-ext`/`+ext`,
 * longest base first. Domain defaults are not consulted (see {@link lookupDomainDefault}).
 */
export function lookupRecipient(map: RecipientMap, address: MailAddress): RecipientMatch | undefined {
  const domain = normalizeDomain(address.domain)
  // "jos"@ and jos@ are one mailbox: keys and lookups use the unquoted form, as Postfix's do.
  const local = unquoteLocal(address.local)
  const exact = map.addresses.get(`${local}@${domain}`.toLowerCase())
  if (exact) return { entry: exact, rewritten: rewrite(exact, address.local, '') }
  for (const { base, extension } of extensionSplits(local, RECIPIENT_DELIMITERS)) {
    const entry = map.addresses.get(`${base}@${domain}`.toLowerCase())
    if (!entry) continue
    return { entry, rewritten: rewrite(entry, address.local, extension), extension }
  }
  return undefined
}

/** The domain default (`@domain:...`) for an address, if the map has one for its domain. */
export function lookupDomainDefault(map: RecipientMap, address: MailAddress): RecipientMatch | undefined {
  const entry = map.domains.get(normalizeDomain(address.domain))
  if (!entry) return undefined
  return { entry, rewritten: rewrite(entry, address.local, '') }
}
