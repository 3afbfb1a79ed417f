import type { QueueId } from './ids.js'
import type { SpoolEntry } from './spool.js'

/**
 * Message contents kept in memory by queue ID, up to a budget of bytes: what a stage holds
 * so the next need not read the file back (or, for delivery from the scan, the only copy).
 */
export class HeldEntries {
  private readonly entries = new Map<QueueId, SpoolEntry>()
  private bytes = 0

  constructor(private readonly budget: number) {}

  /** Hold `entry` unless `id` is held already or it would go over the budget; says whether it is held. */
  hold(id: QueueId, entry: SpoolEntry): boolean {
    if (this.entries.has(id) || this.bytes + entry.message.length > this.budget) return false
    this.entries.set(id, entry)
    this.bytes += entry.message.length
    return true
  }

  get(id: QueueId): SpoolEntry | undefined {
    return this.entries.get(id)
  }

  /** Stop holding `id`; returns what was held. */
  take(id: QueueId): SpoolEntry | undefined {
    const entry = this.entries.get(id)
    if (entry) {
      this.entries.delete(id)
      this.bytes -= entry.message.length
    }
    return entry
  }

  clear(): void {
    this.entries.clear()
    this.bytes = 0
  }
}
