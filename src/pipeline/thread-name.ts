import { writeFileSync } from 'node:fs'

/** What the scan worker threads are called in `top -H`, `ps -L` and /proc (at most 15 bytes). */
export const SCAN_THREAD_NAME = 'ms-scan'

/**
 * Name the calling thread (Linux: its `comm`), so that an administrator's `top -H` and the
 * benchmark's CPU figures tell scan workers from Node's own threads, which all share the
 * process's name. Best effort: elsewhere, or without /proc, nothing happens.
 */
export function nameThisThread(name: string): void {
  try {
    writeFileSync('/proc/thread-self/comm', name)
  } catch {
    // No /proc (another OS, a container without it): the name is a convenience only.
  }
}
