/**
 * The scores file: administrator's weights that override the defaults plugins declare.
 *
 *     # symbol         weight
 *     RBL_EXAMPLE      3.5
 *     SPAMD_SCORE      1
 *
 * A symbol no configured plugin declares is an error at start-up (a typo would otherwise
 * silently score nothing).
 */
import { readFileSync } from 'node:fs'
import { MailscreenError } from '../errors.js'
import type { SymbolInfo } from './verdict.js'

/** Parse a scores file into `symbol → weight`. Errors name `source:line`. */
export function parseScores(text: string, source: string, known: ReadonlySet<string>): Map<string, number> {
  const scores = new Map<string, number>()
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.replace(/#.*$/, '').trim()
    if (line === '') continue
    const fail = (reason: string): never => {
      throw new MailscreenError('MSC_RULES_INVALID', `${source}:${index + 1}: ${reason}`)
    }
    const [symbol = '', weight, ...extra] = line.split(/\s+/)
    if (weight === undefined || extra.length > 0) fail('expected "SYMBOL weight"')
    const value = Number(weight)
    if (!Number.isFinite(value)) fail(`weight ${JSON.stringify(weight)} is not a number`)
    if (!known.has(symbol))
      fail(
        `unknown symbol ${symbol}: no configured plugin declares it (known: ${[...known].sort().join(', ')})`,
      )
    if (scores.has(symbol)) fail(`${symbol} is given twice`)
    scores.set(symbol, value)
  }
  return scores
}

/** Read a scores file and apply it over the declared weights (categories stay). */
export function applyScoresFile(
  declared: ReadonlyMap<string, SymbolInfo>,
  file: string,
): Map<string, SymbolInfo> {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new MailscreenError('MSC_RULES_INVALID', `${file}: ${(err as Error).message}`, { cause: err })
  }
  const table = new Map(declared)
  for (const [symbol, weight] of parseScores(text, file, new Set(declared.keys())))
    table.set(symbol, { ...table.get(symbol), weight })
  return table
}
