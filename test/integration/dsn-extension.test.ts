/**
 * The DSN extension (RFC 3461) through a real Postfix in front: Postfix passes NOTIFY, ORCPT,
 * RET and ENVID to mailscreen, which advertises DSN, keeps them with the message, and honours
 * them when its next hop refuses a recipient: NOTIFY=NEVER gets no bounce, the default does,
 * with the ENVID and the ORCPT Postfix gave.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Sink, startSink } from '../../src/bench/sink.js'
import { reply } from '../../src/ingress/smtp-reply.js'
import { textMessage } from '../support/mail.js'
import { type MailscreenProcess, startMailscreen, stopAll } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'
import { type PostfixInstance, startPostfix } from '../support/postfix.js'
import { RawSmtpClient } from '../support/raw-smtp.js'

describe('DSN parameters from Postfix through mailscreen', () => {
  let sink: Sink
  let ms: MailscreenProcess | undefined
  let postfix: PostfixInstance

  beforeAll(async () => {
    // The next hop refuses nobody@ for good: mailscreen bounces, as NOTIFY allows.
    sink = await startSink({
      decide: (_tx, rcpt) => (rcpt.startsWith('nobody@') ? reply(550, '5.1.1', 'no such user') : undefined),
    })
    const filterPort = await freePort()
    ms = await startMailscreen(filterPort, { delivery: { relay: `127.0.0.1:${sink.port}` } })
    postfix = await startPostfix({
      smtpPort: await freePort(),
      relay: { host: '127.0.0.1', port: sink.port },
      contentFilter: { host: '127.0.0.1', port: filterPort },
    })
  }, 120_000)

  afterAll(async () => {
    await stopAll(ms, sink)
    await postfix?.stop()
  })

  /** Send one message to Postfix with these MAIL and RCPT parameters; mailscreen's queue ID for it. */
  async function viaPostfix(tag: string, mailParams: string, rcptParams: string): Promise<string> {
    const client = await RawSmtpClient.open(postfix.smtpPort)
    try {
      expect(await client.next()).toMatch(/^220 /)
      expect(await client.command('EHLO client.example')).toMatch(/^250[ -]/)
      expect(await client.command(`MAIL FROM:<sender@example.org>${mailParams}`)).toMatch(/^250 /)
      expect(await client.command(`RCPT TO:<nobody@example.net>${rcptParams}`)).toMatch(/^250 /)
      expect(await client.command('DATA')).toMatch(/^354 /)
      expect(await client.command(`${textMessage({ tag, to: 'nobody@example.net' })}.`)).toMatch(/^250 /)
      await client.command('QUIT')
    } finally {
      client.socket.destroy()
    }
    const running = ms as MailscreenProcess
    const received = await running.waitForLog(
      (l) =>
        l.msg === 'received' && JSON.stringify(l.to) === '["nobody@example.net"]' && !seen.has(String(l.qid)),
    )
    seen.add(String(received.qid))
    await running.waitForLog((l) => l.msg === 'bounced' && l.qid === received.qid)
    return String(received.qid)
  }
  const seen = new Set<string>()

  it('sends no DSN for NOTIFY=NEVER', async () => {
    const id = await viaPostfix('notify-never', '', ' NOTIFY=NEVER')
    await (ms as MailscreenProcess).waitForLog(
      (l) => l.msg === 'no DSN: NOTIFY leaves out FAILURE' && l.qid === id,
    )
    expect(ms?.logs.some((l) => l.msg === 'dsn queued' && l.dsnFor === id)).toBe(false)
  })

  it('sends the DSN by default, with the ENVID and the ORCPT Postfix passed on', async () => {
    const id = await viaPostfix(
      'notify-default',
      ' RET=HDRS ENVID=trace-42',
      ' ORCPT=rfc822;Nobody@Example.NET',
    )
    const queued = await (ms as MailscreenProcess).waitForLog(
      (l) => l.msg === 'dsn queued' && l.dsnFor === id,
    )
    expect(queued.to).toEqual(['sender@example.org'])
    // The DSN goes out through the sink (mailscreen's relay here).
    const deadline = Date.now() + 20_000
    let dsn: string | undefined
    while (dsn === undefined && Date.now() < deadline) {
      dsn = sink.messages
        .map((m) => m.data.toString('latin1'))
        .find((text) => text.includes('<notify-default@example.org>') && text.includes('multipart/report'))
      if (dsn === undefined) await new Promise((resolve) => setTimeout(resolve, 100))
    }
    expect(dsn).toContain('Original-Envelope-Id: trace-42')
    expect(dsn).toContain('Original-Recipient: rfc822; Nobody@Example.NET')
    expect(dsn).toContain('Status: 5.1.1')
  })
})
