import type { Command } from 'commander'
import { headerEnd } from '../mail/message.js'
import { deleteQueued, queueIdArgument, readQueued, requeueFailed } from '../queue/admin.js'
import { recordAdminAction } from '../queue/admin-journal.js'
import type { QueueId } from '../queue/ids.js'
import { spoolOwner } from '../queue/pid-file.js'
import { Spool, type SpoolState } from '../queue/spool.js'
import { configOrExit, fail, withConfig } from './common.js'
import { age, announceAdminActions, queueRow, signalFlush } from './queue.js'
import { actAsSpoolOwner } from './spool-owner.js'

/** `--all STATE` of delete: mail nobody is working on. */
const DELETABLE_ALL: readonly SpoolState[] = ['deferred', 'failed']

/** Run `each` for every ID, printing what it says; a failure is reported and the others still run. Returns the failures. */
async function forEachId(ids: readonly string[], each: (id: QueueId) => Promise<string>): Promise<number> {
  let failures = 0
  for (const text of ids) {
    try {
      process.stdout.write(`${await each(queueIdArgument(text))}\n`)
    } catch (err) {
      failures++
      process.stderr.write(
        `mailscreen: ${(err as { code?: string }).code ?? 'error'}: ${(err as Error).message}\n`,
      )
    }
  }
  return failures
}

/** The IDs named, or every ID of `state` with `--all`; exactly one of the two (else a usage error). */
async function targets(
  command: Command,
  spool: Spool,
  ids: readonly string[],
  all: SpoolState | undefined,
): Promise<string[]> {
  if (all === undefined) {
    if (ids.length === 0) command.error('error: name at least one queue ID, or --all')
    return [...ids]
  }
  if (ids.length > 0) command.error('error: give queue IDs or --all, not both')
  return spool.list(all)
}

/** `mailscreen queue show|delete|requeue`: postcat -q, postsuper -d and postsuper -r. */
export function registerQueueAdmin(queue: Command): void {
  withConfig(queue.command('show'))
    .description(
      'show one queued message: envelope, state, retry state, scan result and header (like postcat -q)',
    )
    .argument('<id>', 'queue ID from queue list')
    .option('--raw', 'print the message exactly as it is queued')
    .option('--json', 'print the details as JSON')
    .action(async (text: string, options: { config?: string; raw?: boolean; json?: boolean }) => {
      const { config } = configOrExit(options)
      try {
        const spool = new Spool(config.spool.dir)
        const id = queueIdArgument(text)
        const { state, entry } = await readQueued(spool, id)
        if (options.raw) {
          process.stdout.write(entry.message)
          return
        }
        const retry = state === 'deferred' ? await spool.readRetry(id) : undefined
        const row = queueRow(state, { ...entry, size: entry.message.length }, retry)
        const { envelope, scan } = entry.header
        if (options.json) {
          process.stdout.write(
            `${JSON.stringify({ ...row, client: envelope.client, scan: scan ?? null }, null, 2)}\n`,
          )
          return
        }
        const client = envelope.client
        const lines = [
          `id        ${row.id}`,
          `state     ${row.state}`,
          `arrived   ${new Date(envelope.receivedAt).toISOString()} (${age(row.ageSeconds)} ago)`,
          `size      ${row.size}`,
          `from      <${row.from}>`,
          `to        ${row.to.join(', ')}`,
          `client    ${client.address ?? 'unknown'}${client.name ? ` (${client.name})` : ''}${client.helo ? ` helo ${client.helo}` : ''}`,
        ]
        if (retry)
          lines.push(
            `retry     ${retry.phase === 'scan' ? 'scan' : 'delivery'} attempt ${retry.attempts}, next ${row.nextAttempt}${retry.lastError ? `, last error: ${retry.lastError}` : ''}`,
          )
        if (scan)
          lines.push(
            `scan      ${scan.verdict}, score ${scan.score}${scan.symbols.length > 0 ? `, ${scan.symbols.join(' ')}` : ''}`,
          )
        const header = entry.message.subarray(0, headerEnd(entry.message)).toString('utf8')
        process.stdout.write(`${lines.join('\n')}\n\n${header}`)
      } catch (err) {
        fail(err)
      }
    })
  withConfig(queue.command('delete'))
    .description(
      'delete queued messages for good (like postsuper -d); mail being scanned or delivered by a running mailscreen is refused',
    )
    .argument('[ids...]', 'queue IDs from queue list')
    .option('--all <state>', `every message in ${DELETABLE_ALL.join(' or ')}`)
    .action(async (ids: string[], options: { config?: string; all?: string }, command: Command) => {
      const { config } = configOrExit(options)
      const all = options.all as SpoolState | undefined
      if (all !== undefined && !DELETABLE_ALL.includes(all))
        command.error(`error: --all takes ${DELETABLE_ALL.join(' or ')}, not ${JSON.stringify(all)}`)
      let failures = 0
      try {
        actAsSpoolOwner(config.spool.dir)
        const spool = new Spool(config.spool.dir)
        const owner = await spoolOwner(config.spool.dir)
        const named = await targets(command, spool, ids, all)
        failures = await forEachId(named, async (id) => {
          const states = await deleteQueued(spool, id, owner)
          await recordAdminAction(config.spool.dir, { action: 'deleted', qid: id, was: states })
          return `${id} deleted (was ${states.join(' and ')})`
        })
        if (failures < named.length) await announceAdminActions(config.spool.dir)
      } catch (err) {
        fail(err)
      }
      if (failures > 0) process.exit(1)
    })
  withConfig(queue.command('requeue'))
    .description(
      'scan messages of failed/ again, after fixing what made them crash the workers (like postsuper -r)',
    )
    .argument('[ids...]', 'queue IDs from queue list (state failed)')
    .option('--all', 'every message in failed/')
    .action(async (ids: string[], options: { config?: string; all?: boolean }, command: Command) => {
      const { config } = configOrExit(options)
      let failures = 0
      try {
        actAsSpoolOwner(config.spool.dir)
        const spool = new Spool(config.spool.dir)
        const named = await targets(command, spool, ids, options.all ? 'failed' : undefined)
        failures = await forEachId(named, async (id) => {
          const note = await requeueFailed(spool, id)
          await recordAdminAction(config.spool.dir, { action: 'requeued', qid: id, was: ['failed'] })
          return `${id} requeued for a new scan${note ? `, ${note}` : ''}`
        })
        if (failures < named.length) {
          await announceAdminActions(config.spool.dir)
          const how = await signalFlush(config.spool.dir).then(
            (pid) => `scan requested from mailscreen (pid ${pid})`,
            () => 'mailscreen is not running: requeued mail is scanned when it starts',
          )
          process.stdout.write(`${how}\n`)
        }
      } catch (err) {
        fail(err)
      }
      if (failures > 0) process.exit(1)
    })
}
