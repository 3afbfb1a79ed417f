/**
 * The spool's PID file: which mailscreen process owns a spool. The owner writes it at start
 * (two processes on one spool would both recover `processing/` and reuse the same spent files
 * in `tmp/`); the CLI reads it to signal the owner, or to know that mail in flight belongs to
 * a running process.
 */
import { readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

/** The PID file's name in the spool directory. */
export const PID_FILE = 'mailscreen.pid'

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
 * The PID written in the spool's PID file; undefined when there is none. A file that cannot be
 * read (permissions) is an error, not "no mailscreen": the caller would act on mail in flight.
 */
export async function recordedPid(spoolDir: string): Promise<number | undefined> {
  let text: string
  try {
    text = await readFile(join(spoolDir, PID_FILE), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  const pid = Number(text.trim())
  return Number.isInteger(pid) && pid > 0 ? pid : undefined
}

/** The PID of the mailscreen that runs on this spool, if one does (a PID file left by a crash does not count). */
export async function spoolOwner(spoolDir: string): Promise<number | undefined> {
  const pid = await recordedPid(spoolDir)
  return pid !== undefined && pid !== process.pid && alive(pid) ? pid : undefined
}

/** Record this process as the owner (whole or not at all: a reader never sees it half written). */
export async function writePidFile(spoolDir: string): Promise<void> {
  const temp = join(spoolDir, `${PID_FILE}.${process.pid}`)
  await writeFile(temp, `${process.pid}\n`)
  await rename(temp, join(spoolDir, PID_FILE))
}

/** Remove the PID file (only the owner does, at stop). */
export function removePidFile(spoolDir: string): Promise<void> {
  return rm(join(spoolDir, PID_FILE), { force: true })
}
