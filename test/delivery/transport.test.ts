import net from 'node:net'
import { Readable } from 'node:stream'
import { SMTPServer, type SMTPServerAddressArgs, type SMTPServerOptions } from 'smtp-server'
import { afterEach, describe, expect, it } from 'vitest'
import { type SendRequest, SmtpTransport, type TransportOptions } from '../../src/delivery/transport.js'
import { listenOnLoopback } from '../support/loopback-server.js'

interface Received {
  readonly from: string
  readonly to: string[]
  readonly mailArgs: SMTPServerAddressArgs | false
  readonly data: Buffer
}

/** A next hop on 127.0.0.1:0 that counts sessions and records what it accepted. */
interface FakeHop {
  readonly port: number
  readonly received: Received[]
  readonly stats: { connects: number; open: number; maxOpen: number }
  /** Drop every client connection from the server side. */
  dropAll(): void
  waitForSessions(count: number): Promise<void>
  close(): Promise<void>
}

const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const undo of cleanup.splice(0).reverse()) await undo()
})

async function startHop(options: Partial<SMTPServerOptions> = {}): Promise<FakeHop> {
  const received: Received[] = []
  const stats = { connects: 0, open: 0, maxOpen: 0 }
  const sockets = new Set<net.Socket>()
  let sessionWaiter: (() => void) | undefined
  let target = 0
  const server = new SMTPServer({
    disabledCommands: ['AUTH', 'STARTTLS'],
    authOptional: true,
    logger: false,
    onConnect(_session, callback) {
      stats.connects++
      stats.open++
      stats.maxOpen = Math.max(stats.maxOpen, stats.open)
      callback()
    },
    onClose() {
      stats.open--
      if (stats.open === target) sessionWaiter?.()
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = []
      stream.on('data', (chunk: Buffer) => chunks.push(chunk))
      stream.on('end', () => {
        received.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          mailArgs: session.envelope.mailFrom ? session.envelope.mailFrom.args : false,
          data: Buffer.concat(chunks),
        })
        callback(null, 'Ok: queued as FAKE1')
      })
    },
    ...options,
  })
  server.server.on('connection', (socket: net.Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.server.address() as net.AddressInfo
  const hop: FakeHop = {
    port,
    received,
    stats,
    dropAll: () => {
      for (const socket of sockets) socket.destroy()
    },
    waitForSessions: (count) =>
      new Promise((resolve) => {
        if (stats.open === count) return resolve()
        target = count
        sessionWaiter = resolve
      }),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
  cleanup.push(hop.close)
  return hop
}

function transport(port: number, options: Partial<TransportOptions> = {}): SmtpTransport {
  const t = new SmtpTransport({
    hop: { host: '127.0.0.1', port },
    hostname: 'filter.test',
    maxConnections: 1,
    ...options,
  })
  cleanup.push(() => t.close())
  return t
}

const MESSAGE = Buffer.from(
  'From: alice@example.net\r\nTo: bob@example.org\r\nSubject: hello\r\n\r\nHi Bob.\r\n',
)

function request(over: Partial<SendRequest> = {}): SendRequest {
  return {
    mailFrom: 'alice@example.net',
    rcptTo: ['bob@example.org', 'carol@example.org'],
    message: MESSAGE,
    size: MESSAGE.length,
    ...over,
  }
}

function smtpError(responseCode: number, message: string): Error {
  return Object.assign(new Error(message), { responseCode })
}

/** A raw next hop that answers each command line with `answer(line)` (CRLF-joined lines). */
async function scriptedHop(answer: (line: string) => string): Promise<number> {
  const server = net.createServer((socket) => {
    socket.write('220 scripted ESMTP\r\n')
    let buffered = ''
    socket.on('data', (chunk) => {
      buffered += chunk.toString()
      for (let at = buffered.indexOf('\r\n'); at !== -1; at = buffered.indexOf('\r\n')) {
        const line = buffered.slice(0, at)
        buffered = buffered.slice(at + 2)
        socket.write(`${answer(line)}\r\n`)
      }
    })
  })
  const { port, close } = await listenOnLoopback(server)
  cleanup.push(close)
  return port
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer()
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

describe('SmtpTransport.send', () => {
  it('delivers to every recipient and keeps the remote reply', async () => {
    const hop = await startHop()
    const result = await transport(hop.port).send(request())
    expect(result.hop).toBe(`127.0.0.1:${hop.port}`)
    expect(result.recipients).toEqual([
      { recipient: 'bob@example.org', status: 'delivered', code: 250, reply: '250 Ok: queued as FAKE1' },
      { recipient: 'carol@example.org', status: 'delivered', code: 250, reply: '250 Ok: queued as FAKE1' },
    ])
    expect(result.durationMs).toBeGreaterThanOrEqual(0)
    expect(hop.received).toHaveLength(1)
    expect(hop.received[0]?.to).toEqual(['bob@example.org', 'carol@example.org'])
    expect(hop.received[0]?.data.equals(MESSAGE)).toBe(true)
  })

  it('fails the one recipient refused with 550 and delivers the other', async () => {
    const hop = await startHop({
      onRcptTo(address, _session, callback) {
        if (address.address === 'bob@example.org')
          callback(smtpError(550, '5.1.1 <bob@example.org>: no such user'))
        else callback()
      },
    })
    const { recipients } = await transport(hop.port).send(request())
    expect(recipients).toEqual([
      {
        recipient: 'bob@example.org',
        status: 'failed',
        code: 550,
        reply: '550 5.1.1 <bob@example.org>: no such user',
      },
      { recipient: 'carol@example.org', status: 'delivered', code: 250, reply: '250 Ok: queued as FAKE1' },
    ])
    expect(hop.received[0]?.to).toEqual(['carol@example.org'])
  })

  it('defers every recipient when the end of data gets 451', async () => {
    const hop = await startHop({
      onData(stream, _session, callback) {
        stream.resume()
        stream.on('end', () => callback(smtpError(451, '4.3.0 try again later')))
      },
    })
    const { recipients } = await transport(hop.port).send(request())
    expect(recipients.map((r) => [r.status, r.code, r.reply])).toEqual([
      ['deferred', 451, '451 4.3.0 try again later'],
      ['deferred', 451, '451 4.3.0 try again later'],
    ])
  })

  it('keeps a RCPT refusal when the transaction later fails at DATA', async () => {
    const hop = await startHop({
      onRcptTo(address, _session, callback) {
        if (address.address === 'bob@example.org') callback(smtpError(550, '5.1.1 no such user'))
        else callback()
      },
      onData(stream, _session, callback) {
        stream.resume()
        stream.on('end', () => callback(smtpError(451, '4.3.0 try again later')))
      },
    })
    const { recipients } = await transport(hop.port).send(request())
    expect(recipients.map((r) => [r.recipient, r.status, r.reply])).toEqual([
      ['bob@example.org', 'failed', '550 5.1.1 no such user'],
      ['carol@example.org', 'deferred', '451 4.3.0 try again later'],
    ])
  })

  it('fails every recipient when MAIL FROM gets a 5xx', async () => {
    const hop = await startHop({
      onMailFrom(_address, _session, callback) {
        callback(smtpError(553, '5.7.1 sender rejected'))
      },
    })
    const { recipients } = await transport(hop.port).send(request())
    expect(recipients.map((r) => [r.status, r.reply])).toEqual([
      ['failed', '553 5.7.1 sender rejected'],
      ['failed', '553 5.7.1 sender rejected'],
    ])
  })

  it('defers with code 0 when the connection is refused', async () => {
    const port = await freePort()
    const { recipients } = await transport(port).send(request())
    expect(recipients).toEqual([
      {
        recipient: 'bob@example.org',
        status: 'deferred',
        code: 0,
        reply: `connect to 127.0.0.1:${port}: ECONNREFUSED`,
      },
      {
        recipient: 'carol@example.org',
        status: 'deferred',
        code: 0,
        reply: `connect to 127.0.0.1:${port}: ECONNREFUSED`,
      },
    ])
  })

  it('defers with code 0 when the server never greets', async () => {
    const held: net.Socket[] = []
    const silent = net.createServer((socket) => held.push(socket))
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    cleanup.push(
      () =>
        new Promise((resolve) => {
          for (const socket of held) socket.destroy()
          silent.close(() => resolve())
        }),
    )
    const { port } = silent.address() as net.AddressInfo
    const { recipients } = await transport(port, { connectTimeoutMs: 300 }).send(
      request({ rcptTo: ['bob@x.test'] }),
    )
    expect(recipients).toEqual([
      {
        recipient: 'bob@x.test',
        status: 'deferred',
        code: 0,
        reply: `conversation with 127.0.0.1:${port} timed out while receiving the initial server greeting`,
      },
    ])
  })

  it('declares SIZE, BODY=8BITMIME and SMTPUTF8 when asked and offered, and says EHLO with our name', async () => {
    let helo = ''
    const hop = await startHop({
      size: 10_000_000,
      onMailFrom(_address, session, callback) {
        helo = session.hostNameAppearsAs
        callback()
      },
    })
    await transport(hop.port).send(request({ smtpUtf8: true, eightBit: true, rcptTo: ['bob@example.org'] }))
    expect(helo).toBe('filter.test')
    expect(hop.received[0]?.mailArgs).toMatchObject({
      SIZE: String(MESSAGE.length),
      BODY: '8BITMIME',
      SMTPUTF8: true,
    })
  })

  it('dot-stuffs, turns bare LF into CRLF and terminates an unterminated last line, across chunk boundaries', async () => {
    const hop = await startHop()
    const chunks = ['Subject: dots\n', '\n.starts with a dot\r', '\n', '.', '.two dots\n', 'no final newline']
    await transport(hop.port).send(
      request({
        message: () => Readable.from(chunks.map((c) => Buffer.from(c))),
        size: chunks.join('').length,
      }),
    )
    expect(hop.received[0]?.data.toString()).toBe(
      'Subject: dots\r\n\r\n.starts with a dot\r\n..two dots\r\nno final newline\r\n',
    )
  })

  it('streams a large message from its factory intact', async () => {
    const hop = await startHop()
    const line = Buffer.from(`${'x'.repeat(74)}\r\n`)
    const chunk = Buffer.concat(Array.from({ length: 1000 }, () => line))
    const body = Array.from({ length: 100 }, () => chunk)
    const head = Buffer.from('Subject: big\r\n\r\n')
    const size = head.length + body.length * chunk.length
    const { recipients } = await transport(hop.port).send(
      request({ message: () => Readable.from([head, ...body]), size, rcptTo: ['bob@example.org'] }),
    )
    expect(recipients[0]?.status).toBe('delivered')
    expect(hop.received[0]?.data.length).toBe(size)
    expect(hop.received[0]?.data.equals(Buffer.concat([head, ...body]))).toBe(true)
  })

  it('defers and delivers nothing when the message stream fails midway', async () => {
    const hop = await startHop()
    const failing = () =>
      new Readable({
        read() {
          this.push(Buffer.from('Subject: partial\r\n\r\nfirst half\r\n'))
          this.destroy(new Error('EIO: disk trouble'))
        },
      })
    const t = transport(hop.port)
    const { recipients } = await t.send(request({ message: failing, rcptTo: ['bob@example.org'] }))
    expect(recipients[0]).toMatchObject({ status: 'deferred', code: 0 })
    expect(recipients[0]?.reply).toContain('EIO: disk trouble')
    // The half-sent session is dropped at once, never ended with QUIT (which would sit in DATA).
    const dropped = await Promise.race([
      hop.waitForSessions(0).then(() => 'dropped'),
      new Promise((resolve) => setTimeout(resolve, 2_000, 'still open')),
    ])
    expect(dropped).toBe('dropped')
    const after = await t.send(request({ rcptTo: ['bob@example.org'] }))
    expect(after.recipients[0]?.status).toBe('delivered')
    expect(hop.received.map((r) => r.data.toString())).toEqual([MESSAGE.toString()])
  })

  it('keeps a multi-line reply whole and never counts a 250 to DATA as delivery', async () => {
    const port = await scriptedHop((line) => {
      if (line.startsWith('EHLO')) return '250-scripted\r\n250 SIZE 100000'
      if (line.startsWith('RCPT TO:<bob@'))
        return '550-5.1.1 The account does not exist.\r\n550 5.1.1 Try again.'
      if (line === 'DATA') return '250 2.0.0 sure, whatever'
      if (line === 'QUIT') return '221 2.0.0 Bye'
      return '250 2.0.0 Ok'
    })
    const { recipients } = await transport(port).send(request())
    expect(recipients[0]).toEqual({
      recipient: 'bob@example.org',
      status: 'failed',
      code: 550,
      reply: '550-5.1.1 The account does not exist.\n550 5.1.1 Try again.',
    })
    expect(recipients[1]).toMatchObject({ status: 'deferred', code: 0 })
    expect(recipients[1]?.reply).toBe(
      `unexpected reply to DATA from 127.0.0.1:${port}: 250 2.0.0 sure, whatever`,
    )
  })

  it('fails an unsafe address locally without sending it', async () => {
    const hop = await startHop()
    const { recipients } = await transport(hop.port).send(
      request({ rcptTo: ['bob@example.org>\r\nRCPT TO:<evil@example.org', 'carol@example.org'] }),
    )
    expect(recipients.map((r) => [r.status, r.code])).toEqual([
      ['failed', 0],
      ['delivered', 250],
    ])
    expect(hop.received[0]?.to).toEqual(['carol@example.org'])
  })
})

describe('SmtpTransport connection pool', () => {
  it('reuses one connection for sequential sends', async () => {
    const hop = await startHop()
    const t = transport(hop.port, { maxConnections: 1 })
    for (let i = 0; i < 10; i++) {
      const { recipients } = await t.send(request())
      expect(recipients.every((r) => r.status === 'delivered')).toBe(true)
    }
    expect(hop.received).toHaveLength(10)
    expect(hop.stats.connects).toBe(1)
  })

  it('never holds more than maxConnections sessions for parallel sends', async () => {
    const hop = await startHop()
    const t = transport(hop.port, { maxConnections: 2 })
    const results = await Promise.all(Array.from({ length: 10 }, () => t.send(request())))
    expect(results.flatMap((r) => r.recipients).every((r) => r.status === 'delivered')).toBe(true)
    expect(hop.received).toHaveLength(10)
    expect(hop.stats.maxOpen).toBe(2)
    expect(hop.stats.connects).toBe(2)
  })

  it('serves waiting callers in FIFO order', async () => {
    const hop = await startHop()
    const t = transport(hop.port, { maxConnections: 1 })
    const order: number[] = []
    await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        t.send(request({ rcptTo: [`r${i}@example.org`] })).then(() => order.push(i)),
      ),
    )
    expect(order).toEqual([0, 1, 2, 3, 4])
    expect(hop.received.map((r) => r.to[0])).toEqual([0, 1, 2, 3, 4].map((i) => `r${i}@example.org`))
  })

  /** A hop that takes 600 ms to answer each DATA, and the recipients of each message it got. */
  async function slowHop(): Promise<{ hop: FakeHop; to: string[][] }> {
    const to: string[][] = []
    const hop = await startHop({
      onData(stream, session, callback) {
        stream.resume()
        to.push(session.envelope.rcptTo.map((r) => r.address))
        stream.on('end', () => setTimeout(() => callback(null, 'Ok'), 600))
      },
    })
    return { hop, to }
  }

  it('defers a send that waited leaseWaitMs for a session with a 4.4.5 of ours, and keeps the queue working', async () => {
    // One session, so the second send must wait.
    const { hop, to } = await slowHop()
    const t = transport(hop.port, { maxConnections: 1, leaseWaitMs: 150, othersWaiting: () => true })
    const started = performance.now()
    const [first, second] = await Promise.all([
      t.send(request({ rcptTo: ['first@example.org'] })),
      t.send(request({ rcptTo: ['second@example.org'] })),
    ])
    expect(first.recipients[0]?.status).toBe('delivered')
    expect(second.recipients[0]).toMatchObject({ status: 'deferred', code: 0 })
    expect(second.recipients[0]?.reply).toMatch(
      /^4\.4\.5 127\.0\.0\.1:\d+ busy: waited 1\d\d ms for one of its 1 sessions$/,
    )
    expect(second.unreachable).toBeUndefined()
    expect(second.busy).toBe(true)
    // It gave up long before the session came free, and nothing of it reached the hop.
    expect(second.durationMs).toBeLessThan(550)
    expect(to).toEqual([['first@example.org']])
    expect(hop.stats.connects).toBe(1)
    // The waiter that gave up is gone: the next sends get the session in turn.
    const later = await t.send(request({ rcptTo: ['third@example.org'] }))
    expect(later.recipients[0]?.status).toBe('delivered')
    expect(to).toEqual([['first@example.org'], ['third@example.org']])
    expect(performance.now() - started).toBeGreaterThan(1_100)
  })

  it('waits past leaseWaitMs while no other mail waits for its place', async () => {
    const { hop, to } = await slowHop()
    const t = transport(hop.port, { maxConnections: 1, leaseWaitMs: 150, othersWaiting: () => false })
    const [first, second] = await Promise.all([
      t.send(request({ rcptTo: ['first@example.org'] })),
      t.send(request({ rcptTo: ['second@example.org'] })),
    ])
    expect(first.recipients[0]?.status).toBe('delivered')
    expect(second.recipients[0]?.status).toBe('delivered')
    expect(second.busy).toBeUndefined()
    expect(second.durationMs).toBeGreaterThan(1_000)
    expect(to).toEqual([['first@example.org'], ['second@example.org']])
    expect(hop.stats.connects).toBe(1)
  })

  it('retires a connection after maxMessagesPerConnection', async () => {
    const hop = await startHop()
    const t = transport(hop.port, { maxMessagesPerConnection: 2 })
    for (let i = 0; i < 5; i++) await t.send(request())
    expect(hop.stats.connects).toBe(3)
  })

  it('closes a connection idle for idleTimeoutMs', async () => {
    const hop = await startHop()
    const t = transport(hop.port, { idleTimeoutMs: 100 })
    await t.send(request())
    expect(hop.stats.open).toBe(1)
    await hop.waitForSessions(0)
    await t.send(request())
    expect(hop.stats.connects).toBe(2)
  })

  it('opens a new connection when the server dropped the idle one', async () => {
    const hop = await startHop()
    const t = transport(hop.port)
    await t.send(request())
    hop.dropAll()
    await hop.waitForSessions(0)
    const { recipients } = await t.send(request())
    expect(recipients.every((r) => r.status === 'delivered')).toBe(true)
    expect(hop.stats.connects).toBe(2)
  })

  it('does not reuse a connection that broke', async () => {
    let calls = 0
    const hop = await startHop({
      onData(stream, _session, callback) {
        stream.resume()
        stream.on('end', () => callback(calls++ === 0 ? smtpError(421, '4.3.2 shutting down') : null, 'Ok'))
      },
    })
    const t = transport(hop.port)
    const first = await t.send(request({ rcptTo: ['bob@example.org'] }))
    expect(first.recipients[0]).toMatchObject({ status: 'deferred', code: 421 })
    const second = await t.send(request({ rcptTo: ['bob@example.org'] }))
    expect(second.recipients[0]?.status).toBe('delivered')
    expect(hop.stats.connects).toBe(2)
  })

  it('ends every connection on close() and defers sends made afterwards', async () => {
    const hop = await startHop()
    const t = transport(hop.port, { maxConnections: 2 })
    await Promise.all([t.send(request()), t.send(request())])
    expect(hop.stats.open).toBe(2)
    await t.close()
    await hop.waitForSessions(0)
    const late = await t.send(request({ rcptTo: ['bob@example.org'] }))
    expect(late.recipients[0]).toMatchObject({ status: 'deferred', code: 0, reply: 'transport closed' })
  })
})

describe('SmtpTransport over LMTP', () => {
  it('settles each recipient by its own post-DATA reply', async () => {
    const hop = await startHop({
      lmtp: true,
      onData(stream, _session, callback) {
        stream.resume()
        stream.on('end', () =>
          callback(null, [
            '2.1.5 <alice@example.org> delivered to INBOX',
            smtpError(552, '5.2.2 <bob@example.org> mailbox full'),
            smtpError(452, '4.2.2 <carol@example.org> over quota, try later'),
            '2.1.5 <dave@example.org> delivered to Archive',
          ]),
        )
      },
    })
    const t = transport(hop.port, { hop: { host: '127.0.0.1', port: hop.port, lmtp: true } })
    const { recipients } = await t.send(
      request({ rcptTo: ['alice@example.org', 'bob@example.org', 'carol@example.org', 'dave@example.org'] }),
    )
    expect(recipients.map((r) => [r.recipient, r.status, r.reply])).toEqual([
      ['alice@example.org', 'delivered', '250 2.1.5 <alice@example.org> delivered to INBOX'],
      ['bob@example.org', 'failed', '552 5.2.2 <bob@example.org> mailbox full'],
      ['carol@example.org', 'deferred', '452 4.2.2 <carol@example.org> over quota, try later'],
      ['dave@example.org', 'delivered', '250 2.1.5 <dave@example.org> delivered to Archive'],
    ])
  })
})
