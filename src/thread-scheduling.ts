import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { FreshRun } from './queue/fresh-run.js'

const execFileAsync = promisify(execFile)

/** `pool.helperScheduling`: what the threads other than the main one run under. */
export type HelperPolicy = 'batch' | 'normal'

/** Linux scheduling policies, as numbered in /proc/<pid>/task/<tid>/stat. */
export const SCHED_OTHER = 0
export const SCHED_BATCH = 3

/** The scheduling policy of thread `tid` of process `pid` (Linux: field 41 of its stat). */
export function threadPolicy(tid: number, pid: number | 'self' = 'self'): number {
  const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
  // Fields are counted from after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[41 - 3])
}

/**
 * Runs every thread of the process but the main one (scan workers, libuv's file-system
 * threadpool, V8's compiler and GC helpers) under SCHED_BATCH. Such a thread keeps its fair
 * share of the CPU but does not preempt the running thread when it wakes. The main thread
 * answers SMTP and runs the queue; on two busy cores the helpers' wake-ups (a finished
 * fsync, a scan result) preempted it several times per message. benchmarks/RESULTS.md has
 * the figures.
 *
 * A lower priority (nice) gets the same in a benchmark. But behind a busy clamd it starved
 * the helpers, and the filter stopped keeping up; under SCHED_BATCH it kept up.
 *
 * Node has no call for sched_setscheduler(2), so this runs util-linux's chrt(1): once on
 * every thread, then once to put the main thread back. Threads inherit their creator's
 * policy, so whoever starts threads later (a new scan worker) calls {@link refresh}.
 */
export class HelperScheduling {
  private policy: HelperPolicy = 'normal'
  /** Whether threads were put under SCHED_BATCH by this process (so `normal` must undo it). */
  private batched = false
  private readonly runs = new FreshRun(() => this.apply())

  constructor(
    /** Told why the policy could not be applied; mail flows on either way. */
    private readonly onFailure: (reason: string) => void,
    private readonly chrt = 'chrt',
  ) {}

  /** Use `policy` from now on (at start and at reload); resolves once it is applied. */
  use(policy: HelperPolicy): Promise<void> {
    this.policy = policy
    return this.refresh()
  }

  /** Apply the policy again, to threads started since. Callers meanwhile share one run. */
  refresh(): Promise<void> {
    if (this.policy === 'normal' && !this.batched) return Promise.resolve()
    return this.runs.request().catch((err: unknown) => this.onFailure((err as Error).message))
  }

  private async apply(): Promise<void> {
    if (process.platform !== 'linux') throw new Error('helper threads are scheduled apart on Linux only')
    const pid = String(process.pid)
    if (this.policy === 'normal') {
      await execFileAsync(this.chrt, ['--all-tasks', '--other', '--pid', '0', pid])
      this.batched = false
      return
    }
    // Started under a policy of the administrator's choosing (chrt, systemd's
    // CPUSchedulingPolicy=): theirs stands, for every thread.
    if (threadPolicy(process.pid) !== SCHED_OTHER)
      throw new Error('the main thread runs under a scheduling policy of its own: threads left as they are')
    const mainBack = () => execFileAsync(this.chrt, ['--other', '--pid', '0', pid])
    try {
      await execFileAsync(this.chrt, ['--all-tasks', '--batch', '--pid', '0', pid])
    } catch (err) {
      // It may have failed part-way (a thread that exited meanwhile), with the main thread done.
      await mainBack().catch(() => undefined)
      throw err
    }
    this.batched = true
    await mainBack()
  }
}
