/**
 * CPU accounting from /proc (Linux) for `mailscreen bench` and the benchmark scripts: what each component started by
 * a benchmark spent per message in a measured phase, and what the rest of the machine did
 * meanwhile (this is a shared VM).
 *
 * A component is a probe: a name and a function that reads its CPU ms so far, such as
 * `treeCpuMs(pid)` for a process tree or `selfCpuMs` for this process. `measured` reads every
 * probe and /proc/stat before and after a run.
 */
import { readdirSync, readFileSync } from 'node:fs'

/** Clock ticks per second of /proc's CPU times (USER_HZ: 100 on Linux). */
const CLK_TCK = 100

interface ProcStat {
  readonly pid: number
  readonly ppid: number
  /** utime + stime, ticks. */
  readonly self: number
  /** cutime + cstime (reaped children), ticks. */
  readonly children: number
}

/** A process's stat (`/proc/<pid>`) or a thread's (`/proc/<pid>/task/<tid>`); undefined once it ended. */
function readStat(pid: number, dir = `/proc/${pid}`): ProcStat | undefined {
  try {
    const text = readFileSync(`${dir}/stat`, 'latin1')
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
    // fields[0] is field 3 (state): ppid = field 4, utime..cstime = fields 14..17.
    return {
      pid,
      ppid: Number(fields[1]),
      self: Number(fields[11]) + Number(fields[12]),
      children: Number(fields[13]) + Number(fields[14]),
    }
  } catch {
    return undefined
  }
}

/** CPU ms of a process tree: every live member's own time, plus what each has reaped. */
export function treeCpuMs(root: number): number {
  const all: ProcStat[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const s = readStat(Number(name))
    if (s) all.push(s)
  }
  const members = new Set([root])
  let grew = true
  while (grew) {
    grew = false
    for (const s of all)
      if (!members.has(s.pid) && members.has(s.ppid)) {
        members.add(s.pid)
        grew = true
      }
  }
  let ticks = 0
  for (const s of all) if (members.has(s.pid)) ticks += s.self + s.children
  return (ticks * 1000) / CLK_TCK
}

/**
 * CPU ms of those threads of process `pid` that `pick` chooses by thread ID and name (`comm`).
 * Threads that ended are missed; for a running server's long-lived threads that is none.
 */
export function threadsCpuMs(pid: number, pick: (tid: number, name: string) => boolean): number {
  let ticks = 0
  let tids: string[]
  try {
    tids = readdirSync(`/proc/${pid}/task`)
  } catch {
    return 0
  }
  for (const tid of tids) {
    const dir = `/proc/${pid}/task/${tid}`
    let name: string
    try {
      name = readFileSync(`${dir}/comm`, 'latin1').trim()
    } catch {
      continue // The thread ended between the listing and the read.
    }
    if (pick(Number(tid), name)) ticks += readStat(Number(tid), dir)?.self ?? 0
  }
  return (ticks * 1000) / CLK_TCK
}

/** CPU ms (user + system) this process has used so far. */
export function selfCpuMs(): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

/**
 * Machine-wide busy and total ticks so far, from /proc/stat (all CPUs). Not busy: idle,
 * iowait, and steal (time the hypervisor gave other guests, which no work here used).
 */
function cpuTotals(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'latin1').split('\n')[0] ?? ''
  const v = line.trim().split(/\s+/).slice(1).map(Number)
  // Ticks of user..steal; guest time is counted in user already.
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0)
  const notBusy = (v[3] ?? 0) + (v[4] ?? 0) + (v[7] ?? 0)
  return { busy: total - notBusy, total }
}

/** Components by name, each read as CPU ms so far. */
export type CpuProbe = Record<string, () => number>

/** What `measured` found, besides the run's own value. */
export interface CpuFigures {
  /**
   * CPU ms per message of each probe, in the probe's order, then `other` (busy CPU that no
   * probe accounts for: kernel threads, other users' processes) and `machine total`.
   */
  readonly cpuPerMsg: Record<string, number>
  /** Busy share of the whole machine during the run, 0 to 1. */
  readonly machineBusy: number
}

function snapshot(probe: CpuProbe): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [name, read] of Object.entries(probe)) out[name] = read()
  return out
}

/**
 * Run `run` between two readings of every probe and of /proc/stat. `messages` is what the
 * figures are per: a count, or a function read once the run is over (e.g. messages accepted);
 * with none, the figures are NaN.
 */
export async function measured<T>(
  probe: CpuProbe,
  messages: number | (() => number),
  run: () => Promise<T>,
): Promise<{ value: T } & CpuFigures> {
  const before = snapshot(probe)
  const m0 = cpuTotals()
  const value = await run()
  const after = snapshot(probe)
  const m1 = cpuTotals()
  // No message: no figure per message (NaN), rather than the whole run's CPU as one.
  const counted = typeof messages === 'function' ? messages() : messages
  const n = counted > 0 ? counted : Number.NaN
  const cpuPerMsg: Record<string, number> = {}
  let known = 0
  for (const name of Object.keys(probe)) {
    cpuPerMsg[name] = ((after[name] as number) - (before[name] as number)) / n
    known += cpuPerMsg[name]
  }
  // /proc/stat counts every CPU's busy ticks: what the machine spent per message in all,
  // and what nothing of this benchmark accounts for.
  const busyMs = ((m1.busy - m0.busy) * 1000) / CLK_TCK / n
  cpuPerMsg.other = Math.max(0, busyMs - known)
  cpuPerMsg['machine total'] = busyMs
  const machineBusy = (m1.busy - m0.busy) / Math.max(1, m1.total - m0.total)
  return { value, cpuPerMsg, machineBusy }
}
