import { mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import clamav from '../../plugins/clamav/index.js'
import {
  command,
  encodeCommand,
  frameInstream,
  instream,
  parseInstreamReply,
} from '../../plugins/clamav/instream.js'
import { createMessageView } from '../../src/mail/message.js'
import { declaredSymbols, type Hit, optionsSchema, parseOptions } from '../../src/pipeline/plugin.js'
import { runChecks } from '../../src/pipeline/runner.js'
import { newQueueId } from '../../src/queue/ids.js'
import { silentLog as log, runCheck as runWith, testEnvelope } from '../support/check.js'
import { underGarbageCollection } from '../support/gc.js'

const RAW = Buffer.from('Subject: hi\r\nMessage-ID: <1@x>\r\n\r\nhello world\r\n')

describe('clamav framing', () => {
  it('encodes z-commands', () => {
    expect(encodeCommand('PING')).toEqual(Buffer.from('zPING\0'))
    expect(() => encodeCommand('PING\0zSHUTDOWN')).toThrow()
  })

  it('frames data as zINSTREAM, length-prefixed chunks and a zero terminator', () => {
    const frames = frameInstream(Buffer.from('abcdefg'), 3)
    expect(Buffer.concat(frames)).toEqual(
      Buffer.concat([
        Buffer.from('zINSTREAM\0'),
        Buffer.from([0, 0, 0, 3]),
        Buffer.from('abc'),
        Buffer.from([0, 0, 0, 3]),
        Buffer.from('def'),
        Buffer.from([0, 0, 0, 1]),
        Buffer.from('g'),
        Buffer.from([0, 0, 0, 0]),
      ]),
    )
  })

  it('frames empty data as the command and the terminator only', () => {
    expect(Buffer.concat(frameInstream(Buffer.alloc(0), 10))).toEqual(Buffer.from('zINSTREAM\0\0\0\0\0'))
  })

  it('writes lengths big-endian', () => {
    const frames = frameInstream(Buffer.alloc(0x010203), 0x100000)
    expect(frames[1]).toEqual(Buffer.from([0x00, 0x01, 0x02, 0x03]))
  })

  it('rejects a bad chunk size', () => {
    expect(() => frameInstream(RAW, 0)).toThrow(RangeError)
    expect(() => frameInstream(RAW, 1.5)).toThrow(RangeError)
  })
})

describe('clamav reply parsing', () => {
  it('parses OK, FOUND and ERROR', () => {
    expect(parseInstreamReply('stream: OK\0')).toEqual({ status: 'clean' })
    expect(parseInstreamReply(Buffer.from('stream: Eicar-Test-Signature FOUND\0'))).toEqual({
      status: 'infected',
      names: ['Eicar-Test-Signature'],
    })
    expect(parseInstreamReply('INSTREAM size limit exceeded. ERROR\0')).toEqual({
      status: 'error',
      message: 'clamd: INSTREAM size limit exceeded. ERROR',
    })
  })

  it('keeps names with spaces and collects several FOUND replies (AllMatchScan), once each', () => {
    expect(
      parseInstreamReply('stream: Win.Test Name-1 FOUND\0stream: Other FOUND\0stream: Other FOUND\0'),
    ).toEqual({ status: 'infected', names: ['Win.Test Name-1', 'Other'] })
  })

  it('accepts newline-terminated and session-prefixed replies', () => {
    expect(parseInstreamReply('stream: OK\n')).toEqual({ status: 'clean' })
    expect(parseInstreamReply('1: stream: X FOUND\0')).toEqual({ status: 'infected', names: ['X'] })
  })

  it('treats empty, unknown or mixed error replies as errors', () => {
    expect(parseInstreamReply('').status).toBe('error')
    expect(parseInstreamReply('\0').status).toBe('error')
    expect(parseInstreamReply('UNKNOWN COMMAND\0').status).toBe('error')
    expect(parseInstreamReply('stream: X FOUND\0stream: lstat() failed. ERROR\0').status).toBe('error')
  })
})

type Mode =
  | 'ok'
  | 'found'
  | 'error-early'
  | 'never'
  | 'close'
  | 'pong'
  /** FOUND for a stream that contains `VIRUS`, OK for any other. */
  | 'content'
  /** FOUND for the first stream (the whole message); the part scans after it fail so. */
  | 'found-then-close'
  | 'found-then-never'

interface Fake {
  readonly port: number
  /** The payloads clamd received, reassembled from INSTREAM chunks. */
  readonly payloads: Buffer[]
  readonly server: net.Server
}

/** Reassemble an INSTREAM request; undefined until the terminator arrived. */
function decode(buf: Buffer): Buffer | undefined {
  const cmd = 'zINSTREAM\0'
  if (buf.length < cmd.length || buf.subarray(0, cmd.length).toString() !== cmd) return undefined
  const parts: Buffer[] = []
  let at = cmd.length
  while (at + 4 <= buf.length) {
    const n = buf.readUInt32BE(at)
    at += 4
    if (n === 0) return Buffer.concat(parts)
    if (at + n > buf.length) return undefined
    parts.push(buf.subarray(at, at + n))
    at += n
  }
  return undefined
}

const servers: net.Server[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r))
})

async function fakeClamd(
  mode: Mode,
  listen: { port: number } | { path: string } = { port: 0 },
  /** How long each answer takes. */
  delayMs = 0,
): Promise<Fake> {
  const payloads: Buffer[] = []
  let connections = 0
  const server = net.createServer((socket) => {
    socket.on('error', () => {})
    const first = connections++ === 0
    let buf = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      if (mode === 'never' || (mode === 'found-then-never' && !first)) return
      if (mode === 'close' || (mode === 'found-then-close' && !first)) {
        socket.destroy()
        return
      }
      if (mode === 'pong' && buf.toString() === 'zPING\0') {
        socket.end('PONG\0')
        return
      }
      if (mode === 'error-early') {
        socket.end('INSTREAM size limit exceeded. ERROR\0')
        return
      }
      const payload = decode(buf)
      if (payload === undefined) return
      payloads.push(payload)
      const clean = mode === 'ok' || (mode === 'content' && !payload.includes('VIRUS'))
      const reply = clean ? 'stream: OK\0' : 'stream: Eicar-Test-Signature FOUND\0'
      setTimeout(() => socket.end(reply), delayMs)
    })
  })
  servers.push(server)
  await new Promise<void>((resolve) =>
    'path' in listen ? server.listen(listen.path, resolve) : server.listen(0, '127.0.0.1', resolve),
  )
  const address = server.address()
  return { port: typeof address === 'object' && address ? address.port : 0, payloads, server }
}

async function runCheck(options: unknown, raw: Buffer, signal?: AbortSignal): Promise<readonly Hit[]> {
  const check = await clamav.setup(parseOptions(clamav, options), { log })
  return runWith(check, raw, signal ?? new AbortController().signal)
}

describe('clamav options', () => {
  it('defaults to 127.0.0.1:3310 with 64 KiB chunks', () => {
    expect(parseOptions(clamav, {})).toEqual({
      target: { host: '127.0.0.1', port: 3310 },
      chunkSize: 65_536,
      connectTimeoutMs: 5000,
    })
  })

  it('takes a unix socket instead of host/port', () => {
    expect(parseOptions(clamav, { socket: '/run/clamav/clamd.ctl' })).toEqual({
      target: { socket: '/run/clamav/clamd.ctl' },
      chunkSize: 65_536,
      connectTimeoutMs: 5000,
    })
  })

  it("resolves a relative socket path against the config file's directory", () => {
    expect(parseOptions(clamav, { socket: 'run/clamd.ctl' }, '/etc/mailscreen')).toMatchObject({
      target: { socket: '/etc/mailscreen/run/clamd.ctl' },
    })
  })

  it('rejects socket together with host or port, unknown keys and bad values', () => {
    expect(optionsSchema(clamav, process.cwd()).safeParse({ socket: '/s', host: 'h' }).success).toBe(false)
    expect(optionsSchema(clamav, process.cwd()).safeParse({ socket: '/s', port: 3310 }).success).toBe(false)
    expect(optionsSchema(clamav, process.cwd()).safeParse({ hostname: 'x' }).success).toBe(false)
    expect(optionsSchema(clamav, process.cwd()).safeParse({ port: 0 }).success).toBe(false)
    expect(optionsSchema(clamav, process.cwd()).safeParse({ port: 70_000 }).success).toBe(false)
    expect(optionsSchema(clamav, process.cwd()).safeParse({ chunkSize: 0 }).success).toBe(false)
  })

  it('declares CLAMAV_VIRUS at weight 100 in category virus, tempfail, 30 s', () => {
    expect(declaredSymbols(clamav, {}).CLAMAV_VIRUS).toMatchObject({ weight: 100, category: 'virus' })
    expect(clamav.onError).toBe('tempfail')
    expect(clamav.timeoutMs).toBe(30_000)
  })
})

describe('clamav check against a fake clamd', () => {
  it('returns no hits for OK and sends the whole raw message', async () => {
    const fake = await fakeClamd('ok')
    const big = Buffer.concat([RAW, Buffer.alloc(300_000, 'x')])
    expect(await runCheck({ port: fake.port, chunkSize: 4096 }, big)).toEqual([])
    expect(fake.payloads).toHaveLength(1)
    expect(fake.payloads[0]?.equals(big)).toBe(true)
  })

  it('reports FOUND as CLAMAV_VIRUS with the name as evidence', async () => {
    const fake = await fakeClamd('found')
    // This fake flags every stream, so the one part of RAW is named as the carrier.
    expect(await runCheck({ port: fake.port }, RAW)).toEqual([
      { symbol: 'CLAMAV_VIRUS', evidence: ['Eicar-Test-Signature'], parts: ['1'] },
    ])
    expect(fake.payloads).toHaveLength(2)
  })

  it('names the part that carries the virus once the message without it scans clean', async () => {
    const fake = await fakeClamd('content')
    const raw = Buffer.from(
      [
        'Subject: two parts',
        'MIME-Version: 1.0',
        'Content-Type: multipart/mixed; boundary="XYZ"',
        '',
        '--XYZ',
        'Content-Type: text/plain',
        '',
        'hello',
        '--XYZ',
        'Content-Type: application/octet-stream',
        '',
        'a VIRUS here',
        '--XYZ--',
        '',
      ].join('\r\n'),
    )
    expect(await runCheck({ port: fake.port }, raw)).toEqual([
      { symbol: 'CLAMAV_VIRUS', evidence: ['Eicar-Test-Signature'], parts: ['2'] },
    ])
    // The whole, part 1, part 2, and the whole without part 2.
    expect(fake.payloads).toHaveLength(4)
    expect(fake.payloads[3]?.includes('hello')).toBe(true)
    expect(fake.payloads[3]?.includes('VIRUS')).toBe(false)
  })

  it('keeps a virus clamd found past half the time allowed, going without parts rather than past the deadline', async () => {
    const fake = await fakeClamd('found', { port: 0 }, 1_800)
    const options = parseOptions(clamav, { port: fake.port })
    const check = await clamav.setup(options, { log })
    const symbols = declaredSymbols(clamav, options)
    const [outcome] = await runChecks(
      [{ name: 'clamav', check, timeoutMs: 3_000, onError: 'continue', symbols }],
      { queueId: newQueueId(), envelope: testEnvelope, message: createMessageView(RAW), log },
    )
    expect(outcome?.failure).toBeUndefined()
    expect(outcome?.hits).toEqual([{ symbol: 'CLAMAV_VIRUS', evidence: ['Eicar-Test-Signature'] }])
  })

  it('keeps the virus when the scans that locate its part fail or take too long: the hit goes without parts', async () => {
    for (const mode of ['found-then-close', 'found-then-never'] as const) {
      const fake = await fakeClamd(mode)
      const started = Date.now()
      expect(await runCheck({ port: fake.port }, RAW, AbortSignal.timeout(5_000)), mode).toEqual([
        { symbol: 'CLAMAV_VIRUS', evidence: ['Eicar-Test-Signature'] },
      ])
      // Well inside the plugin's own timeout (here 5 s), which would have lost the finding.
      expect(Date.now() - started).toBeLessThan(3_000)
    }
  })

  it('ends the part scans on their budget even when the garbage collector runs meanwhile', async () => {
    const fake = await fakeClamd('found-then-never')
    // The plugin's own timeout, held strongly here, so only the part budget can end it early.
    const pluginTimeout = new AbortController()
    const timer = setTimeout(() => pluginTimeout.abort(), 5_000)
    const started = Date.now()
    try {
      expect(await underGarbageCollection(runCheck({ port: fake.port }, RAW, pluginTimeout.signal))).toEqual([
        { symbol: 'CLAMAV_VIRUS', evidence: ['Eicar-Test-Signature'] },
      ])
    } finally {
      clearTimeout(timer)
    }
    expect(Date.now() - started).toBeLessThan(3_000)
  })

  it('throws on an ERROR reply, even one sent while the message is still being written', async () => {
    const fake = await fakeClamd('error-early')
    const big = Buffer.alloc(4 * 1024 * 1024, 'y')
    await expect(runCheck({ port: fake.port }, big)).rejects.toThrow(/size limit exceeded/)
  })

  it('throws when clamd closes without a reply', async () => {
    const fake = await fakeClamd('close')
    await expect(runCheck({ port: fake.port }, RAW)).rejects.toThrow(/clamd 127\.0\.0\.1:\d+/)
  })

  it('throws when clamd is unreachable', async () => {
    const fake = await fakeClamd('ok')
    const { port } = fake
    await new Promise((r) => fake.server.close(r))
    servers.splice(servers.indexOf(fake.server), 1)
    await expect(runCheck({ port }, RAW)).rejects.toThrow(/cannot connect.*ECONNREFUSED/)
  })

  it('aborts on the signal when clamd never answers', async () => {
    const fake = await fakeClamd('never')
    const started = Date.now()
    await expect(runCheck({ port: fake.port }, RAW, AbortSignal.timeout(200))).rejects.toThrow(/aborted/)
    expect(Date.now() - started).toBeLessThan(2000)
  })

  it('rejects at once with an already-aborted signal', async () => {
    const fake = await fakeClamd('never')
    const controller = new AbortController()
    controller.abort(new Error('stop'))
    await expect(runCheck({ port: fake.port }, RAW, controller.signal)).rejects.toThrow(/aborted: stop/)
  })

  it('times out on its own without a signal', async () => {
    const fake = await fakeClamd('never')
    await expect(instream({ host: '127.0.0.1', port: fake.port }, RAW, { timeoutMs: 150 })).rejects.toThrow(
      /timed out after 150 ms/,
    )
  })

  it('talks to clamd over a unix socket', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'mailscreen-clamav-'))
    try {
      const socket = path.join(dir, 'clamd.sock')
      await fakeClamd('found', { path: socket })
      expect(await runCheck({ socket }, RAW)).toEqual([
        { symbol: 'CLAMAV_VIRUS', evidence: ['Eicar-Test-Signature'], parts: ['1'] },
      ])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('sends one-shot commands', async () => {
    const fake = await fakeClamd('pong')
    expect(await command({ host: '127.0.0.1', port: fake.port }, 'PING', { timeoutMs: 1000 })).toBe('PONG')
  })
})
