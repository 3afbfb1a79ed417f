/**
 * What mailscreen counts, as Prometheus metrics (prom-client): one place that names every
 * metric, and one method per event the stages report. Stages call these where they log the
 * same event, so the log and the figures agree. Gauges (queue sizes, free space, work in
 * flight) are read when scraped, from the sources the app hands in.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { ScanReport } from '../pipeline/scan.js'

/** Live figures read at scrape time. */
export interface GaugeSources {
  /** Messages per spool state (incoming, processing, outgoing, deferred, quarantine, failed). */
  queueSizes(): Promise<Record<string, number>>
  /** Free bytes on the spool's filesystem, if measured. */
  spoolFreeBytes(): number | undefined
  /** Open SMTP sessions. */
  smtpSessions(): number
  /** Messages queued for or in a scan. */
  scansPending(): number
  /** Messages queued for or in a delivery attempt. */
  deliveriesPending(): number
}

/** Where an SMTP client was refused: the command, and the reply code. */
export type Refusal = { readonly stage: 'mail' | 'rcpt' | 'data'; readonly code: number }

/** Seconds buckets from 5 ms to 5 min: a scan, a check, a delivery delay. */
const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]
/** Delivery delays, received to delivered: seconds to days (retries). */
const DELAY = [0.1, 0.5, 1, 5, 30, 60, 300, 900, 3600, 4 * 3600, 86_400, 5 * 86_400]

export class Metrics {
  readonly registry = new Registry()
  private readonly received: Counter
  private readonly receivedBytes: Counter
  private readonly refused: Counter<'stage' | 'code'>
  private readonly paced: Counter
  private readonly scans: Counter<'verdict'>
  private readonly scanSeconds: Histogram
  private readonly checkSeconds: Histogram<'plugin'>
  private readonly checkFailures: Counter<'plugin'>
  private readonly scanTempfails: Counter
  private readonly scanCrashes: Counter
  private readonly scansFailed: Counter
  private readonly recipients: Counter<'outcome'>
  private readonly deliveryDelay: Histogram
  private readonly milterAnswers: Counter<'answer'>

  constructor(sources?: GaugeSources) {
    const registers = [this.registry]
    this.received = new Counter({
      name: 'mailscreen_messages_received_total',
      help: 'Messages accepted (250 after DATA) by the content-filter listener',
      registers,
    })
    this.receivedBytes = new Counter({
      name: 'mailscreen_received_bytes_total',
      help: 'Bytes of the messages accepted by the content-filter listener',
      registers,
    })
    this.refused = new Counter({
      name: 'mailscreen_smtp_refused_total',
      help: 'Commands of the content-filter listener refused by mailscreen (full spool disk, routing, size, spool write errors)',
      labelNames: ['stage', 'code'],
      registers,
    })
    this.paced = new Counter({
      name: 'mailscreen_smtp_paced_total',
      help: 'MAIL FROM commands held back while the backlog was over smtp.maxBacklog (smtp.inFlowDelay)',
      registers,
    })
    this.scans = new Counter({
      name: 'mailscreen_scans_total',
      help: 'Scans with a final verdict, by verdict category (clean, spam, highspam, virus, banned, unscannable, ...)',
      labelNames: ['verdict'],
      registers,
    })
    this.scanSeconds = new Histogram({
      name: 'mailscreen_scan_duration_seconds',
      help: 'Time from the start of a scan to its verdict, hand-off to the worker included',
      buckets: SECONDS,
      registers,
    })
    this.checkSeconds = new Histogram({
      name: 'mailscreen_check_duration_seconds',
      help: 'Time each plugin check took',
      labelNames: ['plugin'],
      buckets: SECONDS,
      registers,
    })
    this.checkFailures = new Counter({
      name: 'mailscreen_check_failures_total',
      help: 'Checks that threw or timed out (their <PLUGIN>_FAIL symbol)',
      labelNames: ['plugin'],
      registers,
    })
    this.scanTempfails = new Counter({
      name: 'mailscreen_scan_tempfails_total',
      help: 'Scans without a verdict (a check with policy tempfail failed): the message waits in deferred/',
      registers,
    })
    this.scanCrashes = new Counter({
      name: 'mailscreen_scan_crashes_total',
      help: 'Scans that crashed or hung a worker (retried up to pool.maxAttempts)',
      registers,
    })
    this.scansFailed = new Counter({
      name: 'mailscreen_scans_failed_total',
      help: 'Messages moved to failed/ after pool.maxAttempts crashed scans',
      registers,
    })
    this.recipients = new Counter({
      name: 'mailscreen_recipients_total',
      help: 'Delivery outcomes per recipient: delivered, deferred (a retry follows) or bounced',
      labelNames: ['outcome'],
      registers,
    })
    this.deliveryDelay = new Histogram({
      name: 'mailscreen_delivery_delay_seconds',
      help: 'Time from acceptance to delivery, per delivered recipient',
      buckets: DELAY,
      registers,
    })
    this.milterAnswers = new Counter({
      name: 'mailscreen_milter_messages_total',
      help: 'Messages answered on the milter, by answer (accept, reject, tempfail, discard, quarantine, ...)',
      labelNames: ['answer'],
      registers,
    })
    if (sources) this.gauges(sources, registers)
  }

  private gauges(sources: GaugeSources, registers: Registry[]): void {
    new Gauge({
      name: 'mailscreen_queue_messages',
      help: 'Messages in each spool state',
      labelNames: ['state'],
      registers,
      async collect() {
        for (const [state, count] of Object.entries(await sources.queueSizes())) this.set({ state }, count)
      },
    })
    new Gauge({
      name: 'mailscreen_spool_free_bytes',
      help: "Free bytes on the spool's filesystem (new mail is refused below spool.minFree)",
      registers,
      collect() {
        const free = sources.spoolFreeBytes()
        // Not measured (yet, or statfs fails): no figure rather than a stale one.
        if (free !== undefined && Number.isFinite(free)) this.set(free)
        else this.reset()
      },
    })
    const live = (name: string, help: string, read: () => number): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read())
        },
      })
    }
    live('mailscreen_smtp_sessions', 'Open sessions of the content-filter listener', sources.smtpSessions)
    live('mailscreen_scans_pending', 'Messages queued for or in a scan', sources.scansPending)
    live(
      'mailscreen_deliveries_pending',
      'Messages queued for or in a delivery attempt',
      sources.deliveriesPending,
    )
  }

  /**
   * Add prom-client's process figures (CPU, memory, event-loop lag, GC). They watch the event
   * loop and every GC, so only a process whose metrics are scraped turns them on.
   */
  withProcessMetrics(): this {
    collectDefaultMetrics({ register: this.registry })
    return this
  }

  messageReceived(bytes: number): void {
    this.received.inc()
    this.receivedBytes.inc(bytes)
  }

  smtpRefused({ stage, code }: Refusal): void {
    this.refused.inc({ stage, code: String(code) })
  }

  mailPaced(): void {
    this.paced.inc()
  }

  /** A scan's report: its verdict (or tempfail), its time and each check's time and failure. */
  scanned(report: ScanReport, seconds: number): void {
    for (const [plugin, ms] of Object.entries(report.timings))
      this.checkSeconds.observe({ plugin }, ms / 1000)
    for (const plugin of report.failedChecks) this.checkFailures.inc({ plugin })
    if (report.disposition === undefined) {
      this.scanTempfails.inc()
      return
    }
    this.scans.inc({ verdict: report.verdict.category })
    this.scanSeconds.observe(seconds)
  }

  scanCrashed(movedToFailed: boolean): void {
    this.scanCrashes.inc()
    if (movedToFailed) this.scansFailed.inc()
  }

  recipientDelivered(delaySeconds: number): void {
    this.recipients.inc({ outcome: 'delivered' })
    this.deliveryDelay.observe(delaySeconds)
  }

  recipientDeferred(): void {
    this.recipients.inc({ outcome: 'deferred' })
  }

  recipientBounced(): void {
    this.recipients.inc({ outcome: 'bounced' })
  }

  milterAnswered(answer: string): void {
    this.milterAnswers.inc({ answer })
  }

  /** The exposition text and its content type. */
  async scrape(): Promise<{ body: string; contentType: string }> {
    return { body: await this.registry.metrics(), contentType: this.registry.contentType }
  }
}
