/**
 * Proves the private Postfix harness (test/support/postfix.ts) against a real Postfix:
 * relaying to a sink, the after-queue content_filter transport with XFORWARD, re-injection,
 * the queue listing / flush, and a clean stop.
 */
import { existsSync } from 'node:fs'
import nodemailer from 'nodemailer'
import { SMTPServer, type SMTPServerSession } from 'smtp-server'
import { afterEach, describe, expect, it } from 'vitest'
import { freePort } from '../support/ports.js'
import { isProcessAlive, type PostfixInstance, startPostfix } from '../support/postfix.js'

interface SinkMessage {
  from: string
  to: string[]
  raw: string
  remoteAddress: string
  xForward: Map<string, string | number | false>
}

interface Sink {
  port: number
  messages: SinkMessage[]
  close(): Promise<void>
}

/** A loopback SMTP server that records every message; `onMessage` may act before the 250. */
async function startSink(
  options: { port?: number; useXForward?: boolean; onMessage?: (msg: SinkMessage) => Promise<void> } = {},
): Promise<Sink> {
  const messages: SinkMessage[] = []
  const server = new SMTPServer({
    name: 'sink.mailscreen.test',
    disabledCommands: ['AUTH', 'STARTTLS'],
    authOptional: true,
    useXForward: options.useXForward ?? false,
    logger: false,
    onData(stream, session: SMTPServerSession, callback) {
      const chunks: Buffer[] = []
      stream.on('data', (chunk: Buffer) => chunks.push(chunk))
      stream.on('error', callback)
      stream.on('end', () => {
        const msg: SinkMessage = {
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString('utf8'),
          remoteAddress: session.remoteAddress,
          xForward: new Map(session.xForward),
        }
        const act = options.onMessage ? options.onMessage(msg) : Promise.resolve()
        act.then(
          () => {
            messages.push(msg)
            callback()
          },
          (err: unknown) => callback(Object.assign(new Error(String(err)), { responseCode: 451 })),
        )
      })
    },
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve())
  })
  const address = server.server.address()
  if (address === null || typeof address === 'string') throw new Error('sink has no TCP address')
  return {
    port: address.port,
    messages,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function rawMessage(n: number): string {
  return [
    'From: Alice <alice@example.org>',
    `To: bob${n}@example.net`,
    `Subject: harness test ${n}`,
    'Date: Mon, 23 Nov 2026 20:00:00 +0000',
    `Message-ID: <harness-${n}@example.org>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    `Body of message ${n}.`,
    '.a line that starts with a dot (dot-stuffed on the wire)',
    '',
    'Last line.',
    '',
  ].join('\r\n')
}

async function send(port: number, raw: string, from: string, to: string[]): Promise<void> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true })
  try {
    await transport.sendMail({ envelope: { from, to }, raw })
  } finally {
    transport.close()
  }
}

const RECEIVED_BY_POSTFIX =
  /^Received: from .+\r\n\tby mta\.mailscreen\.test \(Postfix\) with E?SMTP id [0-9A-Za-z]+/

describe('private Postfix instance (test/support/postfix.ts)', () => {
  const cleanups: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  })

  async function stopAndCheck(pf: PostfixInstance): Promise<void> {
    await pf.stop()
    expect(isProcessAlive(pf.masterPid)).toBe(false)
    expect(existsSync(pf.dir)).toBe(false)
  }

  it('relays mail to the relayhost sink with a Received: header and the body unchanged', async () => {
    const sink = await startSink()
    cleanups.push(() => sink.close())
    const pf = await startPostfix({
      smtpPort: await freePort(),
      relay: { host: '127.0.0.1', port: sink.port },
    })
    cleanups.push(() => pf.stop())
    expect(isProcessAlive(pf.masterPid)).toBe(true)

    for (const n of [1, 2, 3])
      await send(pf.smtpPort, rawMessage(n), 'alice@example.org', [`bob${n}@example.net`])
    await waitFor(() => sink.messages.length === 3, '3 messages at the sink')

    for (const n of [1, 2, 3]) {
      const msg = sink.messages.find((m) => m.to.includes(`bob${n}@example.net`))
      expect(msg, `message ${n}`).toBeDefined()
      if (!msg) continue
      expect(msg.from).toBe('alice@example.org')
      expect(msg.to).toEqual([`bob${n}@example.net`])
      expect(msg.raw).toMatch(RECEIVED_BY_POSTFIX)
      // Postfix only prepends its Received: header: original headers and body arrive byte for byte.
      expect(msg.raw.endsWith(rawMessage(n))).toBe(true)
      expect(msg.raw.slice(0, -rawMessage(n).length).match(/^Received: /gm)).toHaveLength(1)
    }
    expect(await pf.mailq()).toEqual([])
    expect(await pf.maillog()).toMatch(
      /postfix\/smtp\[\d+\]: [0-9A-Za-z]+: to=<bob1@example\.net>.*status=sent/,
    )
    await stopAndCheck(pf)
  })

  it('wires content_filter = scan:[127.0.0.1]:port with XFORWARD, and the re-injection smtpd skips the filter', async () => {
    const finalSink = await startSink()
    cleanups.push(() => finalSink.close())
    const reinjectPort = await freePort()
    // The "filter": records XFORWARD, then hands the message back on the re-injection port
    // (like amavisd-new) and only answers 250 once Postfix has taken it.
    const filter = await startSink({
      useXForward: true,
      onMessage: (msg) => send(reinjectPort, msg.raw, msg.from, msg.to),
    })
    cleanups.push(() => filter.close())
    const pf = await startPostfix({
      smtpPort: await freePort(),
      reinjectPort,
      contentFilter: { host: '127.0.0.1', port: filter.port },
      relay: { host: '127.0.0.1', port: finalSink.port },
    })
    cleanups.push(() => pf.stop())
    expect(await pf.postconf('content_filter')).toBe(`scan:[127.0.0.1]:${filter.port}`)

    await send(pf.smtpPort, rawMessage(7), 'alice@example.org', ['bob7@example.net'])
    await waitFor(() => finalSink.messages.length === 1, 'the re-injected message at the final sink')

    expect(filter.messages).toHaveLength(1)
    const scanned = filter.messages[0]
    expect(scanned?.xForward.get('ADDR')).toBe('127.0.0.1')
    expect(scanned?.xForward.get('ADDR:DEFAULT')).toBe('127.0.0.1')
    expect(scanned?.xForward.get('PROTO')).toMatch(/^E?SMTP$/)
    expect(scanned?.xForward.get('SOURCE')).toBe('LOCAL')
    expect(scanned?.to).toEqual(['bob7@example.net'])
    expect(scanned?.raw).toMatch(RECEIVED_BY_POSTFIX)
    expect(scanned?.raw.endsWith(rawMessage(7))).toBe(true)

    const delivered = finalSink.messages[0]
    expect(delivered?.to).toEqual(['bob7@example.net'])
    // One Received: from the front smtpd, one from the re-injection smtpd; no second trip through the filter.
    expect(delivered?.raw.match(/^Received: .*\r\n\tby mta\.mailscreen\.test \(Postfix\)/gm)).toHaveLength(2)
    expect(delivered?.raw.endsWith(rawMessage(7))).toBe(true)
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(filter.messages).toHaveLength(1)
    await stopAndCheck(pf)
  })

  it('lists deferred mail with postqueue -j and delivers it on flush once the relay is up', async () => {
    const relayPort = await freePort() // nothing listens here yet
    const pf = await startPostfix({
      smtpPort: await freePort(),
      relay: { host: '127.0.0.1', port: relayPort },
    })
    cleanups.push(() => pf.stop())

    await send(pf.smtpPort, rawMessage(9), 'alice@example.org', ['bob9@example.net'])
    await pf.waitForLog(/status=deferred \(connect to 127\.0\.0\.1\[127\.0\.0\.1\]:\d+: Connection refused\)/)
    const queue = await pf.mailq()
    expect(queue).toHaveLength(1)
    expect(queue[0]?.sender).toBe('alice@example.org')
    expect(queue[0]?.recipients[0]?.address).toBe('bob9@example.net')
    expect(queue[0]?.recipients[0]?.delay_reason).toMatch(/Connection refused/)
    expect(await pf.queueIds()).toEqual([queue[0]?.queue_id])

    const sink = await startSink({ port: relayPort })
    cleanups.push(() => sink.close())
    await pf.flush()
    await waitFor(() => sink.messages.length === 1, 'the deferred message after flush')
    expect(sink.messages[0]?.raw.endsWith(rawMessage(9))).toBe(true)
    await stopAndCheck(pf)
  })

  it('runs two instances side by side and rejects non-loopback targets', async () => {
    const sink = await startSink()
    cleanups.push(() => sink.close())
    const relay = { host: '127.0.0.1', port: sink.port }
    const [a, b] = await Promise.all([
      startPostfix({ smtpPort: await freePort(), relay }),
      startPostfix({ smtpPort: await freePort(), relay }),
    ])
    cleanups.push(
      () => a.stop(),
      () => b.stop(),
    )
    expect(a.masterPid).not.toBe(b.masterPid)
    await send(a.smtpPort, rawMessage(11), 'alice@example.org', ['bob11@example.net'])
    await send(b.smtpPort, rawMessage(12), 'alice@example.org', ['bob12@example.net'])
    await waitFor(() => sink.messages.length === 2, 'one message through each instance')
    await stopAndCheck(a)
    expect(isProcessAlive(b.masterPid)).toBe(true)
    await stopAndCheck(b)

    await expect(startPostfix({ smtpPort: 2525, relay: { host: '192.0.2.1', port: 25 } })).rejects.toThrow(
      /loopback/,
    )
  })
})
