import { stat } from 'node:fs/promises'
import type { Logger } from 'pino'
import { toErrorInfo } from '../errors.js'
import { dsnOf, type Envelope, wantsFailureReport } from '../ingress/envelope.js'
import { isNonAscii } from '../mail/ascii.js'
import { headerEnd } from '../mail/message.js'
import type { Metrics } from '../metrics/metrics.js'
import { retryDelay } from '../queue/backoff.js'
import { HeldEntries } from '../queue/held-entries.js'
import { newQueueId, type QueueId } from '../queue/ids.js'
import { isMissing, type Spool, type SpoolEntry } from '../queue/spool.js'
import { type RetryState, type SpoolHeader, timeInQueue } from '../queue/spool-file.js'
import { WorkQueue } from '../queue/work-queue.js'
import { ByteBudget } from './byte-budget.js'
import { countReceived, type Dispatcher, type Outcome, type RoutedRecipient } from './dispatch.js'
import { buildDsn, type ReportedRecipient } from './dsn.js'
import type { RecipientResult } from './transport.js'

/**
 * The retry state of a deferred delivery: {@link RetryState} (whose `pending` lists the final
 * addresses, for `queue list`) plus the routed recipients, so a retry does not expand aliases
 * again (which would deliver twice to those already done). Their next hops are looked up again.
 */
interface DeliveryRetry extends RetryState {
  readonly routed?: readonly RoutedRecipient[]
}

function routedOf(retry: RetryState | undefined): readonly RoutedRecipient[] | undefined {
  const routed = (retry as DeliveryRetry | undefined)?.routed
  return Array.isArray(routed) &&
    routed.every((r) => typeof r?.address === 'string' && typeof r.from === 'string')
    ? routed
    : undefined
}

export interface DeliveryQueueOptions {
  readonly spool: Spool
  /** Routes recipients and sends to their next hops. */
  readonly dispatcher: Dispatcher
  /** Most `Received:` fields a message may carry; more is a mail loop (`routing.hopLimit`). */
  readonly hopLimit: () => number
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
  readonly metrics?: Metrics
}

/** Bytes of scanned messages kept in memory for delivery; beyond it they are read from disk. */
const CACHE_BUDGET = 64 * 1024 * 1024
/**
 * Bytes of scanned messages delivery may hold taken straight from the scan (their only scanned
 * copy, held for a whole attempt); beyond it they go through `outgoing/`.
 */
const SCANNED_BUDGET = 64 * 1024 * 1024
/** Bytes of messages read back from disk that deliveries may hold at once. */
const READ_BUDGET = 256 * 1024 * 1024
/**
 * Largest original a DSN returns whole when its sender asked RET=FULL (Postfix's
 * bounce_size_limit); a larger one comes back as its headers.
 */
const RETURN_FULL_MAX_BYTES = 50_000

/** Where the message a delivery attempt is for sits: `processing/` for one taken by {@link DeliveryQueue.deliverNow}. */
type Source = 'outgoing' | 'deferred' | 'processing'

/**
 * The output queue: routes what is in `outgoing/` (and what is due in `deferred/`, and what the
 * scan hands on straight from memory) to its next hops, handles each recipient's answer on its
 * own, and deletes a message only when every recipient has a final answer — delivered, or
 * bounced with a DSN that is itself spooled.
 */
export class DeliveryQueue {
  private readonly queue: WorkQueue<QueueId>
  private readonly states = new Map<QueueId, Source>()
  private readonly cache = new HeldEntries(CACHE_BUDGET)
  /**
   * Scanned messages taken by {@link deliverNow}: their only scanned copy, kept until delivery
   * is done with them (also across an attempt that threw), outside the cache's budget.
   */
  private readonly scanned = new HeldEntries(SCANNED_BUDGET)
  private readonly reads = new ByteBudget(READ_BUDGET)
  private timer: NodeJS.Timeout | undefined
  private sweeping: Promise<void> | undefined
  /**
   * Messages of `outgoing/` or {@link scanned} whose delivery attempt threw (a full disk, say):
   * the sweep, which otherwise looks only at `deferred/`, tries them again.
   */
  private readonly failed = new Set<QueueId>()
  /**
   * Messages whose attempt got final answers but could not be filed afterwards (a DSN or a
   * retry state that could not be written: a full disk). What they still owe is kept here, so
   * that their next attempt does not deliver again to the recipients already done. A restart
   * forgets it: those may then get the message once more (at least once, never lost).
   */
  private readonly unfiled = new Map<QueueId, DeliveryRetry>()

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
    const held = entry !== undefined && this.cache.hold(id, entry)
    if (!this.queue.push(id) && held) this.cache.take(id)
  }

  /**
   * Take a just-scanned message, whose original is in `processing/`, if a place in the delivery
   * stage is free now. It is delivered from memory and written again only if a recipient is
   * deferred (into `deferred/`); the original is retired once every recipient has a final
   * answer, and a crash before that scans it again. False when no place is free, or the
   * message would take the held bytes over their budget: write it to `outgoing/` and
   * {@link enqueue} it instead.
   */
  deliverNow(id: QueueId, entry: SpoolEntry): boolean {
    if (!this.queue.hasRoom() || this.queue.has(id)) return false
    if (!this.scanned.hold(id, entry)) return false
    this.states.set(id, 'processing')
    this.queue.push(id)
    return true
  }

  /**
   * A message's contents for one delivery attempt, from the cache or from disk; `done` gives
   * back what it holds of the read budget.
   */
  private async load(
    state: Source,
    id: QueueId,
  ): Promise<{ entry: SpoolEntry; done: () => void } | undefined> {
    if (state === 'processing') {
      const entry = this.scanned.get(id)
      return entry && { entry, done: () => {} }
    }
    const cached = this.cache.take(id)
    if (cached) return { entry: cached, done: () => {} }
    try {
      const bytes = (await stat(this.opts.spool.path(state, id))).size
      await this.reads.acquire(bytes)
      try {
        return { entry: await this.opts.spool.read(state, id), done: () => this.reads.release(bytes) }
      } catch (err) {
        this.reads.release(bytes)
        throw err
      }
    } catch (err) {
      // Gone meanwhile (delivered by an earlier run, or removed by the administrator).
      if (isMissing(err)) return undefined
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
    // Their originals are in processing/: the next start scans them again.
    this.scanned.clear()
  }

  /** Messages queued or being delivered. */
  get pending(): number {
    return this.queue.size
  }

  /**
   * Messages waiting to be delivered that could use a place another message gives up: those
   * waiting for a place in the delivery stage, and those in it waiting to be read from disk.
   */
  get backlog(): number {
    return this.queue.backlog + this.reads.queued
  }

  /**
   * One sweep at a time. A periodic sweep joins the running one; a flush runs after it (the
   * running one may have skipped what was not due yet).
   */
  private sweep(force: boolean): Promise<void> {
    if (this.sweeping && !force) return this.sweeping
    const run: Promise<void> = (this.sweeping ?? Promise.resolve())
      .then(() => this.sweepDeferred(force))
      .catch((err) => this.opts.log.error({ err: toErrorInfo(err) }, 'deferred sweep failed'))
      .finally(() => {
        if (this.sweeping === run) this.sweeping = undefined
      })
    this.sweeping = run
    return run
  }

  /**
   * Queue what is due in `deferred/`, and again what a delivery attempt that threw left
   * behind (a full disk, say). One message that cannot be handled is logged and skipped; it
   * never stops the others.
   */
  private async sweepDeferred(force: boolean): Promise<void> {
    const { spool, log } = this.opts
    const now = Date.now()
    for (const id of this.failed) {
      this.failed.delete(id)
      this.queue.push(id)
    }
    const listed = await spool.list('deferred')
    // Deleted by the administrator meanwhile: nothing will ask for what they owed. Not those
    // out of deferred/ (in outgoing/ or processing/) whose attempt failed again during the
    // listing: their retry is in `failed`, and would send to everyone.
    const present = new Set(listed)
    for (const id of this.unfiled.keys())
      if (!present.has(id) && !this.queue.has(id) && !this.failed.has(id)) this.unfiled.delete(id)
    for (const id of listed) {
      if (this.queue.has(id)) continue
      try {
        await this.sweepOne(id, force, now)
      } catch (err) {
        if (!isMissing(err)) log.error({ qid: id, err: toErrorInfo(err) }, 'deferred message skipped')
      }
    }
  }

  private async sweepOne(id: QueueId, force: boolean, now: number): Promise<void> {
    const { spool } = this.opts
    const retry = await spool.readRetry(id)
    if (!force && retry && retry.nextAttemptAt > now) return
    if (retry?.phase === 'scan') return this.rescan(id, retry.attempts)
    if (retry === undefined) {
      // No retry state (lost with a crash): a message never scanned goes back to the scan,
      // never straight out. Scanned mail, DSNs and released mail are delivered.
      const { header } = await spool.peek('deferred', id)
      if (header.scan === undefined && header.dsnFor === undefined && header.releasedFrom === undefined)
        return this.rescan(id, 0)
    }
    this.states.set(id, 'deferred')
    this.queue.push(id)
  }

  private async rescan(id: QueueId, attempts: number): Promise<void> {
    const { spool } = this.opts
    const { header } = await spool.peek('deferred', id)
    // Past its lifetime the message gets one more scan; failing that, it is unscannable.
    const lastChance = timeInQueue(header) > this.opts.queueLifetimeMs
    await spool.move(id, 'deferred', 'incoming')
    await spool.remove('deferred', id)
    this.opts.onRescan(id, attempts, lastChance)
  }

  private async deliver(id: QueueId): Promise<void> {
    const state = this.states.get(id) ?? 'outgoing'
    this.states.delete(id)
    try {
      await this.deliverFrom(state, id)
      if (state === 'processing') this.scanned.take(id)
    } catch (err) {
      if (state !== 'deferred') this.failed.add(id)
      // Still only in memory: the retry takes it from there again.
      if (state === 'processing') this.states.set(id, state)
      throw err
    }
  }

  private async deliverFrom(state: Source, id: QueueId): Promise<void> {
    const loaded = await this.load(state, id)
    if (!loaded) {
      this.unfiled.delete(id)
      return
    }
    try {
      await this.deliverEntry(state, id, loaded.entry)
    } finally {
      loaded.done()
    }
  }

  /** One delivery attempt, then each recipient's outcome logged and the message filed by it. */
  private async deliverEntry(state: Source, id: QueueId, entry: SpoolEntry): Promise<void> {
    const { spool } = this.opts
    const retry = this.unfiled.get(id) ?? (state === 'deferred' ? await spool.readRetry(id) : undefined)
    const outcomes = await this.attempt(entry, retry)
    // Recipients without a final answer on disk yet; the rest must not be sent to again.
    let owed = outcomes.filter((r) => r.status !== 'delivered')
    try {
      await this.file(state, id, entry, retry, outcomes, (bounced) => {
        owed = owed.filter((r) => !bounced.includes(r))
      })
      this.unfiled.delete(id)
    } catch (err) {
      this.unfiled.set(id, {
        phase: 'deliver',
        attempts: retry?.attempts ?? 0,
        nextAttemptAt: 0,
        pending: owed.map((r) => r.recipient),
        routed: owed.map((r) => r.routed),
      })
      throw err
    }
  }

  /**
   * Log each recipient's outcome and file the message by them: DSNs for the failed ones
   * (`bounced` is told as each is written), then removed, or deferred for the others.
   */
  private async file(
    state: Source,
    id: QueueId,
    entry: SpoolEntry,
    retry: RetryState | undefined,
    outcomes: readonly Outcome[],
    bounced: (outcomes: readonly Outcome[]) => void,
  ): Promise<void> {
    const { spool, log } = this.opts
    const { envelope } = entry.header
    const expired = timeInQueue(entry.header) > this.opts.queueLifetimeMs
    const delivered = outcomes.filter((r) => r.status === 'delivered')
    const failed = outcomes.filter((r) => r.status === 'failed')
    const deferred = outcomes.filter((r) => r.status === 'deferred')
    const delaySeconds = (Date.now() - envelope.receivedAt) / 1000
    const delay = Math.round(delaySeconds)
    for (const r of delivered) {
      this.opts.metrics?.recipientDelivered(delaySeconds)
      log.info(
        {
          qid: id,
          to: r.recipient,
          ...(r.originalRecipient ? { origTo: r.originalRecipient } : {}),
          relay: r.hop,
          reply: r.reply,
          delay,
          ms: r.durationMs,
          ...(r.tls === undefined ? {} : { tls: r.tls }),
        },
        'delivered',
      )
    }
    const bouncing = expired ? [...failed, ...deferred] : failed
    if (bouncing.length > 0)
      await this.bounceOutcomes(id, entry, bouncing, expired ? 'expired' : 'failed', bounced)
    const still = expired ? [] : deferred
    if (still.length === 0) {
      await spool.remove(state, id)
      return
    }
    // A destination that was only busy did not fail: the schedule does not move on for it.
    const attempts = (retry?.attempts ?? 0) + (still.every((r) => r.busy) ? 0 : 1)
    const nextAttemptAt = Date.now() + retryDelay(this.opts.retry, attempts)
    const next: DeliveryRetry = {
      phase: 'deliver',
      attempts,
      nextAttemptAt,
      pending: still.map((r) => r.recipient),
      routed: still.map((r) => r.routed),
      lastError: (still.find((r) => !r.busy) ?? still[0])?.reply,
    }
    await spool.writeRetry(id, next)
    if (state === 'deferred' && !(await spool.holds('deferred', id))) {
      // Deleted by the administrator (`queue delete`) while this attempt ran: not retried.
      await spool.remove('deferred', id)
      log.info({ qid: id, pending: next.pending }, 'deleted during a delivery attempt: not retried')
      return
    }
    try {
      if (state === 'outgoing') await spool.move(id, 'outgoing', 'deferred')
      // The first time this scanned copy touches the disk; recovery then retires the original.
      else if (state === 'processing') await spool.create('deferred', entry.header, entry.message)
    } catch (err) {
      // Unless the message got to deferred/ all the same (its directory fsync failed), it is tried
      // again from where it is, and its retry state would be left there alone until the next start.
      if (!(await spool.holds('deferred', id).catch(() => true)))
        await spool.removeRetry(id).catch(() => undefined)
      throw err
    }
    if (state === 'processing') {
      // From here the copy in deferred/ is the message: an original that cannot be retired now
      // is retired later, never retried from memory as well (once from each would be twice).
      await spool.removeSoon('processing', id, (err) =>
        log.error({ qid: id, err: toErrorInfo(err) }, 'original not retired yet: tried again every 5 s'),
      )
    }
    // Logged (and counted) once the message is where the log line says it is.
    for (const r of still) {
      this.opts.metrics?.recipientDeferred()
      log.warn(
        { qid: id, to: r.recipient, relay: r.hop, reply: r.reply, delay, attempts, nextAttemptAt },
        'deferred',
      )
    }
  }

  /**
   * One attempt: the hop count first (a message with more `Received:` fields than the limit is
   * in a loop and is bounced whole), then routing (only at the first attempt: later ones keep
   * the recipients it found), then the next hops.
   */
  private async attempt(entry: SpoolEntry, retry: RetryState | undefined): Promise<Outcome[]> {
    const { dispatcher, hostname } = this.opts
    const { envelope } = entry.header
    const hops = countReceived(entry.message)
    const limit = this.opts.hopLimit()
    const kept = routedOf(retry)
    if (hops > limit) {
      const recipients: readonly RoutedRecipient[] =
        kept ?? (retry?.pending ?? envelope.rcptTo).map((address) => ({ address, from: envelope.mailFrom }))
      return recipients.map((r) => ({
        recipient: r.address,
        status: 'failed',
        code: 554,
        reply: `554 5.4.6 Too many hops (${hops} Received: header fields, more than ${limit}): mail loop`,
        routed: r,
        hop: hostname,
      }))
    }
    const msg = { envelope, message: entry.message }
    if (kept) return dispatcher.deliver(kept, msg)
    const { routed, refused } = await dispatcher.expand(retry?.pending ?? envelope.rcptTo, envelope.mailFrom)
    const sent = routed.length > 0 ? await dispatcher.deliver(routed, msg) : []
    return [...refused, ...sent]
  }

  /**
   * Bounce failed outcomes: one DSN per envelope sender they were sent with (`bounced` is told
   * of each group once its DSN is written).
   */
  private async bounceOutcomes(
    id: QueueId,
    entry: SpoolEntry,
    outcomes: readonly Outcome[],
    reason: 'failed' | 'expired',
    bounced: (outcomes: readonly Outcome[]) => void,
  ): Promise<void> {
    const bySender = new Map<string, Outcome[]>()
    for (const o of outcomes) bySender.set(o.routed.from, [...(bySender.get(o.routed.from) ?? []), o])
    for (const [from, list] of bySender) {
      const header =
        from === entry.header.envelope.mailFrom
          ? entry.header
          : { ...entry.header, envelope: { ...entry.header.envelope, mailFrom: from } }
      await this.bounce(id, header, entry.message, list, reason, undefined, (o) => (o as Outcome).hop)
      bounced(list)
    }
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
    // Refused content never goes back to its sender (a virus, say): headers only, whatever RET= asked.
    const { envelope } = entry.header
    const header =
      envelope.dsn?.ret === 'FULL'
        ? { ...entry.header, envelope: { ...envelope, dsn: { ...envelope.dsn, ret: 'HDRS' as const } } }
        : entry.header
    await this.bounce(id, header, entry.message, recipients, 'failed', this.opts.hostname)
  }

  private async bounce(
    id: QueueId,
    header: SpoolHeader,
    message: Buffer,
    recipients: readonly RecipientResult[],
    reason: 'failed' | 'expired',
    hop: string | undefined,
    hopOf: (r: RecipientResult) => string | undefined = () => hop,
  ): Promise<void> {
    const { spool, log, hostname } = this.opts
    const delay = Math.round((Date.now() - header.envelope.receivedAt) / 1000)
    for (const r of recipients) {
      this.opts.metrics?.recipientBounced()
      log.warn(
        {
          qid: id,
          to: r.recipient,
          ...(r.originalRecipient ? { origTo: r.originalRecipient } : {}),
          relay: hopOf(r),
          reply: r.reply,
          reason,
          delay,
        },
        'bounced',
      )
    }
    if (header.dsnFor !== undefined) {
      log.info({ qid: id, from: header.envelope.mailFrom }, 'no DSN: null sender or DSN')
      return
    }
    // RFC 3461: a recipient whose NOTIFY leaves out FAILURE (NEVER, say) is not reported.
    const asked = header.envelope.dsn
    const reported = recipients.flatMap((r): ReportedRecipient[] => {
      const given = dsnOf(asked, r.originalRecipient ?? r.recipient)
      if (!wantsFailureReport(given)) return []
      return [given?.orcpt === undefined ? r : { ...r, orcpt: given.orcpt }]
    })
    if (reported.length === 0) {
      log.info({ qid: id, from: header.envelope.mailFrom }, 'no DSN: NOTIFY leaves out FAILURE')
      return
    }
    const full = asked?.ret === 'FULL' && message.length <= RETURN_FULL_MAX_BYTES
    const dsn = buildDsn({
      reportingMta: hostname,
      queueId: id,
      envelope: header.envelope,
      failed: reported,
      reason,
      originalHeaders: message.subarray(0, headerEnd(message)),
      ...(full ? { original: message } : {}),
      ...(asked?.envid === undefined ? {} : { envid: asked.envid }),
      arrivalDate: new Date(header.envelope.receivedAt),
      now: new Date(),
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
      // A sender with a UTF-8 local part gets its DSN only over SMTPUTF8 (RFC 6531).
      ...(dsn.rcptTo.some(isNonAscii) ? { smtpUtf8: true } : {}),
      // Quoted 8-bit headers go out as BODY=8BITMIME (RFC 6152), as the original did.
      ...(dsn.body ? { body: dsn.body } : {}),
    }
    await spool.create('outgoing', { v: 1, id: dsnId, envelope, dsnFor: id }, dsn.message)
    log.info({ qid: dsnId, dsnFor: id, to: dsn.rcptTo }, 'dsn queued')
    this.enqueue(dsnId)
  }
}
