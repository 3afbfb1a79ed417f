import { readFile } from 'node:fs/promises'
import type { Command } from 'commander'
import { pino } from 'pino'
import { scanSettings } from '../app.js'
import type { Envelope } from '../ingress/envelope.js'
import { createLogger } from '../log.js'
import { verdictSummary } from '../pipeline/actions.js'
import { createScanner, type ScanReport } from '../pipeline/scan.js'
import { setupPlugins } from '../pipeline/setup.js'
import { newQueueId } from '../queue/ids.js'
import { configOrExit, fail, withConfig } from './common.js'

interface ScanOptions {
  config?: string
  from: string
  to: string[]
  client: string
  helo?: string
  json?: boolean
}

function formatReport(file: string, report: ScanReport): string {
  const { verdict } = report
  const { disposition } = report
  const lines = [
    `${file}: ${verdictSummary(verdict)}`,
    ...verdict.reasons.map((r) => `reason: ${r}`),
    disposition
      ? `actions: ${disposition.actions} (${disposition.rule})`
      : 'actions: none yet: a check failed with policy tempfail; the message would wait',
  ]
  for (const hit of verdict.hits)
    lines.push(
      `  ${hit.symbol.padEnd(28)} ${String(hit.score).padStart(6)}  ${hit.plugin}${hit.evidence.length ? `  ${hit.evidence.join(', ')}` : ''}`,
    )
  for (const reason of verdict.tempfail) lines.push(`  tempfail: ${reason}`)
  lines.push(
    `timings (ms): ${
      Object.entries(report.timings)
        .map(([p, ms]) => `${p}=${ms}`)
        .join(' ') || 'none'
    }`,
  )
  return `${lines.join('\n')}\n`
}

/** `mailscreen scan FILE.eml`: run the configured chain on one message; deliver nothing. */
export function registerScan(program: Command): void {
  withConfig(program.command('scan'))
    .description(
      'run the configured checks on one message file and print findings and verdict (delivers nothing)',
    )
    .argument('<file>', 'an RFC 5322 message (.eml)')
    .option('--from <address>', 'envelope sender to assume', 'sender@example.test')
    .option('--to <address...>', 'envelope recipients to assume', ['recipient@example.test'])
    .option('--client <ip>', 'client address to assume (what DNSBL checks see)', '127.0.0.1')
    .option('--helo <name>', 'client HELO name to assume')
    .option('--json', 'print the report as JSON')
    .action(async (file: string, options: ScanOptions) => {
      const loaded = configOrExit(options)
      // Logs go to stderr: stdout carries the report (which --json callers parse).
      const log = createLogger({ level: 'warn' }, pino.destination({ dest: 2, sync: true })).child({
        component: 'scan',
      })
      try {
        const raw = await readFile(file)
        const settings = await scanSettings(loaded)
        const scanner = createScanner(await setupPlugins(settings.plugins, log), settings)
        const client = { address: options.client, ...(options.helo ? { helo: options.helo } : {}) }
        const envelope: Envelope = {
          mailFrom: options.from,
          rcptTo: options.to,
          client,
          // The peer is the MTA in front; checks of the client (DNSBL) skip a client equal to it.
          peer: { address: '127.0.0.1' },
          receivedAt: Date.now(),
        }
        const queueId = newQueueId()
        const report = await scanner.scan({ queueId, envelope, raw, log: log.child({ qid: queueId }) })
        process.stdout.write(
          options.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(file, report),
        )
      } catch (err) {
        fail(err)
      }
    })
}
