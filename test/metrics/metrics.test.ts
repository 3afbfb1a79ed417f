import { describe, expect, it } from 'vitest'
import { type GaugeSources, Metrics } from '../../src/metrics/metrics.js'
import { createMetricsServer } from '../../src/metrics/server.js'
import type { ScanReport } from '../../src/pipeline/scan.js'
import type { Verdict } from '../../src/pipeline/verdict.js'
import { sample } from '../support/prometheus.js'

function report(category: string, final: boolean, failedChecks: string[] = []): ScanReport {
  const verdict = { category, final, hits: [], score: 0, reasons: [], tempfail: [] } as unknown as Verdict
  return {
    queueId: 'VcvgcMA0006FooIZ' as ScanReport['queueId'],
    verdict,
    timings: { example: 2.5, clamav: 40 },
    failedChecks,
    ...(final ? { disposition: {} as NonNullable<ScanReport['disposition']> } : {}),
  }
}

const sources: GaugeSources = {
  queueSizes: async () => ({ incoming: 3, deferred: 7 }),
  spoolFreeBytes: () => 123_456_789,
  smtpSessions: () => 4,
  scansPending: () => 5,
  deliveriesPending: () => 6,
}

describe('Metrics', () => {
  it('counts each event under its name and labels', async () => {
    const metrics = new Metrics(sources).withProcessMetrics()
    metrics.messageReceived(1000)
    metrics.messageReceived(500)
    metrics.smtpRefused({ stage: 'mail', code: 452 })
    metrics.scanned(report('clean', true), 0.02)
    metrics.scanned(report('virus', true, ['clamav']), 0.3)
    metrics.scanned(report('clean', false, ['clamav']), 0.1)
    metrics.scanCrashed(false)
    metrics.scanCrashed(true)
    metrics.recipientDelivered(2)
    metrics.recipientDeferred()
    metrics.recipientBounced()
    metrics.milterAnswered('reject')
    const { body, contentType } = await metrics.scrape()
    expect(contentType).toMatch(/^text\/plain/)
    expect(sample(body, 'mailscreen_messages_received_total')).toBe(2)
    expect(sample(body, 'mailscreen_received_bytes_total')).toBe(1500)
    expect(sample(body, 'mailscreen_smtp_refused_total{stage="mail",code="452"}')).toBe(1)
    expect(sample(body, 'mailscreen_scans_total{verdict="clean"}')).toBe(1)
    expect(sample(body, 'mailscreen_scans_total{verdict="virus"}')).toBe(1)
    // The tempfailed scan has no verdict: counted apart, its checks' times still observed.
    expect(sample(body, 'mailscreen_scan_tempfails_total')).toBe(1)
    expect(sample(body, 'mailscreen_scan_duration_seconds_count')).toBe(2)
    expect(sample(body, 'mailscreen_check_duration_seconds_count{plugin="clamav"}')).toBe(3)
    expect(sample(body, 'mailscreen_check_duration_seconds_bucket{le="0.05",plugin="clamav"}')).toBe(3)
    expect(sample(body, 'mailscreen_check_duration_seconds_bucket{le="0.025",plugin="clamav"}')).toBe(0)
    expect(sample(body, 'mailscreen_check_failures_total{plugin="clamav"}')).toBe(2)
    expect(sample(body, 'mailscreen_scan_crashes_total')).toBe(2)
    expect(sample(body, 'mailscreen_scans_failed_total')).toBe(1)
    expect(sample(body, 'mailscreen_recipients_total{outcome="delivered"}')).toBe(1)
    expect(sample(body, 'mailscreen_recipients_total{outcome="deferred"}')).toBe(1)
    expect(sample(body, 'mailscreen_recipients_total{outcome="bounced"}')).toBe(1)
    expect(sample(body, 'mailscreen_delivery_delay_seconds_sum')).toBe(2)
    expect(sample(body, 'mailscreen_milter_messages_total{answer="reject"}')).toBe(1)
    // Process figures come along when asked for (prom-client's defaults).
    expect(sample(body, 'process_cpu_seconds_total')).toBeGreaterThan(0)
    expect(sample((await new Metrics(sources).scrape()).body, 'process_cpu_seconds_total')).toBeUndefined()
  })

  it('reads the gauges from their sources at scrape time', async () => {
    let sessions = 4
    const metrics = new Metrics({ ...sources, smtpSessions: () => sessions })
    let { body } = await metrics.scrape()
    expect(sample(body, 'mailscreen_queue_messages{state="incoming"}')).toBe(3)
    expect(sample(body, 'mailscreen_queue_messages{state="deferred"}')).toBe(7)
    expect(sample(body, 'mailscreen_spool_free_bytes')).toBe(123_456_789)
    expect(sample(body, 'mailscreen_smtp_sessions')).toBe(4)
    expect(sample(body, 'mailscreen_scans_pending')).toBe(5)
    expect(sample(body, 'mailscreen_deliveries_pending')).toBe(6)
    sessions = 9
    ;({ body } = await metrics.scrape())
    expect(sample(body, 'mailscreen_smtp_sessions')).toBe(9)
  })
})

describe('the metrics listener', () => {
  it('serves GET /metrics, 404 elsewhere, and 500 with a report when collecting fails', async () => {
    let broken = false
    const errors: unknown[] = []
    const metrics = new Metrics({
      ...sources,
      queueSizes: async () => {
        if (broken) throw new Error('spool unreadable')
        return {}
      },
    })
    metrics.messageReceived(10)
    const server = createMetricsServer(metrics, (err) => errors.push(err))
    const { port } = await server.listen('127.0.0.1', 0)
    try {
      const ok = await fetch(`http://127.0.0.1:${port}/metrics`)
      expect(ok.status).toBe(200)
      expect(ok.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
      expect(sample(await ok.text(), 'mailscreen_messages_received_total')).toBe(1)
      expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(404)
      expect((await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST' })).status).toBe(404)
      broken = true
      const failed = await fetch(`http://127.0.0.1:${port}/metrics`)
      expect(failed.status).toBe(500)
      expect(String(errors[0])).toContain('spool unreadable')
    } finally {
      await server.close()
    }
  })
})
