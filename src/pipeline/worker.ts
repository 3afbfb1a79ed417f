/**
 * Piscina worker entry: scans one spooled message per task. Plugins are set up once per
 * thread, on the first task. Input and output are plain data; the message travels as a
 * queue ID and is read from the spool here, so its bytes never cross threads.
 */
import { threadId, workerData } from 'node:worker_threads'
import { pino } from 'pino'
import { createLogger } from '../log.js'
import type { QueueId } from '../queue/ids.js'
import { Spool } from '../queue/spool.js'
import type { SpoolHeader } from '../queue/spool-file.js'
import { createScanner, type Scanner, type ScanReport, type ScanSettings, setupPlugins } from './scan.js'

/** What the pool hands every worker at start. */
export interface WorkerSettings {
  readonly scan: ScanSettings
  readonly spoolDir: string
  readonly fsync: boolean
  readonly logLevel: string
}

/** One task: scan the message `queueId` that sits in `processing/`. */
export interface ScanTask {
  readonly queueId: QueueId
  /** The spool slot (under `tmp/`) to write the output into; the main thread owns slots. */
  readonly slot: string
  /** The message as received, when the main thread still had it (identical to the file). */
  readonly entry?: { readonly header: SpoolHeader; readonly message: Uint8Array }
}

/** A task's result: the report and, unless the scan tempfailed, the message as it goes on. */
export interface ScanResult {
  readonly report: ScanReport
  /** Absent on tempfail. */
  readonly staged?: StagedOutput
}

/** The scanned message, fsynced under the spool's `tmp/` as `name`, and its bytes for delivery. */
export interface StagedOutput {
  readonly name: string
  readonly header: SpoolHeader
  /** Arrives in the main thread as a Uint8Array (structured clone). */
  readonly message: Uint8Array
}

const settings = workerData as WorkerSettings
// Sync destination: a worker's async log buffer can be lost when the thread is terminated.
const log = createLogger({ level: settings.logLevel }, pino.destination({ dest: 1, sync: true })).child({
  component: 'worker',
  worker: threadId,
})
const spool = new Spool(settings.spoolDir, settings.fsync)
let scanner: Promise<Scanner> | undefined

export default async function scanTask(task: ScanTask): Promise<ScanResult> {
  scanner ??= setupPlugins(settings.scan.plugins, log).then((ready) => createScanner(ready, settings.scan))
  const ready = await scanner
  const { header, message } = task.entry
    ? {
        header: task.entry.header,
        message: Buffer.from(
          task.entry.message.buffer,
          task.entry.message.byteOffset,
          task.entry.message.byteLength,
        ),
      }
    : await spool.read('processing', task.queueId)
  const report = await ready.scan({
    queueId: task.queueId,
    envelope: header.envelope,
    raw: message,
    log: log.child({ qid: task.queueId }),
  })
  if (report.verdict.action === 'tempfail') return { report }
  const name = task.slot
  const summary = {
    verdict: report.verdict.category,
    score: report.verdict.score,
    symbols: report.verdict.hits.map((h) => h.symbol),
    ...(report.messageId === undefined ? {} : { messageId: report.messageId }),
  }
  const output = { ...header, scan: summary }
  // Quarantine keeps the message as it arrived (with the verdict in the spool header).
  const bytes =
    report.verdict.action === 'quarantine' ? message : Buffer.concat(ready.render(message, report))
  await spool.stage(name, output, bytes)
  // The bytes go back with the result so delivery need not read the file again.
  return { report, staged: { name, header: output, message: bytes } }
}
