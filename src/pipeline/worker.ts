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
import { createScanner, type ScanReport, type ScanSettings, type Scanner, setupPlugins } from './scan.js'

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
}

/** A task's result: the report, and the name of the staged output file when it goes on. */
export interface ScanResult {
  readonly report: ScanReport
  /** Name under the spool's `tmp/` of the message as it goes on, fsynced; absent on tempfail. */
  readonly staged?: string
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
  const { header, message } = await spool.read('processing', task.queueId)
  const report = await ready.scan({ queueId: task.queueId, envelope: header.envelope, raw: message, log: log.child({ qid: task.queueId }) })
  if (report.verdict.action === 'tempfail') return { report }
  const staged = `${task.queueId}.out`
  const summary = {
    verdict: report.verdict.category,
    score: report.verdict.score,
    symbols: report.verdict.hits.map((h) => h.symbol),
    ...(report.messageId === undefined ? {} : { messageId: report.messageId }),
  }
  await spool.stage(staged, { ...header, scan: summary }, ready.render(message, report))
  return { report, staged }
}
