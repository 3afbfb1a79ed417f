import { connect } from 'node:net'
import type { Readable } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { reply } from '../../src/ingress/smtp-reply.js'
import { createSmtpServer, type SmtpServer } from '../../src/ingress/smtp-server.js'

// Random pipelined sessions, cut into random pieces, against the listener: every message must
// arrive byte for byte and every command get its reply, in order, whatever the mix of DATA and
// BDAT and wherever the pieces break. A seeded generator, so a failure can be replayed.

/** A tiny deterministic generator: an LCG, its high bits (its low bits repeat with short periods). */
function generator(seed: number): (n: number) => number {
  let state = seed
  return (n) => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31
    return Math.floor((state / 2 ** 31) * n)
  }
}

/** Bytes a message may hold: dots and line ends that SMTP treats specially, NUL, 8-bit, text. */
const ALPHABET = [
  '.',
  '.',
  '\r\n',
  '\r\n',
  '\n',
  '\r',
  '\0',
  'é',
  '\xff',
  'a',
  'b',
  ' ',
  'From ',
  '\r\n.\r\n',
]

function randomText(random: (n: number) => number, maxPieces: number): string {
  let text = ''
  for (let i = random(maxPieces); i > 0; i--) text += ALPHABET[random(ALPHABET.length)]
  return text
}

/** Dot-stuff a DATA body (it ends with CRLF or is empty) and terminate it. */
function stuffed(body: string): string {
  return `${`\r\n${body}`.replaceAll('\r\n.', '\r\n..').slice(2)}.\r\n`
}

interface Script {
  /** What the client sends, as one stream. */
  readonly input: string
  /** The replies it must get, one line each (EHLO's last line only). */
  readonly replies: string[]
  /** The messages the server must hand on. */
  readonly messages: string[]
}

const QUEUED = '250 2.0.0 Ok: queued as TEST'

function randomSession(random: (n: number) => number): Script {
  let input = 'EHLO client.test\r\n'
  const replies = ['250 DSN']
  const messages: string[] = []
  for (let t = 1 + random(4); t > 0; t--) {
    if (random(4) === 0) {
      input += random(2) ? 'NOOP\r\n' : 'RSET\r\n'
      replies.push('250 2.0.0 Ok')
    }
    if (random(6) === 0) {
      // Out of place: refused, and its octets (which may look like commands) read and dropped.
      const chunk = random(2) ? 'RSET\r\nQUIT\r\n' : randomText(random, 8)
      input += `BDAT ${Buffer.byteLength(chunk, 'latin1')} LAST\r\n${chunk}`
      replies.push('503 5.5.1 Error: need MAIL command')
    }
    if (random(8) === 0) {
      input += 'XYZZY\r\n'
      replies.push('500 5.5.2 Error: command not recognized')
    }
    input += 'MAIL FROM:<a@example.org>\r\n'
    replies.push('250 2.1.0 Ok')
    for (let r = 1 + random(3); r > 0; r--) {
      input += `RCPT TO:<r${r}@example.net>\r\n`
      replies.push('250 2.1.5 Ok')
    }
    if (random(6) === 0) {
      // An abandoned transaction: nothing is handed on.
      input += 'RSET\r\n'
      replies.push('250 2.0.0 Ok')
      continue
    }
    if (random(2)) {
      const lines = random(5)
      let body = ''
      for (let l = 0; l < lines; l++) body += `${randomText(random, 12).replaceAll('\r\n', '')}\r\n`
      input += `DATA\r\n${stuffed(body)}`
      replies.push('354 End data with <CR><LF>.<CR><LF>', QUEUED)
      messages.push(body)
    } else {
      let message = ''
      for (let c = random(4); c >= 0; c--) {
        const chunk = c === 0 && random(3) === 0 ? '' : randomText(random, 16)
        const last = c === 0
        input += `BDAT ${Buffer.byteLength(chunk, 'latin1')}${last ? ' LAST' : ''}\r\n${chunk}`
        message += chunk
        // Each chunk's reply counts the octets of the message so far.
        replies.push(last ? QUEUED : `250 2.0.0 Ok: ${Buffer.byteLength(message, 'latin1')} octets received`)
      }
      messages.push(message)
    }
  }
  input += 'QUIT\r\n'
  replies.push('221 2.0.0 Bye')
  return { input, replies, messages }
}

async function collect(data: Readable): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of data) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('latin1')
}

/** Send `input` in random pieces, each in its own write after a turn of the event loop; resolve with the replies. */
function play(port: number, input: Buffer, random: (n: number) => number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.setNoDelay(true)
    let answers = ''
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => {
      answers += chunk
    })
    socket.on('error', reject)
    socket.on('close', () => {
      const lines = answers.split('\r\n').filter((line) => line !== '' && line[3] !== '-')
      // The greeting, then EHLO's last line as the first reply.
      resolve(lines.slice(1))
    })
    socket.once('connect', async () => {
      for (let at = 0; at < input.length; ) {
        const size = 1 + random(random(2) ? 8 : 200)
        socket.write(input.subarray(at, at + size))
        at += size
        if (random(3) === 0) await new Promise((r) => setImmediate(r))
      }
    })
  })
}

const servers: SmtpServer[] = []

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()))
})

describe('SMTP listener on random pipelined sessions', () => {
  it('hands on every message byte for byte and answers every command in order', async () => {
    const received: string[] = []
    const server = createSmtpServer({
      hostname: 'mx.test',
      maxSize: 100_000,
      async onMessage(_tx, data) {
        received.push(await collect(data))
        return reply(250, '2.0.0', 'Ok: queued as TEST')
      },
    })
    servers.push(server)
    const { port } = await server.listen('127.0.0.1', 0)
    for (let seed = 1; seed <= 300; seed++) {
      const random = generator(seed)
      const script = randomSession(random)
      received.length = 0
      const replies = await play(port, Buffer.from(script.input, 'latin1'), random)
      expect({ seed, replies }).toEqual({ seed, replies: script.replies })
      expect({ seed, received }).toEqual({ seed, received: script.messages })
    }
    expect(server.connections).toBe(0)
  })
})
