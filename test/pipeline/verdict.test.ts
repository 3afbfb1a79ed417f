import { describe, expect, it } from 'vitest'
import type { CheckOutcome } from '../../src/pipeline/runner.js'
import { decide } from '../../src/pipeline/verdict.js'

const policy = { spamThreshold: 5, quarantineSymbols: ['VIRUS_FOUND'] }

function outcome(
  plugin: string,
  hits: CheckOutcome['hits'],
  failure?: CheckOutcome['failure'],
): CheckOutcome {
  return failure ? { plugin, hits, durationMs: 1, failure } : { plugin, hits, durationMs: 1 }
}

describe('decide', () => {
  it('sums weight times factor over all hits of all checks', () => {
    const weights = new Map([
      ['A', 2],
      ['B', 1.5],
    ])
    const verdict = decide(
      [
        outcome('p1', [{ symbol: 'A' }, { symbol: 'B', factor: 2 }]),
        outcome('p2', [{ symbol: 'A', factor: 0.5 }]),
      ],
      weights,
      policy,
    )
    expect(verdict.score).toBe(2 + 3 + 1)
    expect(verdict.hits.map((h) => [h.symbol, h.plugin, h.score])).toEqual([
      ['B', 'p1', 3],
      ['A', 'p1', 2],
      ['A', 'p2', 1],
    ])
  })

  it('reports the threshold it used as required', () => {
    expect(decide([], new Map(), { ...policy, spamThreshold: 7.5 }).required).toBe(7.5)
  })

  it('calls a message with no hits clean and delivers it', () => {
    const verdict = decide([outcome('p', [])], new Map(), policy)
    expect(verdict).toEqual({
      category: 'clean',
      action: 'deliver',
      score: 0,
      required: 5,
      hits: [],
      tempfail: [],
    })
  })

  it('calls a message spam when the score equals the threshold exactly', () => {
    const verdict = decide([outcome('p', [{ symbol: 'S' }])], new Map([['S', 5]]), policy)
    expect(verdict.category).toBe('spam')
    expect(verdict.action).toBe('deliver')
  })

  it('calls a message clean when the score is just under the threshold', () => {
    const verdict = decide([outcome('p', [{ symbol: 'S' }])], new Map([['S', 4.99]]), policy)
    expect(verdict.category).toBe('clean')
  })

  it('lets negative weights pull a message below the threshold', () => {
    const weights = new Map([
      ['BAD', 6],
      ['GOOD', -2],
    ])
    const verdict = decide([outcome('p', [{ symbol: 'BAD' }, { symbol: 'GOOD' }])], weights, policy)
    expect(verdict.score).toBe(4)
    expect(verdict.category).toBe('clean')
  })

  it('makes the action tempfail when a failed check has the tempfail policy', () => {
    const verdict = decide(
      [
        outcome('clamd', [{ symbol: 'CLAMD_FAIL', evidence: ['boom'] }], {
          code: 'MSC_PLUGIN_FAILED',
          message: 'connection refused',
          policy: 'tempfail',
        }),
      ],
      new Map([['CLAMD_FAIL', 0]]),
      policy,
    )
    expect(verdict.action).toBe('tempfail')
    expect(verdict.tempfail).toEqual(['clamd: connection refused'])
  })

  it('keeps delivering when a failed check has the continue policy', () => {
    const verdict = decide(
      [
        outcome('example', [{ symbol: 'EXAMPLE_FAIL' }], {
          code: 'MSC_PLUGIN_TIMEOUT',
          message: 'too slow',
          policy: 'continue',
        }),
      ],
      new Map([['EXAMPLE_FAIL', 0]]),
      policy,
    )
    expect(verdict.action).toBe('deliver')
    expect(verdict.tempfail).toEqual([])
    expect(verdict.hits.map((h) => h.symbol)).toEqual(['EXAMPLE_FAIL'])
  })

  it('weighs a symbol missing from the score table as 0 but still lists the hit', () => {
    const verdict = decide([outcome('p', [{ symbol: 'UNKNOWN', factor: 10 }])], new Map(), policy)
    expect(verdict.score).toBe(0)
    expect(verdict.hits).toEqual([{ symbol: 'UNKNOWN', plugin: 'p', score: 0, evidence: [] }])
  })

  it('sorts hits by score, highest first, and by symbol name on ties', () => {
    const weights = new Map([
      ['LOW', 0.5],
      ['HIGH', 4],
      ['MID_B', 1],
      ['MID_A', 1],
    ])
    const verdict = decide(
      [outcome('p', [{ symbol: 'LOW' }, { symbol: 'MID_B' }, { symbol: 'HIGH' }, { symbol: 'MID_A' }])],
      weights,
      policy,
    )
    expect(verdict.hits.map((h) => h.symbol)).toEqual(['HIGH', 'MID_A', 'MID_B', 'LOW'])
  })

  it('rounds each hit and the total to two decimals', () => {
    const weights = new Map([
      ['A', 0.1],
      ['B', 0.2],
      ['C', 1 / 3],
    ])
    const verdict = decide(
      [outcome('p', [{ symbol: 'A' }, { symbol: 'B' }, { symbol: 'C' }])],
      weights,
      policy,
    )
    expect(verdict.hits.find((h) => h.symbol === 'C')?.score).toBe(0.33)
    expect(verdict.score).toBe(0.63)
  })

  it('does not let floating-point error put a message under the threshold', () => {
    const weights = new Map([
      ['A', 0.1],
      ['B', 0.2],
    ])
    const verdict = decide([outcome('p', [{ symbol: 'A' }, { symbol: 'B' }])], weights, {
      ...policy,
      spamThreshold: 0.3,
    })
    expect(verdict.score).toBe(0.3)
    expect(verdict.category).toBe('spam')
  })

  it('carries each hit’s evidence', () => {
    const verdict = decide(
      [outcome('clamd', [{ symbol: 'VIRUS', evidence: ['Eicar-Signature'] }])],
      new Map([['VIRUS', 100]]),
      policy,
    )
    expect(verdict.hits[0]?.evidence).toEqual(['Eicar-Signature'])
  })
})

describe('decide with quarantine symbols', () => {
  const weights = new Map([
    ['VIRUS_FOUND', 100],
    ['OTHER', 1],
  ])

  it('makes a message with a quarantine symbol a virus to quarantine, even when another check tempfailed', () => {
    const verdict = decide(
      [
        { plugin: 'av', hits: [{ symbol: 'VIRUS_FOUND', evidence: ['Eicar'] }], durationMs: 1 },
        {
          plugin: 'spam',
          hits: [{ symbol: 'SPAM_FAIL' }],
          durationMs: 1,
          failure: { code: 'MSC_PLUGIN_TIMEOUT', message: 'slow', policy: 'tempfail' },
        },
      ],
      weights,
      policy,
    )
    expect(verdict.category).toBe('virus')
    expect(verdict.action).toBe('quarantine')
  })

  it('leaves a message without one to the score', () => {
    const verdict = decide([{ plugin: 'x', hits: [{ symbol: 'OTHER' }], durationMs: 1 }], weights, policy)
    expect(verdict.category).toBe('clean')
    expect(verdict.action).toBe('deliver')
  })
})
