/**
 * Piscina worker entry: scans one spooled message per task. Plugins are set up once per
 * thread, on the first task. Input and output are plain data: the message comes with the
 * task when the main thread still holds it (else it is read from `processing/` here), and
 * the scanned copy goes back with the result.
 */
import { parentPort, threadId, workerData } from 'node:worker_threads'
import { pino } from 'pino'
import { toErrorInfo } from '../errors.js'
import { createLogger, lazyChild } from '../log.js'
import type { QueueId } from '../queue/ids.js'
import { Spool } from '../queue/spool.js'
import type { ScanSummary, SpoolHeader } from '../queue/spool-file.js'
import { importDefinition } from './registry.js'
import { createScanner, type Scanner, type ScanReport, type ScanSettings } from './scan.js'
import { setupPlugins } from './setup.js'
import { nameThisThread, SCAN_THREAD_NAME } from './thread-name.js'
import { type BoardMessage, TaskBoard } from './watchdog.js'

/** What the pool hands every worker at start. */
export interface WorkerSettings {
  readonly scan: ScanSettings
  readonly spoolDir: string
  readonly fsync: boolean
  readonly logLevel: string
}

/** A worker's `workerData`: the settings, and what its board needs (see watchdog.ts). */
export interface WorkerData extends WorkerSettings {
  /** The most scans it runs at once. */
  readonly boardCapacity: number
  /** How often its heartbeat beats. */
  readonly beatMs: number
}

/** What piscina carries: a task and its number, for the watchdog. */
export interface WatchedTask {
  readonly seq: number
  readonly task: ScanTask
}

/** One task: scan the message `queueId` that sits in `processing/`. */
export interface ScanTask {
  readonly queueId: QueueId
  /**
   * A spool slot (under `tmp/`) for the original, should the policy quarantine it; the main
   * thread owns slots.
   */
  readonly slot: string
  /** The message as received, when the main thread still had it (identical to the file). */
  readonly entry?: { readonly header: SpoolHeader; readonly message: Uint8Array }
  /** Its last scan before the queue lifetime ends: a tempfail makes it unscannable. */
  readonly lastChance?: boolean
  /**
   * `milter`: the MTA keeps the message; scan `entry` with the milter's action lists and
   * return the verdict (and a stripped copy) without writing anything to the spool.
   */
  readonly front?: 'milter'
}

/** A task's result: the report, the copy to deliver and the file the main thread commits. */
export interface ScanResult {
  readonly report: ScanReport
  /**
   * The copy to deliver, in memory only: the main thread hands it to delivery or writes it
   * to `outgoing/` (the original stays in `processing/` until one of them is done with it).
   */
  readonly deliver?: ScannedOutput
  /** The original, staged for `quarantine/` in the task's slot. */
  readonly quarantine?: string
  /** Milter tasks whose actions strip: the message with the parts removed (no header edits). */
  readonly stripped?: Uint8Array
}

/** What a worker posts once it has loaded its plugin modules. */
export interface LoadedMessage {
  readonly threadId: number
  readonly loaded: true
}

/** The cause of a scan's error when this thread could not write the spool (a full disk). */
export interface SpoolWriteMark {
  readonly spoolWrite: true
}

/** The scanned message: its spool header (recipients the policy delivers to) and its bytes. */
export interface ScannedOutput {
  readonly header: SpoolHeader
  /** Arrives in the main thread as a Uint8Array (structured clone). */
  readonly message: Uint8Array
}

nameThisThread(SCAN_THREAD_NAME)
const settings = workerData as WorkerData
// The main thread's watchdog reads this board to find scans that overran, and this thread
// stuck outside any scan (see watchdog.ts). The timer must not keep a closing thread up.
const board = new TaskBoard(settings.boardCapacity)
setInterval(() => board.beat(), settings.beatMs).unref()
parentPort?.postMessage({ threadId, board: board.buffer } satisfies BoardMessage)
// The pool is told once every plugin module is loaded: on Node 20 a thread terminated while it
// still loads modules takes the whole process down with a V8 fatal error, so the pool
// terminates a thread only after this, or after a long wait.
const imports = await Promise.allSettled(settings.scan.plugins.map((ref) => importDefinition(ref.url)))
parentPort?.postMessage({ threadId, loaded: true } satisfies LoadedMessage)
// A module that failed to load stays failed in this thread's module cache: no scan could run
// here. The thread fails to start instead, and the pool starts its threads anew (pool.ts).
const failedImport = imports.find((r): r is PromiseRejectedResult => r.status === 'rejected')
if (failedImport) throw failedImport.reason
// Sync destination: a worker's async log buffer can be lost when the thread is terminated.
const log = createLogger({ level: settings.logLevel }, pino.destination({ dest: 1, sync: true })).child({
  component: 'worker',
  worker: threadId,
})
const spool = new Spool(settings.spoolDir, settings.fsync)
let scanner: Promise<Scanner> | undefined

export default async function runWatched({ seq, task }: WatchedTask): Promise<ScanResult> {
  const slot = board.begin(seq)
  try {
    return await scanTask(task)
  } finally {
    board.end(slot)
  }
}

async function scanTask(task: ScanTask): Promise<ScanResult> {
  // Not kept when it fails: the next scan on this thread tries again.
  scanner ??= setupPlugins(settings.scan.plugins, log)
    .then((ready) => createScanner(ready, settings.scan))
    .catch((err: unknown) => {
      scanner = undefined
      throw err
    })
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
    log: lazyChild(log, { qid: task.queueId }),
    ...(task.lastChance ? { lastChance: true } : {}),
    ...(task.front ? { front: task.front } : {}),
  })
  if (task.front === 'milter') {
    const { disposition } = report
    if (!disposition?.strip) return { report }
    // Header changes go to the MTA as milter edits; only the strip is rendered here.
    const stripped = ready.render(message, { ...report, disposition: { ...disposition, edits: [] } })
    return { report, stripped: Buffer.concat(stripped) }
  }
  const { verdict, disposition } = report
  if (disposition === undefined) return { report }
  const scan: ScanSummary = {
    verdict: verdict.category,
    score: verdict.score,
    symbols: verdict.hits.map((h) => h.symbol),
    ...(report.messageId === undefined ? {} : { messageId: report.messageId }),
    ...(verdict.reasons.length > 0 ? { reason: verdict.reasons.join('; ') } : {}),
    actions: disposition.actions,
  }
  let quarantine: string | undefined
  if (disposition.quarantine) {
    // The original as it arrived: release delivers it untagged.
    quarantine = task.slot
    await spool.stage(quarantine, { ...header, scan }, message).catch((err: unknown) => {
      // A full disk is not the message's doing. Only an error's cause survives the hop to the
      // main thread, not its code: the mark goes there, for the pool to tell this from a crash.
      throw new Error(toErrorInfo(err).message, { cause: { spoolWrite: true } satisfies SpoolWriteMark })
    })
  }
  if (disposition.deliverTo.length === 0) return { report, ...(quarantine ? { quarantine } : {}) }
  const output = { ...header, envelope: { ...header.envelope, rcptTo: disposition.deliverTo }, scan }
  return {
    report,
    deliver: { header: output, message: Buffer.concat(ready.render(message, report)) },
    ...(quarantine ? { quarantine } : {}),
  }
}
