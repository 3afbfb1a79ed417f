/**
 * Finds scans that overran `pool.taskTimeout`, counted from when a worker began them (not
 * from when they were queued), and the worker threads that must be replaced for it.
 *
 * Each worker shares a {@link TaskBoard} with the main thread: one slot per task it runs, with
 * the task's number and start time, and a heartbeat the worker's event loop counts up. Shared
 * memory rather than messages, because a worker whose event loop is stuck in a loop cannot send
 * anything, and a message per task would cost the main thread as much as the task hand-off
 * itself. The heartbeat finds a thread stuck outside any scan (a plugin's timer in an endless
 * loop): the scans sent to it since would never begin, so no start time would ever overrun.
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

/** Bytes a board takes for each task slot: its start time and its number. */
const SLOT_BYTES = Float64Array.BYTES_PER_ELEMENT + Int32Array.BYTES_PER_ELEMENT

/**
 * A board's views on its shared memory: the start times, then the task numbers, then the
 * heartbeat. A counter, not a time: the main thread times it by its own clock, so the two
 * threads never compare clocks for it.
 */
function views(buffer: SharedArrayBuffer): { starts: Float64Array; seqs: Int32Array; beats: Int32Array } {
  const capacity = (buffer.byteLength - Int32Array.BYTES_PER_ELEMENT) / SLOT_BYTES
  return {
    starts: new Float64Array(buffer, 0, capacity),
    seqs: new Int32Array(buffer, capacity * Float64Array.BYTES_PER_ELEMENT, capacity),
    beats: new Int32Array(buffer, capacity * SLOT_BYTES, 1),
  }
}

/** Worker side: notes each task as it begins and ends, and beats while its event loop turns. */
export class TaskBoard {
  readonly buffer: SharedArrayBuffer
  private readonly seqs: Int32Array
  private readonly starts: Float64Array
  private readonly beats: Int32Array

  /** `capacity`: the most tasks the worker runs at once. */
  constructor(capacity: number) {
    this.buffer = new SharedArrayBuffer(capacity * SLOT_BYTES + Int32Array.BYTES_PER_ELEMENT)
    ;({ starts: this.starts, seqs: this.seqs, beats: this.beats } = views(this.buffer))
  }

  /** The event loop turned: call it from a timer (it wraps harmlessly; only a change counts). */
  beat(): void {
    Atomics.add(this.beats, 0, 1)
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

/**
 * A worker thread to replace: the tasks that overran, and the others it was running; or, with
 * no task on its board, how long its event loop has not turned (it is stuck outside any scan).
 */
export interface Overrun {
  readonly threadId: number
  readonly overran: readonly number[]
  readonly others: readonly number[]
  readonly stuckMs?: number
}

interface Watched {
  readonly starts: Float64Array
  readonly seqs: Int32Array
  readonly beats: Int32Array
  /** The heartbeat last read, and when (by this thread's clock) it was seen to change. */
  beat: number
  beatSeenAt: number
}

/** Main side: reads every worker's board. */
export class Watchdog {
  private readonly boards = new Map<number, Watched>()

  constructor(private readonly limitMs: number) {}

  /** Start watching the board `buffer` of worker thread `threadId`. */
  watch(threadId: number, buffer: SharedArrayBuffer, now = monotonicMs()): void {
    const board = views(buffer)
    this.boards.set(threadId, { ...board, beat: Atomics.load(board.beats, 0), beatSeenAt: now })
  }

  forget(threadId: number): void {
    this.boards.delete(threadId)
  }

  /**
   * Workers running a task that began more than the limit before `now`, and workers with no
   * task whose heartbeat has not changed for more than the limit.
   */
  overruns(now = monotonicMs()): Overrun[] {
    const found: Overrun[] = []
    for (const [threadId, board] of this.boards) {
      const { seqs, starts, beats } = board
      const overran: number[] = []
      const others: number[] = []
      for (let slot = 0; slot < seqs.length; slot++) {
        const seq = Atomics.load(seqs, slot)
        if (seq === 0) continue
        ;(now - (starts[slot] as number) > this.limitMs ? overran : others).push(seq)
      }
      const beat = Atomics.load(beats, 0)
      if (beat !== board.beat) {
        board.beat = beat
        board.beatSeenAt = now
      }
      const stuckMs = now - board.beatSeenAt
      if (overran.length > 0) found.push({ threadId, overran, others })
      // With a scan on the board, the scan's own start time tells (it is surely what blocks
      // the thread when it is the one running, and it cannot finish otherwise).
      else if (others.length === 0 && stuckMs > this.limitMs)
        found.push({ threadId, overran, others, stuckMs })
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
