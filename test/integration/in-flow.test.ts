import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { BenchClient } from '../../src/bench/client.js'
import { type Sink, startSink } from '../../src/bench/sink.js'
import { packageRoot } from '../../src/package-root.js'
import { type MailscreenProcess, startMailscreen, stopAll } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'
import { sample } from '../support/prometheus.js'

async function send(port: number, n: number): Promise<string> {
  const client = await BenchClient.open('127.0.0.1', port)
  try {
    return await client.send(
      'a@example.org',
      ['b@example.net'],
      Buffer.from(`Subject: paced ${n}\r\nMessage-ID: <paced-${n}@example.org>\r\n\r\nhello\r\n`),
    )
  } finally {
    await client.close()
  }
}

describe('inflow pacing (smtp.maxBacklog, smtp.inFlowDelay)', () => {
  let ms: MailscreenProcess | undefined
  let sink: Sink | undefined
  afterEach(() => stopAll(ms, sink))

  it('holds MAIL FROM back while the scan backlog is over the mark, says so, and still takes and delivers everything', async () => {
    sink = await startSink()
    const metricsPort = await freePort()
    // One scan at a time, each 300 ms (a check that never answers, policy continue): a backlog.
    ms = await startMailscreen(await freePort(), {
      smtp: { maxBacklog: 2, inFlowDelay: '2s' },
      pool: { workers: 1, maxInFlight: 1 },
      delivery: { relay: `127.0.0.1:${sink.port}` },
      metrics: { listen: `127.0.0.1:${metricsPort}` },
      plugins: [{ use: join(packageRoot, 'test/fixtures/plugins/hangs'), onError: 'continue' }],
    })
    const port = ms.port
    // The first ten arrive together and make the backlog; the five after them meet it at MAIL FROM.
    const first = await Promise.all(Array.from({ length: 10 }, (_, n) => send(port, n)))
    const after = await Promise.all(Array.from({ length: 5 }, (_, n) => send(port, 10 + n)))
    expect([...first, ...after].every((r) => r.startsWith('250 2.0.0 Ok: queued as '))).toBe(true)
    const over = await ms.waitForLog((l) => l.msg === 'backlog over smtp.maxBacklog: pacing MAIL FROM', 5_000)
    expect(over.backlog).toBeGreaterThan(2)
    expect(over.maxBacklog).toBe(2)
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
    expect(sample(text, 'mailscreen_smtp_paced_total')).toBeGreaterThan(0)
    await sink.waitFor(15, 30_000)
    // The backlog is looked at on MAIL FROM: the next one finds it gone and says so.
    expect(await send(port, 15)).toMatch(/^250 /)
    await ms.waitForLog((l) => l.msg === 'backlog below smtp.maxBacklog again: MAIL FROM at full pace', 5_000)
    await sink.waitFor(16, 10_000)
  })
})
