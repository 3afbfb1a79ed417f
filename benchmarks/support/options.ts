/**
 * Command-line option helpers shared by the benchmark scripts (benchmarks/*.ts), which read
 * their options with node:util `parseArgs` as strings.
 */

/**
 * The integer option `--name`: `fallback` when it was not given, else its value, which must
 * be a whole number of at least `min` (1 unless said) or this throws
 * `--name must be an integer >= min`.
 */
export function int(name: string, value: string | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}`)
  return n
}
