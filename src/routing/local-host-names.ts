/**
 * `local-host-names` (Sendmail's class `w` file): the domains that are ours, one per line.
 *
 *     # our domains
 *     example.edu
 *     Mail.Example.EDU.        # case and a trailing dot do not matter
 *     [192.0.2.25]             # an address literal, for user@[192.0.2.25]
 *
 * Mail for these domains is routed by recipientmap, aliases and the user directory; a name
 * none of them knows is refused with `550 5.1.1`.
 */
import {
  isDomainLiteral,
  isDomainName,
  logicalLines,
  type MapProblem,
  normalizeDomain,
  type Parsed,
  type SourceRef,
  words,
} from './text.js'

/** The domains that are ours, and the line each came from. */
export interface LocalHostNames {
  readonly domains: ReadonlyMap<string, SourceRef>
}

/** Whether `domain` (normalized) is one of ours. */
export function isLocalDomain(names: LocalHostNames, domain: string): boolean {
  return names.domains.has(domain)
}

/** Parse a `local-host-names` file. Bad lines are reported and skipped. */
export function parseLocalHostNames(text: string, file: string): Parsed<LocalHostNames> {
  const domains = new Map<string, SourceRef>()
  const problems: MapProblem[] = []
  for (const { line, text: body } of logicalLines(text, false)) {
    const fields = words(body)
    if (fields.length !== 1) {
      problems.push({ file, line, reason: `expected one domain per line, got ${fields.length} words` })
      continue
    }
    const domain = normalizeDomain(fields[0] as string)
    if (!isDomainName(domain) && !isDomainLiteral(domain)) {
      problems.push({ file, line, reason: `not a domain name: ${JSON.stringify(fields[0])}` })
      continue
    }
    // A domain listed twice is harmless (Sendmail does not mind either); the first line counts.
    if (!domains.has(domain)) domains.set(domain, { file, line })
  }
  return { map: { domains }, problems }
}
