import type { Logger } from 'pino'
import { toErrorInfo } from '../errors.js'
import type { Metrics } from '../metrics/metrics.js'
import { retryDelay } from '../queue/backoff.js'
import { HeldEntries } from '../queue/held-entries.js'
import type { QueueId } from '../queue/ids.js'
import type { Spool, SpoolEntry } from '../queue/spool.js'
import { WorkQueue } from '../queue/work-queue.js'
import type { ScanPool } from './pool.js'
import type { ScanReport } from './scan.js'

/** Bytes of received messages kept in memory for their scan; beyond it workers read the file. */
const RECEIVED_BUDGET = 64 * 1024 * 1024

export interface ScanSchedulerOptions {
  readonly spool: Spool
  readonly pool: ScanPool
  readonly log: Logger
  readonly maxInFlight: number
  /**
   * Scans that crash or hang a worker before the message goes to `failed/`; the last of
   * them had the worker to itself.
   */
  readonly maxAttempts: number
  /** Backoff for messages whose scan tempfailed. */
  readonly retry: readonly number[]
  /**
   * Hand a scanned message to delivery straight from memory, if delivery has a free place
   * now; its original then stays in `processing/` until delivery is done with it. False: no
   * place, the message goes through `outgoing/`.
   */
  readonly deliverNow: (id: QueueId, entry: SpoolEntry) => boolean
  /** Called when a scanned message is in `outgoing/`, with its contents. */
  readonly onScanned: (id: QueueId, entry: SpoolEntry) => void
  /** The verdict's actions say `bounce`: tell the sender (the message is still in `processing/`). */
  readonly onBounce: (id: QueueId, report: ScanReport) => Promise<void>
  readonly metrics?: Metrics
}

/**
 * Moves messages from `incoming/` through the worker pool: claim by rename into
 * `processing/`, scan, then hand the scanned copy to delivery (or, when delivery has no free
 * place, write it into `outgoing/` and retire the original). A tempfail verdict
 * parks the message in `deferred/` for a later scan. A worker crash or hang is retried on a
 * worker of its own (so that it cannot take other mail down with it, and so that a crash
 * there is surely its own); after `maxAttempts` crashes the message goes to `failed/`.
 * Nothing is ever deleted here.
 */
export class ScanScheduler {
  private readonly queue: WorkQueue<QueueId>
  /** Crashes so far, of messages whose scan crashed or hung its worker: they are scanned alone. */
  private readonly attempts = new Map<QueueId, number>()
  /** Tempfail counts of messages sent back from `deferred/`, for their backoff. */
  private readonly tempfails = new Map<QueueId, number>()
  /** Messages whose next scan is their last before their queue lifetime ends. */
  private readonly lastChance = new Set<QueueId>()
  /** Just-received messages waiting for their scan. */
  private readonly received = new HeldEntries(RECEIVED_BUDGET)
  /** Scans to try again after a failure (see {@link scanFailed}). */
  private readonly retries = new Set<NodeJS.Timeout>()
  private stopped = false

  constructor(private readonly opts: ScanSchedulerOptions) {
    this.queue = new WorkQueue(
      opts.maxInFlight,
      (id) => this.scan(id),
      (id, err) => this.scanFailed(id, err),
    )
  }

  /**
   * Queue a message that sits in `incoming/`. Its contents, when given (just received), go to
   * the worker with the task (within a budget), so the scan need not read the file back.
   */
  enqueue(id: QueueId, extra: { tempfails?: number; entry?: SpoolEntry; lastChance?: boolean } = {}): void {
    if (extra.tempfails !== undefined) this.tempfails.set(id, extra.tempfails)
    if (extra.lastChance) this.lastChance.add(id)
    else if (extra.lastChance === false) this.lastChance.delete(id)
    const { entry } = extra
    if (entry) this.received.hold(id, entry)
    this.queue.push(id)
  }

  /** Queue everything already in `incoming/` (after a restart). */
  async start(): Promise<void> {
    for (const id of await this.opts.spool.list('incoming')) this.enqueue(id)
  }

  /** Messages queued or being scanned. */
  get pending(): number {
    return this.queue.size
  }

  /** Messages waiting for a place in the scan (all `maxInFlight` places are taken). */
  get backlog(): number {
    return this.queue.backlog
  }

  async stop(): Promise<void> {
    this.stopped = true
    // After the running scans, whose failures may have set a retry of their own meanwhile.
    await this.queue.stop()
    for (const timer of this.retries) clearTimeout(timer)
    this.retries.clear()
    this.received.clear()
  }

  private async scan(id: QueueId): Promise<void> {
    const { spool, pool, log } = this.opts
    const started = performance.now()
    const entry = this.received.take(id)
    try {
      await spool.move(id, 'incoming', 'processing', false)
    } catch (err) {
      // Already claimed or gone (e.g. a listing raced a live notification): nothing to do.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw err
    }
    const slot = spool.takeSlot()
    const alone = this.attempts.has(id)
    let result: Awaited<ReturnType<ScanPool['run']>>
    try {
      result = await pool.run(
        {
          queueId: id,
          slot,
          ...(entry ? { entry } : {}),
          ...(this.lastChance.has(id) ? { lastChance: true } : {}),
        },
        alone ? { alone } : undefined,
      )
    } catch (err) {
      spool.returnSlot(slot)
      const { code } = err as { code?: unknown }
      // The disk's trouble, not the message's: scanned again later, never counted as a crash.
      if (code === 'MSC_SPOOL_WRITE_FAILED') throw err
      if (code === 'MSC_POOL_CLOSED') await this.scanInterrupted(id)
      else await this.scanCrashed(id, err, alone)
      return
    }
    this.attempts.delete(id)
    const { report, deliver, quarantine } = result
    this.opts.metrics?.scanned(report, (performance.now() - started) / 1000)
    const { verdict, disposition } = report
    const fields = {
      qid: id,
      messageId: report.messageId,
      verdict: verdict.category,
      score: verdict.score,
      symbols: verdict.hits.map((h) => h.symbol),
      timings: report.timings,
      ms: Math.round(performance.now() - started),
    }
    if (disposition === undefined) {
      spool.returnSlot(slot)
      await this.deferScan(id, verdict.tempfail.join('; '), fields)
      return
    }
    const lastChance = this.lastChance.delete(id)
    // Quarantine, bounce, delivery, then forget the input. Recovery counts a message as done
    // once its scanned copy is in outgoing/ or deferred/; a crash before that (also while
    // delivery sends it straight from memory) scans it again: at least once, never lost.
    if (quarantine) await spool.commit(quarantine, 'quarantine', id)
    else spool.returnSlot(slot)
    if (disposition.bounce) await this.opts.onBounce(id, report)
    const output = deliver && {
      header: deliver.header,
      message: Buffer.from(deliver.message.buffer, deliver.message.byteOffset, deliver.message.byteLength),
    }
    // Straight on when delivery has room: no second file. Delivery retires the original.
    const handedOn = output !== undefined && this.opts.deliverNow(id, output)
    if (!handedOn) {
      if (output) {
        await spool.create('outgoing', output.header, output.message)
        // From here the copy in outgoing/ is the message: an original that cannot be retired
        // now is retired later, and the copy goes on.
        await spool.removeSoon('processing', id, (err) =>
          log.error({ qid: id, err: toErrorInfo(err) }, 'original not retired yet: tried again every 5 s'),
        )
      } else await spool.remove('processing', id)
    }
    this.tempfails.delete(id)
    // Logged once the outcome is on disk (or delivery has it), so what the line says is true.
    log[verdict.category === 'clean' ? 'info' : 'warn'](
      {
        ...fields,
        ...(verdict.reasons.length > 0 ? { reason: verdict.reasons } : {}),
        actions: disposition.actions,
        rule: disposition.rule,
        ...(disposition.deliverTo.length > 0 ? { to: disposition.deliverTo } : {}),
        ...(quarantine ? { quarantined: true } : {}),
        ...(lastChance ? { lastChance } : {}),
      },
      'verdict',
    )
    if (!deliver && !quarantine && !disposition.bounce) log.warn({ qid: id }, 'dropped by policy')
    if (output && !handedOn) this.opts.onScanned(id, output)
  }

  private async deferScan(id: QueueId, reason: string, fields: Record<string, unknown>): Promise<void> {
    const { spool, log } = this.opts
    const entry = await spool.read('processing', id)
    const attempts = (this.tempfails.get(id) ?? 0) + 1
    this.tempfails.delete(id)
    const nextAttemptAt = Date.now() + retryDelay(this.opts.retry, attempts)
    await spool.writeRetry(id, {
      phase: 'scan',
      attempts,
      nextAttemptAt,
      pending: entry.header.envelope.rcptTo,
      lastError: reason,
    })
    await spool.move(id, 'processing', 'deferred')
    // No verdict yet: a check with policy tempfail failed, so the message waits.
    log.warn(
      {
        ...fields,
        verdict: undefined,
        attempts,
        nextAttemptAt: new Date(nextAttemptAt).toISOString(),
        reason,
      },
      'scan deferred',
    )
  }

  /**
   * A scan that failed half-way (a spool write, a bounce that could not be written): its
   * message must not sit in `processing/` until the next start. It goes back to `incoming/`
   * (unless its scanned copy is already safe, as at start-up) and is scanned again after the
   * first retry delay.
   */
  private async scanFailed(id: QueueId, err: unknown): Promise<void> {
    const { spool, log } = this.opts
    const retryMs = retryDelay(this.opts.retry, 1)
    try {
      const outcome = await spool.reclaim(id)
      log.error(
        { qid: id, err: toErrorInfo(err), outcome, ...(outcome === 'requeued' ? { retryMs } : {}) },
        'scan error',
      )
      // Stopping: it is in incoming/, where the next start finds it.
      if (outcome !== 'requeued' || this.stopped) return
      const timer = setTimeout(() => {
        this.retries.delete(timer)
        this.queue.push(id)
      }, retryMs)
      this.retries.add(timer)
    } catch (reclaimErr) {
      // It could not be put back (the disk again): try that again later rather than leave it
      // stranded until the next start.
      log.error(
        { qid: id, err: toErrorInfo(err), reclaim: toErrorInfo(reclaimErr), retryMs },
        'scan error: message not put back for a new scan yet',
      )
      if (this.stopped) return
      const timer = setTimeout(() => {
        this.retries.delete(timer)
        void this.scanFailed(id, err)
      }, retryMs)
      this.retries.add(timer)
    }
  }

  /** The pool closed under the scan (a reload swaps it): scanned again, nothing counted. */
  private async scanInterrupted(id: QueueId): Promise<void> {
    await this.opts.spool.move(id, 'processing', 'incoming')
    this.opts.log.info({ qid: id }, 'scan interrupted by a pool restart: queued again')
    this.queue.push(id)
  }

  /**
   * The scan's worker died under it (`alone`: it had the worker to itself). Only a crash alone
   * is surely this message's doing, so only such a crash can send it to `failed/`.
   */
  private async scanCrashed(id: QueueId, err: unknown, alone: boolean): Promise<void> {
    const { spool, log } = this.opts
    const attempts = (this.attempts.get(id) ?? 0) + 1
    const reason = toErrorInfo(err).message
    const final = alone && attempts >= this.opts.maxAttempts
    this.opts.metrics?.scanCrashed(final)
    if (final) {
      // Nothing of this message's past stays: a requeue from failed/ starts it afresh.
      this.attempts.delete(id)
      this.tempfails.delete(id)
      this.lastChance.delete(id)
      await spool.move(id, 'processing', 'failed')
      log.error({ qid: id, attempts, reason }, 'scan failed: moved to failed')
      return
    }
    this.attempts.set(id, attempts)
    await spool.move(id, 'processing', 'incoming')
    log.warn({ qid: id, attempts, reason, alone }, 'scan crashed: retrying')
    this.queue.push(id)
  }
}
