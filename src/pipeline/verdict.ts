import type { CheckOutcome } from './runner.js'

/** The categories a message can end in. */
export type VerdictCategory = 'clean' | 'spam' | 'virus'

/** What happens to the message next. */
export type VerdictAction = 'deliver' | 'tempfail' | 'quarantine'

/** One hit with the points it earned. */
export interface ScoredHit {
  readonly symbol: string
  readonly plugin: string
  readonly score: number
  readonly evidence: readonly string[]
}

/** The one decision for a message. Plain data. */
export interface Verdict {
  readonly category: VerdictCategory
  readonly action: VerdictAction
  readonly score: number
  readonly required: number
  /** Every hit, highest score first. */
  readonly hits: readonly ScoredHit[]
  /** Why the message must wait (failed checks whose policy is tempfail). */
  readonly tempfail: readonly string[]
}

export interface VerdictPolicy {
  readonly spamThreshold: number
  /** A hit on any of these makes the message a virus: never delivered, quarantined. */
  readonly quarantineSymbols: readonly string[]
}

/** Round to two decimals so sums of fractional weights print and compare sanely. */
function round2(value: number): number {
  return Math.round(value * 100) / 100
}

/**
 * Turn check outcomes into the verdict: sum weight × factor over all hits using the one
 * effective score table; a failed check with policy `tempfail` makes the message wait; a
 * quarantine symbol (a virus) sends it to quarantine whatever else happened.
 * Pure and synchronous.
 */
export function decide(
  outcomes: readonly CheckOutcome[],
  weights: ReadonlyMap<string, number>,
  policy: VerdictPolicy,
): Verdict {
  const hits: ScoredHit[] = []
  const tempfail: string[] = []
  for (const outcome of outcomes) {
    if (outcome.failure?.policy === 'tempfail') tempfail.push(`${outcome.plugin}: ${outcome.failure.message}`)
    for (const hit of outcome.hits) {
      const weight = weights.get(hit.symbol) ?? 0
      hits.push({
        symbol: hit.symbol,
        plugin: outcome.plugin,
        score: round2(weight * (hit.factor ?? 1)),
        evidence: hit.evidence ?? [],
      })
    }
  }
  hits.sort((a, b) => b.score - a.score || a.symbol.localeCompare(b.symbol))
  const score = round2(hits.reduce((sum, hit) => sum + hit.score, 0))
  // A virus found is final even if another check failed: there is nothing left to wait for.
  const virus = hits.some((hit) => policy.quarantineSymbols.includes(hit.symbol))
  return {
    category: virus ? 'virus' : score >= policy.spamThreshold ? 'spam' : 'clean',
    action: virus ? 'quarantine' : tempfail.length > 0 ? 'tempfail' : 'deliver',
    score,
    required: policy.spamThreshold,
    hits,
    tempfail,
  }
}
