import { afterEach, describe, expect, it } from 'vitest'
import { BenchClient } from '../../src/bench/client.js'
import { type Sink, startSink } from '../../src/bench/sink.js'
import { reply } from '../../src/ingress/smtp-reply.js'
import { type MailscreenProcess, startMailscreen, stopAll } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'

describe('queue lifetime', () => {
  let ms: MailscreenProcess | undefined
  let sink: Sink | undefined
  afterEach(() => stopAll(ms, sink))

  it('bounces mail still deferred after delivery.queueLifetime with a DSN that says it expired', async () => {
    // The next hop keeps answering 4xx for the recipient, but takes the DSN to the sender.
    sink = await startSink({
      decide: (_tx, rcpt) => (rcpt === 'stuck@example.net' ? reply(451, '4.2.0', 'mailbox busy') : undefined),
    })
    ms = await startMailscreen(await freePort(), {
      delivery: {
        relay: `127.0.0.1:${sink.port}`,
        retry: ['1s'],
        queueRunInterval: '1s',
        queueLifetime: '3s',
      },
    })
    const client = await BenchClient.open('127.0.0.1', ms.port)
    const queued = await client.send(
      'sender@example.org',
      ['stuck@example.net'],
      Buffer.from(
        'From: sender@example.org\r\nSubject: will expire\r\nMessage-ID: <exp@example.org>\r\n\r\nhello\r\n',
      ),
    )
    await client.close()
    const id = queued.slice(-16)
    await ms.waitForLog((l) => l.msg === 'deferred' && l.qid === id)
    const bounced = await ms.waitForLog((l) => l.msg === 'bounced' && l.qid === id, 20_000)
    expect(bounced.reason).toBe('expired')
    await sink.waitFor(1, 20_000)
    const dsn = sink.messages[0]
    expect(dsn?.mailFrom).toBe('')
    expect(dsn?.rcptTo).toEqual(['sender@example.org'])
    const text = dsn?.data.toString('latin1') ?? ''
    expect(text).toMatch(/report-type=delivery-status/)
    expect(text).toMatch(/Final-Recipient: rfc822; ?stuck@example\.net/)
    expect(text).toMatch(/Status: 4\.2\.0|Status: 4\.4\.7/)
    expect(text).toContain('mailbox busy')
    expect(text).toContain('Message-ID: <exp@example.org>')
    // Nothing is left to retry.
    await ms.waitForLog((l) => l.msg === 'delivered' && l.to === 'sender@example.org')
    const listed = JSON.parse((await ms.cli(['queue', 'list', '--json'])).stdout) as unknown[]
    expect(listed).toEqual([])
  })
})
