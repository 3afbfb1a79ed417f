import { z } from 'zod'

const UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
}

/** Parse a Postfix-style duration (`30s`, `5m`, `1h`, `5d`; a bare number is seconds) to ms. */
export function parseDuration(text: string | number): number | undefined {
  if (typeof text === 'number') return Number.isFinite(text) && text >= 0 ? text * 1000 : undefined
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$/.exec(text)
  if (!match) return undefined
  return Math.round(Number(match[1]) * (UNITS[match[2] ?? 's'] ?? 1000))
}

/** The longest wait a Node timer keeps (2^31-1 ms, about 24.8 days): longer ones fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * Zod type for a duration in config that is only compared with clocks, never waited on
 * (`queueLifetime`): accepts `"5m"` or seconds, yields milliseconds.
 */
export const longDuration = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const ms = parseDuration(value)
  if (ms === undefined) {
    ctx.addIssue({
      code: 'custom',
      message: `not a duration: ${JSON.stringify(value)} (use e.g. 30s, 5m, 1h, 5d)`,
    })
    return z.NEVER
  }
  return ms
})

/** Zod type for a duration mailscreen waits on: at most {@link MAX_TIMER_MS}. */
export const duration = longDuration.refine((ms) => ms <= MAX_TIMER_MS, {
  message: 'at most 24d (a longer wait would end at once)',
})

/** A duration that must not be 0: a timeout or an interval, where 0 would mean "always". */
export const positiveDuration = duration.refine((ms) => ms > 0, { message: 'must be more than 0' })
