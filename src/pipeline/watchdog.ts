/**
 * Finds scans that overran `pool.taskTimeout`, counted from when a worker began them (not
 * from when they were queued), and the worker threads that must be replaced for it.
 *
 * Each worker shares a {@link TaskBoard} with the main thread: one slot per task it runs, with
 * the task's number and start time. Shared memory rather than messages, because a worker
 * whose event loop is stuck in a loop cannot send anything, and a message per task would cost
 * the main thread as much as the task hand-off itself.
 */

/** Tasks are numbered from 1; 0 marks a free slot. Numbers wrap long before they overflow. */
const MAX_SEQ = 2 ** 31 - 1

/** The next task number after `seq`. */
export function nextSeq(seq: number): number {
  return (seq % MAX_SEQ) + 1
}

/**
 * Milliseconds on the process's monotonic clock, which every thread shares and which a step
 * of the wall clock (NTP, a VM resumed) does not move: such a step must not look like a hang.
 */
export function monotonicMs(): number {
  const [seconds, nanoseconds] = process.hrtime()
  return seconds * 1_000 + nanoseconds / 1_000_000
}

/** Worker side: notes each task as it begins and ends. */
export class TaskBoard {
  readonly buffer: SharedArrayBuffer
  private readonly seqs: Int32Array
  private readonly starts: Float64Array

  /** `capacity`: the most tasks the worker runs at once. */
  constructor(capacity: number) {
    this.buffer = new SharedArrayBuffer(
      capacity * (Int32Array.BYTES_PER_ELEMENT + Float64Array.BYTES_PER_ELEMENT),
    )
    this.starts = new Float64Array(this.buffer, 0, capacity)
    this.seqs = new Int32Array(this.buffer, capacity * Float64Array.BYTES_PER_ELEMENT, capacity)
  }

  /** Task `seq` begins now; returns its slot, for {@link end}. */
  begin(seq: number, now = monotonicMs()): number {
    const slot = this.seqs.indexOf(0)
    if (slot < 0) throw new Error(`a worker was given more than ${this.seqs.length} tasks at once`)
    this.starts[slot] = now
    // Published last, atomically: a reader that sees the number also sees its start time.
    Atomics.store(this.seqs, slot, seq)
    return slot
  }

  end(slot: number): void {
    Atomics.store(this.seqs, slot, 0)
  }
}

/** A worker thread to replace: the tasks that overran, and the others it was running. */
export interface Overrun {
  readonly threadId: number
  readonly overran: readonly number[]
  readonly others: readonly number[]
}

/** Main side: reads every worker's board. */
export class Watchdog {
  private readonly boards = new Map<number, { seqs: Int32Array; starts: Float64Array }>()

  constructor(private readonly limitMs: number) {}

  /** Start watching the board `buffer` of worker thread `threadId`. */
  watch(threadId: number, buffer: SharedArrayBuffer): void {
    const capacity = buffer.byteLength / (Int32Array.BYTES_PER_ELEMENT + Float64Array.BYTES_PER_ELEMENT)
    this.boards.set(threadId, {
      starts: new Float64Array(buffer, 0, capacity),
      seqs: new Int32Array(buffer, capacity * Float64Array.BYTES_PER_ELEMENT, capacity),
    })
  }

  forget(threadId: number): void {
    this.boards.delete(threadId)
  }

  /** Workers running a task that began more than the limit before `now`. */
  overruns(now = monotonicMs()): Overrun[] {
    const found: Overrun[] = []
    for (const [threadId, { seqs, starts }] of this.boards) {
      const overran: number[] = []
      const others: number[] = []
      for (let slot = 0; slot < seqs.length; slot++) {
        const seq = Atomics.load(seqs, slot)
        if (seq === 0) continue
        ;(now - (starts[slot] as number) > this.limitMs ? overran : others).push(seq)
      }
      if (overran.length > 0) found.push({ threadId, overran, others })
    }
    return found
  }
}

/** What a worker posts to the main thread once, at start: its board. */
export interface BoardMessage {
  readonly threadId: number
  readonly board: SharedArrayBuffer
}

export function isBoardMessage(message: unknown): message is BoardMessage {
  return (
    typeof message === 'object' &&
    message !== null &&
    (message as Partial<BoardMessage>).board instanceof SharedArrayBuffer &&
    typeof (message as Partial<BoardMessage>).threadId === 'number'
  )
}
