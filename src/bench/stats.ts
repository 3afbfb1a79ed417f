/** The p-th percentile (0–100) of samples, nearest-rank; NaN when there are none. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)))
  return sorted[rank - 1] as number
}

/** p50/p95/p99 of a set of latencies in ms. */
export interface LatencySummary {
  readonly p50: number
  readonly p95: number
  readonly p99: number
}

export function summarize(samples: readonly number[]): LatencySummary {
  return { p50: percentile(samples, 50), p95: percentile(samples, 95), p99: percentile(samples, 99) }
}
