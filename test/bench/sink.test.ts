import SMTPConnection from 'nodemailer/lib/smtp-connection'
import { afterEach, describe, expect, it } from 'vitest'
import { type Sink, type SinkMessage, startSink } from '../../src/bench/sink.js'
import { reply } from '../../src/ingress/smtp-reply.js'

const sinks: Sink[] = []

afterEach(async () => {
  await Promise.all(sinks.splice(0).map((sink) => sink.close()))
})

async function sink(options: Parameters<typeof startSink>[0] = {}): Promise<Sink> {
  const started = await startSink(options)
  sinks.push(started)
  return started
}

/** Send one message with nodemailer; resolves with the send info or the SMTP error. */
async function send(
  target: Sink,
  to: string[],
  body = 'Subject: test\r\n\r\nhello\r\n',
  lmtp = false,
): Promise<SMTPConnection.SentMessageInfo | (Error & { responseCode?: number })> {
  const connection = new SMTPConnection({ host: target.host, port: target.port, ignoreTLS: true, lmtp })
  await new Promise<void>((resolve, reject) => connection.connect((err) => (err ? reject(err) : resolve())))
  try {
    return await new Promise((resolve) =>
      connection.send({ from: 'sender@example.org', to }, body, (err, info) =>
        resolve(err ?? info ?? new Error()),
      ),
    )
  } finally {
    connection.quit()
  }
}

describe('startSink', () => {
  it('listens on an ephemeral loopback port and keeps what it receives', async () => {
    const target = await sink()
    expect(target.host).toBe('127.0.0.1')
    expect(target.port).toBeGreaterThan(0)
    const seen: SinkMessage[] = []
    target.on('message', (message) => seen.push(message))
    const before = Date.now()
    const info = await send(target, ['rcpt@example.net'])
    expect(info).toMatchObject({ accepted: ['rcpt@example.net'], response: '250 2.0.0 Ok: queued as 1' })
    await target.waitFor(1)
    expect(target.received).toBe(1)
    expect(target.messages).toHaveLength(1)
    expect(target.messages[0]).toMatchObject({
      mailFrom: 'sender@example.org',
      rcptTo: ['rcpt@example.net'],
      size: 24,
      client: { address: '127.0.0.1' },
    })
    expect(target.messages[0]?.data.toString()).toBe('Subject: test\r\n\r\nhello\r\n')
    expect(target.messages[0]?.receivedAt).toBeGreaterThanOrEqual(before)
    expect(seen).toEqual(target.messages)
  })

  it('refuses one of two recipients when decide says so', async () => {
    const target = await sink({
      decide: (_tx, rcpt) => (rcpt.startsWith('gone@') ? reply(550, '5.1.1', 'No such user') : undefined),
    })
    const info = await send(target, ['gone@example.net', 'here@example.net'])
    expect(info).toMatchObject({ accepted: ['here@example.net'], rejected: ['gone@example.net'] })
    expect(target.messages.map((m) => m.rcptTo)).toEqual([['here@example.net']])
  })

  it('answers 451 for a while, then accepts', async () => {
    let attempts = 0
    const target = await sink({
      onMessageReply: () => (++attempts <= 2 ? reply(451, '4.3.0', 'Try again later') : undefined),
    })
    const first = await send(target, ['rcpt@example.net'])
    const second = await send(target, ['rcpt@example.net'])
    const third = await send(target, ['rcpt@example.net'])
    expect([first, second]).toMatchObject([{ responseCode: 451 }, { responseCode: 451 }])
    expect(third).toMatchObject({ accepted: ['rcpt@example.net'] })
    expect(target.received).toBe(1)
  })

  it('speaks LMTP with one reply per recipient', async () => {
    const target = await sink({
      lmtp: true,
      onMessageReply: (tx) =>
        tx.rcptTo.map((r) =>
          r.startsWith('full@') ? reply(452, '4.2.2', 'Mailbox full') : reply(250, '2.0.0', 'Ok'),
        ),
    })
    const info = await send(target, ['full@example.net', 'ok@example.net'], undefined, true)
    expect(info).toMatchObject({ accepted: ['ok@example.net'], rejected: ['full@example.net'] })
    expect(target.messages.map((m) => m.rcptTo)).toEqual([['ok@example.net']])
  })

  it('stores nothing when keep is off, but listeners still get the bytes', async () => {
    const target = await sink({ keep: false })
    const sizes: number[] = []
    target.on('message', (message) => sizes.push(message.data.length))
    await send(target, ['a@example.net'])
    await send(target, ['b@example.net'])
    await target.waitFor(2)
    expect(target.received).toBe(2)
    expect(target.messages).toEqual([])
    expect(sizes).toEqual([24, 24])
  })

  it('waitFor rejects when the messages do not come in time', async () => {
    const target = await sink()
    await expect(target.waitFor(1, 50)).rejects.toThrow(/0 of 1/)
  })
})
