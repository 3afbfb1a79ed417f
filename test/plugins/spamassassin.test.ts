/**
 * The spamassassin plugin without a real spamd: request building and response parsing as
 * pure functions, then the check against a fake spamd on 127.0.0.1:0 that answers a canned
 * response, an EX_ error, or never.
 */
import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import spamassassin from '../../plugins/spamassassin/index.js'
import {
  buildRequest,
  parseResponse,
  ping,
  responseComplete,
  SpamdError,
  check as spamdCheck,
} from '../../plugins/spamassassin/spamc.js'
import type { Check, Hit } from '../../src/pipeline/plugin.js'
import { failSymbol, parseOptions } from '../../src/pipeline/plugin.js'
import { silentLog as log, runCheck as runWith } from '../support/check.js'

const MESSAGE = Buffer.from('From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nhello\r\n')

function symbolsResponse(spam: string, body: string): string {
  return `SPAMD/1.1 0 EX_OK\r\nContent-length: ${Buffer.byteLength(body)}\r\nSpam: ${spam}\r\n\r\n${body}`
}

describe('buildRequest', () => {
  it('builds SYMBOLS with Content-length, User and the message', () => {
    expect(buildRequest('SYMBOLS', MESSAGE, 'alice').toString('latin1')).toBe(
      `SYMBOLS SPAMC/1.5\r\nContent-length: ${MESSAGE.length}\r\nUser: alice\r\n\r\n${MESSAGE.toString('latin1')}`,
    )
  })

  it('omits User when none is given; REPORT and PING', () => {
    expect(buildRequest('REPORT', Buffer.from('x')).toString()).toBe(
      'REPORT SPAMC/1.5\r\nContent-length: 1\r\n\r\nx',
    )
    expect(buildRequest('PING').toString()).toBe('PING SPAMC/1.5\r\n\r\n')
  })

  it('counts bytes, not characters', () => {
    const msg = Buffer.from('Subject: é\r\n\r\nü\r\n', 'utf8')
    expect(buildRequest('SYMBOLS', msg).toString('latin1')).toContain(`Content-length: ${msg.length}\r\n`)
  })

  it('rejects a user that would break the header', () => {
    expect(() => buildRequest('SYMBOLS', MESSAGE, 'a\r\nX: y')).toThrow(/invalid user/)
    expect(() => buildRequest('SYMBOLS', MESSAGE, 'two words')).toThrow(/invalid user/)
  })
})

describe('parseResponse', () => {
  it('parses SYMBOLS: spam flag, score, threshold, rule names', () => {
    const r = parseResponse(symbolsResponse('True ; 7.3 / 5.0', 'GTUBE,MISSING_DATE, NO_RELAYS\r\n'))
    expect(r.version).toBe('1.1')
    expect(r.message).toBe('EX_OK')
    expect(r.spam).toEqual({ isSpam: true, score: 7.3, threshold: 5 })
    expect(r.symbols).toEqual(['GTUBE', 'MISSING_DATE', 'NO_RELAYS'])
  })

  it('parses a ham reply with a negative score and an empty rule list', () => {
    const r = parseResponse(symbolsResponse('False ; -1.2 / 5.0', ''))
    expect(r.spam).toEqual({ isSpam: false, score: -1.2, threshold: 5 })
    expect(r.symbols).toEqual([])
  })

  it('accepts the old Yes/No form and bare LF line ends', () => {
    const r = parseResponse('SPAMD/1.0 0 EX_OK\nSpam: Yes ; 12 / 5\n\nA,B')
    expect(r.spam).toEqual({ isSpam: true, score: 12, threshold: 5 })
    expect(r.symbols).toEqual(['A', 'B'])
  })

  it('keeps the REPORT body as text', () => {
    const r = parseResponse(
      symbolsResponse('True ; 1000.0 / 5.0', 'Content analysis details:\n 1000 GTUBE'),
      'REPORT',
    )
    expect(r.body).toContain('GTUBE')
    expect(r.symbols).toEqual([])
  })

  it('parses PONG', () => {
    const r = parseResponse('SPAMD/1.5 0 PONG\r\n', 'PING')
    expect(r.message).toBe('PONG')
    expect(r.spam).toBeUndefined()
  })

  it('throws on EX_ error codes, naming them', () => {
    const err = (() => {
      try {
        parseResponse('SPAMD/1.0 76 Bad header line: (Content-Length mismatch)\r\n')
      } catch (e) {
        return e
      }
    })()
    expect(err).toBeInstanceOf(SpamdError)
    expect((err as SpamdError).code).toBe(76)
    expect(String(err)).toMatch(/error 76 \(EX_PROTOCOL\): Bad header line/)
    expect(() => parseResponse('SPAMD/1.1 75 EX_TEMPFAIL\r\n')).toThrow(/error 75 \(EX_TEMPFAIL\)/)
  })

  it('throws on garbage, a missing or bad Spam header, and truncated bodies', () => {
    expect(() => parseResponse('')).toThrow(/empty response/)
    expect(() => parseResponse('HTTP/1.1 200 OK\r\n\r\n')).toThrow(/not a SPAMD response/)
    expect(() => parseResponse('SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n')).toThrow(/no Spam header/)
    expect(() => parseResponse(symbolsResponse('maybe', 'A'))).toThrow(/bad Spam header/)
    expect(() =>
      parseResponse('SPAMD/1.1 0 EX_OK\r\nContent-length: 10\r\nSpam: True ; 6 / 5\r\n\r\nA,B'),
    ).toThrow(/truncated/)
  })
})

describe('responseComplete', () => {
  it('is true once the body reaches Content-length, or at once for an error code', () => {
    const full = Buffer.from(symbolsResponse('True ; 7.3 / 5.0', 'A,B,C'))
    expect(responseComplete(full)).toBe(true)
    expect(responseComplete(full.subarray(0, full.length - 1))).toBe(false)
    expect(responseComplete(Buffer.from('SPAMD/1.1 0 EX_OK\r\nSpam: True'))).toBe(false)
    expect(responseComplete(Buffer.from('SPAMD/1.0 76 Bad header line\r\n'))).toBe(true)
  })
})

describe('options', () => {
  it('has the documented defaults', () => {
    expect(parseOptions(spamassassin, {})).toEqual({
      target: { host: '127.0.0.1', port: 783 },
      user: undefined,
      maxSize: 512_000,
      timeoutMs: 30_000,
    })
    expect(parseOptions(spamassassin, { socket: '/run/spamd.sock', user: 'mail' })).toMatchObject({
      target: { socket: '/run/spamd.sock' },
      user: 'mail',
    })
    // A relative socket is in the config file's directory, like every path in the config.
    expect(parseOptions(spamassassin, { socket: 'spamd.sock' }, '/etc/mailscreen')).toMatchObject({
      target: { socket: '/etc/mailscreen/spamd.sock' },
    })
    expect(spamassassin.onError).toBe('continue')
    expect(failSymbol(spamassassin.name)).toBe('SPAMASSASSIN_FAIL')
  })

  it('rejects unknown keys and socket with host/port', () => {
    expect(() => parseOptions(spamassassin, { hots: 'x' })).toThrow()
    expect(() => parseOptions(spamassassin, { socket: '/s', port: 783 })).toThrow(/socket/)
    expect(() => parseOptions(spamassassin, { maxSize: 0 })).toThrow()
  })
})

// --- a fake spamd ---------------------------------------------------------------------------

type Behaviour = 'never' | ((request: Buffer) => string)

interface Fake {
  readonly port: number
  readonly requests: Buffer[]
  close(): Promise<void>
}

const fakes: Fake[] = []

afterEach(async () => {
  await Promise.all(fakes.splice(0).map((f) => f.close()))
})

/** Reads the request up to its Content-length, then answers (or never does). */
async function fakeSpamd(behaviour: Behaviour): Promise<Fake> {
  const requests: Buffer[] = []
  const sockets = new Set<net.Socket>()
  // allowHalfOpen: like spamd, keep the connection after the client's FIN (spamc half-closes).
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let buf = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) return
      const length = Number(/Content-length: (\d+)/i.exec(buf.subarray(0, end).toString())?.[1] ?? 0)
      if (buf.length < end + 4 + length) return
      requests.push(buf)
      if (behaviour === 'never') return
      socket.end(behaviour(buf))
    })
  })
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  const fake: Fake = {
    port: address.port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
  fakes.push(fake)
  return fake
}

async function checkFor(options: Record<string, unknown>): Promise<Check> {
  return spamassassin.setup(parseOptions(spamassassin, options), { log })
}

function run(
  check: Check,
  raw: Buffer,
  signal: AbortSignal = AbortSignal.timeout(5000),
): Promise<readonly Hit[]> {
  return runWith(check, raw, signal)
}

describe('spamassassin check against a fake spamd', () => {
  it('reports SPAMD_SCORE with factor = the score and the rules as evidence', async () => {
    const fake = await fakeSpamd(() =>
      symbolsResponse('True ; 7.3 / 5.0', 'BAYES_99,HTML_MESSAGE,MISSING_DATE'),
    )
    const check = await checkFor({ port: fake.port, user: 'filter' })
    expect(await run(check, MESSAGE)).toEqual([
      {
        symbol: 'SPAMD_SCORE',
        factor: 7.3,
        evidence: ['7.3/5.0', 'BAYES_99', 'HTML_MESSAGE', 'MISSING_DATE'],
      },
    ])
    expect(fake.requests).toHaveLength(1)
    expect(fake.requests[0]?.toString('latin1')).toBe(
      `SYMBOLS SPAMC/1.5\r\nContent-length: ${MESSAGE.length}\r\nUser: filter\r\n\r\n${MESSAGE.toString('latin1')}`,
    )
  })

  it('reports ham scores as they are, negative included', async () => {
    const fake = await fakeSpamd(() => symbolsResponse('False ; -0.5 / 5.0', 'ALL_TRUSTED'))
    const check = await checkFor({ port: fake.port })
    expect(await run(check, MESSAGE)).toEqual([
      { symbol: 'SPAMD_SCORE', factor: -0.5, evidence: ['-0.5/5.0', 'ALL_TRUSTED'] },
    ])
    expect(fake.requests[0]?.toString('latin1')).not.toContain('User:')
  })

  it('skips messages above maxSize without connecting', async () => {
    const fake = await fakeSpamd(() => symbolsResponse('True ; 9 / 5', 'X'))
    const check = await checkFor({ port: fake.port, maxSize: 10 })
    expect(await run(check, MESSAGE)).toEqual([
      { symbol: 'SPAMD_SKIPPED_TOO_BIG', evidence: [`${MESSAGE.length} bytes > maxSize 10`] },
    ])
    expect(fake.requests).toHaveLength(0)
  })

  it('throws on an EX_ error reply', async () => {
    const fake = await fakeSpamd(() => 'SPAMD/1.0 76 Bad header line: (Content-Length mismatch: 1 vs 2)\r\n')
    const check = await checkFor({ port: fake.port })
    await expect(run(check, MESSAGE)).rejects.toThrow(
      /spamd 127\.0\.0\.1:\d+: error 76 \(EX_PROTOCOL\): Bad header line/,
    )
  })

  it('throws on a reply that is not SPAMD', async () => {
    const fake = await fakeSpamd(() => 'hello\r\n')
    const check = await checkFor({ port: fake.port })
    await expect(run(check, MESSAGE)).rejects.toThrow(/not a SPAMD response/)
  })

  it('aborts when the signal fires while spamd never answers', async () => {
    const fake = await fakeSpamd('never')
    const check = await checkFor({ port: fake.port })
    const started = Date.now()
    await expect(run(check, MESSAGE, AbortSignal.timeout(200))).rejects.toThrow(
      /spamd 127\.0\.0\.1:\d+: aborted/,
    )
    expect(Date.now() - started).toBeLessThan(3000)
    const ac = new AbortController()
    ac.abort()
    await expect(run(check, MESSAGE, ac.signal)).rejects.toThrow(/aborted/)
  })

  it('times out after timeoutMs when spamd never answers', async () => {
    const fake = await fakeSpamd('never')
    const check = await checkFor({ port: fake.port, timeoutMs: 150 })
    await expect(run(check, MESSAGE)).rejects.toThrow(/timed out after 150 ms/)
  })

  it('throws when nothing listens', async () => {
    const fake = await fakeSpamd('never')
    const port = fake.port
    await fake.close()
    const check = await checkFor({ port })
    await expect(run(check, MESSAGE)).rejects.toThrow(/spamd 127\.0\.0\.1:\d+: cannot connect/)
  })

  it('throws when spamd closes without a reply', async () => {
    const fake = await fakeSpamd(() => '')
    await expect(spamdCheck({ host: '127.0.0.1', port: fake.port }, MESSAGE)).rejects.toThrow(
      /closed without a reply/,
    )
  })

  it('pings', async () => {
    const server = net.createServer((s) => {
      s.resume() // read (and drop) the request so the client's FIN is seen and the socket closes
      s.end('SPAMD/1.5 0 PONG\r\n')
    })
    await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve))
    const address = server.address()
    if (address === null || typeof address === 'string') throw new Error('no address')
    try {
      expect(await ping({ host: '127.0.0.1', port: address.port }, { timeoutMs: 1000 })).toBe(true)
    } finally {
      await new Promise((r) => server.close(r))
    }
  })
})
