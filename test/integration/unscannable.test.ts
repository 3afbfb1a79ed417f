/**
 * A message whose scan keeps tempfailing is unscannable once its queue lifetime is over:
 * its last scan applies `policy.actions.unscannable` (default: quarantine), never a silent
 * drop and never delivery as clean.
 */
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { BenchClient } from '../../src/bench/client.js'
import { type Sink, startSink } from '../../src/bench/sink.js'
import { packageRoot } from '../../src/package-root.js'
import { type MailscreenProcess, startMailscreen, stopAll } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'

const THROWS = join(packageRoot, 'test', 'fixtures', 'plugins', 'throws')

const MESSAGE = Buffer.from(
  'From: a@example.org\r\nTo: b@example.net\r\nSubject: cannot be checked\r\nMessage-ID: <unscannable@example.org>\r\n\r\nhello\r\n',
)

async function send(port: number): Promise<string> {
  const client = await BenchClient.open('127.0.0.1', port)
  try {
    const line = await client.send('a@example.org', ['b@example.net'], MESSAGE)
    return /queued as ([0-9A-Za-z]{16})\b/.exec(line)?.[1] ?? ''
  } finally {
    await client.close()
  }
}

/** A scanner that always fails with policy tempfail, and a lifetime of two seconds. */
function settings(sinkPort: number, unscannable?: string) {
  return {
    delivery: {
      relay: `127.0.0.1:${sinkPort}`,
      retry: ['300ms'],
      queueLifetime: '2s',
      queueRunInterval: '200ms',
    },
    plugins: [{ use: THROWS, onError: 'tempfail' }],
    ...(unscannable ? { policy: { actions: { unscannable } } } : {}),
  }
}

describe('unscannable after the queue lifetime', () => {
  let ms: MailscreenProcess | undefined
  let sink: Sink | undefined
  afterEach(() => stopAll(ms, sink))

  it('is rescanned on backoff, then quarantined as unscannable with the failure as reason', async () => {
    sink = await startSink()
    ms = await startMailscreen(await freePort(), settings(sink.port))
    const id = await send(ms.port)
    expect(id).toMatch(/^[0-9A-Za-z]{16}$/)
    const verdict = await ms.waitForLog(
      (l) => l.qid === id && l.msg === 'verdict' && l.verdict === 'unscannable',
      15_000,
    )
    expect(verdict.actions).toBe('quarantine')
    expect(verdict.lastChance).toBe(true)
    // It was scanned more than once before (the backoff rescans), each time deferred.
    expect(ms.logs.filter((l) => l.qid === id && l.msg === 'scan deferred').length).toBeGreaterThanOrEqual(2)
    const listed = JSON.parse((await ms.cli(['quarantine', 'list', '--json'])).stdout)
    expect(listed).toEqual([
      expect.objectContaining({ id, verdict: 'unscannable', messageId: '<unscannable@example.org>' }),
    ])
    expect(String(listed[0].reason)).toContain('scanner exploded')
    expect(sink.received).toBe(0)
    const queue = JSON.parse((await ms.cli(['queue', 'list', '--json'])).stdout)
    expect(queue).toEqual([])
  })

  it('follows policy.actions.unscannable: delivered with a header saying so', async () => {
    sink = await startSink()
    ms = await startMailscreen(await freePort(), settings(sink.port, 'deliver header "X-Unscanned: yes" tag'))
    const id = await send(ms.port)
    await sink.waitFor(1, 15_000)
    const text = sink.messages[0]?.data.toString() ?? ''
    expect(text).toContain('X-Unscanned: yes')
    expect(text).toContain('Subject: {Unscanned} cannot be checked')
    expect(text).toContain(`X-mailscreen-Verdict: unscannable`)
    expect(text).toContain(`(id ${id})`)
    expect((await ms.cli(['quarantine', 'list', '--json'])).stdout.trim()).toBe('[]')
  })
})
