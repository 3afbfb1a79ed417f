import type { Command } from 'commander'
import { MailscreenError } from '../errors.js'
import { rfc5322Date } from '../mail/date.js'
import { applyEdits, type HeaderEdit } from '../mail/edits.js'
import { createMessageView, headerEnd } from '../mail/message.js'
import { OWN_FIELDS } from '../pipeline/actions.js'
import { recordAdminAction } from '../queue/admin-journal.js'
import { newQueueId, parseQueueId, type QueueId } from '../queue/ids.js'
import { type Claim, isMissing, Spool } from '../queue/spool.js'
import { configOrExit, fail, withConfig } from './common.js'
import { announceAdminActions, signalFlush } from './queue.js'
import { actAsSpoolOwner } from './spool-owner.js'

/** One row of `quarantine list`. */
export interface QuarantineRow {
  readonly id: QueueId
  readonly messageId: string | null
  readonly from: string
  readonly to: readonly string[]
  readonly subject: string | null
  /** The verdict category: virus, banned, highspam, unscannable, ... */
  readonly verdict: string
  readonly reason: string | null
  readonly score: number | null
  readonly symbols: readonly string[]
  readonly actions: string | null
  readonly receivedAt: string
  readonly size: number
}

async function row(spool: Spool, id: QueueId): Promise<QuarantineRow | undefined> {
  let entry: Awaited<ReturnType<Spool['peek']>>
  try {
    entry = await spool.peek('quarantine', id)
  } catch (err) {
    if (isMissing(err)) return undefined
    // One unreadable file is shown as such; it must not hide the rest of the quarantine.
    if ((err as { code?: unknown }).code !== 'MSC_SPOOL_CORRUPT') throw err
    return {
      id,
      messageId: null,
      from: '',
      to: [],
      subject: null,
      verdict: 'unreadable',
      reason: (err as Error).message,
      score: null,
      symbols: [],
      actions: null,
      receivedAt: '',
      size: 0,
    }
  }
  const { envelope, scan } = entry.header
  const view = createMessageView(entry.message)
  return {
    id,
    messageId: scan?.messageId ?? view.header('message-id')[0] ?? null,
    from: envelope.mailFrom,
    to: envelope.rcptTo,
    subject: view.header('subject')[0] ?? null,
    verdict: scan?.verdict ?? 'unknown',
    reason: scan?.reason ?? null,
    score: scan?.score ?? null,
    symbols: scan?.symbols ?? [],
    actions: scan?.actions ?? null,
    receivedAt: new Date(envelope.receivedAt).toISOString(),
    size: entry.size,
  }
}

/** Everything in quarantine, oldest first. */
export async function listQuarantine(spool: Spool): Promise<QuarantineRow[]> {
  const rows: QuarantineRow[] = []
  for (const id of await spool.list('quarantine')) {
    const found = await row(spool, id)
    if (found) rows.push(found)
  }
  return rows
}

function formatRows(rows: readonly QuarantineRow[]): string {
  if (rows.length === 0) return 'Quarantine is empty\n'
  const lines: string[] = []
  for (const r of rows) {
    lines.push(`${r.id.padEnd(17)} ${r.verdict.padEnd(12)} ${r.receivedAt}  <${r.from}>`)
    lines.push(`    to: ${r.to.join(', ')}`)
    if (r.subject !== null) lines.push(`    subject: ${r.subject}`)
    if (r.reason !== null) lines.push(`    reason: ${r.reason}`)
  }
  lines.push(`-- ${rows.length} message${rows.length === 1 ? '' : 's'} in quarantine.`)
  return `${lines.join('\n')}\n`
}

function idArgument(text: string): QueueId {
  const id = parseQueueId(text)
  if (!id) throw new MailscreenError('MSC_NOT_FOUND', `not a queue ID: ${JSON.stringify(text)}`)
  return id
}

function notQuarantined(id: QueueId): MailscreenError {
  return new MailscreenError('MSC_NOT_FOUND', `${id} is not in quarantine (see: mailscreen quarantine list)`)
}

async function quarantined(spool: Spool, text: string) {
  const id = idArgument(text)
  try {
    return { id, entry: await spool.read('quarantine', id) }
  } catch (err) {
    if (isMissing(err)) throw notQuarantined(id)
    throw err
  }
}

/**
 * Release a quarantined message: the original, as received and untagged, goes to the
 * delivery queue under a new queue ID (to its recipients, or to `to`), and leaves the
 * quarantine. Returns the new ID.
 */
export async function releaseFromQuarantine(
  spool: Spool,
  text: string,
  to?: readonly string[],
): Promise<QueueId> {
  const id = idArgument(text)
  // Taken first: of two releases (or a release and a delete) at once, only one gets it.
  let claim: Claim
  try {
    claim = await spool.claim('quarantine', id)
  } catch (err) {
    if (isMissing(err)) throw notQuarantined(id)
    throw err
  }
  const { entry } = claim
  const releasedId = newQueueId()
  const rcptTo = to && to.length > 0 ? [...to] : entry.header.envelope.rcptTo
  const { scan: _scan, ...header } = entry.header
  // Straight to deferred/, due now: the running mailscreen's next sweep (or the flush we ask
  // for) delivers it.
  // As received, untagged, less what a sender could forge to look like our verdict (a spam
  // flag on mail an administrator released would file it as spam all the same).
  const released = applyEdits(entry.message, [
    ...OWN_FIELDS.map((name): HeaderEdit => ({ op: 'remove', name })),
    {
      op: 'prepend',
      name: 'X-mailscreen-Released',
      value: `from quarantine id ${id}; ${rfc5322Date(new Date())}`,
    },
  ])
  await claim.release(
    {
      ...header,
      id: releasedId,
      envelope: { ...header.envelope, rcptTo },
      releasedFrom: id,
      lifetimeFrom: Date.now(),
    },
    Buffer.concat(released),
  )
  return releasedId
}

/** `mailscreen quarantine list|show|release|delete`. */
export function registerQuarantine(program: Command): void {
  const quarantine = program
    .command('quarantine')
    .description(
      'inspect, release and delete quarantined messages (viruses, banned attachments, high-scoring spam)',
    )
  withConfig(quarantine.command('list'))
    .description('list quarantined messages: ID, verdict, date, sender, recipients, subject, reason')
    .option('--json', 'print a JSON array of objects (id, messageId, from, to, verdict, reason, ...)')
    .action(async (options: { config?: string; json?: boolean }) => {
      const { config } = configOrExit(options)
      try {
        const rows = await listQuarantine(new Spool(config.spool.dir))
        process.stdout.write(options.json ? `${JSON.stringify(rows, null, 2)}\n` : formatRows(rows))
      } catch (err) {
        fail(err)
      }
    })
  withConfig(quarantine.command('show'))
    .description('show why a message is quarantined and its header (--raw: the whole original message)')
    .argument('<id>', 'queue ID from quarantine list')
    .option('--raw', 'print the original message exactly as received')
    .option('--json', 'print the details as JSON')
    .action(async (text: string, options: { config?: string; raw?: boolean; json?: boolean }) => {
      const { config } = configOrExit(options)
      try {
        const spool = new Spool(config.spool.dir)
        const { id, entry } = await quarantined(spool, text)
        if (options.raw) {
          process.stdout.write(entry.message)
          return
        }
        const details = (await row(spool, id)) as QuarantineRow
        if (options.json) {
          process.stdout.write(`${JSON.stringify(details, null, 2)}\n`)
          return
        }
        process.stdout.write(
          `${formatRows([details]).split('\n').slice(0, -2).join('\n')}\n    score: ${details.score} symbols: ${details.symbols.join(' ')}\n    actions: ${details.actions}\n\n${entry.message.subarray(0, headerEnd(entry.message)).toString('utf8')}`,
        )
      } catch (err) {
        fail(err)
      }
    })
  withConfig(quarantine.command('release'))
    .description(
      'deliver the original message (untagged) to its recipients or to --to; needs mailscreen running to go out at once',
    )
    .argument('<id>', 'queue ID from quarantine list')
    .option('--to <address...>', 'deliver to these addresses instead of the original recipients')
    .action(async (text: string, options: { config?: string; to?: string[] }) => {
      const { config } = configOrExit(options)
      try {
        actAsSpoolOwner(config.spool.dir)
        const spool = new Spool(config.spool.dir)
        const released = await releaseFromQuarantine(spool, text, options.to)
        await recordAdminAction(config.spool.dir, {
          action: 'released',
          qid: text,
          was: ['quarantine'],
          detail: { as: released, ...(options.to ? { to: options.to } : {}) },
        })
        await announceAdminActions(config.spool.dir)
        let how: string
        try {
          const pid = await signalFlush(config.spool.dir)
          how = `delivery requested from mailscreen (pid ${pid})`
        } catch {
          how = 'mailscreen is not running: it goes out when mailscreen starts'
        }
        process.stdout.write(`${text} released as ${released}; ${how}\n`)
      } catch (err) {
        fail(err)
      }
    })
  withConfig(quarantine.command('delete'))
    .description('delete a quarantined message for good')
    .argument('<id>', 'queue ID from quarantine list')
    .action(async (text: string, options: { config?: string }) => {
      const { config } = configOrExit(options)
      try {
        actAsSpoolOwner(config.spool.dir)
        const spool = new Spool(config.spool.dir)
        const id = idArgument(text)
        // Gone since: released or deleted by someone else meanwhile, which must not be told as ours.
        if (!(await spool.discard('quarantine', id))) throw notQuarantined(id)
        await recordAdminAction(config.spool.dir, { action: 'deleted', qid: id, was: ['quarantine'] })
        await announceAdminActions(config.spool.dir)
        process.stdout.write(`${id} deleted from quarantine\n`)
      } catch (err) {
        fail(err)
      }
    })
}
