import { describe, expect, it } from 'vitest'
import type { CheckOutcome } from '../../src/pipeline/runner.js'
import { decide, type ListMatch, type SymbolInfo, type VerdictPolicy } from '../../src/pipeline/verdict.js'

const policy: VerdictPolicy = { spamThreshold: 5, highSpamThreshold: 10, definiteSpamIsHighScoring: false }

function outcome(
  plugin: string,
  hits: CheckOutcome['hits'],
  failure?: CheckOutcome['failure'],
): CheckOutcome {
  return failure ? { plugin, hits, durationMs: 1, failure } : { plugin, hits, durationMs: 1 }
}

function tempfailed(plugin: string, message: string): CheckOutcome {
  return outcome(plugin, [], { code: 'MSC_PLUGIN_FAILED', message, policy: 'tempfail' })
}

/** A score table from `symbol → weight` (no categories). */
function weights(entries: Record<string, number>): Map<string, SymbolInfo> {
  return new Map(Object.entries(entries).map(([symbol, weight]) => [symbol, { weight }]))
}

const table = new Map<string, SymbolInfo>([
  ['VIRUS_FOUND', { weight: 0, category: 'virus' }],
  ['BANNED_EXE', { weight: 0, category: 'banned' }],
  ['ENCRYPTED_ZIP', { weight: 0.5, category: 'unscannable' }],
  ['SPAMMY', { weight: 4 }],
  ['VERY_SPAMMY', { weight: 20 }],
])

const notSpam: ListMatch = { list: 'definitelyNotSpam', rule: 'rules/whitelist.rules:4' }
const isSpam: ListMatch = { list: 'definitelySpam', rule: 'policy.definitelySpam:2' }

describe('decide: the score', () => {
  it('sums weight times factor over all hits of all checks', () => {
    const verdict = decide(
      [
        outcome('p1', [{ symbol: 'A' }, { symbol: 'B', factor: 2 }]),
        outcome('p2', [{ symbol: 'A', factor: 0.5 }]),
      ],
      weights({ A: 2, B: 1.5 }),
      policy,
    )
    expect(verdict.score).toBe(2 + 3 + 1)
    expect(verdict.hits.map((h) => [h.symbol, h.plugin, h.score])).toEqual([
      ['B', 'p1', 3],
      ['A', 'p1', 2],
      ['A', 'p2', 1],
    ])
  })

  it('reports the spam threshold it used as required', () => {
    expect(decide([], new Map(), { ...policy, spamThreshold: 7.5 }).required).toBe(7.5)
  })

  it('calls a message with no hits clean and final, with nothing else set', () => {
    const verdict = decide([outcome('p', [])], new Map(), policy)
    expect(verdict).toEqual({
      category: 'clean',
      final: true,
      score: 0,
      required: 5,
      hits: [],
      tempfail: [],
      reasons: [],
    })
    expect(Object.hasOwn(verdict, 'listed')).toBe(false)
  })

  it('calls a message spam when the score equals the spam threshold exactly', () => {
    const verdict = decide([outcome('p', [{ symbol: 'S' }])], weights({ S: 5 }), policy)
    expect(verdict.category).toBe('spam')
    expect(verdict.final).toBe(true)
    expect(verdict.reasons).toEqual(['score 5 >= 5'])
  })

  it('calls a message clean when the score is just under the spam threshold', () => {
    const verdict = decide([outcome('p', [{ symbol: 'S' }])], weights({ S: 4.99 }), policy)
    expect(verdict.category).toBe('clean')
    expect(verdict.reasons).toEqual([])
  })

  it('calls a message high-scoring spam at the high threshold exactly, and spam just under it', () => {
    const at = decide([outcome('p', [{ symbol: 'S' }])], weights({ S: 10 }), policy)
    expect(at.category).toBe('highspam')
    expect(at.reasons).toEqual(['score 10 >= 10'])
    const under = decide([outcome('p', [{ symbol: 'S' }])], weights({ S: 9.99 }), policy)
    expect(under.category).toBe('spam')
    expect(under.reasons).toEqual(['score 9.99 >= 5'])
  })

  it('lets negative weights pull a message below the threshold', () => {
    const verdict = decide(
      [outcome('p', [{ symbol: 'BAD' }, { symbol: 'GOOD' }])],
      weights({ BAD: 6, GOOD: -2 }),
      policy,
    )
    expect(verdict.score).toBe(4)
    expect(verdict.category).toBe('clean')
  })

  it('weighs a symbol missing from the score table as 0 but still lists the hit', () => {
    const verdict = decide([outcome('p', [{ symbol: 'UNKNOWN', factor: 10 }])], new Map(), policy)
    expect(verdict.score).toBe(0)
    expect(verdict.hits).toEqual([{ symbol: 'UNKNOWN', plugin: 'p', score: 0, evidence: [] }])
  })

  it('sorts hits by score, highest first, and by symbol name on ties', () => {
    const verdict = decide(
      [outcome('p', [{ symbol: 'LOW' }, { symbol: 'MID_B' }, { symbol: 'HIGH' }, { symbol: 'MID_A' }])],
      weights({ LOW: 0.5, HIGH: 4, MID_B: 1, MID_A: 1 }),
      policy,
    )
    expect(verdict.hits.map((h) => h.symbol)).toEqual(['HIGH', 'MID_A', 'MID_B', 'LOW'])
  })

  it('sorts negative scores after zero', () => {
    const verdict = decide(
      [outcome('p', [{ symbol: 'NEG' }, { symbol: 'ZERO' }, { symbol: 'POS' }])],
      weights({ NEG: -1, ZERO: 0, POS: 1 }),
      policy,
    )
    expect(verdict.hits.map((h) => h.symbol)).toEqual(['POS', 'ZERO', 'NEG'])
  })

  it('rounds each hit and the total to two decimals', () => {
    const verdict = decide(
      [outcome('p', [{ symbol: 'A' }, { symbol: 'B' }, { symbol: 'C' }])],
      weights({ A: 0.1, B: 0.2, C: 1 / 3 }),
      policy,
    )
    expect(verdict.hits.find((h) => h.symbol === 'C')?.score).toBe(0.33)
    expect(verdict.score).toBe(0.63)
  })

  it('does not let floating-point error put a message under the threshold', () => {
    const verdict = decide([outcome('p', [{ symbol: 'A' }, { symbol: 'B' }])], weights({ A: 0.1, B: 0.2 }), {
      ...policy,
      spamThreshold: 0.3,
    })
    expect(verdict.score).toBe(0.3)
    expect(verdict.category).toBe('spam')
  })

  it('carries each hit’s evidence, category and parts, and adds no keys that were not set', () => {
    const verdict = decide(
      [
        outcome('clamd', [{ symbol: 'VIRUS_FOUND', evidence: ['Eicar-Signature'], parts: ['2', '3.1'] }]),
        outcome('spam', [{ symbol: 'SPAMMY' }]),
      ],
      table,
      policy,
    )
    expect(verdict.hits).toEqual([
      { symbol: 'SPAMMY', plugin: 'spam', score: 4, evidence: [] },
      {
        symbol: 'VIRUS_FOUND',
        plugin: 'clamd',
        score: 0,
        evidence: ['Eicar-Signature'],
        category: 'virus',
        parts: ['2', '3.1'],
      },
    ])
    const spammy = verdict.hits[0]
    expect(spammy && Object.hasOwn(spammy, 'category')).toBe(false)
    expect(spammy && Object.hasOwn(spammy, 'parts')).toBe(false)
  })
})

describe('decide: content categories', () => {
  it('makes a virus hit decide the category whatever the score, with its evidence as reasons', () => {
    const verdict = decide(
      [outcome('clamd', [{ symbol: 'VIRUS_FOUND', evidence: ['Eicar-Signature', 'Win.Test'] }])],
      table,
      policy,
    )
    expect(verdict.category).toBe('virus')
    expect(verdict.final).toBe(true)
    expect(verdict.score).toBe(0)
    expect(verdict.reasons).toEqual(['Eicar-Signature', 'Win.Test'])
  })

  it('ranks virus over banned over unscannable', () => {
    const all = [
      outcome('zip', [{ symbol: 'ENCRYPTED_ZIP' }]),
      outcome('files', [{ symbol: 'BANNED_EXE', evidence: ['x.exe'] }]),
      outcome('clamd', [{ symbol: 'VIRUS_FOUND', evidence: ['Eicar'] }]),
    ]
    expect(decide(all, table, policy).category).toBe('virus')
    expect(decide(all.slice(0, 2), table, policy).category).toBe('banned')
    expect(decide(all.slice(0, 2), table, policy).reasons).toEqual(['x.exe'])
    expect(decide(all.slice(0, 1), table, policy).category).toBe('unscannable')
  })

  it('uses the symbol name as the reason when a category hit has no evidence', () => {
    const verdict = decide([outcome('zip', [{ symbol: 'ENCRYPTED_ZIP' }])], table, policy)
    expect(verdict.reasons).toEqual(['ENCRYPTED_ZIP'])
  })

  it('takes the category from the score table, not from the hit', () => {
    const verdict = decide(
      [outcome('clamd', [{ symbol: 'VIRUS_FOUND' }])],
      new Map([['VIRUS_FOUND', { weight: 100 }]]),
      policy,
    )
    expect(verdict.category).toBe('highspam')
  })

  it('keeps a virus final even when another check tempfailed, and still reports the failure', () => {
    const verdict = decide(
      [outcome('clamd', [{ symbol: 'VIRUS_FOUND', evidence: ['Eicar'] }]), tempfailed('spamd', 'slow')],
      table,
      policy,
    )
    expect(verdict.category).toBe('virus')
    expect(verdict.final).toBe(true)
    expect(verdict.tempfail).toEqual(['spamd: slow'])
  })

  it('waits on a tempfail with a banned or unscannable part found: the rest was not scanned', () => {
    // A banned part's default action strips it and delivers the rest, which clamd did not see.
    for (const symbol of ['BANNED_EXE', 'ENCRYPTED_ZIP']) {
      const verdict = decide(
        [outcome('files', [{ symbol, evidence: ['x'] }]), tempfailed('clamd', 'down')],
        table,
        policy,
      )
      expect(verdict.final, symbol).toBe(false)
      expect(verdict.reasons).toEqual(['clamd: down'])
      const last = decide([outcome('files', [{ symbol }]), tempfailed('clamd', 'down')], table, policy, {
        lastChance: true,
      })
      expect(last.category).toBe('unscannable')
    }
  })

  it('lets no administrator list clear a virus or a banned attachment', () => {
    const virus = decide([outcome('clamd', [{ symbol: 'VIRUS_FOUND' }])], table, policy, { listed: notSpam })
    expect(virus.category).toBe('virus')
    expect(virus.listed).toEqual(notSpam)
    const banned = decide([outcome('files', [{ symbol: 'BANNED_EXE' }])], table, policy, { listed: isSpam })
    expect(banned.category).toBe('banned')
  })
})

describe('decide: failed checks', () => {
  it('leaves the verdict open (not final) when a failed check has the tempfail policy', () => {
    const verdict = decide(
      [
        outcome('clamd', [{ symbol: 'CLAMD_FAIL', evidence: ['boom'] }], {
          code: 'MSC_PLUGIN_FAILED',
          message: 'connection refused',
          policy: 'tempfail',
        }),
      ],
      weights({ CLAMD_FAIL: 0 }),
      policy,
    )
    expect(verdict.final).toBe(false)
    expect(verdict.category).toBe('clean')
    expect(verdict.tempfail).toEqual(['clamd: connection refused'])
    expect(verdict.reasons).toEqual(['clamd: connection refused'])
  })

  it('lists every tempfailed check in order', () => {
    const verdict = decide([tempfailed('a', 'one'), outcome('b', []), tempfailed('c', 'two')], table, policy)
    expect(verdict.tempfail).toEqual(['a: one', 'c: two'])
  })

  it('waits on a tempfail even when the score alone says high-scoring spam or a list says spam', () => {
    const verdict = decide(
      [outcome('p', [{ symbol: 'VERY_SPAMMY' }]), tempfailed('spamd', 'down')],
      table,
      policy,
      { listed: isSpam },
    )
    expect(verdict.final).toBe(false)
    expect(verdict.score).toBe(20)
  })

  it('makes a tempfail on the last chance final and unscannable', () => {
    const verdict = decide([tempfailed('clamd', 'down')], table, policy, { lastChance: true })
    expect(verdict.category).toBe('unscannable')
    expect(verdict.final).toBe(true)
    expect(verdict.reasons).toEqual(['clamd: down'])
  })

  it('ignores the last chance when nothing failed', () => {
    const verdict = decide([outcome('p', [{ symbol: 'SPAMMY' }])], table, policy, { lastChance: true })
    expect(verdict.category).toBe('clean')
    expect(verdict.final).toBe(true)
  })

  it('keeps going when a failed check has the continue policy', () => {
    const verdict = decide(
      [
        outcome('example', [{ symbol: 'EXAMPLE_FAIL' }], {
          code: 'MSC_PLUGIN_TIMEOUT',
          message: 'too slow',
          policy: 'continue',
        }),
      ],
      weights({ EXAMPLE_FAIL: 0 }),
      policy,
    )
    expect(verdict.final).toBe(true)
    expect(verdict.category).toBe('clean')
    expect(verdict.tempfail).toEqual([])
    expect(verdict.hits.map((h) => h.symbol)).toEqual(['EXAMPLE_FAIL'])
  })
})

describe('decide: administrator lists', () => {
  it('calls a definitely-not-spam message clean whatever its score, and keeps the score', () => {
    const verdict = decide([outcome('p', [{ symbol: 'VERY_SPAMMY' }])], table, policy, { listed: notSpam })
    expect(verdict.category).toBe('clean')
    expect(verdict.final).toBe(true)
    expect(verdict.score).toBe(20)
    expect(verdict.listed).toEqual(notSpam)
    expect(verdict.reasons).toEqual(['definitely not spam (rules/whitelist.rules:4)'])
  })

  it('calls a definitely-spam message spam whatever its score', () => {
    const verdict = decide([outcome('p', [])], table, policy, { listed: isSpam })
    expect(verdict.category).toBe('spam')
    expect(verdict.score).toBe(0)
    expect(verdict.reasons).toEqual(['definitely spam (policy.definitelySpam:2)'])
  })

  it('calls a definitely-spam message high-scoring spam when definiteSpamIsHighScoring is set', () => {
    const verdict = decide(
      [outcome('p', [])],
      table,
      { ...policy, definiteSpamIsHighScoring: true },
      {
        listed: isSpam,
      },
    )
    expect(verdict.category).toBe('highspam')
  })

  it('lets an unscannable finding win over the not-spam list', () => {
    const verdict = decide([outcome('zip', [{ symbol: 'ENCRYPTED_ZIP' }])], table, policy, {
      listed: notSpam,
    })
    expect(verdict.category).toBe('unscannable')
  })
})
