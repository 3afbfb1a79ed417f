import { readFile, writeFile } from 'node:fs/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { parse, stringify } from 'yaml'
import { BenchClient } from '../../src/bench/client.js'
import { type Sink, startSink } from '../../src/bench/sink.js'
import { reply } from '../../src/ingress/smtp-reply.js'
import { type MailscreenProcess, startMailscreen, stopAll } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'
import { sample } from '../support/prometheus.js'

function message(tag: string, filler = 0): Buffer {
  return Buffer.from(
    `From: a@example.org\r\nTo: b@example.net\r\nSubject: ${tag}\r\nMessage-ID: <${tag}@example.org>\r\n\r\n${'x'.repeat(filler)}\r\n`,
  )
}

async function send(port: number, to: string[], data: Buffer): Promise<string> {
  const client = await BenchClient.open('127.0.0.1', port)
  try {
    return await client.send('a@example.org', to, data)
  } catch (err) {
    return (err as Error).message
  } finally {
    await client.close()
  }
}

describe('metrics.listen', () => {
  let ms: MailscreenProcess | undefined
  let sink: Sink | undefined
  afterEach(() => stopAll(ms, sink))

  it('serves Prometheus figures that follow the mail: received, verdicts, outcomes per recipient, refusals, queue sizes', async () => {
    sink = await startSink({
      decide: (_tx, rcpt) => (rcpt.startsWith('later@') ? reply(451, '4.2.0', 'mailbox busy') : undefined),
    })
    const metricsPort = await freePort()
    ms = await startMailscreen(await freePort(), {
      smtp: { maxSize: 20_000 },
      // No retry of the deferred recipient while the test counts: one deferral, not one per second.
      delivery: { relay: `127.0.0.1:${sink.port}`, retry: ['1h'] },
      metrics: { listen: `127.0.0.1:${metricsPort}` },
    })
    const url = `http://127.0.0.1:${metricsPort}/metrics`
    expect(ms.logs.find((l) => l.msg === 'started')?.metrics).toBe(url)

    expect(await send(ms.port, ['now@example.net'], message('one'))).toMatch(/^250 /)
    expect(await send(ms.port, ['now@example.net', 'later@example.net'], message('two'))).toMatch(/^250 /)
    expect(await send(ms.port, ['now@example.net'], message('big', 30_000))).toMatch(
      /^unexpected reply: 552 /,
    )
    await ms.waitForLog((l) => l.msg === 'deferred' && l.to === 'later@example.net')
    await sink.waitFor(2)

    const scrape = await fetch(url)
    expect(scrape.status).toBe(200)
    const text = await scrape.text()
    expect(sample(text, 'mailscreen_messages_received_total')).toBe(2)
    expect(sample(text, 'mailscreen_received_bytes_total')).toBe(
      message('one').length + message('two').length,
    )
    expect(sample(text, 'mailscreen_smtp_refused_total{stage="data",code="552"}')).toBe(1)
    expect(sample(text, 'mailscreen_scans_total{verdict="clean"}')).toBe(2)
    expect(sample(text, 'mailscreen_check_duration_seconds_count{plugin="example"}')).toBe(2)
    expect(sample(text, 'mailscreen_recipients_total{outcome="delivered"}')).toBe(2)
    expect(sample(text, 'mailscreen_recipients_total{outcome="deferred"}')).toBe(1)
    expect(sample(text, 'mailscreen_queue_messages{state="deferred"}')).toBe(1)
    expect(sample(text, 'mailscreen_queue_messages{state="incoming"}')).toBe(0)
    expect(sample(text, 'mailscreen_spool_free_bytes')).toBeGreaterThan(0)
    expect(sample(text, 'mailscreen_smtp_sessions')).toBe(0)
    expect(sample(text, 'nodejs_eventloop_lag_seconds')).toBeGreaterThanOrEqual(0)

    // A new metrics.listen needs a restart: SIGHUP says so and the listener stays where it is.
    const config = parse(await readFile(ms.configFile, 'utf8')) as Record<string, unknown>
    config.metrics = { listen: `127.0.0.1:${await freePort()}` }
    await writeFile(ms.configFile, stringify(config))
    ms.child.kill('SIGHUP')
    const warned = await ms.waitForLog((l) => l.msg === 'reload: this section changed; restart to apply it')
    expect(warned.key).toBe('metrics')
    expect((await fetch(url)).status).toBe(200)
  })
})
