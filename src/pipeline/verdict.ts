import type { SymbolCategory } from './plugin.js'
import type { CheckOutcome } from './runner.js'

/** The categories a message can end in (MailScanner's). */
export const VERDICT_CATEGORIES = ['clean', 'spam', 'highspam', 'virus', 'banned', 'unscannable'] as const
export type VerdictCategory = (typeof VERDICT_CATEGORIES)[number]

/** What the score table knows about a symbol. */
export interface SymbolInfo {
  readonly weight: number
  readonly category?: SymbolCategory
}

/** One hit with the points it earned. */
export interface ScoredHit {
  readonly symbol: string
  readonly plugin: string
  readonly score: number
  readonly evidence: readonly string[]
  readonly category?: SymbolCategory
  /** MIME parts the finding is in (what `strip` removes). */
  readonly parts?: readonly string[]
}

/** The administrator's list a message matched, and where. */
export interface ListMatch {
  readonly list: 'definitelySpam' | 'definitelyNotSpam'
  /** e.g. `rules/spam.whitelist.rules:4`, or `policy.definitelyNotSpam:2` for the second inline pattern. */
  readonly rule: string
}

/** The one decision for a message. Plain data. */
export interface Verdict {
  readonly category: VerdictCategory
  /**
   * False while a failed check with policy `tempfail` leaves the question open: the message
   * waits and is scanned again. True when the category can be acted on.
   */
  readonly final: boolean
  readonly score: number
  readonly required: number
  /** Every hit, highest score first. */
  readonly hits: readonly ScoredHit[]
  /** Why the message must wait (failed checks whose policy is tempfail). */
  readonly tempfail: readonly string[]
  readonly listed?: ListMatch
  /** Why the category, in words for logs, headers and notices. */
  readonly reasons: readonly string[]
}

export interface VerdictPolicy {
  readonly spamThreshold: number
  readonly highSpamThreshold: number
  readonly definiteSpamIsHighScoring: boolean
}

/** What is known about this message besides the checks' findings. */
export interface VerdictContext {
  readonly listed?: ListMatch
  /** The message's last scan before its queue lifetime ends: a failure makes it unscannable. */
  readonly lastChance?: boolean
}

/** Round to two decimals so sums of fractional weights print and compare sanely. */
function round2(value: number): number {
  return Math.round(value * 100) / 100
}

function scoreHits(outcomes: readonly CheckOutcome[], symbols: ReadonlyMap<string, SymbolInfo>): ScoredHit[] {
  const hits: ScoredHit[] = []
  for (const outcome of outcomes)
    for (const hit of outcome.hits) {
      const info = symbols.get(hit.symbol)
      hits.push({
        symbol: hit.symbol,
        plugin: outcome.plugin,
        score: round2((info?.weight ?? 0) * (hit.factor ?? 1)),
        evidence: hit.evidence ?? [],
        ...(info?.category ? { category: info.category } : {}),
        ...(hit.parts ? { parts: hit.parts } : {}),
      })
    }
  return hits.sort((a, b) => b.score - a.score || a.symbol.localeCompare(b.symbol))
}

function evidenceOf(hits: readonly ScoredHit[]): string[] {
  return hits.flatMap((h) => (h.evidence.length > 0 ? h.evidence : [h.symbol]))
}

/**
 * Turn check outcomes into the verdict. Sum weight × factor over all hits with the one
 * effective score table. Then, first that applies wins: a virus found; a failed check with
 * policy `tempfail` (wait, or unscannable on the last chance); a banned attachment or
 * unscannable content found; the administrator's lists; the score against the two thresholds.
 * Pure and synchronous.
 */
export function decide(
  outcomes: readonly CheckOutcome[],
  symbols: ReadonlyMap<string, SymbolInfo>,
  policy: VerdictPolicy,
  context: VerdictContext = {},
): Verdict {
  const hits = scoreHits(outcomes, symbols)
  const tempfail = outcomes
    .filter((o) => o.failure?.policy === 'tempfail')
    .map((o) => `${o.plugin}: ${o.failure?.message}`)
  const score = round2(hits.reduce((sum, hit) => sum + hit.score, 0))
  const base = {
    score,
    required: policy.spamThreshold,
    hits,
    tempfail,
    ...(context.listed ? { listed: context.listed } : {}),
  }
  // A virus found is final even if another check failed: nothing left to wait for. Not a
  // banned or unscannable part: their actions may deliver the rest (strip), which the failed
  // check (the virus scanner, say) has not seen.
  for (const category of ['virus', 'banned', 'unscannable'] as const) {
    if (category !== 'virus' && tempfail.length > 0) break
    const found = hits.filter((h) => h.category === category)
    if (found.length > 0) return { ...base, category, final: true, reasons: evidenceOf(found) }
  }
  if (tempfail.length > 0)
    return context.lastChance
      ? { ...base, category: 'unscannable', final: true, reasons: tempfail }
      : { ...base, category: 'clean', final: false, reasons: tempfail }
  if (context.listed?.list === 'definitelyNotSpam')
    return {
      ...base,
      category: 'clean',
      final: true,
      reasons: [`definitely not spam (${context.listed.rule})`],
    }
  if (context.listed?.list === 'definitelySpam')
    return {
      ...base,
      category: policy.definiteSpamIsHighScoring ? 'highspam' : 'spam',
      final: true,
      reasons: [`definitely spam (${context.listed.rule})`],
    }
  const category =
    score >= policy.highSpamThreshold ? 'highspam' : score >= policy.spamThreshold ? 'spam' : 'clean'
  const reasons =
    category === 'clean'
      ? []
      : [`score ${score} >= ${category === 'spam' ? policy.spamThreshold : policy.highSpamThreshold}`]
  return { ...base, category, final: true, reasons }
}
