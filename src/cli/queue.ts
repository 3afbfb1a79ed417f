import { stat } from 'node:fs/promises'
import type { Command } from 'commander'
import { MailscreenError } from '../errors.js'
import { createMessageView } from '../mail/message.js'
import { QUEUE_STATES } from '../queue/admin.js'
import type { QueueId } from '../queue/ids.js'
import { PID_FILE, recordedOwner, stillRuns } from '../queue/pid-file.js'
import { isMissing, Spool, type SpoolEntry, type SpoolState } from '../queue/spool.js'
import type { RetryState } from '../queue/spool-file.js'
import { configOrExit, fail, withConfig } from './common.js'

/** One row of `queue list`. */
export interface QueueRow {
  readonly id: string
  readonly state: SpoolState
  readonly ageSeconds: number
  readonly size: number
  readonly from: string
  readonly to: readonly string[]
  readonly messageId: string | null
  readonly attempts: number
  readonly nextAttempt: string | null
  readonly lastError: string | null
  /** For deferred mail: what is waiting, a new scan (a check tempfailed) or a delivery. */
  readonly phase: 'scan' | 'deliver' | null
  /** Set when the file cannot be read as a spool file: what is wrong (the other fields are then the file's). */
  readonly problem?: string
}

/** A message's row: its spool header and message (the start is enough), its retry state if deferred. */
export function queueRow(
  state: SpoolState,
  entry: SpoolEntry & { readonly size: number },
  retry: RetryState | undefined,
  now = Date.now(),
): QueueRow {
  const { envelope } = entry.header
  return {
    id: entry.header.id,
    state,
    ageSeconds: Math.max(0, Math.round((now - envelope.receivedAt) / 1000)),
    size: entry.size,
    from: envelope.mailFrom,
    to: retry?.pending ?? envelope.rcptTo,
    messageId:
      entry.header.scan?.messageId ?? createMessageView(entry.message).header('message-id')[0] ?? null,
    attempts: retry?.attempts ?? 0,
    nextAttempt: retry ? new Date(retry.nextAttemptAt).toISOString() : null,
    lastError: retry?.lastError ?? null,
    phase: retry?.phase ?? null,
  }
}

/** Everything queued (quarantine has its own command), oldest first. */
export async function listQueue(spool: Spool, now = Date.now()): Promise<QueueRow[]> {
  const rows: QueueRow[] = []
  for (const state of QUEUE_STATES) {
    for (const id of await spool.list(state)) {
      let entry: Awaited<ReturnType<Spool['peek']>>
      try {
        entry = await spool.peek(state, id)
      } catch (err) {
        // Gone between listing and reading: it moved on, which is what queues do.
        if (isMissing(err)) continue
        // One unreadable file is shown as such; it must not hide the rest of the queue.
        if ((err as { code?: unknown }).code !== 'MSC_SPOOL_CORRUPT') throw err
        const row = await unreadableRow(spool, state, id, (err as Error).message, now)
        if (row) rows.push(row)
        continue
      }
      // Spent files are reused under new names: one read as it was being reused holds another
      // message, which has moved on from here. Its own name shows where it is now.
      if (entry.header.id !== id) continue
      const retry = state === 'deferred' ? await spool.readRetry(id) : undefined
      rows.push(queueRow(state, entry, retry, now))
    }
  }
  // Queue IDs sort by arrival in code-unit order ('Z' < 'd'); localeCompare would not.
  return rows.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
}

/** The row of a file that is no spool file (empty, truncated, garbage): its name, size and age. */
async function unreadableRow(
  spool: Spool,
  state: SpoolState,
  id: string,
  problem: string,
  now: number,
): Promise<QueueRow | undefined> {
  let info: Awaited<ReturnType<typeof stat>>
  try {
    info = await stat(spool.path(state, id as QueueId))
  } catch (err) {
    if (isMissing(err)) return undefined
    throw err
  }
  return {
    id,
    state,
    ageSeconds: Math.max(0, Math.round((now - info.mtimeMs) / 1000)),
    size: info.size,
    from: '',
    to: [],
    messageId: null,
    attempts: 0,
    nextAttempt: null,
    lastError: null,
    phase: null,
    problem,
  }
}

export function age(seconds: number): string {
  if (seconds < 120) return `${seconds}s`
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h`
  return `${Math.round(seconds / 86_400)}d`
}

/** mailq-style text: a line per message, recipients and the last error indented below. */
export function formatQueue(rows: readonly QueueRow[]): string {
  if (rows.length === 0) return 'Mail queue is empty\n'
  const lines = [
    `${'ID'.padEnd(17)} ${'STATE'.padEnd(10)} ${'AGE'.padStart(5)} ${'SIZE'.padStart(9)}  SENDER`,
  ]
  for (const row of rows) {
    lines.push(
      `${row.id.padEnd(17)} ${row.state.padEnd(10)} ${age(row.ageSeconds).padStart(5)} ${String(row.size).padStart(9)}  <${row.from}>`,
    )
    if (row.problem) lines.push(`    (unreadable: ${row.problem})`)
    if (row.lastError)
      lines.push(
        `    (${row.phase === 'scan' ? 'scan' : 'delivery'}: ${row.lastError}; attempts ${row.attempts}, next ${row.nextAttempt})`,
      )
    for (const rcpt of row.to) lines.push(`    ${rcpt}`)
  }
  const bytes = rows.reduce((sum, r) => sum + r.size, 0)
  lines.push(`-- ${Math.ceil(bytes / 1024)} Kbytes in ${rows.length} Request${rows.length === 1 ? '' : 's'}.`)
  return `${lines.join('\n')}\n`
}

/** Send `signal` to the running mailscreen (by its PID file); resolves with its PID. */
async function signalDaemon(spoolDir: string, signal: NodeJS.Signals): Promise<number> {
  const owner = await recordedOwner(spoolDir)
  if (owner === undefined)
    throw new MailscreenError(
      'MSC_NOT_RUNNING',
      `mailscreen is not running for spool ${spoolDir} (no ${PID_FILE})`,
    )
  const stale = () =>
    new MailscreenError(
      'MSC_NOT_RUNNING',
      `mailscreen is not running for spool ${spoolDir} (stale ${PID_FILE}: pid ${owner.pid})`,
    )
  // A stale PID may belong to another process now: never signal that one.
  if (!stillRuns(owner)) throw stale()
  try {
    process.kill(owner.pid, signal)
  } catch {
    throw stale()
  }
  return owner.pid
}

/** Ask the running mailscreen to retry its deferred mail now. */
export function signalFlush(spoolDir: string): Promise<number> {
  return signalDaemon(spoolDir, 'SIGUSR1')
}

/**
 * Ask the running mailscreen to log what was left in the spool's admin journal (SIGUSR2), once
 * per command however many messages it changed; one that is not running logs it when it starts.
 */
export async function announceAdminActions(spoolDir: string): Promise<void> {
  await signalDaemon(spoolDir, 'SIGUSR2').catch(() => undefined)
}

/** `mailscreen queue list|flush`; returns the `queue` command for the rest (queue-admin.ts). */
export function registerQueue(program: Command): Command {
  const queue = program
    .command('queue')
    .description('inspect, flush, delete and requeue queued mail (mailq, postqueue -f, postcat, postsuper)')
  withConfig(queue.command('list'))
    .description('list queued messages, like mailq: ID, state, age, size, sender, recipients, last error')
    .option('--json', 'print a JSON array of objects (id, state, messageId, from, to, ...)')
    .action(async (options: { config?: string; json?: boolean }) => {
      const { config } = configOrExit(options)
      try {
        const rows = await listQueue(new Spool(config.spool.dir))
        process.stdout.write(options.json ? `${JSON.stringify(rows, null, 2)}\n` : formatQueue(rows))
      } catch (err) {
        fail(err)
      }
    })
  withConfig(queue.command('flush'))
    .description('retry all deferred mail now (like postqueue -f); needs mailscreen running')
    .action(async (options: { config?: string }) => {
      const { config } = configOrExit(options)
      try {
        const pid = await signalFlush(config.spool.dir)
        process.stdout.write(`flush requested from mailscreen (pid ${pid})\n`)
      } catch (err) {
        fail(err)
      }
    })
  return queue
}
