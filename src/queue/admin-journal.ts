import { mkdir, readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises'
import { userInfo } from 'node:os'
import { join } from 'node:path'

/**
 * What the CLI did to queued mail, left in the spool for the running mailscreen to log: the
 * administrator's `queue delete` belongs in the same log as the message's `received`, as
 * postsuper's does in Postfix's. One file per action under `admin/`, written aside and renamed
 * in, so the daemon never reads half of one and no two CLI processes write the same file.
 */
export const JOURNAL_DIR = 'admin'

const ADMIN_VERBS = ['deleted', 'requeued', 'released'] as const
export type AdminVerb = (typeof ADMIN_VERBS)[number]

/** One change to a queued message made from the CLI. */
export interface AdminAction {
  readonly action: AdminVerb
  readonly qid: string
  /** The states the message was in. */
  readonly was: readonly string[]
  /** What else there is to say (e.g. the ID of a released copy). */
  readonly detail?: Readonly<Record<string, string | readonly string[]>>
  /** Who ran the command, and as which process. */
  readonly user: string
  readonly cliPid: number
  /** When (ms since the epoch). */
  readonly at: number
}

let recorded = 0

/** Leave `action` for the running mailscreen (or the next one to start) to log. */
export async function recordAdminAction(
  spoolDir: string,
  action: Pick<AdminAction, 'action' | 'qid' | 'was' | 'detail'>,
): Promise<void> {
  const dir = join(spoolDir, JOURNAL_DIR)
  await mkdir(dir, { recursive: true })
  const entry: AdminAction = { ...action, user: currentUser(), cliPid: process.pid, at: Date.now() }
  // The time first, zero-padded (and the counter): names sort in the order the actions were taken.
  const name = `${String(entry.at).padStart(15, '0')}-${process.pid}-${String(++recorded).padStart(6, '0')}`
  await writeFile(join(dir, `.${name}`), `${JSON.stringify(entry)}\n`)
  await rename(join(dir, `.${name}`), join(dir, `${name}.json`))
}

/** A journal file that could not be taken as an action, and why. */
export interface UnreadableEntry {
  readonly file: string
  readonly reason: string
}

/**
 * Every recorded action, oldest first, each removed once read. A file that cannot be read or
 * does not parse is named (and removed, if it can be) and the others are still taken: one bad
 * entry must not hold back the ones after it.
 */
export async function takeAdminActions(
  spoolDir: string,
): Promise<{ actions: AdminAction[]; unreadable: UnreadableEntry[] }> {
  const dir = join(spoolDir, JOURNAL_DIR)
  let names: string[]
  try {
    names = (await readdir(dir)).filter((name) => name.endsWith('.json')).sort()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { actions: [], unreadable: [] }
    throw err
  }
  const actions: AdminAction[] = []
  const unreadable: UnreadableEntry[] = []
  for (const name of names) {
    const path = join(dir, name)
    let text: string
    try {
      text = await readFile(path, 'utf8')
    } catch (err) {
      // Taken by another reader meanwhile (a second mailscreen refused to start, say).
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue
      unreadable.push({ file: name, reason: (err as Error).message })
      await unlink(path).catch(() => undefined)
      continue
    }
    const action = parseAction(text)
    if (action) actions.push(action)
    else unreadable.push({ file: name, reason: 'not a journal entry' })
    await unlink(path).catch(() => undefined)
  }
  return { actions, unreadable }
}

function parseAction(text: string): AdminAction | undefined {
  try {
    const value = JSON.parse(text) as Partial<AdminAction>
    if (!(ADMIN_VERBS as readonly unknown[]).includes(value.action)) return undefined
    if (typeof value.qid !== 'string' || !Array.isArray(value.was)) return undefined
    return value as AdminAction
  } catch {
    return undefined
  }
}

/**
 * Who ran the command. Root's CLI goes on as the spool's owner (cli/spool-owner.ts), which
 * changes the effective user only: the real one is still root, and sudo says who that was.
 */
function currentUser(): string {
  const real = process.getuid?.()
  if (real === 0 && process.geteuid?.() !== 0) {
    const sudo = process.env.SUDO_USER
    return sudo ? `root (sudo: ${sudo})` : 'root'
  }
  try {
    return userInfo().username
  } catch {
    return `uid ${real ?? 'unknown'}`
  }
}
