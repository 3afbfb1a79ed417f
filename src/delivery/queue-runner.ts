import type { Logger } from 'pino'
import { toErrorInfo } from '../errors.js'
import type { Envelope } from '../ingress/envelope.js'
import { headerEnd } from '../mail/message.js'
import { retryDelay } from '../queue/backoff.js'
import { newQueueId, type QueueId } from '../queue/ids.js'
import type { Spool, SpoolEntry } from '../queue/spool.js'
import type { RetryState, SpoolHeader } from '../queue/spool-file.js'
import { WorkQueue } from '../queue/work-queue.js'
import { buildDsn } from './dsn.js'
import type { RecipientResult, SmtpTransport } from './transport.js'

export interface DeliveryQueueOptions {
  readonly spool: Spool
  readonly transport: SmtpTransport
  readonly log: Logger
  /** Our name, for DSNs. */
  readonly hostname: string
  readonly concurrency: number
  readonly retry: readonly number[]
  readonly queueLifetimeMs: number
  readonly runIntervalMs: number
  /**
   * A message in `deferred/` whose scan tempfailed is due: put it back to be scanned.
   * `lastChance`: its queue lifetime is over, so a failing scan makes it unscannable.
   */
  readonly onRescan: (id: QueueId, attempts: number, lastChance: boolean) => void
}

/** Bytes of scanned messages kept in memory for delivery; beyond it they are read from disk. */
const CACHE_BUDGET = 64 * 1024 * 1024

type Job = { readonly id: QueueId; readonly state: 'outgoing' | 'deferred' }

/**
 * The output queue: sends what is in `outgoing/` (and what is due in `deferred/`) to the
 * relay, handles each recipient's answer on its own, and deletes a message only when every
 * recipient has a final answer — delivered, or bounced with a DSN that is itself spooled.
 */
export class DeliveryQueue {
  private readonly queue: WorkQueue<QueueId>
  private readonly states = new Map<QueueId, Job['state']>()
  private readonly cache = new Map<QueueId, SpoolEntry>()
  private cachedBytes = 0
  private timer: NodeJS.Timeout | undefined
  private sweeping: Promise<void> | undefined

  constructor(private readonly opts: DeliveryQueueOptions) {
    this.queue = new WorkQueue(
      opts.concurrency,
      (id) => this.deliver(id),
      (id, err) => opts.log.error({ qid: id, err: toErrorInfo(err) }, 'delivery error'),
    )
  }

  /**
   * Queue a message that sits in `outgoing/`. Its contents, when given, are kept in memory
   * (within a budget) so delivery need not read the file back.
   */
  enqueue(id: QueueId, entry?: SpoolEntry): void {
    this.states.set(id, 'outgoing')
    // Cached before the push: the queue may start the delivery synchronously.
    const cache = entry && !this.cache.has(id) && this.cachedBytes + entry.message.length <= CACHE_BUDGET
    if (cache) {
      this.cache.set(id, entry)
      this.cachedBytes += entry.message.length
    }
    if (!this.queue.push(id) && cache) this.dropCached(id)
  }

  private dropCached(id: QueueId): SpoolEntry | undefined {
    const cached = this.cache.get(id)
    if (cached) {
      this.cache.delete(id)
      this.cachedBytes -= cached.message.length
    }
    return cached
  }

  private async load(state: Job['state'], id: QueueId): Promise<SpoolEntry | undefined> {
    const cached = this.dropCached(id)
    if (cached) return cached
    try {
      return await this.opts.spool.read(state, id)
    } catch (err) {
      // Gone meanwhile (delivered by an earlier run, or removed by the administrator).
      if ((err as { cause?: NodeJS.ErrnoException }).cause?.code === 'ENOENT') return undefined
      throw err
    }
  }

  /** Queue what `outgoing/` holds, then sweep `deferred/` on an interval. */
  async start(): Promise<void> {
    for (const id of await this.opts.spool.list('outgoing')) this.enqueue(id)
    this.timer = setInterval(() => void this.sweep(false), this.opts.runIntervalMs)
    this.timer.unref()
  }

  /** Retry everything in `deferred/` now, like `postqueue -f`. */
  flush(): Promise<void> {
    return this.sweep(true)
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
    await this.sweeping
    await this.queue.stop()
    this.cache.clear()
    this.cachedBytes = 0
  }

  /** Messages queued or being delivered. */
  get pending(): number {
    return this.queue.size
  }

  private sweep(force: boolean): Promise<void> {
    this.sweeping ??= this.sweepDeferred(force)
      .catch((err) => this.opts.log.error({ err: toErrorInfo(err) }, 'deferred sweep failed'))
      .finally(() => {
        this.sweeping = undefined
      })
    return this.sweeping
  }

  private async sweepDeferred(force: boolean): Promise<void> {
    const { spool } = this.opts
    const now = Date.now()
    for (const id of await spool.list('deferred')) {
      if (this.queue.has(id)) continue
      const retry = await spool.readRetry(id)
      if (!force && retry && retry.nextAttemptAt > now) continue
      if (retry?.phase === 'scan') {
        await this.rescan(id, retry)
        continue
      }
      this.states.set(id, 'deferred')
      this.queue.push(id)
    }
  }

  private async rescan(id: QueueId, retry: RetryState): Promise<void> {
    const { spool } = this.opts
    const { header } = await spool.peek('deferred', id, 4096)
    // Past its lifetime the message gets one more scan; failing that, it is unscannable.
    const lastChance = Date.now() - header.envelope.receivedAt > this.opts.queueLifetimeMs
    await spool.move(id, 'deferred', 'incoming')
    await spool.remove('deferred', id)
    this.opts.onRescan(id, retry.attempts, lastChance)
  }

  private async deliver(id: QueueId): Promise<void> {
    const { spool, transport, log } = this.opts
    const state = this.states.get(id) ?? 'outgoing'
    this.states.delete(id)
    const entry = await this.load(state, id)
    if (!entry) return
    const { envelope } = entry.header
    const retry = state === 'deferred' ? await spool.readRetry(id) : undefined
    const pending = retry?.pending ?? envelope.rcptTo
    const result = await transport.send({
      mailFrom: envelope.mailFrom,
      rcptTo: pending,
      message: entry.message,
      size: entry.message.length,
      smtpUtf8: envelope.smtpUtf8 === true,
      eightBit: envelope.body === '8BITMIME',
    })
    const expired = Date.now() - envelope.receivedAt > this.opts.queueLifetimeMs
    const delivered = result.recipients.filter((r) => r.status === 'delivered')
    const failed = result.recipients.filter((r) => r.status === 'failed')
    const deferred = result.recipients.filter((r) => r.status === 'deferred')
    const delay = Math.round((Date.now() - envelope.receivedAt) / 1000)
    for (const r of delivered)
      log.info(
        { qid: id, to: r.recipient, relay: result.hop, reply: r.reply, delay, ms: result.durationMs },
        'delivered',
      )
    const bounced = expired ? [...failed, ...deferred] : failed
    if (bounced.length > 0)
      await this.bounce(id, entry.header, entry.message, bounced, expired ? 'expired' : 'failed', result.hop)
    const still = expired ? [] : deferred
    if (still.length === 0) {
      await spool.remove(state, id)
      return
    }
    const attempts = (retry?.attempts ?? 0) + 1
    const nextAttemptAt = Date.now() + retryDelay(this.opts.retry, attempts)
    await spool.writeRetry(id, {
      phase: 'deliver',
      attempts,
      nextAttemptAt,
      pending: still.map((r) => r.recipient),
      lastError: still[0]?.reply,
    })
    if (state === 'outgoing') await spool.move(id, 'outgoing', 'deferred')
    // Logged once the message is where the log line says it is.
    for (const r of still)
      log.warn(
        { qid: id, to: r.recipient, relay: result.hop, reply: r.reply, delay, attempts, nextAttemptAt },
        'deferred',
      )
  }

  /**
   * The `bounce` action: tell the sender every recipient was refused, with `reply`
   * (e.g. `550 5.7.1 ...`). Never to `<>`, never for a DSN.
   */
  async refuse(id: QueueId, entry: SpoolEntry, reply: string): Promise<void> {
    const code = Number(reply.slice(0, 3)) || 550
    const recipients = entry.header.envelope.rcptTo.map(
      (recipient): RecipientResult => ({ recipient, status: 'failed', code, reply }),
    )
    await this.bounce(id, entry.header, entry.message, recipients, 'failed', this.opts.hostname)
  }

  private async bounce(
    id: QueueId,
    header: SpoolHeader,
    message: Buffer,
    recipients: readonly RecipientResult[],
    reason: 'failed' | 'expired',
    hop: string,
  ): Promise<void> {
    const { spool, log, hostname } = this.opts
    for (const r of recipients)
      log.warn({ qid: id, to: r.recipient, relay: hop, reply: r.reply, reason }, 'bounced')
    const dsn = buildDsn({
      reportingMta: hostname,
      queueId: id,
      envelope: header.envelope,
      failed: recipients,
      reason,
      originalHeaders: message.subarray(0, headerEnd(message)),
      arrivalDate: new Date(header.envelope.receivedAt),
      now: new Date(),
      remoteMta: hop,
    })
    if (!dsn) {
      log.info({ qid: id, from: header.envelope.mailFrom }, 'no DSN: null sender or DSN')
      return
    }
    const dsnId = newQueueId()
    const local = { address: '127.0.0.1', helo: hostname }
    const envelope: Envelope = {
      mailFrom: '',
      rcptTo: dsn.rcptTo,
      client: local,
      peer: local,
      receivedAt: Date.now(),
    }
    await spool.write('outgoing', { v: 1, id: dsnId, envelope, dsnFor: id }, dsn.message)
    log.info({ qid: dsnId, dsnFor: id, to: dsn.rcptTo }, 'dsn queued')
    this.enqueue(dsnId)
  }
}
