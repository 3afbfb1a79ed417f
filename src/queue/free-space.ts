/**
 * Free space on the spool's filesystem, for refusing new mail before the disk is full
 * (Postfix's queue_minfree): a MAIL FROM is answered `452 4.3.1` while accepting it would
 * leave less than the reserve. Without this a full disk is only found mid-DATA, after the
 * MTA in front has sent the whole message for nothing; delivery also needs room for retry
 * states, deferred copies and bounces, so new mail must stop first.
 *
 * The figure is refreshed in the background (statfs(2) is cheap, but a per-command call
 * would hop to libuv's threadpool on every MAIL). A refused MAIL is only ever a 4xx, so a
 * figure up to one interval old errs harmlessly; a disk that fills faster still ends in the
 * spool's own 451 on ENOSPC, never in a lost message.
 */
import { statfs } from 'node:fs/promises'
import { FreshRun } from './fresh-run.js'

/** Bytes `spool.minFree` keeps free: as configured, else Postfix's minimum of 1.5 × the largest message. */
export function minFreeBytes(minFree: number | undefined, maxSize: number): number {
  return minFree ?? Math.ceil(1.5 * maxSize)
}

/** How the free space is measured: bytes available to this process (statfs f_bavail). */
export type FreeBytes = (dir: string) => Promise<number>

const systemFreeBytes: FreeBytes = async (dir) => {
  const stats = await statfs(dir)
  return stats.bavail * stats.bsize
}

export interface SpoolSpaceOptions {
  readonly dir: string
  /** Bytes that must stay free after a message is accepted. */
  readonly reserve: number
  /** Milliseconds between measurements (default 1000). */
  readonly intervalMs?: number
  readonly freeBytes?: FreeBytes
  /** Told when the spool goes short of space or has enough again, and when it cannot be measured. */
  readonly onChange?: (event: SpaceEvent) => void
}

export type SpaceEvent =
  | { readonly kind: 'low' | 'recovered'; readonly free: number; readonly reserve: number }
  | { readonly kind: 'unmeasurable'; readonly error: Error }

/** Whether the spool has room for one more message; see the module comment. */
export class SpoolSpace {
  private free = Number.POSITIVE_INFINITY
  private low = false
  private failing = false
  private timer: NodeJS.Timeout | undefined
  private readonly measurements = new FreshRun(() => this.measureOnce())
  private readonly freeBytes: FreeBytes

  constructor(private readonly options: SpoolSpaceOptions) {
    this.freeBytes = options.freeBytes ?? systemFreeBytes
  }

  /** Measure once now, then every interval. */
  async start(): Promise<void> {
    await this.measure()
    this.timer = setInterval(() => void this.measure(), this.options.intervalMs ?? 1000)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** Bytes free at the last measurement (Infinity before the first, or when it failed). */
  get freeNow(): number {
    return this.free
  }

  /**
   * Whether a message of `size` bytes (0 when not declared) still leaves the reserve free.
   * A spool that cannot be measured counts as having room: the writes themselves will say.
   */
  hasRoomFor(size = 0): boolean {
    return this.free - size >= this.options.reserve
  }

  /**
   * Measure now (after a write failed, say): resolves with a figure taken after this call
   * (a measurement already under way may predate what the caller saw); callers share them.
   */
  measure(): Promise<void> {
    return this.measurements.request()
  }

  private async measureOnce(): Promise<void> {
    const { reserve, onChange } = this.options
    try {
      this.free = await this.freeBytes(this.options.dir)
      this.failing = false
    } catch (err) {
      this.free = Number.POSITIVE_INFINITY
      this.low = false
      if (!this.failing) onChange?.({ kind: 'unmeasurable', error: err as Error })
      this.failing = true
      return
    }
    const low = !this.hasRoomFor()
    if (low !== this.low) onChange?.({ kind: low ? 'low' : 'recovered', free: this.free, reserve })
    this.low = low
  }
}
