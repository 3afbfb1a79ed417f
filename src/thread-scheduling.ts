import { execFile } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { FreshRun } from './queue/fresh-run.js'

const execFileAsync = promisify(execFile)

/** `pool.helperScheduling`: what the threads other than the main one run under. */
export type HelperPolicy = 'batch' | 'normal'

/** Linux scheduling policies, as numbered in /proc/<pid>/task/<tid>/stat. */
export const SCHED_OTHER = 0
export const SCHED_BATCH = 3

/** How long one round of chrt(1) calls may take before it counts as failed. */
const CHRT_TIMEOUT_MS = 10_000

/** The scheduling policy of thread `tid` of process `pid` (Linux: field 41 of its stat). */
export function threadPolicy(tid: number, pid: number | 'self' = 'self'): number {
  const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
  // Fields are counted from after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[41 - 3])
}

/** `tid`'s policy, or undefined once the thread has exited. */
function policyIfAlive(tid: number): number | undefined {
  try {
    return threadPolicy(tid)
  } catch {
    return undefined
  }
}

/**
 * Runs every thread of the process but the main one (scan workers, libuv's file-system
 * threadpool, V8's compiler and GC helpers) under SCHED_BATCH. Such a thread keeps its fair
 * share of the CPU but does not preempt the running thread when it wakes. The main thread
 * answers SMTP and runs the queue; on two busy cores the helpers' wake-ups (a finished
 * fsync, a scan result) preempted it several times per message (benchmarks/RESULTS.md,
 * "helper threads under SCHED_BATCH").
 *
 * A lower priority (nice) gets the same in a benchmark. But behind CPU-bound neighbours (a
 * busy clamd) it starved the helpers, and the filter stopped keeping up; under SCHED_BATCH
 * it kept up.
 *
 * Node has no call for sched_setscheduler(2), so this runs util-linux's chrt(1) on each
 * thread that is not yet as wanted; the main thread is never touched. Threads start under
 * their creator's policy, so whoever starts threads later (a new scan worker) calls
 * {@link refresh}. Processes that helper threads spawn inherit SCHED_BATCH.
 */
export class HelperScheduling {
  private policy: HelperPolicy = 'normal'
  /** Threads this object may have put under SCHED_BATCH: the ones `normal` gives back. */
  private readonly batched = new Set<number>()
  private readonly runs = new FreshRun(() => this.apply())
  private lastFailure: string | undefined

  constructor(
    /** Told why the policy could not be applied, once per reason; mail flows on either way. */
    private readonly onFailure: (reason: string) => void,
    private readonly chrt = 'chrt',
  ) {}

  /** Use `policy` from now on (at start and at reload); resolves once a run has tried it. */
  use(policy: HelperPolicy): Promise<void> {
    this.policy = policy
    return this.refresh()
  }

  /** Apply the policy again, to threads started since. Callers meanwhile share one run. */
  refresh(): Promise<void> {
    if (this.policy === 'normal' && this.batched.size === 0) return Promise.resolve()
    return this.runs.request().then(
      () => {
        this.lastFailure = undefined
      },
      (err: unknown) => {
        const reason = (err as Error).message
        if (reason !== this.lastFailure) this.onFailure(reason)
        this.lastFailure = reason
      },
    )
  }

  private async apply(): Promise<void> {
    if (process.platform !== 'linux') throw new Error('helper threads are scheduled apart on Linux only')
    const batch = this.policy === 'batch'
    // Started under a policy of the administrator's choosing (chrt, systemd's
    // CPUSchedulingPolicy=): theirs stands, for every thread.
    if (batch && threadPolicy(process.pid) !== SCHED_OTHER)
      throw new Error(
        'the main thread runs under a scheduling policy of its own: helper threads left as they are',
      )
    const target = batch ? SCHED_BATCH : SCHED_OTHER
    // Forget threads that exited, and (going back to normal) those no longer under SCHED_BATCH.
    for (const tid of this.batched) {
      const now = policyIfAlive(tid)
      if (now === undefined || (!batch && now !== SCHED_BATCH)) this.batched.delete(tid)
    }
    const todo = batch
      ? readdirSync('/proc/self/task')
          .map(Number)
          .filter((tid) => tid !== process.pid && policyIfAlive(tid) === SCHED_OTHER)
      : [...this.batched]
    if (todo.length === 0) return
    // Counted before chrt runs, so that a `normal` asked for meanwhile undoes even a partial run.
    if (batch) for (const tid of todo) this.batched.add(tid)
    // One process for all of them (forking this one costs more than the chrt calls); chrt
    // stops at the first thread it cannot change, the loop goes on to the next.
    const loop = `for t; do "$0" ${batch ? '--batch' : '--other'} --pid 0 "$t" || s=1; done; exit \${s:-0}`
    let complaint = ''
    try {
      await execFileAsync('/bin/sh', ['-c', loop, this.chrt, ...todo.map(String)], {
        timeout: CHRT_TIMEOUT_MS,
      })
    } catch (err) {
      // chrt's (or the shell's) first complaint says enough; one line per thread would not.
      complaint =
        (((err as { stderr?: string }).stderr ?? '').trim() || (err as Error).message).split('\n')[0] ?? ''
    }
    // A thread that exited meanwhile is nobody's concern; a live one left as it was is.
    const left = todo.filter((tid) => {
      const now = policyIfAlive(tid)
      if (!batch && now !== SCHED_BATCH) this.batched.delete(tid)
      return now !== undefined && now !== target
    })
    if (left.length > 0)
      throw new Error(`${left.length} of ${todo.length} threads left as they were: ${complaint}`)
  }
}
