import { existsSync } from 'node:fs'
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  decodeResponse,
  encodeCommand,
  encodePacket,
  FrameDecoder,
  headerCommand,
  type MilterCommand,
  type MilterResponse,
  SMFIC,
  SMFIF,
} from '../../../src/ingress/milter/codec.js'
import {
  type MilterConnection,
  type MilterDecision,
  type MilterMessage,
  MilterSession,
  type MilterSessionOptions,
  planResponse,
  readContent,
  serveMilterConnection,
} from '../../../src/ingress/milter/session.js'

/** Postfix 3.x's offer with milter_protocol = 6. */
const POSTFIX_OFFER: MilterCommand = { type: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff }
/** An MTA that offers only the version 2 step flags (no "no reply" flags): every step gets an answer. */
const OLD_OFFER: MilterCommand = { type: 'optneg', version: 6, actions: 0x1ff, protocol: 0x7f }

const macro = (forCommand: number, entries: Record<string, string>): MilterCommand => ({
  type: 'macro',
  forCommand,
  macros: new Map(Object.entries(entries)),
})

/** The MTA side of one milter connection, over a real loopback socket. */
class FakeMta {
  private readonly decoder = new FrameDecoder()
  private readonly received: MilterResponse[] = []
  private waiters: (() => void)[] = []
  readonly closed: Promise<void>

  constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const packet of this.decoder.push(chunk)) this.received.push(decodeResponse(packet))
      this.wake()
    })
    this.closed = new Promise((resolve) => socket.on('close', () => resolve()))
    socket.on('close', () => this.wake())
    socket.on('error', () => {})
  }

  send(...commands: (MilterCommand | Buffer)[]): void {
    this.socket.write(Buffer.concat(commands.map((c) => (Buffer.isBuffer(c) ? c : encodeCommand(c)))))
  }

  /** The next `count` responses (fails after 5 s). */
  async read(count = 1): Promise<MilterResponse[]> {
    const deadline = Date.now() + 5000
    while (this.received.length < count) {
      if (this.socket.destroyed && this.received.length < count) {
        throw new Error(`socket closed after ${JSON.stringify(this.received)}`)
      }
      if (Date.now() > deadline) throw new Error(`timed out; got ${JSON.stringify(this.received)}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100)
        this.waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
    return this.received.splice(0, count)
  }

  /** Read up to and including the final answer of an end of message. */
  async readUntilFinal(): Promise<MilterResponse[]> {
    const out: MilterResponse[] = []
    for (;;) {
      const [next] = await this.read(1)
      out.push(next as MilterResponse)
      if (
        ['accept', 'continue', 'reject', 'tempfail', 'discard', 'replycode'].includes(next?.type as string)
      ) {
        return out
      }
    }
  }

  /** What arrived without being read. */
  get unread(): readonly MilterResponse[] {
    return this.received
  }

  end(): void {
    this.socket.end()
  }

  destroy(): void {
    this.socket.destroy()
  }

  private wake(): void {
    const waiters = this.waiters
    this.waiters = []
    for (const wake of waiters) wake()
  }
}

let tmpDir: string
let server: net.Server | undefined
let connections: MilterConnection[] = []

beforeEach(async () => {
  tmpDir = await mkdtemp(path.join(os.tmpdir(), 'milter-session-'))
  connections = []
})

afterEach(async () => {
  for (const c of connections) c.destroy()
  await Promise.all(connections.map((c) => c.done))
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))
  server = undefined
  await rm(tmpDir, { recursive: true, force: true })
})

type Options = Partial<MilterSessionOptions> & Pick<MilterSessionOptions, 'onMessage'>

/** Start a loopback listener running sessions with `options`, and connect one fake MTA to it. */
async function connect(options: Options): Promise<{ mta: FakeMta; connection: MilterConnection }> {
  let resolveConnection: (c: MilterConnection) => void = () => {}
  const accepted = new Promise<MilterConnection>((resolve) => {
    resolveConnection = resolve
  })
  server = net.createServer((socket) => {
    const connection = serveMilterConnection(socket, {
      timeoutMs: 5000,
      defaultAction: 'tempfail',
      tmpDir,
      progressIntervalMs: 0,
      peer: { address: '127.0.0.1' },
      ...options,
    })
    connections.push(connection)
    resolveConnection(connection)
  })
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  const socket = net.connect(port, '127.0.0.1')
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  return { mta: new FakeMta(socket), connection: await accepted }
}

/** Connect, negotiate (Postfix's offer) and send the connect and HELO steps. */
async function negotiated(options: Options, offer: MilterCommand = POSTFIX_OFFER) {
  const session = await connect(options)
  session.mta.send(offer)
  const [answer] = await session.mta.read(1)
  expect(answer?.type).toBe('optneg')
  session.mta.send(
    macro(SMFIC.CONNECT, {
      j: 'mx.example.org',
      '{client_addr}': '192.0.2.7',
      '{client_name}': 'client.example',
    }),
    { type: 'connect', hostname: 'client.example', family: 'inet4', port: 41000, address: '192.0.2.7' },
    { type: 'helo', name: 'helo.client.example' },
  )
  return session
}

/** One message: MAIL, RCPTs, headers, body chunks (no end of message). */
function message(
  from: string,
  rcpts: readonly string[],
  headers: readonly [string, string][],
  body: readonly (string | Buffer)[],
  queueId = 'QID1',
): MilterCommand[] {
  return [
    macro(SMFIC.MAIL, { i: queueId, '{auth_authen}': 'alice', '{mail_addr}': from }),
    { type: 'mail', sender: `<${from}>`, args: ['SIZE=100', 'BODY=8BITMIME'] },
    ...rcpts.flatMap((r): MilterCommand[] => [
      macro(SMFIC.RCPT, { '{rcpt_addr}': r }),
      { type: 'rcpt', recipient: `<${r}>`, args: [] },
    ]),
    ...headers.map(([name, value]) => headerCommand(name, value)),
    ...body.map((chunk): MilterCommand => ({ type: 'body', chunk: Buffer.from(chunk) })),
  ]
}

const EOB: MilterCommand = { type: 'eob', chunk: Buffer.alloc(0) }

describe('a full transaction', () => {
  it('collects connect info, macros, envelope, headers and body, then sends the edits and the answer', async () => {
    const seen: MilterMessage[] = []
    let content = ''
    const { mta } = await negotiated({
      async onMessage(msg) {
        seen.push(msg)
        content = (await readContent(msg.content)).toString()
        return {
          action: 'accept',
          headers: [
            { op: 'addheader', name: 'X-mailscreen-Scanned', value: 'clean' },
            { op: 'chgheader', name: 'Subject', index: 1, value: '{Scanned} hello' },
            { op: 'insheader', index: 0, name: 'X-First', value: 'top' },
          ],
          body: Buffer.from('replaced\r\n'),
        }
      },
    })
    mta.send(
      ...message(
        'alice@example.com',
        ['bob@example.net', 'carol@example.net'],
        [
          ['Subject', 'hello'],
          ['To', 'bob@example.net,\n\tcarol@example.net'],
        ],
        ['line 1\r\n', 'line 2\r\n'],
      ),
      macro(SMFIC.BODYEOB, { i: 'QID1' }),
      EOB,
    )
    const answer = await mta.readUntilFinal()
    expect(answer).toEqual([
      { type: 'addheader', name: 'X-mailscreen-Scanned', value: 'clean' },
      { type: 'chgheader', index: 1, name: 'Subject', value: '{Scanned} hello' },
      { type: 'insheader', index: 0, name: 'X-First', value: 'top' },
      { type: 'replbody', chunk: Buffer.from('replaced\r\n') },
      { type: 'accept' },
    ])
    // Every collecting step was negotiated as no-reply: nothing else came back.
    expect(mta.unread).toEqual([])
    expect(seen).toHaveLength(1)
    const msg = seen[0] as MilterMessage
    expect(msg.envelope).toMatchObject({
      mailFrom: 'alice@example.com',
      rcptTo: ['bob@example.net', 'carol@example.net'],
      client: { address: '192.0.2.7', name: 'client.example', helo: 'helo.client.example' },
      peer: { address: '127.0.0.1' },
      body: '8BITMIME',
    })
    expect(msg.queueId).toBe('QID1')
    expect(msg.authUser).toBe('alice')
    expect(msg.macros).toMatchObject({ j: 'mx.example.org', client_addr: '192.0.2.7', i: 'QID1' })
    expect(msg.mailArgs).toEqual(['SIZE=100', 'BODY=8BITMIME'])
    expect(msg.recipients[1]).toEqual({
      address: 'carol@example.net',
      args: [],
      macros: { rcpt_addr: 'carol@example.net' },
    })
    expect(msg.connect).toEqual({
      hostname: 'client.example',
      family: 'inet4',
      port: 41000,
      address: '192.0.2.7',
    })
    expect(msg.headers).toEqual([
      { name: 'Subject', value: 'hello' },
      { name: 'To', value: 'bob@example.net,\n\tcarol@example.net' },
    ])
    expect(content).toBe(
      'Subject: hello\r\nTo: bob@example.net,\r\n\tcarol@example.net\r\n\r\nline 1\r\nline 2\r\n',
    )
    expect(msg.content.bodyOffset).toBe(content.indexOf('\r\n\r\n') + 4)
    expect(msg.content.path).toBeUndefined()
  })

  it('answers DATA, as Postfix sends it (its macros, then the command), with one CONTINUE', async () => {
    const { mta } = await negotiated({ onMessage: async () => ({ action: 'accept' }) })
    mta.send(...message('alice@example.com', ['bob@example.net'], [], []), macro(SMFIC.DATA, { i: 'QID1' }), {
      type: 'data',
    })
    expect(await mta.readUntilFinal()).toEqual([{ type: 'continue' }])
    mta.send(headerCommand('Subject', 'hi'), { type: 'body', chunk: Buffer.from('x\r\n') }, EOB)
    expect(await mta.readUntilFinal()).toEqual([{ type: 'accept' }])
    expect(mta.unread).toEqual([])
  })

  it('answers CONTINUE to every step when the MTA offers no "no reply" flags', async () => {
    const { mta } = await negotiated({ onMessage: async () => ({ action: 'accept' }) }, OLD_OFFER)
    // connect + helo
    expect(await mta.read(2)).toEqual([{ type: 'continue' }, { type: 'continue' }])
    mta.send(...message('a@b.example', ['c@d.example'], [['Subject', 's']], ['x\r\n']))
    // mail, rcpt, header, body
    expect(await mta.read(4)).toEqual(Array(4).fill({ type: 'continue' }))
    mta.send({ type: 'data' }, { type: 'eoh' }, { type: 'unknown', command: 'FOO' }, EOB)
    // NODATA/NOUNKNOWN were not offered, so those steps come and are answered too.
    expect(await mta.read(4)).toEqual([
      { type: 'continue' },
      { type: 'continue' },
      { type: 'continue' },
      { type: 'accept' },
    ])
  })

  it('quarantines with a reason and answers ACCEPT', async () => {
    const { mta } = await negotiated({
      onMessage: async () => ({ action: 'quarantine', reason: 'virus: Eicar-Signature' }),
    })
    mta.send(...message('a@b.example', ['c@d.example'], [['Subject', 's']], ['x\r\n']), EOB)
    expect(await mta.readUntilFinal()).toEqual([
      { type: 'quarantine', reason: 'virus: Eicar-Signature' },
      { type: 'accept' },
    ])
  })

  it('rejects with the reply given, made safe: no CR/LF injection, % doubled', async () => {
    const { mta } = await negotiated({
      onMessage: async () => ({
        action: 'reject',
        reply: { code: 550, status: '5.7.1', text: 'Spam 100%\r\n250 2.0.0 Ok' },
      }),
    })
    mta.send(...message('a@b.example', ['c@d.example'], [['Subject', 's']], ['x\r\n']), EOB)
    expect(await mta.readUntilFinal()).toEqual([
      { type: 'replycode', text: '550 5.7.1 Spam 100%% 250 2.0.0 Ok' },
    ])
  })

  it('falls back to a plain REJECT when the reply code is unusable', async () => {
    const { mta } = await negotiated({
      onMessage: async () => ({
        action: 'reject',
        reply: { code: 250, status: '2.0.0', text: 'not a rejection' },
      }),
    })
    mta.send(...message('a@b.example', ['c@d.example'], [['Subject', 's']], ['x\r\n']), EOB)
    expect(await mta.readUntilFinal()).toEqual([{ type: 'reject' }])
  })

  it('answers DISCARD and plain TEMPFAIL', async () => {
    const decisions: MilterDecision[] = [{ action: 'discard' }, { action: 'tempfail' }]
    const { mta } = await negotiated({ onMessage: async () => decisions.shift() as MilterDecision })
    mta.send(...message('a@b.example', ['c@d.example'], [['Subject', 's']], ['x\r\n']), EOB)
    expect(await mta.readUntilFinal()).toEqual([{ type: 'discard' }])
    mta.send(
      { type: 'abort' },
      ...message('a@b.example', ['c@d.example'], [['Subject', 's']], ['x\r\n']),
      EOB,
    )
    expect(await mta.readUntilFinal()).toEqual([{ type: 'tempfail' }])
  })
})

describe('a header past the limits', () => {
  for (const [limit, options, headers] of [
    [
      'fields',
      { maxHeaderFields: 100 },
      Array.from({ length: 150 }, (_, i): [string, string] => ['X-N', String(i)]),
    ],
    [
      'bytes',
      { maxHeaderSize: 2_000 },
      Array.from({ length: 30 }, (): [string, string] => ['X-Long', 'y'.repeat(100)]),
    ],
  ] as const) {
    it(`refuses the message (${limit}) without scanning it, and takes the next one on the connection`, async () => {
      const seen: MilterMessage[] = []
      const { mta } = await negotiated({
        ...options,
        onMessage: async (msg) => {
          seen.push(msg)
          return { action: 'accept' }
        },
      })
      mta.send(...message('a@b.example', ['c@d.example'], headers, ['x\r\n']), EOB)
      expect(await mta.readUntilFinal()).toEqual([
        { type: 'replycode', text: '552 5.3.4 Message header too large' },
      ])
      expect(seen).toEqual([])
      mta.send(
        { type: 'abort' },
        ...message('a@b.example', ['c@d.example'], [['Subject', 'fine']], ['x\r\n']),
        EOB,
      )
      expect(await mta.readUntilFinal()).toEqual([{ type: 'accept' }])
      expect(seen.map((m) => m.headers)).toEqual([[{ name: 'Subject', value: 'fine' }]])
    })
  }
})

describe('message state', () => {
  it('forgets an aborted message: the next one on the same connection starts clean', async () => {
    const seen: { rcpt: readonly string[]; headers: number; content: string }[] = []
    const { mta, connection } = await negotiated({
      async onMessage(msg) {
        seen.push({
          rcpt: msg.envelope.rcptTo,
          headers: msg.headers.length,
          content: (await readContent(msg.content)).toString(),
        })
        return { action: 'accept' }
      },
    })
    mta.send(
      ...message('first@example.com', ['one@example.net'], [['Subject', 'first']], ['first body\r\n']),
      { type: 'abort' },
      ...message(
        'second@example.com',
        ['two@example.net'],
        [['Subject', 'second']],
        ['second body\r\n'],
        'QID2',
      ),
      EOB,
    )
    expect(await mta.readUntilFinal()).toEqual([{ type: 'accept' }])
    expect(seen).toEqual([
      { rcpt: ['two@example.net'], headers: 1, content: 'Subject: second\r\n\r\nsecond body\r\n' },
    ])
    expect(connection.session.busy).toBe(false)
  })

  it('keeps the connection for a new SMTP session after QUIT_NC, with fresh connect info and macros', async () => {
    const seen: MilterMessage[] = []
    const { mta } = await negotiated({
      async onMessage(msg) {
        seen.push(msg)
        return { action: 'accept' }
      },
    })
    mta.send(...message('a@example.com', ['b@example.net'], [['Subject', 's']], ['x\r\n']), EOB)
    await mta.readUntilFinal()
    mta.send(
      { type: 'quitNc' },
      { type: 'connect', hostname: 'other.example', family: 'inet6', port: 5000, address: '2001:db8::5' },
      { type: 'mail', sender: '<c@example.com>', args: [] },
      { type: 'rcpt', recipient: '<d@example.net>', args: [] },
      headerCommand('Subject', 't'),
      EOB,
    )
    expect(await mta.readUntilFinal()).toEqual([{ type: 'accept' }])
    const second = seen[1] as MilterMessage
    expect(second.envelope.client).toEqual({ address: '2001:db8::5', name: 'other.example' })
    expect(second.macros).toEqual({})
    expect(second.queueId).toBeUndefined()
  })

  it('closes the connection on QUIT and releases the session', async () => {
    const { mta, connection } = await negotiated({ onMessage: async () => ({ action: 'accept' }) })
    mta.send({ type: 'quit' })
    await mta.closed
    await connection.done
  })
})

describe('spilling the message to a temp file', () => {
  const chunk = `${'y'.repeat(60_000)}\r\n`

  it('keeps a large message in a 0600 file while the handler runs, and removes it afterwards', async () => {
    let seenPath: string | undefined
    let size = 0
    let mode = 0
    const { mta } = await negotiated({
      spillThreshold: 1024,
      async onMessage(msg) {
        seenPath = msg.content.path
        size = msg.content.size
        mode = (await stat(msg.content.path as string)).mode & 0o777
        const data = await readContent(msg.content)
        expect(data.subarray(msg.content.bodyOffset).toString()).toBe(chunk.repeat(4))
        return { action: 'accept' }
      },
    })
    mta.send(...message('a@example.com', ['b@example.net'], [['Subject', 'big']], Array(4).fill(chunk)), EOB)
    expect(await mta.readUntilFinal()).toEqual([{ type: 'accept' }])
    expect(seenPath?.startsWith(tmpDir)).toBe(true)
    expect(size).toBe('Subject: big\r\n\r\n'.length + 4 * chunk.length)
    expect(mode).toBe(0o600)
    expect(existsSync(seenPath as string)).toBe(false)
    expect(await readdir(tmpDir)).toEqual([])
  })

  it('removes the file when the MTA aborts mid-body', async () => {
    const { mta } = await negotiated({ spillThreshold: 1024, onMessage: async () => ({ action: 'accept' }) })
    mta.send(...message('a@example.com', ['b@example.net'], [['Subject', 'big']], [chunk, chunk]))
    await waitFor(async () => (await readdir(tmpDir)).length === 1)
    mta.send({ type: 'abort' })
    await waitFor(async () => (await readdir(tmpDir)).length === 0)
  })

  it('removes the file when the MTA drops the socket mid-body', async () => {
    const { mta, connection } = await negotiated({
      spillThreshold: 1024,
      onMessage: async () => ({ action: 'accept' }),
    })
    mta.send(...message('a@example.com', ['b@example.net'], [['Subject', 'big']], [chunk, chunk]))
    await waitFor(async () => (await readdir(tmpDir)).length === 1)
    mta.destroy()
    await connection.done
    expect(await readdir(tmpDir)).toEqual([])
  })

  it('streams a replacement body from a file in chunks of at most 65535 bytes', async () => {
    const replacement = path.join(tmpDir, 'replacement.txt')
    const text = 'z'.repeat(100_000)
    await writeFile(replacement, text)
    const { mta } = await negotiated({
      onMessage: async () => ({ action: 'accept', body: { path: replacement } }),
    })
    mta.send(...message('a@example.com', ['b@example.net'], [['Subject', 's']], ['x\r\n']), EOB)
    const answer = await mta.readUntilFinal()
    const chunks = answer.filter((r) => r.type === 'replbody').map((r) => (r as { chunk: Buffer }).chunk)
    expect(chunks.map((c) => c.length)).toEqual([65_535, 100_000 - 65_535])
    expect(Buffer.concat(chunks).toString()).toBe(text)
    expect(answer.at(-1)).toEqual({ type: 'accept' })
  })

  it('keeps the body when the replacement file is missing, and still answers', async () => {
    const { mta } = await negotiated({
      onMessage: async () => ({
        action: 'accept',
        headers: [{ op: 'addheader', name: 'X-A', value: 'a' }],
        body: { path: path.join(tmpDir, 'nope') },
      }),
    })
    mta.send(...message('a@example.com', ['b@example.net'], [['Subject', 's']], ['x\r\n']), EOB)
    expect(await mta.readUntilFinal()).toEqual([
      { type: 'addheader', name: 'X-A', value: 'a' },
      { type: 'accept' },
    ])
  })
})

describe('the time budget', () => {
  it('answers the tempfail default when the handler overruns, and aborts the handler', async () => {
    let aborted = false
    const { mta } = await negotiated({
      timeoutMs: 200,
      defaultAction: 'tempfail',
      onMessage: (_msg, signal) =>
        new Promise<MilterDecision>((resolve) => {
          signal.addEventListener('abort', () => {
            aborted = true
          })
          setTimeout(() => resolve({ action: 'accept' }), 2000)
        }),
    })
    mta.send(...message('a@example.com', ['b@example.net'], [['Subject', 's']], ['x\r\n']), EOB)
    // The 451 comes from the timeout: the handler itself would have accepted after 2 s.
    expect(await mta.readUntilFinal()).toEqual([
      { type: 'replycode', text: '451 4.7.1 Message content could not be scanned in time, try again later' },
    ])
    expect(aborted).toBe(true)
  })

  it('answers accept plus a header under the accept default', async () => {
    const { mta } = await negotiated({
      timeoutMs: 100,
      defaultAction: 'accept',
      defaultHeader: { name: 'X-Unscanned', value: 'timeout' },
      onMessage: () => new Promise<MilterDecision>(() => {}),
    })
    mta.send(...message('a@example.com', ['b@example.net'], [['Subject', 's']], ['x\r\n']), EOB)
    expect(await mta.readUntilFinal()).toEqual([
      { type: 'addheader', name: 'X-Unscanned', value: 'timeout' },
      { type: 'accept' },
    ])
  })

  it('treats a handler that throws like one that overran', async () => {
    const { mta } = await negotiated({
      defaultAction: 'tempfail',
      tempfailReply: { code: 451, status: '4.3.0', text: 'scanner failure' },
      onMessage: async () => {
        throw new Error('pool down')
      },
    })
    mta.send(...message('a@example.com', ['b@example.net'], [['Subject', 's']], ['x\r\n']), EOB)
    expect(await mta.readUntilFinal()).toEqual([{ type: 'replycode', text: '451 4.3.0 scanner failure' }])
  })

  it('sends SMFIR_PROGRESS while the handler works', async () => {
    const { mta } = await negotiated({
      timeoutMs: 2000,
      progressIntervalMs: 50,
      onMessage: () => new Promise((resolve) => setTimeout(() => resolve({ action: 'accept' }), 400)),
    })
    mta.send(...message('a@example.com', ['b@example.net'], [['Subject', 's']], ['x\r\n']), EOB)
    const answer = await mta.readUntilFinal()
    expect(answer.at(-1)).toEqual({ type: 'accept' })
    expect(answer.filter((r) => r.type === 'progress').length).toBeGreaterThanOrEqual(3)
  })

  it('aborts the handler and removes the spill file when the MTA hangs up during the wait', async () => {
    let signalled: AbortSignal | undefined
    const { mta, connection } = await negotiated({
      spillThreshold: 10,
      onMessage: (_msg, signal) => {
        signalled = signal
        return new Promise<MilterDecision>(() => {})
      },
    })
    mta.send(
      ...message('a@example.com', ['b@example.net'], [['Subject', 's']], ['a body longer than ten\r\n']),
      EOB,
    )
    await waitFor(async () => signalled !== undefined)
    expect(connection.session.busy).toBe(true)
    mta.destroy()
    await connection.done
    expect(signalled?.aborted).toBe(true)
    expect(await readdir(tmpDir)).toEqual([])
  })
})

describe('recipient checks', () => {
  it('refuses one recipient with its own reply and keeps the others', async () => {
    const seen: MilterMessage[] = []
    const { mta } = await negotiated({
      onRecipient: (rcpt) =>
        rcpt.address.startsWith('nobody@')
          ? { code: 550, status: '5.1.1', text: `<${rcpt.address}>: Recipient address rejected` }
          : undefined,
      async onMessage(msg) {
        seen.push(msg)
        return { action: 'accept' }
      },
    })
    mta.send(
      ...message('a@example.com', ['nobody@example.net', 'bob@example.net'], [['Subject', 's']], ['x\r\n']),
    )
    expect(await mta.read(2)).toEqual([
      { type: 'replycode', text: '550 5.1.1 <nobody@example.net>: Recipient address rejected' },
      { type: 'continue' },
    ])
    mta.send(EOB)
    await mta.readUntilFinal()
    expect(seen[0]?.envelope.rcptTo).toEqual(['bob@example.net'])
  })

  it('takes the recipient when the check fails or overruns', async () => {
    const { mta } = await negotiated({
      recipientTimeoutMs: 100,
      onRecipient: (rcpt) => {
        if (rcpt.address.startsWith('slow')) return new Promise(() => {})
        throw new Error('routing unavailable')
      },
      onMessage: async () => ({ action: 'accept' }),
    })
    mta.send(...message('a@example.com', ['slow@example.net', 'err@example.net'], [], []))
    expect(await mta.read(2)).toEqual([{ type: 'continue' }, { type: 'continue' }])
  })
})

describe('protocol errors', () => {
  it('closes the connection when a command comes before option negotiation', async () => {
    const { mta, connection } = await connect({ onMessage: async () => ({ action: 'accept' }) })
    mta.send({ type: 'helo', name: 'x' })
    await mta.closed
    await connection.done
  })

  it('closes the connection on an unknown command', async () => {
    const { mta, connection } = await connect({ onMessage: async () => ({ action: 'accept' }) })
    mta.send(POSTFIX_OFFER)
    await mta.read(1)
    mta.send(encodePacket(0x5a, Buffer.from('zzz')))
    await mta.closed
    await connection.done
  })

  it('closes the connection on a packet longer than the maximum', async () => {
    const { mta, connection } = await connect({
      maxPacket: 70_000,
      onMessage: async () => ({ action: 'accept' }),
    })
    mta.send(POSTFIX_OFFER)
    await mta.read(1)
    mta.send(encodePacket(SMFIC.BODY, Buffer.alloc(80_000)))
    await mta.closed
    await connection.done
  })

  it('closes the connection on a body chunk outside a message', async () => {
    const { mta, connection } = await negotiated({ onMessage: async () => ({ action: 'accept' }) })
    mta.send({ type: 'body', chunk: Buffer.from('stray') })
    await mta.closed
    await connection.done
  })
})

describe('MilterSession.handle (in memory)', () => {
  it('runs a transaction without a socket', async () => {
    const written: Buffer[] = []
    const session = new MilterSession(
      {
        timeoutMs: 1000,
        defaultAction: 'tempfail',
        tmpDir: os.tmpdir(),
        onMessage: async (msg) => ({
          action: 'accept',
          headers: [{ op: 'addheader', name: 'X-Size', value: String(msg.content.size) }],
        }),
      },
      { write: async (data) => void written.push(data) },
    )
    const commands: MilterCommand[] = [
      POSTFIX_OFFER,
      { type: 'connect', hostname: 'h', family: 'inet4', port: 1, address: '192.0.2.1' },
      ...message('a@b.example', ['c@d.example'], [['Subject', 'hi']], ['body\r\n']),
      EOB,
      { type: 'quit' },
    ]
    const steps = []
    for (const command of commands) steps.push(await session.handle(command))
    expect(steps.at(-1)).toBe('close')
    const responses = new FrameDecoder().push(Buffer.concat(written)).map(decodeResponse)
    expect(responses.slice(1)).toEqual([
      { type: 'addheader', name: 'X-Size', value: String('Subject: hi\r\n\r\nbody\r\n'.length) },
      { type: 'accept' },
    ])
  })
})

describe('planResponse', () => {
  const all = SMFIF.ADDHDRS | SMFIF.CHGHDRS | SMFIF.CHGBODY | SMFIF.QUARANTINE

  it('drops what was not negotiated, with a warning each', () => {
    const plan = planResponse(
      {
        action: 'quarantine',
        reason: 'held',
        headers: [
          { op: 'addheader', name: 'X-A', value: 'a' },
          { op: 'chgheader', name: 'Subject', index: 1, value: 's' },
        ],
        body: Buffer.from('b'),
      },
      SMFIF.ADDHDRS,
    )
    expect(plan.packets.modifications.map((p) => p.subarray(4, 5).toString())).toEqual(['h'])
    expect(plan.body).toBeUndefined()
    expect(plan.warnings).toHaveLength(3)
  })

  it('drops an invalid header edit and keeps the rest', () => {
    const plan = planResponse(
      {
        action: 'accept',
        headers: [
          { op: 'addheader', name: 'Bad Name', value: 'a' },
          { op: 'addheader', name: 'X-Good', value: 'b' },
        ],
      },
      all,
    )
    expect(plan.packets.modifications).toHaveLength(1)
    expect(plan.warnings).toHaveLength(1)
  })

  it('never sends modifications with a rejection', () => {
    const plan = planResponse({ action: 'reject', reply: { code: 554, status: '5.7.0', text: 'virus' } }, all)
    expect(plan.packets.modifications).toEqual([])
    expect(plan.packets.final.subarray(5).toString()).toBe('554 5.7.0 virus\0')
  })

  it('makes a quarantine reason one line', () => {
    const plan = planResponse({ action: 'quarantine', reason: 'a\r\nb' }, all)
    expect(plan.packets.modifications[0]?.subarray(5).toString()).toBe('a b\0')
  })
})

async function waitFor(condition: () => Promise<boolean>, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
