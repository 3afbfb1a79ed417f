import { statSync } from 'node:fs'
import { join } from 'node:path'

/**
 * Go on as the spool's owner when started as root (`sudo mailscreen queue delete …`), as
 * Postfix's postsuper does: what the command writes into the spool (a retry state, a released
 * copy, an admin journal entry) must stay the daemon's to move and remove. The owner is that of
 * `tmp/`, where the daemon writes every file (the spool directory itself may be root's, as
 * Postfix lays its queue out). Without a spool yet, or one that root owns, nothing changes.
 */
export function actAsSpoolOwner(spoolDir: string): void {
  if (process.geteuid?.() !== 0) return
  let owner: { uid: number; gid: number } | undefined
  for (const dir of [join(spoolDir, 'tmp'), spoolDir]) {
    try {
      owner = statSync(dir)
      break
    } catch {
      // Not there (yet): ask the next.
    }
  }
  if (owner === undefined || owner.uid === 0) return
  process.setgroups?.([owner.gid])
  process.setegid?.(owner.gid)
  process.seteuid?.(owner.uid)
}
