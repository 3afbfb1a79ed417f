/**
 * STARTTLS on delivery (RFC 3207) at the levels `may` and `encrypt`, against a next hop that
 * speaks real TLS (Node's, with a certificate made by openssl) and answers STARTTLS as told.
 */
import net from 'node:net'
import type { Duplex } from 'node:stream'
import tls from 'node:tls'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { SmtpClient, type TlsLevel } from '../../src/delivery/smtp-client.js'
import { SmtpTransport } from '../../src/delivery/transport.js'
import { listenOnLoopback } from '../support/loopback-server.js'
import { selfSignedCertificate, type TestCertificate } from '../support/tls.js'

interface Connection {
  /** Every command line, in order; those after the handshake too. */
  readonly commands: string[]
  /** Whether the handshake completed. */
  secure: boolean
}

interface TlsHop {
  readonly port: number
  readonly connections: Connection[]
  /** The message data of every DATA, and whether it came over TLS. */
  readonly messages: { readonly data: string; readonly secure: boolean }[]
}

interface TlsHopOptions {
  /** Offer STARTTLS in the EHLO reply (default true). */
  readonly offer?: boolean
  /** The reply to STARTTLS, sent in one write (default `220 2.0.0 Ready to start TLS`). */
  readonly ready?: string
  /** After a 220, send this instead of taking the handshake, and hang up. */
  readonly spoilHandshake?: string
}

let certificate: TestCertificate
beforeAll(async () => {
  certificate = await selfSignedCertificate()
})
afterAll(() => certificate.remove())

const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const undo of cleanup.splice(0).reverse()) await undo()
})

/** A next hop that answers one command per line; STARTTLS turns the connection into TLS. */
async function tlsHop(options: TlsHopOptions = {}): Promise<TlsHop> {
  const connections: Connection[] = []
  const messages: { data: string; secure: boolean }[] = []
  const context = tls.createSecureContext({ key: certificate.key, cert: certificate.cert })
  const serve = (stream: Duplex, conn: Connection): void => {
    let buffered = ''
    let inData = false
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString('latin1')
      for (;;) {
        if (inData) {
          const end = `\r\n${buffered}`.indexOf('\r\n.\r\n')
          if (end === -1) return
          messages.push({ data: buffered.slice(0, end), secure: conn.secure })
          buffered = buffered.slice(end + 3)
          inData = false
          stream.write('250 2.0.0 Ok: queued\r\n')
          continue
        }
        const eol = buffered.indexOf('\r\n')
        if (eol === -1) return
        const line = buffered.slice(0, eol)
        buffered = buffered.slice(eol + 2)
        conn.commands.push(line)
        const verb = line.split(/[ :]/)[0] ?? ''
        if (verb === 'STARTTLS' && !conn.secure && options.offer !== false) {
          const ready = options.ready ?? '220 2.0.0 Ready to start TLS'
          stream.write(`${ready}\r\n`)
          if (!ready.startsWith('220')) continue
          stream.off('data', onData)
          if (options.spoilHandshake !== undefined) {
            stream.end(options.spoilHandshake)
            return
          }
          const secure = new tls.TLSSocket(stream as net.Socket, { isServer: true, secureContext: context })
          secure.on('secure', () => {
            conn.secure = true
          })
          secure.on('error', () => secure.destroy())
          serve(secure, conn)
          return
        }
        const offer = options.offer !== false && !conn.secure ? '250-STARTTLS\r\n' : ''
        const replies: Record<string, string> = {
          EHLO: `250-tls.test\r\n${offer}250 8BITMIME`,
          MAIL: '250 2.1.0 Ok',
          RCPT: '250 2.1.5 Ok',
          DATA: '354 Go ahead',
          QUIT: '221 2.0.0 Bye',
        }
        if (verb === 'DATA') inData = true
        stream.write(`${replies[verb] ?? '500 5.5.2 unknown command'}\r\n`)
      }
    }
    stream.on('data', onData)
  }
  const server = net.createServer((socket) => {
    socket.on('error', () => socket.destroy())
    const conn: Connection = { commands: [], secure: false }
    connections.push(conn)
    socket.write('220 tls.test ESMTP\r\n')
    serve(socket, conn)
  })
  const { port, close } = await listenOnLoopback(server)
  cleanup.push(close)
  return { port, connections, messages }
}

const MESSAGE = Buffer.from('Subject: secret\r\n\r\nover TLS, or not\r\n')

function connect(port: number, level: TlsLevel) {
  return SmtpClient.connect({
    host: '127.0.0.1',
    port,
    lmtp: false,
    name: 'filter.test',
    connectTimeoutMs: 5_000,
    socketTimeoutMs: 5_000,
    tls: level,
  })
}

/** Connect at `level` and send {@link MESSAGE} to one recipient; the session's TLS and the reply. */
async function deliver(port: number, level: TlsLevel) {
  const opened = await connect(port, level)
  if (!opened.ok) throw new Error(`no session: ${opened.reply.text}`)
  const { client } = opened
  cleanup.push(() => client.quit())
  const report = await client.transaction({
    mailFrom: 'alice@example.net',
    rcptTo: ['bob@example.org'],
    message: MESSAGE,
    size: MESSAGE.length,
  })
  return { tls: client.tls, reply: report.replies[0] }
}

describe('STARTTLS at level may', () => {
  it('starts TLS when offered, says EHLO again over it, and sends the message encrypted', async () => {
    const hop = await tlsHop()
    const sent = await deliver(hop.port, 'may')
    expect(sent.reply?.code).toBe(250)
    expect(sent.tls).toMatch(/^TLSv1\.[23] TLS_/)
    expect(hop.connections).toHaveLength(1)
    expect(hop.connections[0]?.commands.map((c) => c.split(' ')[0])).toEqual([
      'EHLO',
      'STARTTLS',
      'EHLO',
      'MAIL',
      'RCPT',
      'DATA',
    ])
    expect(hop.messages).toEqual([{ data: MESSAGE.toString('latin1'), secure: true }])
  })

  it('sends in clear text to a server that does not offer it', async () => {
    const hop = await tlsHop({ offer: false })
    const sent = await deliver(hop.port, 'may')
    expect(sent.reply?.code).toBe(250)
    expect(sent.tls).toBeUndefined()
    expect(hop.connections[0]?.commands).not.toContain('STARTTLS')
    expect(hop.messages).toEqual([{ data: MESSAGE.toString('latin1'), secure: false }])
  })

  it('goes on in clear text over the same session when the server refuses STARTTLS', async () => {
    const hop = await tlsHop({ ready: '454 4.7.0 TLS not available due to local problem' })
    const sent = await deliver(hop.port, 'may')
    expect(sent.reply?.code).toBe(250)
    expect(sent.tls).toBeUndefined()
    expect(hop.connections).toHaveLength(1)
    expect(hop.messages).toEqual([{ data: MESSAGE.toString('latin1'), secure: false }])
  })

  it('takes a 421 to STARTTLS for the server closing the session, not for "go on in clear text"', async () => {
    const hop = await tlsHop({ ready: '421 4.3.2 shutting down' })
    const opened = await connect(hop.port, 'may')
    expect(opened).toEqual({ ok: false, reply: { code: 421, text: '421 4.3.2 shutting down' } })
    expect(hop.connections[0]?.commands.some((c) => c.startsWith('MAIL'))).toBe(false)
  })

  it('sends in clear text over a new session when the handshake fails, and says so', async () => {
    const hop = await tlsHop({ spoilHandshake: 'this is not TLS\r\n' })
    const sent = await deliver(hop.port, 'may')
    expect(sent.reply?.code).toBe(250)
    expect(sent.tls).toMatch(
      /^none \(TLS handshake failed: .*127\.0\.0\.1:\d+ while performing the TLS handshake/,
    )
    expect(hop.connections).toHaveLength(2)
    expect(hop.connections[1]?.commands).not.toContain('STARTTLS')
    expect(hop.messages).toEqual([{ data: MESSAGE.toString('latin1'), secure: false }])
  })

  it('discards a reply slipped in behind the 220 (RFC 3207 section 6)', async () => {
    // Taken as the answer to the EHLO over TLS, it would refuse the session.
    const hop = await tlsHop({ ready: '220 2.0.0 Ready to start TLS\r\n554 5.7.0 injected' })
    const sent = await deliver(hop.port, 'may')
    expect(sent.reply?.code).toBe(250)
    expect(sent.tls).toMatch(/^TLSv1\.[23] /)
    expect(hop.messages).toEqual([{ data: MESSAGE.toString('latin1'), secure: true }])
  })
})

describe('STARTTLS at level encrypt', () => {
  it('sends the message encrypted when the server offers TLS', async () => {
    const hop = await tlsHop()
    const sent = await deliver(hop.port, 'encrypt')
    expect(sent.tls).toMatch(/^TLSv1\.[23] /)
    expect(hop.messages).toEqual([{ data: MESSAGE.toString('latin1'), secure: true }])
  })

  it('sends nothing to a server that does not offer it', async () => {
    const hop = await tlsHop({ offer: false })
    const opened = await connect(hop.port, 'encrypt')
    expect(opened).toEqual({
      ok: false,
      reply: { code: 0, text: `TLS is required, but was not offered by 127.0.0.1:${hop.port}` },
    })
    expect(hop.connections[0]?.commands.some((c) => c.startsWith('MAIL'))).toBe(false)
  })

  it('sends nothing when the server refuses STARTTLS, keeping its reply', async () => {
    const hop = await tlsHop({ ready: '454 4.7.0 TLS not available due to local problem' })
    const opened = await connect(hop.port, 'encrypt')
    expect(opened).toEqual({
      ok: false,
      reply: { code: 454, text: '454 4.7.0 TLS not available due to local problem' },
    })
  })

  it('sends nothing, and tries no clear text, when the handshake fails', async () => {
    const hop = await tlsHop({ spoilHandshake: 'this is not TLS\r\n' })
    const opened = await connect(hop.port, 'encrypt')
    expect(opened.ok).toBe(false)
    if (!opened.ok) expect(opened.reply.text).toMatch(/while performing the TLS handshake/)
    expect(hop.connections).toHaveLength(1)
    expect(hop.messages).toEqual([])
  })
})

describe('SmtpTransport with STARTTLS', () => {
  it('reports the session TLS in its result, and reuses the encrypted session', async () => {
    const hop = await tlsHop()
    const transport = new SmtpTransport({
      hop: { host: '127.0.0.1', port: hop.port, tls: 'may' },
      hostname: 'filter.test',
      maxConnections: 1,
    })
    cleanup.push(() => transport.close())
    const request = { mailFrom: 'alice@example.net', rcptTo: ['bob@example.org'], message: MESSAGE, size: 1 }
    const first = await transport.send(request)
    const second = await transport.send(request)
    expect(first.recipients[0]?.status).toBe('delivered')
    expect(first.tls).toMatch(/^TLSv1\.[23] /)
    expect(second.tls).toBe(first.tls)
    expect(hop.connections).toHaveLength(1)
    expect(hop.messages.map((m) => m.secure)).toEqual([true, true])
  })

  it('defers every recipient when encrypt finds no TLS, as a session that could not be set up', async () => {
    const hop = await tlsHop({ offer: false })
    const transport = new SmtpTransport({
      hop: { host: '127.0.0.1', port: hop.port, tls: 'encrypt' },
      hostname: 'filter.test',
      maxConnections: 1,
    })
    cleanup.push(() => transport.close())
    const result = await transport.send({
      mailFrom: 'alice@example.net',
      rcptTo: ['bob@example.org'],
      message: MESSAGE,
      size: MESSAGE.length,
    })
    expect(result.unreachable).toBe(true)
    expect(result.recipients).toEqual([
      {
        recipient: 'bob@example.org',
        status: 'deferred',
        code: 0,
        reply: `TLS is required, but was not offered by 127.0.0.1:${hop.port}`,
      },
    ])
    expect(hop.messages).toEqual([])
  })
})
