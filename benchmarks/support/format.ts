/** Small helpers the benchmark scripts share: a seeded PRNG and latency formatting. */
import type { LatencySummary } from '../../src/bench/stats.js'

/** A seeded PRNG (mulberry32): the same seed gives the same run, so runs can be compared. */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Milliseconds for a table: one decimal under 10, none above, `-` for no value. */
export function ms(v: number): string {
  return Number.isNaN(v) ? '-' : v < 10 ? v.toFixed(1) : v.toFixed(0)
}

/** `p50 / p95 / p99` of a latency summary, in ms. */
export function pct(s: LatencySummary | undefined): string {
  return s ? `${ms(s.p50)} / ${ms(s.p95)} / ${ms(s.p99)}` : '-'
}
