import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { SmtpClient } from '../../src/delivery/smtp-client.js'
import { type SendRequest, SmtpTransport } from '../../src/delivery/transport.js'
import { reply } from '../../src/ingress/smtp-reply.js'
import { createSmtpServer } from '../../src/ingress/smtp-server.js'
import { listenOnLoopback } from '../support/loopback-server.js'

/** A raw next hop that keeps every packet (data event) it receives, per connection. */
interface RawHop {
  readonly port: number
  /** Per connection, in order, each data event as text. */
  readonly packets: string[][]
  /** The message data of every DATA, as sent (still dot-stuffed), `''` for an empty one; or of every BDAT. */
  readonly messages: string[]
}

interface RawHopOptions {
  readonly pipelining?: boolean
  /** Offer CHUNKING, and take `BDAT <n> LAST` (the only BDAT the client sends). */
  readonly chunking?: boolean
  /** Offer DSN (RFC 3461). */
  readonly dsn?: boolean
  /** The reply to one command line (or to `.` at the end of data); `undefined` for the default. */
  readonly answer?: (line: string, connection: number) => string | undefined
  /** Whether to drop the connection on this packet instead of answering it. */
  readonly drop?: (packet: string, connection: number) => boolean
  /** How long to hold the reply to one command line (or to `.`) before sending it. */
  readonly holdMs?: (line: string) => number
}

const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const undo of cleanup.splice(0).reverse()) await undo()
})

const DEFAULTS: Record<string, string> = {
  MAIL: '250 2.1.0 Ok',
  RCPT: '250 2.1.5 Ok',
  RSET: '250 2.0.0 Ok',
  QUIT: '221 2.0.0 Bye',
  '.': '250 2.0.0 Ok: queued',
}

/** Answers like a plain SMTP server; a batch of pipelined commands gets one write of replies. */
async function rawHop(options: RawHopOptions = {}): Promise<RawHop> {
  const packets: string[][] = []
  const messages: string[] = []
  const server = net.createServer((socket) => {
    const connection = packets.length
    const received: string[] = []
    packets.push(received)
    socket.write('220 raw ESMTP\r\n')
    let buffered = ''
    let inData = false
    let chunkSize: number | undefined
    let accepted = 0
    socket.on('data', (chunk: Buffer) => {
      const packet = chunk.toString()
      received.push(packet)
      if (options.drop?.(packet, connection)) {
        socket.destroy()
        return
      }
      buffered += packet
      let out = ''
      for (;;) {
        let line: string
        if (chunkSize !== undefined) {
          if (buffered.length < chunkSize) break
          messages.push(buffered.slice(0, chunkSize))
          buffered = buffered.slice(chunkSize)
          chunkSize = undefined
          line = '.'
        } else if (inData) {
          const end = `\r\n${buffered}`.indexOf('\r\n.\r\n')
          if (end === -1) break
          messages.push(buffered.slice(0, end))
          buffered = buffered.slice(end + 3)
          inData = false
          line = '.'
        } else {
          const eol = buffered.indexOf('\r\n')
          if (eol === -1) break
          line = buffered.slice(0, eol)
          buffered = buffered.slice(eol + 2)
        }
        const verb = line.split(/[ :]/)[0] ?? ''
        if (verb === 'BDAT') {
          chunkSize = Number(line.split(' ')[1])
          continue
        }
        let reply = options.answer?.(line, connection)
        if (verb === 'EHLO')
          reply ??= `250-raw\r\n${options.pipelining === false ? '' : '250-PIPELINING\r\n'}${options.chunking ? '250-CHUNKING\r\n' : ''}${options.dsn ? '250-DSN\r\n' : ''}250 8BITMIME`
        if (verb === 'DATA') reply ??= accepted > 0 ? '354 Go ahead' : '554 5.5.1 Error: no valid recipients'
        // The end of a BDAT chunk, like the end of data, when nobody was accepted.
        if (verb === '.' && accepted === 0) reply ??= '554 5.5.1 Error: no valid recipients'
        reply ??= DEFAULTS[verb] ?? '500 5.5.2 unknown command'
        if (verb === 'MAIL') accepted = 0
        if (verb === 'RCPT' && reply.startsWith('2')) accepted++
        if (verb === 'DATA') inData = reply.startsWith('354')
        const hold = options.holdMs?.(line) ?? 0
        if (hold > 0) {
          const held = `${out}${reply}\r\n`
          out = ''
          setTimeout(() => socket.write(held), hold)
          continue
        }
        out += `${reply}\r\n`
      }
      if (out !== '') socket.write(out)
    })
  })
  const { port, close } = await listenOnLoopback(server)
  cleanup.push(close)
  return { port, packets, messages }
}

function transport(port: number): SmtpTransport {
  const t = new SmtpTransport({
    hop: { host: '127.0.0.1', port },
    hostname: 'filter.test',
    maxConnections: 1,
  })
  cleanup.push(() => t.close())
  return t
}

const MESSAGE = Buffer.from('Subject: hello\r\n\r\n.dot\r\nHi.\r\n')
const STUFFED = 'Subject: hello\r\n\r\n..dot\r\nHi.\r\n'

function request(rcptTo: string[]): SendRequest {
  return { mailFrom: 'alice@example.net', rcptTo, message: MESSAGE, size: MESSAGE.length }
}

const ENVELOPE =
  'MAIL FROM:<alice@example.net>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<carol@example.org>\r\n'

describe('SmtpClient after a refused RSET', () => {
  it('never takes the 2xx queued behind it for the message being taken', async () => {
    let refuse = true
    const hop = await rawHop({
      answer: (line) => {
        if (refuse && line.startsWith('RCPT')) return '550 5.1.1 unknown'
        if (line === 'RSET') return '554 5.5.1 no RSET today'
        return undefined
      },
    })
    const connected = await SmtpClient.connect({
      host: '127.0.0.1',
      port: hop.port,
      lmtp: false,
      name: 'filter.test',
      connectTimeoutMs: 2_000,
      socketTimeoutMs: 2_000,
    })
    if (!connected.ok) throw new Error(connected.reply.text)
    const { client } = connected
    cleanup.push(async () => client.quit())
    const tx = {
      mailFrom: 'alice@example.net',
      rcptTo: ['bob@example.org'],
      message: MESSAGE,
      size: MESSAGE.length,
    }
    // Every recipient refused: the server may hold the transaction, so the next group starts with RSET.
    expect((await client.transaction(tx)).replies[0]?.code).toBe(550)
    refuse = false
    const report = await client.transaction(tx)
    // The RSET's refusal ends the attempt; MAIL's 250, pipelined behind it, says nothing of the message.
    expect(report.abort?.code).not.toBe(250)
    expect(report.reusable).toBe(false)
    expect(hop.messages).toEqual([])
  })
})

describe('SmtpClient with PIPELINING', () => {
  it('sends MAIL, every RCPT and DATA in one packet, then the message in one more', async () => {
    const hop = await rawHop()
    const t = transport(hop.port)
    for (let i = 0; i < 2; i++) {
      const { recipients } = await t.send(request(['bob@example.org', 'carol@example.org']))
      expect(recipients.map((r) => r.reply)).toEqual(['250 2.0.0 Ok: queued', '250 2.0.0 Ok: queued'])
    }
    // The second message reuses the session without RSET: the first one's end of data cleared it.
    expect(hop.packets).toEqual([
      [
        'EHLO filter.test\r\n',
        `${ENVELOPE}DATA\r\n`,
        `${STUFFED}.\r\n`,
        `${ENVELOPE}DATA\r\n`,
        `${STUFFED}.\r\n`,
      ],
    ])
    expect(hop.messages).toEqual([STUFFED, STUFFED])
  })

  it('keeps a refused recipient its own reply and delivers to the accepted one', async () => {
    const hop = await rawHop({
      answer: (line) =>
        line === 'RCPT TO:<bob@example.org>' ? '550 5.1.1 <bob@example.org>: no such user' : undefined,
    })
    const { recipients } = await transport(hop.port).send(request(['bob@example.org', 'carol@example.org']))
    expect(recipients.map((r) => [r.recipient, r.status, r.reply])).toEqual([
      ['bob@example.org', 'failed', '550 5.1.1 <bob@example.org>: no such user'],
      ['carol@example.org', 'delivered', '250 2.0.0 Ok: queued'],
    ])
    expect(hop.messages).toEqual([STUFFED])
  })

  it('sends no message when every recipient is refused, and RSETs in the next pipelined group', async () => {
    let refuse = true
    const hop = await rawHop({
      answer: (line) =>
        refuse && line.startsWith('RCPT') ? `550 5.1.1 ${line.slice(8)} unknown` : undefined,
    })
    const t = transport(hop.port)
    const { recipients } = await t.send(request(['bob@example.org', 'carol@example.org']))
    // DATA's 554 concerns nobody: each recipient keeps its own refusal.
    expect(recipients.map((r) => [r.status, r.reply])).toEqual([
      ['failed', '550 5.1.1 <bob@example.org> unknown'],
      ['failed', '550 5.1.1 <carol@example.org> unknown'],
    ])
    expect(hop.messages).toEqual([])
    refuse = false
    const next = await t.send(request(['bob@example.org']))
    expect(next.recipients[0]?.status).toBe('delivered')
    expect(hop.packets).toEqual([
      [
        'EHLO filter.test\r\n',
        `${ENVELOPE}DATA\r\n`,
        'RSET\r\nMAIL FROM:<alice@example.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n',
        `${STUFFED}.\r\n`,
      ],
    ])
  })

  it('ends a DATA accepted with no recipient accepted with a lone dot, delivering nothing', async () => {
    const hop = await rawHop({
      answer: (line) => {
        if (line.startsWith('RCPT')) return '450 4.2.0 try later'
        if (line === 'DATA') return '354 Go ahead'
        if (line === '.') return '554 5.5.1 Error: no valid recipients'
        return undefined
      },
    })
    const t = transport(hop.port)
    const { recipients } = await t.send(request(['bob@example.org', 'carol@example.org']))
    expect(recipients.map((r) => [r.status, r.reply])).toEqual([
      ['deferred', '450 4.2.0 try later'],
      ['deferred', '450 4.2.0 try later'],
    ])
    expect(hop.packets[0]?.slice(2)).toEqual(['.\r\n'])
    expect(hop.messages).toEqual([''])
    // The session stays in step and goes on.
    await t.send(request(['bob@example.org']))
    expect(hop.packets).toHaveLength(1)
  })

  it('settles every recipient by a refused MAIL, not by the replies that follow it', async () => {
    const hop = await rawHop({
      answer: (line) => {
        if (line.startsWith('MAIL')) return '451 4.3.0 sender check failed, try later'
        if (line.startsWith('RCPT') || line === 'DATA') return '503 5.5.1 Error: need MAIL command'
        return undefined
      },
    })
    const { recipients } = await transport(hop.port).send(request(['bob@example.org', 'carol@example.org']))
    expect(recipients.map((r) => [r.status, r.reply])).toEqual([
      ['deferred', '451 4.3.0 sender check failed, try later'],
      ['deferred', '451 4.3.0 sender check failed, try later'],
    ])
  })

  it('sends a message over a new connection when the pooled one turns out dead, without deferring it', async () => {
    const hop = await rawHop({
      // The first connection dies as the second message goes out on it, before any reply.
      drop: (packet, connection) =>
        connection === 0 && packet.startsWith('MAIL') && hop.messages.length === 1,
    })
    const t = transport(hop.port)
    await t.send(request(['bob@example.org']))
    const { recipients } = await t.send(request(['bob@example.org']))
    expect(recipients[0]).toMatchObject({ status: 'delivered', reply: '250 2.0.0 Ok: queued' })
    expect(hop.packets).toHaveLength(2)
    expect(hop.messages).toEqual([STUFFED, STUFFED])
  })

  it('sends a message over a new connection when the pooled one answers 421 at once', async () => {
    const hop = await rawHop({
      // The server ends the first session for idleness just as the second message comes.
      answer: (line, connection) =>
        connection === 0 && hop.messages.length === 1 && line.startsWith('MAIL')
          ? '421 4.4.2 raw Error: timeout exceeded'
          : undefined,
    })
    const t = transport(hop.port)
    await t.send(request(['bob@example.org']))
    const { recipients } = await t.send(request(['bob@example.org']))
    expect(recipients[0]).toMatchObject({ status: 'delivered', reply: '250 2.0.0 Ok: queued' })
    expect(hop.packets).toHaveLength(2)
    expect(hop.messages).toEqual([STUFFED, STUFFED])
  })
})

describe('SmtpClient with CHUNKING (RFC 3030)', () => {
  const RAW = MESSAGE.toString()
  const BDAT = `BDAT ${MESSAGE.length} LAST\r\n${RAW}`

  it('sends MAIL, every RCPT and BDAT LAST with the unstuffed message in one packet', async () => {
    const hop = await rawHop({ chunking: true })
    const t = transport(hop.port)
    for (let i = 0; i < 2; i++) {
      const { recipients } = await t.send(request(['bob@example.org', 'carol@example.org']))
      expect(recipients.map((r) => [r.status, r.reply])).toEqual([
        ['delivered', '250 2.0.0 Ok: queued'],
        ['delivered', '250 2.0.0 Ok: queued'],
      ])
    }
    expect(hop.packets).toEqual([['EHLO filter.test\r\n', `${ENVELOPE}${BDAT}`, `${ENVELOPE}${BDAT}`]])
    expect(hop.messages).toEqual([RAW, RAW])
  })

  it('keeps a refused recipient its own reply and delivers to the accepted one', async () => {
    const hop = await rawHop({
      chunking: true,
      answer: (line) => (line === 'RCPT TO:<bob@example.org>' ? '550 5.1.1 no such user' : undefined),
    })
    const { recipients } = await transport(hop.port).send(request(['bob@example.org', 'carol@example.org']))
    expect(recipients.map((r) => [r.status, r.reply])).toEqual([
      ['failed', '550 5.1.1 no such user'],
      ['delivered', '250 2.0.0 Ok: queued'],
    ])
  })

  it('reads the refusal of the BDAT when every recipient is refused, and RSETs in the next group', async () => {
    let refuse = true
    const hop = await rawHop({
      chunking: true,
      answer: (line) => (refuse && line.startsWith('RCPT') ? '450 4.2.0 try later' : undefined),
    })
    const t = transport(hop.port)
    const { recipients } = await t.send(request(['bob@example.org', 'carol@example.org']))
    expect(recipients.map((r) => [r.status, r.reply])).toEqual([
      ['deferred', '450 4.2.0 try later'],
      ['deferred', '450 4.2.0 try later'],
    ])
    refuse = false
    const next = await t.send(request(['bob@example.org']))
    expect(next.recipients[0]).toMatchObject({ status: 'delivered', reply: '250 2.0.0 Ok: queued' })
    // The same session; the next group starts with RSET, as the server may still hold the transaction.
    expect(hop.packets).toHaveLength(1)
    expect(hop.packets[0]?.[2]).toBe(
      `RSET\r\nMAIL FROM:<alice@example.net>\r\nRCPT TO:<bob@example.org>\r\nBDAT ${MESSAGE.length} LAST\r\n${RAW}`,
    )
  })

  it('sends bare LFs as CRLF and ends an unterminated last line, as it would with DATA', async () => {
    const message = Buffer.from('Subject: bare\n\nline one\nline two')
    const send = { mailFrom: 'alice@example.net', rcptTo: ['bob@example.org'], message, size: message.length }
    const chunked = await rawHop({ chunking: true })
    const dotted = await rawHop()
    for (const hop of [chunked, dotted]) {
      expect((await transport(hop.port).send(send)).recipients[0]?.status).toBe('delivered')
    }
    const wire = 'Subject: bare\r\n\r\nline one\r\nline two\r\n'
    expect(chunked.messages).toEqual([wire])
    expect(chunked.packets[0]?.[1]).toContain(`BDAT ${wire.length} LAST\r\n`)
    expect(dotted.messages).toEqual([wire])
  })

  it('RSETs before the next group after the server refused the BDAT LAST', async () => {
    let refuse = true
    const hop = await rawHop({
      chunking: true,
      answer: (line) => (refuse && line === '.' ? '554 5.6.0 message refused' : undefined),
    })
    const t = transport(hop.port)
    const { recipients } = await t.send(request(['bob@example.org']))
    expect(recipients[0]).toMatchObject({ status: 'failed', reply: '554 5.6.0 message refused' })
    refuse = false
    expect((await t.send(request(['bob@example.org']))).recipients[0]?.status).toBe('delivered')
    expect(hop.packets).toHaveLength(1)
    expect(hop.packets[0]?.[2]).toMatch(/^RSET\r\nMAIL FROM:/)
  })

  it('settles every recipient by a refused MAIL', async () => {
    const hop = await rawHop({
      chunking: true,
      answer: (line) => {
        if (line.startsWith('MAIL')) return '452 4.3.1 Insufficient system storage'
        if (line.startsWith('RCPT') || line === '.') return '503 5.5.1 Error: need MAIL command'
        return undefined
      },
    })
    const t = transport(hop.port)
    const { recipients } = await t.send(request(['bob@example.org', 'carol@example.org']))
    expect(recipients.map((r) => r.reply)).toEqual([
      '452 4.3.1 Insufficient system storage',
      '452 4.3.1 Insufficient system storage',
    ])
    expect((await t.send(request(['bob@example.org']))).recipients[0]?.status).toBe('deferred')
    expect(hop.packets).toHaveLength(1)
  })

  it('delivers over LMTP to our own listener: one reply per recipient, the bytes as they are', async () => {
    const seen: Buffer[] = []
    const server = createSmtpServer({
      hostname: 'lmtp.test',
      lmtp: true,
      maxSize: 1_000_000,
      async onMessage(tx, data) {
        const chunks: Buffer[] = []
        for await (const chunk of data) chunks.push(chunk as Buffer)
        seen.push(Buffer.concat(chunks))
        return tx.rcptTo.map((r) =>
          r.startsWith('full') ? reply(452, '4.2.2', 'Mailbox full') : reply(250, '2.0.0', `${r} delivered`),
        )
      },
    })
    const { port } = await server.listen('127.0.0.1', 0)
    cleanup.push(() => server.close())
    const t = new SmtpTransport({
      hop: { host: '127.0.0.1', port, lmtp: true },
      hostname: 'filter.test',
      maxConnections: 1,
    })
    cleanup.push(() => t.close())
    for (let i = 0; i < 2; i++) {
      const { recipients } = await t.send(request(['bob@example.org', 'full@example.org']))
      expect(recipients.map((r) => [r.status, r.reply])).toEqual([
        ['delivered', '250 2.0.0 bob@example.org delivered'],
        ['deferred', '452 4.2.2 Mailbox full'],
      ])
    }
    expect(seen).toEqual([MESSAGE, MESSAGE])
  })

  it('goes on over the same session after our listener refused every recipient', async () => {
    let refuse = true
    const seen: Buffer[] = []
    const server = createSmtpServer({
      hostname: 'mx.test',
      maxSize: 1_000_000,
      onRecipient: () => (refuse ? reply(451, '4.2.1', 'come back later') : undefined),
      async onMessage(_tx, data) {
        const chunks: Buffer[] = []
        for await (const chunk of data) chunks.push(chunk as Buffer)
        seen.push(Buffer.concat(chunks))
        return reply(250, '2.0.0', 'Ok: queued')
      },
    })
    const { port } = await server.listen('127.0.0.1', 0)
    cleanup.push(() => server.close())
    const t = transport(port)
    const first = await t.send(request(['bob@example.org']))
    expect(first.recipients[0]).toMatchObject({ status: 'deferred', reply: '451 4.2.1 come back later' })
    refuse = false
    const second = await t.send(request(['bob@example.org']))
    expect(second.recipients[0]).toMatchObject({ status: 'delivered', reply: '250 2.0.0 Ok: queued' })
    expect(seen).toEqual([MESSAGE])
  })

  it('sends a message over 1 MiB with DATA, once the recipients are answered', async () => {
    const hop = await rawHop({ chunking: true })
    const big = Buffer.from(`Subject: big\r\n\r\n${'x'.repeat(1000)}\r\n`.repeat(1100))
    const { recipients } = await transport(hop.port).send({
      mailFrom: 'alice@example.net',
      rcptTo: ['bob@example.org'],
      message: big,
      size: big.length,
    })
    expect(recipients[0]?.status).toBe('delivered')
    expect(hop.packets[0]?.[1]).toBe('MAIL FROM:<alice@example.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n')
    expect(hop.messages).toEqual([big.toString()])
  })
})

describe('SmtpClient without PIPELINING', () => {
  it('sends one command at a time', async () => {
    const hop = await rawHop({ pipelining: false })
    const { recipients } = await transport(hop.port).send(request(['bob@example.org', 'carol@example.org']))
    expect(recipients.every((r) => r.status === 'delivered')).toBe(true)
    expect(hop.packets[0]).toEqual([
      'EHLO filter.test\r\n',
      'MAIL FROM:<alice@example.net>\r\n',
      'RCPT TO:<bob@example.org>\r\n',
      'RCPT TO:<carol@example.org>\r\n',
      'DATA\r\n',
      `${STUFFED}.\r\n`,
    ])
  })
})

describe('SmtpClient and what RFC 5321 asks of a client', () => {
  it('retries a recipient refused with 552 (too many recipients, 4.5.3.1.10) instead of bouncing it', async () => {
    const hop = await rawHop({
      answer: (line) =>
        line === 'RCPT TO:<carol@example.org>' ? '552 5.5.3 Too many recipients' : undefined,
    })
    const { recipients } = await transport(hop.port).send(request(['bob@example.org', 'carol@example.org']))
    expect(recipients[0]?.status).toBe('delivered')
    expect(recipients[1]).toEqual({
      recipient: 'carol@example.org',
      status: 'deferred',
      code: 452,
      reply: '552 5.5.3 Too many recipients',
    })
  })

  it('sends no UTF-8 address to a server that does not offer SMTPUTF8, refusing with 5.6.7', async () => {
    const hop = await rawHop()
    const { recipients } = await transport(hop.port).send({
      ...request(['jörg@example.org']),
      smtpUtf8: true,
    })
    expect(recipients).toEqual([
      {
        recipient: 'jörg@example.org',
        status: 'failed',
        code: 550,
        reply: `550 5.6.7 SMTPUTF8 is required, but was not offered by host 127.0.0.1:${hop.port}`,
        // Ours, not the host's: a DSN names no Remote-MTA for it.
        local: true,
      },
    ])
    expect(hop.packets.flat().some((p) => p.includes('MAIL FROM'))).toBe(false)
    // ASCII addresses go on as they are, whatever the message asked for.
    const ascii = await transport(hop.port).send({ ...request(['bob@example.org']), smtpUtf8: true })
    expect(ascii.recipients[0]?.status).toBe('delivered')
  })

  it('waits longer for the end of data reply than for the other replies (4.5.3.2.6)', async () => {
    const hop = await rawHop({ holdMs: (line) => (line === '.' ? 1_000 : 0) })
    const opened = await SmtpClient.connect({
      host: '127.0.0.1',
      port: hop.port,
      lmtp: false,
      name: 'filter.test',
      connectTimeoutMs: 5_000,
      socketTimeoutMs: 300,
      dataDoneTimeoutMs: 5_000,
    })
    if (!opened.ok) throw new Error(opened.reply.text)
    cleanup.push(() => opened.client.quit())
    const report = await opened.client.transaction(request(['bob@example.org']))
    expect(report.replies[0]).toEqual({ code: 250, text: '250 2.0.0 Ok: queued' })
  })
})

describe('SmtpClient and DSN parameters (RFC 3461)', () => {
  const withDsn: SendRequest = {
    ...request(['bob@example.org', 'carol@example.org']),
    dsn: {
      ret: 'HDRS',
      envid: 'id 1+',
      recipients: [{ notify: ['FAILURE', 'DELAY'], orcpt: 'rfc822;bob+x@example.org' }, undefined],
    },
  }

  it('passes RET, ENVID, NOTIFY and ORCPT on, in xtext, to a server that offers DSN', async () => {
    const hop = await rawHop({ dsn: true })
    const { recipients } = await transport(hop.port).send(withDsn)
    expect(recipients.every((r) => r.status === 'delivered')).toBe(true)
    expect(hop.packets[0]?.[1]).toBe(
      'MAIL FROM:<alice@example.net> RET=HDRS ENVID=id+201+2B\r\n' +
        'RCPT TO:<bob@example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;bob+2Bx@example.org\r\n' +
        'RCPT TO:<carol@example.org>\r\nDATA\r\n',
    )
  })

  it('keeps each recipient its own NOTIFY when an unsafe recipient before it is left out', async () => {
    const hop = await rawHop({ dsn: true })
    const { recipients } = await transport(hop.port).send({
      ...request(['bad\r\nrcpt@example.org', 'carol@example.org']),
      dsn: { recipients: [{ notify: ['NEVER'] }, { notify: ['SUCCESS'] }] },
    })
    expect(recipients.map((r) => r.status)).toEqual(['failed', 'delivered'])
    expect(hop.packets[0]?.[1]).toContain('RCPT TO:<carol@example.org> NOTIFY=SUCCESS\r\n')
  })

  it('sends none of them to a server that does not offer DSN', async () => {
    const hop = await rawHop()
    await transport(hop.port).send(withDsn)
    expect(hop.packets[0]?.[1]).toBe(`${ENVELOPE}DATA\r\n`)
  })
})
