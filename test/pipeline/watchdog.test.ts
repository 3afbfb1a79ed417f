import { describe, expect, it } from 'vitest'
import { isBoardMessage, nextSeq, TaskBoard, Watchdog } from '../../src/pipeline/watchdog.js'

describe('TaskBoard and Watchdog', () => {
  it('finds the tasks that began more than the limit ago, and the others on the same thread', () => {
    const board = new TaskBoard(4)
    const quiet = new TaskBoard(4)
    const watchdog = new Watchdog(1_000)
    watchdog.watch(7, board.buffer, 10_000)
    watchdog.watch(8, quiet.buffer, 10_000)
    board.begin(1, 10_000)
    board.begin(2, 10_900)
    quiet.begin(3, 10_900)
    // Both heartbeats going: only the start times count.
    const beat = (): void => {
      board.beat()
      quiet.beat()
    }
    beat()
    expect(watchdog.overruns(11_000)).toEqual([])
    beat()
    expect(watchdog.overruns(11_001)).toEqual([{ threadId: 7, overran: [1], others: [2] }])
    beat()
    expect(watchdog.overruns(12_000)).toEqual([
      { threadId: 7, overran: [1, 2], others: [] },
      { threadId: 8, overran: [3], others: [] },
    ])
  })

  it('forgets tasks that ended, and reuses their slots', () => {
    const board = new TaskBoard(2)
    const watchdog = new Watchdog(1_000)
    watchdog.watch(7, board.buffer, 5_000)
    const slot = board.begin(1, 0)
    board.begin(2, 5_000)
    board.end(slot)
    expect(watchdog.overruns(5_500)).toEqual([])
    expect(board.begin(3, 5_000)).toBe(slot)
    expect(() => board.begin(4, 5_000)).toThrow(/more than 2 tasks/)
  })

  it('forgets a thread', () => {
    const board = new TaskBoard(1)
    const watchdog = new Watchdog(10)
    watchdog.watch(7, board.buffer, 0)
    board.begin(1, 0)
    watchdog.forget(7)
    expect(watchdog.overruns(1_000)).toEqual([])
  })

  it('finds a thread with no task whose heartbeat stopped', () => {
    const beating = new TaskBoard(2)
    const stuck = new TaskBoard(2)
    const watchdog = new Watchdog(1_000)
    watchdog.watch(7, beating.buffer, 0)
    watchdog.watch(8, stuck.buffer, 0)
    for (const now of [400, 800, 1_200]) {
      beating.beat()
      if (now < 600) stuck.beat()
      expect(watchdog.overruns(now)).toEqual([])
    }
    beating.beat()
    // Last seen beating at 400 ms.
    expect(watchdog.overruns(2_001)).toEqual([{ threadId: 8, overran: [], others: [], stuckMs: 1_601 }])
  })

  it("leaves a stopped heartbeat with a task on the board to the task's own time limit", () => {
    // The task is what blocks the thread when it runs, and cannot finish otherwise: it is named.
    const board = new TaskBoard(1)
    const watchdog = new Watchdog(1_000)
    watchdog.watch(7, board.buffer, 0)
    board.begin(1, 900)
    expect(watchdog.overruns(1_500)).toEqual([])
    expect(watchdog.overruns(1_901)).toEqual([{ threadId: 7, overran: [1], others: [] }])
  })

  it('numbers tasks from 1 and wraps before 2^31', () => {
    expect(nextSeq(0)).toBe(1)
    expect(nextSeq(41)).toBe(42)
    expect(nextSeq(2 ** 31 - 1)).toBe(1)
  })

  it('knows a board message from the other messages a worker may post', () => {
    expect(isBoardMessage({ threadId: 3, board: new TaskBoard(1).buffer })).toBe(true)
    expect(isBoardMessage({ threadId: 3, board: new ArrayBuffer(12) })).toBe(false)
    expect(isBoardMessage('ready')).toBe(false)
    expect(isBoardMessage(null)).toBe(false)
  })
})
