/**
 * Rulesets: a value (an action list, yes/no) chosen per message by its envelope, in
 * MailScanner's format. One rule per line, first match wins:
 *
 *     # direction: pattern [and direction: pattern]   value
 *     To:       *@sales.example.com                  deliver header "X-Spam: yes"
 *     From:     192.0.2.0/24                          quarantine
 *     FromOrTo: default                               tag deliver
 *
 * Directions: `From:` (the envelope sender, or the client address for an IP pattern),
 * `To:` (any envelope recipient), `FromOrTo:`, `Client:` (client address only).
 * Patterns: `user@domain`, `*@domain`, `domain` (= `*@domain`), globs with `*`, `/regex/`
 * (case-insensitive), `<>` (the null sender), an IP address or CIDR, `default`.
 *
 * A ruleset is parsed in the main thread into plain data (it crosses into workers) and
 * compiled into matchers where it is used.
 */
import { readFileSync } from 'node:fs'
import { BlockList } from 'node:net'
import { parseCidr } from '../config/address.js'
import { MailscreenError } from '../errors.js'
import type { Envelope } from '../ingress/envelope.js'
import { plainAddress } from '../ingress/trusted.js'

export type Direction = 'from' | 'to' | 'fromorto' | 'client'

export interface RuleCondition {
  readonly direction: Direction
  readonly pattern: string
}

export interface Rule<T> {
  /** Line number in the file, for logs. */
  readonly line: number
  readonly conditions: readonly RuleCondition[]
  readonly value: T
}

/** A parsed ruleset. Plain data. */
export interface Ruleset<T> {
  /** Where it came from (file name), for messages. */
  readonly source: string
  readonly rules: readonly Rule<T>[]
}

const DIRECTIONS: Readonly<Record<string, Direction>> = {
  'from:': 'from',
  'to:': 'to',
  'fromorto:': 'fromorto',
  'client:': 'client',
}

function isNetwork(pattern: string): boolean {
  return parseCidr(pattern) !== undefined
}

function isDefault(pattern: string): boolean {
  return pattern.toLowerCase() === 'default'
}

/** The RegExp of a `/regex/flags` pattern: always case-insensitive; flags m, s, u allowed. */
function patternRegex(pattern: string): RegExp {
  const end = pattern.lastIndexOf('/')
  if (end === 0) throw new Error(`unterminated regex ${pattern}`)
  const flags = pattern.slice(end + 1)
  if (!/^[msu]*$/.test(flags)) throw new Error(`regex ${pattern}: flags may be m, s and u only`)
  try {
    return new RegExp(pattern.slice(1, end), `i${flags}`)
  } catch (err) {
    throw new Error(`bad regex ${pattern}: ${(err as Error).message}`)
  }
}

function checkPattern(direction: Direction, pattern: string): void {
  if (isDefault(pattern)) return
  if (direction === 'client' && !isNetwork(pattern))
    throw new Error(`Client: needs an IP address or network, not ${pattern}`)
  if (direction === 'to' && isNetwork(pattern)) throw new Error(`To: cannot match an IP address (${pattern})`)
  if (pattern.startsWith('/')) patternRegex(pattern)
}

/**
 * Parse a ruleset's text. `parseValue` turns the rest of a line into its value and throws
 * with a reason on a bad one. Errors name `source:line`.
 */
export function parseRuleset<T>(text: string, source: string, parseValue: (text: string) => T): Ruleset<T> {
  const rules: Rule<T>[] = []
  const lines = text.split(/\r?\n/)
  for (const [index, raw] of lines.entries()) {
    const line = raw.replace(/^\s*#.*$/, '').trim()
    if (line === '') continue
    try {
      const conditions: RuleCondition[] = []
      let rest = line
      for (;;) {
        const match = /^(\S+:)\s+(\S+)\s*/.exec(rest)
        const direction = match && DIRECTIONS[(match[1] as string).toLowerCase()]
        if (!match || !direction)
          throw new Error(`expected "From:", "To:", "FromOrTo:" or "Client:" and a pattern`)
        const pattern = match[2] as string
        checkPattern(direction, pattern)
        conditions.push({ direction, pattern })
        rest = rest.slice(match[0].length)
        const and = /^and\s+/i.exec(rest)
        if (!and) break
        rest = rest.slice(and[0].length)
      }
      if (rest === '') throw new Error('no value after the pattern')
      rules.push({ line: index + 1, conditions, value: parseValue(rest) })
    } catch (err) {
      throw new MailscreenError('MSC_RULES_INVALID', `${source}:${index + 1}: ${(err as Error).message}`)
    }
  }
  return { source, rules }
}

/** Read and parse a ruleset file. */
export function loadRuleset<T>(file: string, parseValue: (text: string) => T): Ruleset<T> {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new MailscreenError('MSC_RULES_INVALID', `${file}: ${(err as Error).message}`, { cause: err })
  }
  return parseRuleset(text, file, parseValue)
}

/** True when the ruleset has a rule that matches every message (its last resort). */
export function hasDefault(ruleset: Ruleset<unknown>): boolean {
  return ruleset.rules.some((r) => r.conditions.every((c) => isDefault(c.pattern)))
}

type AddressTest = (address: string) => boolean
type Test = (envelope: Envelope) => boolean

function addressTest(pattern: string): AddressTest {
  if (pattern === '<>') return (address) => address === ''
  if (pattern.startsWith('/')) {
    const re = patternRegex(pattern)
    return (address) => re.test(address)
  }
  const glob = pattern.includes('@') ? pattern : `*@${pattern}`
  const re = new RegExp(
    `^${glob
      .split('*')
      .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
    'i',
  )
  return (address) => re.test(address)
}

function networkTest(pattern: string): (address: string) => boolean {
  const cidr = parseCidr(pattern) as NonNullable<ReturnType<typeof parseCidr>>
  const list = new BlockList()
  list.addSubnet(cidr.address, cidr.prefix, cidr.family)
  return (address) => {
    const plain = plainAddress(address)
    const family = plain.includes(':') ? 'ipv6' : 'ipv4'
    return list.check(plain, family)
  }
}

function conditionTest({ direction, pattern }: RuleCondition): Test {
  if (isDefault(pattern)) return () => true
  if (isNetwork(pattern)) {
    const test = networkTest(pattern)
    return (envelope) => test(envelope.client.address)
  }
  const test = addressTest(pattern)
  switch (direction) {
    case 'from':
      return (envelope) => test(envelope.mailFrom)
    case 'to':
      return (envelope) => envelope.rcptTo.some(test)
    case 'fromorto':
      return (envelope) => test(envelope.mailFrom) || envelope.rcptTo.some(test)
    case 'client':
      return () => false
  }
}

/** A compiled ruleset: the first matching rule's value and line, if any rule matches. */
export type RulesetMatcher<T> = (envelope: Envelope) => { value: T; line: number } | undefined

/** Compile a parsed ruleset into a matcher. */
export function compileRuleset<T>(ruleset: Ruleset<T>): RulesetMatcher<T> {
  const rules = ruleset.rules.map((rule) => {
    const tests = rule.conditions.map(conditionTest)
    return { rule, matches: (envelope: Envelope) => tests.every((t) => t(envelope)) }
  })
  return (envelope) => {
    const hit = rules.find((r) => r.matches(envelope))
    return hit && { value: hit.rule.value, line: hit.rule.line }
  }
}
