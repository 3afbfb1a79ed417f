/**
 * The spool's PID file: which mailscreen process owns a spool. The owner writes it at start
 * (two processes on one spool would both recover `processing/` and reuse the same spent files
 * in `tmp/`); the CLI reads it to signal the owner, or to know that mail in flight belongs to
 * a running process.
 *
 * A PID file left by a crash names a PID the system may since have given to another process
 * (after a reboot, most likely). Its second line is therefore the owner's start time, in clock
 * ticks since boot (Linux /proc): a process with that PID but another start time is not the
 * owner, so mailscreen starts, and the CLI never signals it (SIGUSR1 and SIGUSR2 would end it).
 */
import { readFileSync } from 'node:fs'
import { readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

/** The PID file's name in the spool directory. */
export const PID_FILE = 'mailscreen.pid'

/** What the PID file says: the owner's PID and, where the system tells it, its start time. */
export interface RecordedOwner {
  readonly pid: number
  readonly startTime?: string
}

/** Whether a process with this PID exists (one of another user's counts: EPERM). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * When process `pid` started, in clock ticks since boot: field 22 of /proc/PID/stat. Undefined
 * where there is no /proc, or the process is gone.
 */
export function processStartTime(pid: number | 'self'): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
    // The command name (field 2) may hold spaces and parentheses: count from its closing one.
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
    return start !== undefined && /^\d+$/.test(start) ? start : undefined
  } catch {
    return undefined
  }
}

/**
 * What the spool's PID file says; undefined when there is none. A file that cannot be read
 * (permissions) is an error, not "no mailscreen": the caller would act on mail in flight.
 */
export async function recordedOwner(spoolDir: string): Promise<RecordedOwner | undefined> {
  let text: string
  try {
    text = await readFile(join(spoolDir, PID_FILE), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  const [first, second] = text.split('\n')
  const pid = Number(first?.trim())
  if (!Number.isInteger(pid) || pid <= 0) return undefined
  const startTime = second?.trim()
  return startTime ? { pid, startTime } : { pid }
}

/**
 * Whether the recorded owner still runs: its PID is alive and, where both are known, started
 * when the owner did.
 */
export function stillRuns(owner: RecordedOwner): boolean {
  if (!alive(owner.pid)) return false
  const now = owner.startTime === undefined ? undefined : processStartTime(owner.pid)
  return now === undefined || now === owner.startTime
}

/** The PID of the mailscreen that runs on this spool, if one does (a PID file left by a crash does not count). */
export async function spoolOwner(spoolDir: string): Promise<number | undefined> {
  const owner = await recordedOwner(spoolDir)
  return owner !== undefined && owner.pid !== process.pid && stillRuns(owner) ? owner.pid : undefined
}

/** Record this process as the owner (whole or not at all: a reader never sees it half written). */
export async function writePidFile(spoolDir: string): Promise<void> {
  const temp = join(spoolDir, `${PID_FILE}.${process.pid}`)
  const startTime = processStartTime('self')
  await writeFile(temp, `${process.pid}\n${startTime === undefined ? '' : `${startTime}\n`}`)
  await rename(temp, join(spoolDir, PID_FILE))
}

/** Remove the PID file (only the owner does, at stop). */
export function removePidFile(spoolDir: string): Promise<void> {
  return rm(join(spoolDir, PID_FILE), { force: true })
}
