import { once } from 'node:events'
import { connect, Socket } from 'node:net'
import type { Readable } from 'node:stream'
import SMTPConnection from 'nodemailer/lib/smtp-connection'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { SmtpReplyError } from '../../src/errors.js'
import { reply } from '../../src/ingress/smtp-reply.js'
import {
  createSmtpServer,
  MessageTooBigError,
  type SmtpServer,
  type SmtpServerOptions,
  type Transaction,
} from '../../src/ingress/smtp-server.js'
import { RawSmtpClient as Client } from '../support/raw-smtp.js'

interface Received {
  readonly tx: Transaction
  readonly data: string
}

async function collect(data: Readable): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of data) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

const servers: SmtpServer[] = []

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()))
})

/** A server on an ephemeral port that keeps what it receives; `options` override the defaults. */
async function start(
  options: Partial<SmtpServerOptions> = {},
): Promise<{ server: SmtpServer; port: number; received: Received[] }> {
  const received: Received[] = []
  const server = createSmtpServer({
    hostname: 'mx.test',
    maxSize: 100_000,
    async onMessage(tx, data) {
      received.push({ tx: { ...tx, rcptTo: [...tx.rcptTo] }, data: await collect(data) })
      return reply(250, '2.0.0', 'Ok: queued as TEST')
    },
    ...options,
  })
  servers.push(server)
  const { port } = await server.listen('127.0.0.1', 0)
  return { server, port, received }
}

/** Connect, read the greeting, say EHLO. */
async function session(port: number, hello = 'EHLO client.test'): Promise<Client> {
  const client = await Client.open(port)
  expect(await client.next()).toMatch(/^220 /)
  expect(await client.command(hello)).toMatch(/^250[ -]/)
  return client
}

/** One small message from a@example.org to b@example.net on an open session: the reply to its end. */
async function sendOne(client: Client): Promise<string> {
  await client.command('MAIL FROM:<a@example.org>')
  await client.command('RCPT TO:<b@example.net>')
  await client.command('DATA')
  client.send('x\r\n.\r\n')
  return client.next()
}

describe('greeting', () => {
  it('greets at once, before the client says anything', async () => {
    const { port } = await start()
    const client = await Client.open(port)
    expect(await client.next()).toBe('220 mx.test ESMTP mailscreen')
    client.socket.destroy()
  })

  it('refuses a connection when onConnect says so, and never reaches a handler', async () => {
    const seen: string[] = []
    const { port, received } = await start({
      onConnect: (peer) => {
        seen.push(peer.address)
        return reply(554, '5.7.1', 'Go away')
      },
    })
    const client = await Client.open(port)
    expect(await client.next()).toBe('554 5.7.1 Go away')
    await client.closed
    expect(seen).toEqual(['127.0.0.1'])
    expect(received).toHaveLength(0)
  })

  it('serves several listen addresses and counts connections', async () => {
    const { server, port } = await start()
    const second = await server.listen('127.0.0.1', 0)
    expect(second.port).not.toBe(port)
    const a = await Client.open(port)
    const b = await Client.open(second.port)
    expect(await a.next()).toMatch(/^220 /)
    expect(await b.next()).toMatch(/^220 /)
    expect(server.connections).toBe(2)
    a.socket.destroy()
    b.socket.destroy()
  })
})

describe('EHLO', () => {
  it('advertises the extensions, without XCLIENT/XFORWARD for an untrusted peer', async () => {
    const { port } = await start()
    const client = await Client.open(port)
    await client.next()
    expect(await client.command('EHLO client.test')).toBe(
      [
        '250-mx.test',
        '250-PIPELINING',
        '250-SIZE 100000',
        '250-8BITMIME',
        '250-SMTPUTF8',
        '250-ENHANCEDSTATUSCODES',
        '250-CHUNKING',
        '250 DSN',
      ].join('\n'),
    )
    expect(await client.command('HELO client.test')).toBe('250 mx.test')
    expect(await client.command('EHLO')).toBe('501 5.5.4 Syntax: EHLO hostname')
    client.socket.destroy()
  })

  it('advertises XCLIENT and XFORWARD to a trusted peer', async () => {
    const { port } = await start({ allowForwarding: (peer) => peer.address === '127.0.0.1' })
    const client = await Client.open(port)
    await client.next()
    const ehlo = await client.command('EHLO mta.test')
    expect(ehlo).toContain('250-XCLIENT NAME ADDR PROTO HELO')
    expect(ehlo).toContain('250 XFORWARD NAME ADDR PROTO HELO SOURCE IDENT')
    client.socket.destroy()
  })
})

describe('mail transaction', () => {
  it('takes a message over a raw socket and hands over the unstuffed data', async () => {
    const { port, received } = await start()
    const client = await session(port)
    expect(await client.command('MAIL FROM:<alice@example.org> SIZE=40 BODY=8BITMIME')).toBe('250 2.1.0 Ok')
    expect(await client.command('RCPT TO:<bob@example.net>')).toBe('250 2.1.5 Ok')
    expect(await client.command('DATA')).toBe('354 End data with <CR><LF>.<CR><LF>')
    client.send('Subject: t\r\n\r\n..leading dot\r\nend\r\n.\r\n')
    expect(await client.next()).toBe('250 2.0.0 Ok: queued as TEST')
    expect(await client.command('QUIT')).toBe('221 2.0.0 Bye')
    await client.closed
    expect(received).toHaveLength(1)
    expect(received[0]?.data).toBe('Subject: t\r\n\r\n.leading dot\r\nend\r\n')
    expect(received[0]?.tx).toMatchObject({
      mailFrom: 'alice@example.org',
      rcptTo: ['bob@example.net'],
      body: '8BITMIME',
      declaredSize: 40,
      smtpUtf8: false,
      peer: { address: '127.0.0.1', helo: 'client.test', protocol: 'ESMTP' },
      client: { address: '127.0.0.1', helo: 'client.test', protocol: 'ESMTP' },
    })
  })

  it('accepts the null sender, a source route and a space after the colon', async () => {
    const { port, received } = await start()
    const client = await session(port)
    expect(await client.command('MAIL FROM: <>')).toBe('250 2.1.0 Ok')
    expect(await client.command('rcpt to:<@relay.test:bob@example.net>')).toBe('250 2.1.5 Ok')
    expect(await client.command('DATA')).toMatch(/^354 /)
    client.send('x\r\n.\r\n')
    expect(await client.next()).toMatch(/^250 /)
    expect(received[0]?.tx.mailFrom).toBe('')
    expect(received[0]?.tx.rcptTo).toEqual(['bob@example.net'])
    client.socket.destroy()
  })

  it('answers pipelined commands in order even when a handler is slow', async () => {
    const { port, received } = await start({
      onRecipient: async (address) => {
        await new Promise((resolve) => setTimeout(resolve, address.startsWith('slow') ? 50 : 0))
        return address.startsWith('bad') ? reply(550, '5.1.1', 'No such user') : undefined
      },
    })
    const client = await session(port)
    client.send('MAIL FROM:<a@example.org>\r\nRCPT TO:<slow@example.net>\r\nRCPT TO:<bad@example.net>\r\n')
    client.send('RCPT TO:<fast@example.net>\r\nDATA\r\n')
    expect(await client.take(5)).toEqual([
      '250 2.1.0 Ok',
      '250 2.1.5 Ok',
      '550 5.1.1 No such user',
      '250 2.1.5 Ok',
      '354 End data with <CR><LF>.<CR><LF>',
    ])
    client.send('hello\r\n.\r\nMAIL FROM:<b@example.org>\r\nRCPT TO:<fast@example.net>\r\nDATA\r\n')
    expect(await client.take(4)).toEqual([
      '250 2.0.0 Ok: queued as TEST',
      '250 2.1.0 Ok',
      '250 2.1.5 Ok',
      '354 End data with <CR><LF>.<CR><LF>',
    ])
    client.send('second\r\n.\r\nQUIT\r\n')
    expect(await client.take(2)).toEqual(['250 2.0.0 Ok: queued as TEST', '221 2.0.0 Bye'])
    expect(received.map((r) => [r.tx.mailFrom, r.tx.rcptTo, r.data])).toEqual([
      ['a@example.org', ['slow@example.net', 'fast@example.net'], 'hello\r\n'],
      ['b@example.org', ['fast@example.net'], 'second\r\n'],
    ])
  })

  it('keeps reading past a bare-LF dot line (no SMTP smuggling)', async () => {
    const { port, received } = await start()
    const client = await session(port)
    await client.command('MAIL FROM:<a@example.org>')
    await client.command('RCPT TO:<b@example.net>')
    await client.command('DATA')
    client.send('one\n.\nMAIL FROM:<evil@example.org>\r\ntwo\r\n.\r\n')
    expect(await client.next()).toMatch(/^250 2\.0\.0/)
    expect(received[0]?.data).toBe('one\n.\nMAIL FROM:<evil@example.org>\r\ntwo\r\n')
    client.socket.destroy()
  })

  it('streams a large message to a slow consumer intact', async () => {
    let data = ''
    const { port } = await start({
      maxSize: 10_000_000,
      async onMessage(_tx, stream) {
        for await (const chunk of stream) {
          data += (chunk as Buffer).toString('latin1')
          await new Promise((resolve) => setImmediate(resolve))
        }
        return reply(250, '2.0.0', 'Ok')
      },
    })
    const client = await session(port)
    await client.command('MAIL FROM:<a@example.org>')
    await client.command('RCPT TO:<b@example.net>')
    await client.command('DATA')
    const line = `${'x'.repeat(998)}\r\n`
    const body = line.repeat(3000)
    client.send(`${body}.\r\n`)
    expect(await client.next(20_000)).toBe('250 2.0.0 Ok')
    expect(data.length).toBe(body.length)
    expect(data === body).toBe(true)
    client.socket.destroy()
  })
})

describe('onMail', () => {
  it('refuses a MAIL FROM with its reply, sees SIZE=, and leaves the session usable', async () => {
    const seen: Array<number | undefined> = []
    const { port, received } = await start({
      onMail(tx) {
        seen.push(tx.declaredSize)
        return tx.mailFrom === 'full@example.org'
          ? reply(452, '4.3.1', 'Insufficient system storage')
          : undefined
      },
    })
    const client = await session(port)
    expect(await client.command('MAIL FROM:<full@example.org> SIZE=5000')).toBe(
      '452 4.3.1 Insufficient system storage',
    )
    // No transaction was opened.
    expect(await client.command('RCPT TO:<b@example.net>')).toBe('503 5.5.1 Error: need MAIL command')
    expect(await client.command('MAIL FROM:<a@example.org>')).toBe('250 2.1.0 Ok')
    expect(await client.command('RCPT TO:<b@example.net>')).toBe('250 2.1.5 Ok')
    await client.command('DATA')
    expect(await client.command('hi\r\n.')).toMatch(/^250 2\.0\.0/)
    expect(seen).toEqual([5000, undefined])
    expect(received).toHaveLength(1)
    client.socket.destroy()
  })

  it('holds the MAIL reply and the commands pipelined after it while the promise of onMail is pending', async () => {
    let release: (refusal: ReturnType<typeof reply> | undefined) => void = () => {}
    const { port, received } = await start({
      onMail: () =>
        new Promise((resolve) => {
          release = resolve
        }),
    })
    const client = await session(port)
    client.send('MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n')
    await expect(client.next(200)).rejects.toThrow(/no reply/)
    release(undefined)
    expect(await client.take(2)).toEqual(['250 2.1.0 Ok', '250 2.1.5 Ok'])
    await client.command('DATA')
    expect(await client.command('hi\r\n.')).toMatch(/^250 2\.0\.0/)
    expect(received).toHaveLength(1)
    // A refusal that comes later: no transaction, so the pipelined RCPT needs MAIL.
    client.send('MAIL FROM:<late@example.org>\r\nRCPT TO:<b@example.net>\r\n')
    await new Promise((resolve) => setTimeout(resolve, 20))
    release(reply(452, '4.3.1', 'Insufficient system storage'))
    expect(await client.take(2)).toEqual([
      '452 4.3.1 Insufficient system storage',
      '503 5.5.1 Error: need MAIL command',
    ])
    client.socket.destroy()
  })

  it('answers 451 4.3.0 when onMail throws', async () => {
    const { port } = await start({
      onMail() {
        throw new Error('statfs exploded')
      },
    })
    const client = await session(port)
    expect(await client.command('MAIL FROM:<a@example.org>')).toBe('451 4.3.0 Error: internal error')
    client.socket.destroy()
  })
})

describe('reply batching', () => {
  /** Watch `client`'s data events and the server's socket writes (every write not by `client`). */
  function watch(client: Client): { packets: string[]; serverWrites: () => number } {
    const packets: string[] = []
    client.socket.on('data', (text: string) => packets.push(text))
    const write = vi.spyOn(Socket.prototype, 'write')
    return {
      packets,
      serverWrites: () => write.mock.contexts.filter((socket) => socket !== client.socket).length,
    }
  }

  afterEach(() => {
    vi.restoreAllMocks()
  })

  it('answers a pipelined MAIL/RCPT/RCPT/DATA packet with one write', async () => {
    const { port } = await start()
    const client = await session(port)
    const { packets, serverWrites } = watch(client)
    client.send('MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n')
    await client.take(4)
    expect(packets).toEqual([
      '250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n',
    ])
    expect(serverWrites()).toBe(1)
    client.socket.destroy()
  })

  it('answers the end of data and a QUIT pipelined after it with one write', async () => {
    const { port } = await start()
    const client = await session(port)
    client.send('MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n')
    await client.take(3)
    const { packets, serverWrites } = watch(client)
    client.send('Subject: t\r\n\r\nhi\r\n.\r\nQUIT\r\n')
    expect(await client.take(2)).toEqual(['250 2.0.0 Ok: queued as TEST', '221 2.0.0 Bye'])
    expect(packets).toEqual(['250 2.0.0 Ok: queued as TEST\r\n221 2.0.0 Bye\r\n'])
    expect(serverWrites()).toBe(1)
  })

  it('sends the replies decided so far while a handler is still deciding', async () => {
    let release: () => void = () => undefined
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const { port } = await start({ onRecipient: () => gate.then(() => undefined) })
    const client = await session(port)
    client.send('RSET\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n')
    expect(await client.take(2)).toEqual(['250 2.0.0 Ok', '250 2.1.0 Ok'])
    release()
    expect(await client.take(2)).toEqual(['250 2.1.5 Ok', '354 End data with <CR><LF>.<CR><LF>'])
    client.socket.destroy()
  })
})

describe('command errors', () => {
  it('reports bad sequence, syntax and unknown commands, and stays usable', async () => {
    const { port } = await start()
    const client = await Client.open(port)
    await client.next()
    expect(await client.command('MAIL FROM:<a@example.org>')).toBe('503 5.5.1 Error: send HELO/EHLO first')
    await client.command('EHLO client.test')
    expect(await client.command('RCPT TO:<b@example.net>')).toBe('503 5.5.1 Error: need MAIL command')
    expect(await client.command('DATA')).toBe('503 5.5.1 Error: need MAIL command')
    expect(await client.command('MAIL FROM:a@example.org')).toBe('501 5.5.4 Syntax: MAIL FROM:<address>')
    expect(await client.command('MAIL FROM:<a b@example.org>')).toBe('501 5.1.7 Bad sender address syntax')
    expect(await client.command('MAIL FROM:<a@example.org> FOO=1')).toBe('555 5.5.4 Unsupported option: FOO')
    expect(await client.command('MAIL FROM:<a@example.org> BODY=BINARYMIME')).toBe(
      '501 5.5.4 Unsupported BODY type',
    )
    expect(await client.command('MAIL FROM:<ü@example.org>')).toBe(
      '553 5.6.7 Must declare SMTPUTF8 to send unicode address',
    )
    expect(await client.command('MAIL FROM:<a@example.org>')).toBe('250 2.1.0 Ok')
    expect(await client.command('MAIL FROM:<a@example.org>')).toBe('503 5.5.1 Error: nested MAIL command')
    expect(await client.command('DATA')).toBe('503 5.5.1 Error: need RCPT command')
    expect(await client.command('RCPT TO:<>')).toBe('501 5.1.3 Bad recipient address syntax')
    expect(await client.command('RCPT TO:<b@example.net> XYZZY=1')).toBe(
      '555 5.5.4 Unsupported option: XYZZY',
    )
    expect(await client.command('STARTTLS')).toBe('500 5.5.2 Error: command not recognized')
    expect(await client.command('VRFY bob')).toMatch(/^252 2\.5\.2 /)
    expect(await client.command('HELP')).toMatch(/^214 /)
    expect(await client.command('NOOP')).toBe('250 2.0.0 Ok')
    expect(await client.command('RSET')).toBe('250 2.0.0 Ok')
    expect(await client.command('RCPT TO:<b@example.net>')).toBe('503 5.5.1 Error: need MAIL command')
    client.socket.destroy()
  })

  it('answers DATA with 554 when every recipient was refused', async () => {
    const { port } = await start({ onRecipient: () => reply(550, '5.1.1', 'No such user') })
    const client = await session(port)
    await client.command('MAIL FROM:<a@example.org>')
    expect(await client.command('RCPT TO:<b@example.net>')).toBe('550 5.1.1 No such user')
    expect(await client.command('DATA')).toBe('554 5.5.1 Error: no valid recipients')
    client.socket.destroy()
  })

  it('takes SMTPUTF8 addresses when SMTPUTF8 is declared', async () => {
    const { port, received } = await start()
    const client = await session(port)
    expect(await client.command('MAIL FROM:<jürgen@example.org> SMTPUTF8')).toBe('250 2.1.0 Ok')
    expect(await client.command('RCPT TO:<søren@exämple.net>')).toBe('250 2.1.5 Ok')
    await client.command('DATA')
    client.send('x\r\n.\r\n')
    await client.next()
    expect(received[0]?.tx).toMatchObject({ mailFrom: 'jürgen@example.org', smtpUtf8: true })
    expect(received[0]?.tx.rcptTo).toEqual(['søren@exämple.net'])
    client.socket.destroy()
  })

  it('refuses a command line that is not UTF-8 instead of taking another mailbox than the one sent', async () => {
    const { port, received } = await start()
    const client = await session(port)
    expect(await client.command('MAIL FROM:<a@example.org> SMTPUTF8')).toBe('250 2.1.0 Ok')
    // m\xFCller in Latin-1: leniently decoded it would be m\uFFFDller.
    client.socket.write(
      Buffer.concat([Buffer.from('RCPT TO:<m'), Buffer.of(0xfc), Buffer.from('ller@example.org>\r\n')]),
    )
    expect(await client.next()).toBe('500 5.5.2 Error: command line is not valid UTF-8')
    expect(await client.command('RCPT TO:<müller@example.org>')).toBe('250 2.1.5 Ok')
    await client.command('DATA')
    client.send('x\r\n.\r\n')
    await client.next()
    expect(received[0]?.tx.rcptTo).toEqual(['müller@example.org'])
    client.socket.destroy()
  })

  it('refuses recipients past the limit with 452 4.5.3', async () => {
    const { port } = await start({ maxRecipients: 2 })
    const client = await session(port)
    await client.command('MAIL FROM:<a@example.org>')
    client.send('RCPT TO:<1@example.net>\r\nRCPT TO:<2@example.net>\r\nRCPT TO:<3@example.net>\r\n')
    expect(await client.take(3)).toEqual([
      '250 2.1.5 Ok',
      '250 2.1.5 Ok',
      '452 4.5.3 Error: too many recipients',
    ])
    client.socket.destroy()
  })

  it('refuses an over-long command line and reads the next one', async () => {
    const { port } = await start()
    const client = await session(port)
    client.send(`NOOP ${'x'.repeat(3000)}`)
    client.send(`${'y'.repeat(3000)}\r\nNOOP\r\n`)
    expect(await client.take(2)).toEqual(['500 5.5.2 Error: line too long', '250 2.0.0 Ok'])
    client.send(`NOOP ${'x'.repeat(2100)}\r\nNOOP\r\n`)
    expect(await client.take(2)).toEqual(['500 5.5.2 Error: line too long', '250 2.0.0 Ok'])
    client.socket.destroy()
  })

  it('says 421 4.4.2 and closes after the idle timeout', async () => {
    const { port } = await start({ idleTimeoutMs: 100 })
    const client = await session(port)
    expect(await client.next()).toBe('421 4.4.2 mx.test Error: timeout exceeded')
    await client.closed
  })
})

describe('message size', () => {
  it('refuses a declared SIZE over the limit and stays usable', async () => {
    const { port } = await start({ maxSize: 1000 })
    const client = await session(port)
    expect(await client.command('MAIL FROM:<a@example.org> SIZE=1001')).toBe(
      '552 5.3.4 Message size exceeds fixed maximum message size',
    )
    expect(await client.command('MAIL FROM:<a@example.org> SIZE=1000')).toBe('250 2.1.0 Ok')
    client.socket.destroy()
  })

  it('cuts off a message that is really too big, answers 552 after the terminator, and goes on', async () => {
    const errors: unknown[] = []
    const { port, received } = await start({
      maxSize: 1000,
      async onMessage(tx, data) {
        try {
          const text = await collect(data)
          received.push({ tx, data: text })
          return reply(250, '2.0.0', 'Ok')
        } catch (err) {
          errors.push(err)
          throw err
        }
      },
    })
    const client = await session(port)
    await client.command('MAIL FROM:<a@example.org> SIZE=500')
    await client.command('RCPT TO:<b@example.net>')
    await client.command('DATA')
    client.send(`${'z'.repeat(998)}\r\n`)
    client.send(`${'z'.repeat(998)}\r\n`)
    client.send('.\r\n')
    expect(await client.next()).toBe('552 5.3.4 Message size exceeds fixed maximum message size')
    expect(errors).toHaveLength(1)
    expect(errors[0]).toBeInstanceOf(MessageTooBigError)
    expect(errors[0]).toMatchObject({ responseCode: 552, enhancedStatus: '5.3.4' })
    await client.command('MAIL FROM:<a@example.org>')
    await client.command('RCPT TO:<b@example.net>')
    await client.command('DATA')
    client.send('small\r\n.\r\n')
    expect(await client.next()).toBe('250 2.0.0 Ok')
    expect(received.map((r) => r.data)).toEqual(['small\r\n'])
    client.socket.destroy()
  })
})

describe('onMessage failures', () => {
  it('answers 451 4.3.0 when onMessage throws, and reports the error', async () => {
    const reported: unknown[] = []
    const { port } = await start({
      onError: (err) => reported.push(err),
      async onMessage(_tx, data) {
        await collect(data)
        throw new Error('disk on fire')
      },
    })
    const client = await session(port)
    expect(await sendOne(client)).toBe('451 4.3.0 Error: internal error')
    expect(reported).toHaveLength(1)
    expect(await client.command('NOOP')).toBe('250 2.0.0 Ok')
    client.socket.destroy()
  })

  it('answers with the reply of an SmtpReplyError, even when thrown before the data ends', async () => {
    const { port } = await start({
      onMessage: () => {
        throw new SmtpReplyError('MSC_SPOOL_WRITE_FAILED', 452, '4.3.1', 'Insufficient system storage')
      },
    })
    const client = await session(port)
    await client.command('MAIL FROM:<a@example.org>')
    await client.command('RCPT TO:<b@example.net>')
    await client.command('DATA')
    client.send(`${'x'.repeat(100_000)}\r\n`)
    client.send('.\r\n')
    expect(await client.next()).toBe('452 4.3.1 Insufficient system storage')
    client.socket.destroy()
  })

  it('errors the data stream when the client goes away mid-DATA', async () => {
    let streamError: unknown
    const settled = new Promise<void>((resolve) => {
      void start({
        async onMessage(_tx, data) {
          try {
            await collect(data)
          } catch (err) {
            streamError = err
          }
          resolve()
          return reply(250, '2.0.0', 'Ok')
        },
      }).then(async ({ port }) => {
        const client = await session(port)
        await client.command('MAIL FROM:<a@example.org>')
        await client.command('RCPT TO:<b@example.net>')
        await client.command('DATA')
        client.send('partial line\r\nand more')
        await new Promise((r) => setTimeout(r, 50))
        client.socket.destroy()
      })
    })
    await settled
    expect(streamError).toBeInstanceOf(Error)
    expect((streamError as { code?: string }).code).toBe('ECONNRESET')
  })
})

describe('clients that stop reading or stop sending', () => {
  it('ends the session when the input ends inside a chunk that a slow handler left it in', async () => {
    let streamError: unknown
    const { port, server } = await start({
      idleTimeoutMs: 10_000,
      onRecipient: () => new Promise((resolve) => setTimeout(() => resolve(undefined), 200)),
      async onMessage(_tx, data) {
        try {
          await collect(data)
        } catch (err) {
          streamError = err
        }
        return reply(250, '2.0.0', 'Ok')
      },
    })
    const client = await session(port)
    client.send('MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 100 LAST\r\nonly-part')
    await new Promise((r) => setTimeout(r, 50))
    client.socket.end()
    const late = new Promise((r) => setTimeout(() => r('still open after 3 s'), 3_000))
    expect(await Promise.race([client.closed.then(() => 'closed'), late])).toBe('closed')
    expect((streamError as { code?: string }).code).toBe('ECONNRESET')
    for (let waited = 0; server.connections > 0 && waited < 1_000; waited += 10)
      await new Promise((r) => setTimeout(r, 10))
    expect(server.connections).toBe(0)
  })

  it('stops reading commands while its replies are not read, and answers every one once they are', async () => {
    let mails = 0
    const { port } = await start({
      onMail: () => {
        mails++
        return undefined
      },
    })
    const socket = connect(port, '127.0.0.1')
    await once(socket, 'connect')
    // About 160 bytes of replies for 25 bytes of commands: 40 MB of replies if all were answered.
    const pairs = 250_000
    socket.write(Buffer.from('EHLO client.test\r\nMAIL FROM:<a@b.test>\r\n'.repeat(pairs)))
    await new Promise((r) => setTimeout(r, 1_500))
    // The kernel's socket buffers hold some 10 MB of replies: the rest waits, unread.
    expect(mails).toBeLessThan(pairs / 2)
    let text = ''
    let replies = 0
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => {
      text += chunk
      const lines = text.split('\r\n')
      text = lines.pop() as string
      replies += lines.filter((line) => line === '250 2.1.0 Ok').length
    })
    for (let waited = 0; replies < pairs && waited < 60_000; waited += 50)
      await new Promise((r) => setTimeout(r, 50))
    expect(replies).toBe(pairs)
    expect(mails).toBe(pairs)
    socket.destroy()
  })

  it('drops a session whose client neither reads nor sends, also after its last reply', async () => {
    const { port, server } = await start({ idleTimeoutMs: 300 })
    const socket = connect(port, '127.0.0.1')
    socket.on('error', () => undefined)
    await once(socket, 'connect')
    // More replies than the socket buffers hold, then QUIT; never read.
    socket.write(Buffer.from(`${'EHLO client.test\r\n'.repeat(150_000)}QUIT\r\n`))
    for (let waited = 0; server.connections > 0 && waited < 10_000; waited += 50)
      await new Promise((r) => setTimeout(r, 50))
    expect(server.connections).toBe(0)
    socket.destroy()
  })
})

describe('XFORWARD and XCLIENT', () => {
  it('takes XFORWARD attributes from a trusted peer for one transaction', async () => {
    const { port, received } = await start({ allowForwarding: () => true })
    const client = await session(port, 'EHLO mta.test')
    expect(await client.command('XFORWARD NAME=mail.example.org ADDR=IPV6:2001:DB8::1 PROTO=ESMTP')).toBe(
      '250 2.0.0 Ok',
    )
    expect(await client.command('XFORWARD HELO=client+2Eexample.org IDENT=4ABC SOURCE=REMOTE')).toBe(
      '250 2.0.0 Ok',
    )
    await client.command('MAIL FROM:<a@example.org>')
    expect(await client.command('XFORWARD NAME=x')).toBe('503 5.5.1 Error: MAIL transaction in progress')
    await client.command('RCPT TO:<b@example.net>')
    await client.command('DATA')
    client.send('x\r\n.\r\n')
    await client.next()
    await client.command('XFORWARD NAME=[UNAVAILABLE] ADDR=::ffff:192.0.2.1')
    await sendOne(client)
    await sendOne(client)
    expect(received.map((r) => r.tx.client)).toEqual([
      { address: '2001:db8::1', name: 'mail.example.org', helo: 'client.example.org', protocol: 'ESMTP' },
      { address: '192.0.2.1' },
      { address: '127.0.0.1', helo: 'mta.test', protocol: 'ESMTP' },
    ])
    expect(received[0]?.tx).toMatchObject({ ident: '4ABC', source: 'REMOTE', peer: { address: '127.0.0.1' } })
    expect(received[1]?.tx.ident).toBeUndefined()
    client.socket.destroy()
  })

  it('reads xtext as UTF-8 bytes, as Postfix encodes a non-ASCII name, and refuses bytes that are not UTF-8', async () => {
    const { port, received } = await start({ allowForwarding: () => true })
    const client = await session(port, 'EHLO mta.test')
    expect(await client.command('XFORWARD HELO=m+FCnchen.example')).toBe(
      '501 5.5.4 Bad XFORWARD attribute value for HELO',
    )
    expect(await client.command('XFORWARD ADDR=192.0.2.7 HELO=m+C3+BCnchen.example')).toBe('250 2.0.0 Ok')
    await sendOne(client)
    expect(received[0]?.tx.client).toEqual({ address: '192.0.2.7', helo: 'münchen.example' })
    client.socket.destroy()
  })

  it('refuses XFORWARD and XCLIENT from a peer that is not trusted', async () => {
    const { port } = await start({ allowForwarding: () => false })
    const client = await session(port)
    expect(await client.command('XFORWARD ADDR=192.0.2.1')).toBe(
      '550 5.7.0 Error: insufficient authorization',
    )
    expect(await client.command('XCLIENT ADDR=192.0.2.1')).toBe('550 5.7.0 Error: insufficient authorization')
    client.socket.destroy()
  })

  it('rejects malformed XFORWARD attributes', async () => {
    const { port } = await start({ allowForwarding: () => true })
    const client = await session(port)
    expect(await client.command('XFORWARD PORT=25')).toBe('501 5.5.4 Bad XFORWARD attribute name: PORT')
    expect(await client.command('XFORWARD ADDR=not-an-ip')).toBe(
      '501 5.5.4 Bad XFORWARD address syntax: not-an-ip',
    )
    expect(await client.command('XFORWARD')).toBe('501 5.5.4 Syntax: XFORWARD attribute=value...')
    client.socket.destroy()
  })

  it('restarts the session after XCLIENT and reports the client it names', async () => {
    const { port, received } = await start({ allowForwarding: () => true })
    const client = await session(port, 'EHLO proxy.test')
    expect(await client.command('XCLIENT ADDR=192.0.2.7 NAME=[UNAVAILABLE] PROTO=SMTP')).toBe(
      '220 mx.test ESMTP mailscreen',
    )
    expect(await client.command('MAIL FROM:<a@example.org>')).toBe('503 5.5.1 Error: send HELO/EHLO first')
    await client.command('EHLO client.example.org')
    expect(await sendOne(client)).toMatch(/^250 /)
    expect(received[0]?.tx.client).toEqual({
      address: '192.0.2.7',
      helo: 'client.example.org',
      protocol: 'SMTP',
    })
    expect(received[0]?.tx.peer.address).toBe('127.0.0.1')
    client.socket.destroy()
  })
})

describe('DSN parameters (RFC 3461)', () => {
  it('takes RET, ENVID, NOTIFY and ORCPT, decoding xtext, and hands them on with the message', async () => {
    const { port, received } = await start()
    const client = await session(port)
    expect(await client.command('MAIL FROM:<a@example.org> RET=full ENVID=QQ+2B1')).toBe('250 2.1.0 Ok')
    expect(
      await client.command('RCPT TO:<b@example.net> NOTIFY=SUCCESS,failure ORCPT=rfc822;b+40example.net'),
    ).toBe('250 2.1.5 Ok')
    expect(await client.command('RCPT TO:<c@example.net> NOTIFY=NEVER')).toBe('250 2.1.5 Ok')
    expect(await client.command('RCPT TO:<d@example.net>')).toBe('250 2.1.5 Ok')
    expect(await client.command('DATA')).toMatch(/^354 /)
    expect(await client.command('Subject: x\r\n\r\nhi\r\n.')).toBe('250 2.0.0 Ok: queued as TEST')
    expect(received[0]?.tx.dsn).toEqual({
      ret: 'FULL',
      envid: 'QQ+1',
      recipients: {
        'b@example.net': { notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;b@example.net' },
        'c@example.net': { notify: ['NEVER'] },
      },
    })
    client.socket.destroy()
  })

  it('refuses malformed values with 501 5.5.4, naming the parameter, and stays usable', async () => {
    const { port } = await start()
    const client = await session(port)
    expect(await client.command('MAIL FROM:<a@example.org> RET=ALL')).toBe('501 5.5.4 Invalid RET parameter')
    expect(await client.command(`MAIL FROM:<a@example.org> ENVID=${'x'.repeat(101)}`)).toBe(
      '501 5.5.4 Invalid ENVID parameter',
    )
    expect(await client.command('MAIL FROM:<a@example.org> ENVID=bad+ZZ')).toBe(
      '501 5.5.4 Invalid ENVID parameter',
    )
    expect(await client.command('MAIL FROM:<a@example.org>')).toBe('250 2.1.0 Ok')
    for (const notify of ['NEVER,FAILURE', 'FAILURE,FAILURE', 'SOMETIMES', ''])
      expect(await client.command(`RCPT TO:<b@example.net> NOTIFY=${notify}`), notify).toBe(
        '501 5.5.4 Invalid NOTIFY parameter',
      )
    for (const orcpt of ['b@example.net', ';b@example.net', 'rfc822;', 'rfc822;a+0Ab'])
      expect(await client.command(`RCPT TO:<b@example.net> ORCPT=${orcpt}`), orcpt).toBe(
        '501 5.5.4 Invalid ORCPT parameter',
      )
    expect(await client.command('RCPT TO:<b@example.net> NOTIFY=DELAY')).toBe('250 2.1.5 Ok')
    client.socket.destroy()
  })
})

describe('BDAT (RFC 3030 CHUNKING)', () => {
  it('refuses RCPT once the first chunk is in: the message keeps the recipients it went out with', async () => {
    const { port, received } = await start()
    const client = await session(port)
    client.send('MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 4\r\none\n')
    expect(await client.take(3)).toEqual(['250 2.1.0 Ok', '250 2.1.5 Ok', '250 2.0.0 Ok: 4 octets received'])
    expect(await client.command('RCPT TO:<late@example.net>')).toBe(
      '503 5.5.1 Error: RCPT in a BDAT transaction',
    )
    client.send('BDAT 4 LAST\r\ntwo\n')
    expect(await client.next()).toBe('250 2.0.0 Ok: queued as TEST')
    expect(received.map((r) => [r.tx.rcptTo, r.data])).toEqual([[['b@example.net'], 'one\ntwo\n']])
    client.socket.destroy()
  })

  it('answers a refused BDAT only once its octets are in', async () => {
    const { port } = await start()
    const client = await session(port)
    client.send('BDAT 10 LAST\r\n01234')
    await expect(client.next(300)).rejects.toThrow(/no reply/)
    client.send('56789')
    expect(await client.next()).toBe('503 5.5.1 Error: need MAIL command')
    expect(await client.command('NOOP')).toBe('250 2.0.0 Ok')
    client.socket.destroy()
  })

  it('reads on after RSET drops a message whose full stream had paused the socket', async () => {
    // A consumer that reads nothing: the chunks fill the message stream (64 KiB) and pause the socket.
    const { port } = await start({ onMessage: () => new Promise(() => undefined) })
    const client = await session(port)
    client.send(`MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 60000\r\n${'x'.repeat(60_000)}`)
    expect(await client.take(3)).toEqual([
      '250 2.1.0 Ok',
      '250 2.1.5 Ok',
      '250 2.0.0 Ok: 60000 octets received',
    ])
    // The chunk that crosses 64 KiB and the RSET arrive together.
    client.send(`BDAT 10000\r\n${'y'.repeat(10_000)}RSET\r\n`)
    expect(await client.take(2)).toEqual(['250 2.0.0 Ok: 70000 octets received', '250 2.0.0 Ok'])
    expect(await client.command('NOOP')).toBe('250 2.0.0 Ok')
    client.socket.destroy()
  })

  it('takes a message in chunks, byte for byte, with no dot-unstuffing', async () => {
    const { port, received } = await start()
    const client = await session(port)
    const first = 'Subject: t\r\n\r\n..two dots\r\n'
    const second = '.\r\nbare\nlf\r\n'
    client.send(`MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT ${first.length}\r\n${first}`)
    expect(await client.take(3)).toEqual([
      '250 2.1.0 Ok',
      '250 2.1.5 Ok',
      `250 2.0.0 Ok: ${first.length} octets received`,
    ])
    client.send(`BDAT ${second.length} LAST\r\n${second}`)
    expect(await client.next()).toBe('250 2.0.0 Ok: queued as TEST')
    expect(await client.command('QUIT')).toBe('221 2.0.0 Bye')
    expect(received.map((r) => r.data)).toEqual([first + second])
    expect(received[0]?.tx.rcptTo).toEqual(['b@example.net'])
  })

  it('takes MAIL, RCPT and BDAT LAST with the message in one packet, and goes on with the next', async () => {
    const { port, received } = await start()
    const client = await session(port)
    const message = 'Subject: one\r\n\r\nbody\r\n'
    const transaction = `MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT ${message.length} LAST\r\n${message}`
    client.send(transaction + transaction)
    expect(await client.take(6)).toEqual([
      '250 2.1.0 Ok',
      '250 2.1.5 Ok',
      '250 2.0.0 Ok: queued as TEST',
      '250 2.1.0 Ok',
      '250 2.1.5 Ok',
      '250 2.0.0 Ok: queued as TEST',
    ])
    expect(received.map((r) => r.data)).toEqual([message, message])
    client.socket.destroy()
  })

  it('reads a chunk that arrives in pieces, and a BDAT 0 LAST that ends the message', async () => {
    const { port, received } = await start()
    const client = await session(port)
    await client.command('MAIL FROM:<a@example.org>')
    await client.command('RCPT TO:<b@example.net>')
    client.send('BDAT 10\r\n0123')
    await new Promise((resolve) => setTimeout(resolve, 20))
    client.send('456789')
    expect(await client.next()).toBe('250 2.0.0 Ok: 10 octets received')
    expect(await client.command('BDAT 0 LAST')).toBe('250 2.0.0 Ok: queued as TEST')
    expect(received.map((r) => r.data)).toEqual(['0123456789'])
    client.socket.destroy()
  })

  it('refuses BDAT without a transaction or recipients, reads its octets and stays in step', async () => {
    const { port, received } = await start({
      onRecipient: () => reply(550, '5.1.1', 'No such user'),
    })
    const client = await session(port)
    // Ten octets that look like commands: they are the chunk, not commands.
    client.send('BDAT 10 LAST\r\nRSET\r\nXX\r\n')
    expect(await client.next()).toBe('503 5.5.1 Error: need MAIL command')
    client.send('MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 4 LAST\r\nQUIT')
    expect(await client.take(3)).toEqual([
      '250 2.1.0 Ok',
      '550 5.1.1 No such user',
      '554 5.5.1 Error: no valid recipients',
    ])
    expect(await client.command('NOOP')).toBe('250 2.0.0 Ok')
    expect(received).toEqual([])
    client.socket.destroy()
  })

  it('refuses DATA within a BDAT transaction, and RSET drops the chunks taken so far', async () => {
    const seen: unknown[] = []
    const { port, received } = await start({
      async onMessage(tx, data) {
        try {
          const text = await collect(data)
          received.push({ tx, data: text })
        } catch (err) {
          seen.push(err)
          throw err
        }
        return reply(250, '2.0.0', 'Ok')
      },
    })
    const client = await session(port)
    await client.command('MAIL FROM:<a@example.org>')
    await client.command('RCPT TO:<b@example.net>')
    client.send('BDAT 5\r\nhello')
    expect(await client.next()).toBe('250 2.0.0 Ok: 5 octets received')
    expect(await client.command('DATA')).toBe('503 5.5.1 Error: DATA in a BDAT transaction')
    expect(await client.command('RSET')).toBe('250 2.0.0 Ok')
    await vi.waitFor(() => expect(seen).toHaveLength(1))
    expect(seen[0]).toMatchObject({ code: 'ECONNABORTED' })
    await client.command('MAIL FROM:<a@example.org>')
    await client.command('RCPT TO:<b@example.net>')
    client.send('BDAT 2 LAST\r\nok')
    expect(await client.next()).toBe('250 2.0.0 Ok')
    expect(received.map((r) => r.data)).toEqual(['ok'])
    client.socket.destroy()
  })

  it('answers 552 to the chunk that goes past the limit, then 503 to the rest, still reading them', async () => {
    const { port, received } = await start({ maxSize: 1000 })
    const client = await session(port)
    await client.command('MAIL FROM:<a@example.org>')
    await client.command('RCPT TO:<b@example.net>')
    client.send(`BDAT 600\r\n${'a'.repeat(600)}BDAT 600\r\n${'b'.repeat(600)}BDAT 3 LAST\r\nend`)
    expect(await client.take(3)).toEqual([
      '250 2.0.0 Ok: 600 octets received',
      '552 5.3.4 Message size exceeds fixed maximum message size',
      '503 5.5.1 Error: need MAIL command',
    ])
    expect(await client.command('NOOP')).toBe('250 2.0.0 Ok')
    expect(received).toEqual([])
    client.socket.destroy()
  })

  it('ends the session on a BDAT whose size it cannot read', async () => {
    const { port } = await start()
    const client = await session(port)
    await client.command('MAIL FROM:<a@example.org>')
    await client.command('RCPT TO:<b@example.net>')
    expect(await client.command('BDAT many')).toBe('501 5.5.4 Syntax: BDAT size [LAST]')
    await client.closed
  })

  it('answers BDAT LAST once per accepted recipient under LMTP', async () => {
    const { port } = await start({
      lmtp: true,
      async onMessage(tx, data) {
        await collect(data)
        return tx.rcptTo.map((r) => reply(250, '2.0.0', r))
      },
    })
    const client = await session(port, 'LHLO client.test')
    client.send(
      'MAIL FROM:<a@example.org>\r\nRCPT TO:<1@example.net>\r\nRCPT TO:<2@example.net>\r\nBDAT 1 LAST\r\nx',
    )
    expect(await client.take(5)).toEqual([
      '250 2.1.0 Ok',
      '250 2.1.5 Ok',
      '250 2.1.5 Ok',
      '250 2.0.0 1@example.net',
      '250 2.0.0 2@example.net',
    ])
    client.socket.destroy()
  })
})

describe('LMTP', () => {
  it('greets as LMTP, wants LHLO and answers once per accepted recipient', async () => {
    const { port } = await start({
      lmtp: true,
      onRecipient: (address) =>
        address.startsWith('nobody') ? reply(550, '5.1.1', 'No such user') : undefined,
      async onMessage(tx, data) {
        await collect(data)
        return tx.rcptTo.map((r) =>
          r.startsWith('full') ? reply(452, '4.2.2', 'Mailbox full') : reply(250, '2.0.0', r),
        )
      },
    })
    const client = await Client.open(port)
    expect(await client.next()).toBe('220 mx.test LMTP mailscreen')
    expect(await client.command('EHLO client.test')).toBe('500 5.5.1 Error: this is LMTP, send LHLO')
    expect(await client.command('LHLO client.test')).toMatch(/^250-mx\.test\n250-PIPELINING/)
    client.send('MAIL FROM:<a@example.org>\r\nRCPT TO:<one@example.net>\r\nRCPT TO:<nobody@example.net>\r\n')
    client.send('RCPT TO:<full@example.net>\r\nDATA\r\n')
    expect(await client.take(5)).toEqual([
      '250 2.1.0 Ok',
      '250 2.1.5 Ok',
      '550 5.1.1 No such user',
      '250 2.1.5 Ok',
      '354 End data with <CR><LF>.<CR><LF>',
    ])
    client.send('x\r\n.\r\n')
    expect(await client.take(2)).toEqual(['250 2.0.0 one@example.net', '452 4.2.2 Mailbox full'])
    client.socket.destroy()
  })

  it('answers DATA and BDAT with 503 when every recipient was refused (RFC 2033 4.2)', async () => {
    const { port } = await start({ lmtp: true, onRecipient: () => reply(550, '5.1.1', 'No such user') })
    const client = await session(port, 'LHLO client.test')
    await client.command('MAIL FROM:<a@example.org>')
    expect(await client.command('RCPT TO:<b@example.net>')).toBe('550 5.1.1 No such user')
    expect(await client.command('DATA')).toBe('503 5.5.1 Error: no valid recipients')
    expect(await client.command('BDAT 3 LAST\r\nabc')).toBe('503 5.5.1 Error: no valid recipients')
    client.socket.destroy()
  })

  it('repeats a single reply for every recipient', async () => {
    const { port } = await start({ lmtp: true })
    const client = await session(port, 'LHLO client.test')
    client.send('MAIL FROM:<a@example.org>\r\nRCPT TO:<1@example.net>\r\nRCPT TO:<2@example.net>\r\nDATA\r\n')
    await client.take(4)
    client.send('x\r\n.\r\n')
    expect(await client.take(2)).toEqual(['250 2.0.0 Ok: queued as TEST', '250 2.0.0 Ok: queued as TEST'])
    client.socket.destroy()
  })
})

describe('close', () => {
  it('lets a transaction in progress finish, says 421 4.3.2 to idle sessions, stops accepting', async () => {
    let release: () => void = () => undefined
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const { server, port } = await start({
      async onMessage(_tx, data) {
        await collect(data)
        await gate
        return reply(250, '2.0.0', 'Ok')
      },
    })
    const busy = await session(port)
    const idle = await session(port)
    await busy.command('MAIL FROM:<a@example.org>')
    await busy.command('RCPT TO:<b@example.net>')
    await busy.command('DATA')
    busy.send('x\r\n.\r\n')
    await new Promise((r) => setTimeout(r, 50))
    const closing = server.close()
    expect(await idle.next()).toBe('421 4.3.2 mx.test Service shutting down, closing channel')
    await expect(Client.open(port)).rejects.toThrow()
    release()
    expect(await busy.take(2)).toEqual([
      '250 2.0.0 Ok',
      '421 4.3.2 mx.test Service shutting down, closing channel',
    ])
    await closing
    expect(server.connections).toBe(0)
  })
})

describe('close between BDAT chunks', () => {
  it('lets the BDAT transaction finish before saying 421 4.3.2', async () => {
    const { server, port, received } = await start()
    const client = await session(port)
    client.send('MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 4\r\none\n')
    expect(await client.take(3)).toEqual(['250 2.1.0 Ok', '250 2.1.5 Ok', '250 2.0.0 Ok: 4 octets received'])
    const closing = server.close()
    client.send('BDAT 4 LAST\r\ntwo\n')
    expect(await client.take(2)).toEqual([
      '250 2.0.0 Ok: queued as TEST',
      '421 4.3.2 mx.test Service shutting down, closing channel',
    ])
    await closing
    expect(received.map((r) => r.data)).toEqual(['one\ntwo\n'])
  })
})

describe('with nodemailer as the client', () => {
  it('sends a message through SMTPConnection', async () => {
    const { port, received } = await start()
    const connection = new SMTPConnection({ host: '127.0.0.1', port, ignoreTLS: true, name: 'nm.test' })
    await new Promise<void>((resolve, reject) => connection.connect((err) => (err ? reject(err) : resolve())))
    const info = await new Promise<SMTPConnection.SentMessageInfo>((resolve, reject) =>
      connection.send(
        { from: 'alice@example.org', to: ['bob@example.net', 'carol@example.net'] },
        'Subject: hi\r\n\r\n.dot line\r\nbye\r\n',
        (err, result) => (err || !result ? reject(err) : resolve(result)),
      ),
    )
    connection.quit()
    expect(info.accepted).toEqual(['bob@example.net', 'carol@example.net'])
    expect(info.response).toBe('250 2.0.0 Ok: queued as TEST')
    expect(received[0]?.data).toBe('Subject: hi\r\n\r\n.dot line\r\nbye\r\n')
    expect(received[0]?.tx.peer.helo).toBe('nm.test')
  })
})
