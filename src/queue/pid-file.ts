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
import { link, readFile, rm, stat, writeFile } from 'node:fs/promises'
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
  const text = await readText(join(spoolDir, PID_FILE))
  return text === undefined ? undefined : parseOwner(text)
}

/** The owner a PID file's text names; undefined when it names none. */
function parseOwner(text: string): RecordedOwner | undefined {
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

/** How long a takeover of a crashed owner's PID file may hold its lock before it counts as dead. */
const TAKEOVER_STALE_MS = 10_000

/**
 * Take the spool for this process, or name the mailscreen that has it. Atomic: the PID file
 * is written whole under a temporary name, then linked to its name, which fails when the name
 * exists; two processes starting at once cannot both win. A PID file left by a crash is removed
 * only under a takeover lock (itself taken by link), and only while it still says what was
 * judged stale: nothing else removes the PID file, so what it says cannot change meanwhile.
 * Returns undefined when the spool is ours, else the owner's PID.
 */
export async function claimPidFile(spoolDir: string): Promise<number | undefined> {
  const path = join(spoolDir, PID_FILE)
  const temp = join(spoolDir, `${PID_FILE}.${process.pid}`)
  const lock = join(spoolDir, `${PID_FILE}.takeover`)
  const startTime = processStartTime('self')
  await writeFile(temp, `${process.pid}\n${startTime === undefined ? '' : `${startTime}\n`}`)
  try {
    for (let attempt = 0; attempt < 200; attempt++) {
      if (await linked(temp, path)) return undefined
      const stale = await readText(path)
      if (stale === undefined) continue
      const owner = parseOwner(stale)
      if (owner !== undefined && owner.pid !== process.pid && stillRuns(owner)) return owner.pid
      if (!(await linked(temp, lock))) {
        // Another process is taking over: let it (or find its lock left by a crash).
        await clearDeadLock(lock)
        await new Promise((resolve) => setTimeout(resolve, 10))
        continue
      }
      try {
        if ((await readText(path)) === stale) await rm(path, { force: true })
      } finally {
        await rm(lock, { force: true })
      }
    }
    throw new Error(`could not take ${path}: it keeps changing`)
  } finally {
    await rm(temp, { force: true })
  }
}

/** link(2), which fails when `to` exists: false then. */
async function linked(from: string, to: string): Promise<boolean> {
  try {
    await link(from, to)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw err
  }
}

/** Remove a takeover lock whose holder died holding it (held far longer than a takeover takes). */
async function clearDeadLock(lock: string): Promise<void> {
  try {
    if (Date.now() - (await stat(lock)).mtimeMs > TAKEOVER_STALE_MS) await rm(lock, { force: true })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/** Remove the PID file (only the owner does, at stop). */
export function removePidFile(spoolDir: string): Promise<void> {
  return rm(join(spoolDir, PID_FILE), { force: true })
}
