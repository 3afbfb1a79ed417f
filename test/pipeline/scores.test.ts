import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { applyScoresFile, parseScores } from '../../src/pipeline/scores.js'
import type { SymbolInfo } from '../../src/pipeline/verdict.js'
import { useTempDir } from '../support/hooks.js'
import { failure } from '../support/pipeline.js'

const known = new Set(['RBL_EXAMPLE', 'SPAMD_SCORE', 'VIRUS_FOUND', 'BAYES_99'])

describe('parseScores', () => {
  it('reads SYMBOL weight lines, skipping comments and blank lines', () => {
    const scores = parseScores(
      '# symbol   weight\n\nRBL_EXAMPLE      3.5\n  SPAMD_SCORE\t1   # per point\n\t\n',
      'rules/scores',
      known,
    )
    expect([...scores]).toEqual([
      ['RBL_EXAMPLE', 3.5],
      ['SPAMD_SCORE', 1],
    ])
  })

  it('accepts negative, zero, integer and exponent weights', () => {
    const scores = parseScores('RBL_EXAMPLE -2.25\nSPAMD_SCORE 0\nVIRUS_FOUND 100\nBAYES_99 1e1', 's', known)
    expect(Object.fromEntries(scores)).toEqual({
      RBL_EXAMPLE: -2.25,
      SPAMD_SCORE: 0,
      VIRUS_FOUND: 100,
      BAYES_99: 10,
    })
  })

  it('handles CRLF files', () => {
    expect([...parseScores('RBL_EXAMPLE 2\r\nSPAMD_SCORE 3\r\n', 's', known)]).toEqual([
      ['RBL_EXAMPLE', 2],
      ['SPAMD_SCORE', 3],
    ])
  })

  it('returns an empty map for an empty file', () => {
    expect(parseScores('', 's', known).size).toBe(0)
    expect(parseScores('# nothing\n', 's', known).size).toBe(0)
  })

  it('refuses an unknown symbol, naming file:line and the known symbols', () => {
    expect(failure(() => parseScores('RBL_EXAMPLE 1\n# c\nRBL_EXAMPEL 2\n', 'rules/scores', known))).toEqual({
      code: 'MSC_RULES_INVALID',
      message:
        'rules/scores:3: unknown symbol RBL_EXAMPEL: no configured plugin declares it (known: BAYES_99, RBL_EXAMPLE, SPAMD_SCORE, VIRUS_FOUND)',
    })
  })

  it('matches symbol names case-sensitively', () => {
    expect(failure(() => parseScores('rbl_example 1', 's', known)).message).toMatch(
      /^s:1: unknown symbol rbl_example:/,
    )
  })

  it('refuses a symbol given twice, naming the second line', () => {
    expect(failure(() => parseScores('RBL_EXAMPLE 1\nSPAMD_SCORE 2\nRBL_EXAMPLE 3', 's', known))).toEqual({
      code: 'MSC_RULES_INVALID',
      message: 's:3: RBL_EXAMPLE is given twice',
    })
  })

  it('refuses a weight that is not a number', () => {
    for (const [line, shown] of [
      ['RBL_EXAMPLE high', '"high"'],
      ['RBL_EXAMPLE 1,5', '"1,5"'],
      ['RBL_EXAMPLE NaN', '"NaN"'],
      ['RBL_EXAMPLE Infinity', '"Infinity"'],
      ['RBL_EXAMPLE 3pts', '"3pts"'],
    ] as const)
      expect(failure(() => parseScores(`\n${line}`, 'f', known)).message, line).toBe(
        `f:2: weight ${shown} is not a number`,
      )
  })

  it('refuses a line without a weight or with extra words', () => {
    expect(failure(() => parseScores('RBL_EXAMPLE', 'f', known)).message).toBe(
      'f:1: expected "SYMBOL weight"',
    )
    expect(failure(() => parseScores('RBL_EXAMPLE 1 2', 'f', known)).message).toBe(
      'f:1: expected "SYMBOL weight"',
    )
  })

  it('checks the weight before the symbol name', () => {
    expect(failure(() => parseScores('NOPE x', 'f', known)).message).toBe('f:1: weight "x" is not a number')
  })
})

describe('applyScoresFile', () => {
  const dir = useTempDir('msc-scores-')
  const declared = new Map<string, SymbolInfo>([
    ['RBL_EXAMPLE', { weight: 1 }],
    ['VIRUS_FOUND', { weight: 0, category: 'virus' }],
    ['BANNED_EXE', { weight: 0, category: 'banned' }],
  ])

  it('overrides weights, keeps categories, keeps symbols the file does not mention', async () => {
    const file = join(dir(), 'scores')
    await writeFile(file, 'RBL_EXAMPLE 3.5\nVIRUS_FOUND 50\n')
    const table = applyScoresFile(declared, file)
    expect(Object.fromEntries(table)).toEqual({
      RBL_EXAMPLE: { weight: 3.5 },
      VIRUS_FOUND: { weight: 50, category: 'virus' },
      BANNED_EXE: { weight: 0, category: 'banned' },
    })
  })

  it('does not change the declared table', async () => {
    const file = join(dir(), 'scores2')
    await writeFile(file, 'RBL_EXAMPLE 9\n')
    applyScoresFile(declared, file)
    expect(declared.get('RBL_EXAMPLE')).toEqual({ weight: 1 })
    expect(declared.size).toBe(3)
  })

  it('names the file path and line of a symbol no plugin declares', async () => {
    const file = join(dir(), 'typo')
    await writeFile(file, '# mine\nRBL_EXAMPLE 2\nRBL_EXMAPLE 2\n')
    expect(failure(() => applyScoresFile(declared, file))).toEqual({
      code: 'MSC_RULES_INVALID',
      message: `${file}:3: unknown symbol RBL_EXMAPLE: no configured plugin declares it (known: BANNED_EXE, RBL_EXAMPLE, VIRUS_FOUND)`,
    })
  })

  it('throws MSC_RULES_INVALID naming a missing file', () => {
    const file = join(dir(), 'nope')
    const { code, message } = failure(() => applyScoresFile(declared, file))
    expect(code).toBe('MSC_RULES_INVALID')
    expect(message).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ENOENT`))
  })
})
