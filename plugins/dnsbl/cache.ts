/**
 * A small LRU cache whose entries expire: the dnsbl plugin's answer cache, one per plugin
 * instance and worker thread (nothing is shared between threads). The clock is injected so
 * tests can move time.
 */
export class TtlCache<V> {
  // A Map iterates in insertion order: re-inserting on a hit keeps the oldest entry first.
  private readonly entries = new Map<string, { readonly value: V; readonly expires: number }>()

  /**
   * @param maxEntries the most entries kept; the least recently used goes first. 0 disables the cache.
   * @param now milliseconds, e.g. `Date.now`.
   */
  constructor(
    private readonly maxEntries: number,
    private readonly now: () => number,
  ) {}

  /** Entries held, expired ones included until they are looked at or pushed out. */
  get size(): number {
    return this.entries.size
  }

  /** The value if present and not expired. */
  get(key: string): V | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined) return undefined
    this.entries.delete(key)
    if (entry.expires <= this.now()) return undefined
    this.entries.set(key, entry)
    return entry.value
  }

  /** Keep `value` for `ttlMs`; a TTL of 0 or less stores nothing. */
  set(key: string, value: V, ttlMs: number): void {
    if (this.maxEntries <= 0 || !(ttlMs > 0)) return
    this.entries.delete(key)
    this.entries.set(key, { value, expires: this.now() + ttlMs })
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next()
      if (oldest.done) break
      this.entries.delete(oldest.value)
    }
  }
}
