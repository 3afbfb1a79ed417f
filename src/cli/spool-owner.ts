import { statSync } from 'node:fs'

/**
 * Go on as the spool's owner when started as root (`sudo mailscreen queue delete …`), as
 * Postfix's postsuper does: what the command writes into the spool (a retry state, a released
 * copy, an admin journal entry) must stay the daemon's to move and remove. Without a spool
 * yet, or one that root owns, nothing changes.
 */
export function actAsSpoolOwner(spoolDir: string): void {
  if (process.geteuid?.() !== 0) return
  let owner: { uid: number; gid: number }
  try {
    owner = statSync(spoolDir)
  } catch {
    return
  }
  if (owner.uid === 0) return
  process.setgroups?.([owner.gid])
  process.setegid?.(owner.gid)
  process.seteuid?.(owner.uid)
}
