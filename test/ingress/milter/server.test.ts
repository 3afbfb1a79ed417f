import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
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
} from '../../../src/ingress/milter/codec.js'
import {
  createMilterServer,
  formatMilterAddress,
  type MilterServer,
  milterSection,
  milterServerOptions,
  parseMilterListen,
} from '../../../src/ingress/milter/server.js'

describe('parseMilterListen', () => {
  it('reads Postfix-style addresses', () => {
    expect(parseMilterListen('inet:127.0.0.1:8891')).toEqual({ kind: 'inet', host: '127.0.0.1', port: 8891 })
    expect(parseMilterListen('inet:localhost:8891')).toEqual({ kind: 'inet', host: 'localhost', port: 8891 })
    expect(parseMilterListen('inet6:[::1]:8891')).toEqual({ kind: 'inet', host: '::1', port: 8891 })
    expect(parseMilterListen('inet:[::1]:0')).toEqual({ kind: 'inet', host: '::1', port: 0 })
    expect(parseMilterListen('unix:/run/mailscreen/milter.sock')).toEqual({
      kind: 'unix',
      path: '/run/mailscreen/milter.sock',
    })
  })

  it('reads Sendmail/libmilter-style addresses', () => {
    expect(parseMilterListen('inet:8891@127.0.0.1')).toEqual({ kind: 'inet', host: '127.0.0.1', port: 8891 })
    expect(parseMilterListen('inet6:8891@::1')).toEqual({ kind: 'inet', host: '::1', port: 8891 })
    expect(parseMilterListen('local:/var/run/f.sock')).toEqual({ kind: 'unix', path: '/var/run/f.sock' })
  })

  it('refuses anything else', () => {
    for (const bad of [
      '127.0.0.1:8891',
      'inet:8891',
      'inet:127.0.0.1',
      'inet:127.0.0.1:65536',
      'inet6:127.0.0.1:8891',
      'inet6:::1:8891',
      'inet:bad_host!:25',
      'tcp:127.0.0.1:25',
      'unix:',
      'inet:127.0.0.1:-1',
    ]) {
      expect(parseMilterListen(bad), bad).toBeUndefined()
    }
  })

  it('round-trips through formatMilterAddress', () => {
    for (const text of ['inet:127.0.0.1:8891', 'inet:[::1]:8891', 'unix:/tmp/x.sock']) {
      const parsed = parseMilterListen(text)
      expect(parsed && formatMilterAddress(parsed)).toBe(text)
    }
  })
})

describe('milterSection', () => {
  it('fills every default', () => {
    const config = milterSection.parse({})
    expect(config).toEqual({
      listen: [{ kind: 'inet', host: '127.0.0.1', port: 8891 }],
      timeout: 60_000,
      defaultAction: 'tempfail',
      defaultHeader: { name: 'X-mailscreen-Warning', value: 'not scanned (time budget exceeded)' },
      spillThreshold: 1_048_576,
      maxHeaderSize: 1_048_576,
      maxHeaderFields: 10_000,
      progressInterval: 10_000,
      recipientTimeout: 10_000,
      maxPacket: 131_072,
      maxConnections: 1000,
      idleTimeout: 1_800_000,
      socketMode: 0o660,
    })
  })

  it('takes one address or a list, durations and an octal socket mode', () => {
    const config = milterSection.parse({
      listen: ['inet:127.0.0.1:8891', 'unix:/tmp/m.sock'],
      timeout: '2m',
      defaultAction: 'accept',
      socketMode: '0666',
    })
    expect(config.listen).toHaveLength(2)
    expect(config.timeout).toBe(120_000)
    expect(config.socketMode).toBe(0o666)
    expect(milterSection.parse({ listen: 'unix:/tmp/m.sock' }).listen).toEqual([
      { kind: 'unix', path: '/tmp/m.sock' },
    ])
  })

  it('refuses bad values and unknown keys', () => {
    for (const bad of [
      { listen: 'inet:8891' },
      { listen: [] },
      { defaultAction: 'reject' },
      { maxPacket: 1000 },
      { maxHeaderFields: 10 },
      { maxHeaderSize: '1MB' },
      { timeout: 'soon' },
      { socketMode: '999' },
      { defaultHeader: { name: 'Bad Name', value: 'x' } },
      { listne: 'inet:127.0.0.1:1' },
    ]) {
      expect(milterSection.safeParse(bad).success, JSON.stringify(bad)).toBe(false)
    }
  })

  it('turns into server options', () => {
    const options = milterServerOptions(milterSection.parse({ tmpDir: '/var/tmp' }), {
      onMessage: async () => ({ action: 'accept' }),
    })
    expect(options).toMatchObject({
      listen: ['inet:127.0.0.1:8891'],
      timeoutMs: 60_000,
      defaultAction: 'tempfail',
      tmpDir: '/var/tmp',
      maxPacket: 131_072,
    })
  })
})

/** Minimal MTA side: send commands, collect responses. */
async function mtaConnect(target: { port: number } | { path: string }) {
  const socket = 'port' in target ? net.connect(target.port, '127.0.0.1') : net.connect(target.path)
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('error', reject)
  })
  const decoder = new FrameDecoder()
  const responses: MilterResponse[] = []
  socket.on('data', (chunk: Buffer) => {
    for (const packet of decoder.push(chunk)) responses.push(decodeResponse(packet))
  })
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
  return {
    socket,
    responses,
    closed,
    send: (...commands: (MilterCommand | Buffer)[]) =>
      socket.write(Buffer.concat(commands.map((c) => (Buffer.isBuffer(c) ? c : encodeCommand(c))))),
    async until(predicate: () => boolean): Promise<void> {
      const deadline = Date.now() + 5000
      while (!predicate()) {
        if (Date.now() > deadline) throw new Error(`timed out with ${JSON.stringify(responses)}`)
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    },
  }
}

const transaction = (subject: string): MilterCommand[] => [
  { type: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff },
  { type: 'connect', hostname: 'c.example', family: 'inet4', port: 1234, address: '192.0.2.1' },
  { type: 'mail', sender: '<a@example.com>', args: [] },
  { type: 'rcpt', recipient: '<b@example.net>', args: [] },
  headerCommand('Subject', subject),
  { type: 'body', chunk: Buffer.from('hello\r\n') },
  { type: 'eob', chunk: Buffer.alloc(0) },
]

describe('createMilterServer', () => {
  let dir: string
  let server: MilterServer | undefined

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'milter-server-'))
  })

  afterEach(async () => {
    await server?.close()
    server = undefined
    await rm(dir, { recursive: true, force: true })
  })

  const base = {
    timeoutMs: 2000,
    defaultAction: 'tempfail' as const,
    progressIntervalMs: 0,
    onMessage: async () => ({
      action: 'accept' as const,
      headers: [{ op: 'addheader' as const, name: 'X-Seen', value: 'yes' }],
    }),
  }

  it('serves many connections at once on TCP', async () => {
    server = createMilterServer({ ...base, listen: 'inet:127.0.0.1:0', tmpDir: dir })
    const [bound] = await server.listen()
    expect(bound?.kind).toBe('inet')
    const port = (bound as { port: number }).port
    const clients = await Promise.all(Array.from({ length: 20 }, () => mtaConnect({ port })))
    for (const [i, client] of clients.entries()) client.send(...transaction(`message ${i}`))
    await Promise.all(clients.map((c) => c.until(() => c.responses.at(-1)?.type === 'accept')))
    expect(server.connections).toBe(20)
    for (const client of clients) {
      expect(client.responses.slice(1)).toEqual([
        { type: 'addheader', name: 'X-Seen', value: 'yes' },
        { type: 'accept' },
      ])
      client.socket.end()
    }
    await Promise.all(clients.map((c) => c.closed))
  })

  it('ends only the session that broke the protocol; the others and new ones go on', async () => {
    server = createMilterServer({ ...base, listen: 'inet:127.0.0.1:0', tmpDir: dir })
    const [bound] = await server.listen()
    const port = (bound as { port: number }).port
    const good = await mtaConnect({ port })
    const bad = await mtaConnect({ port })
    good.send(...transaction('first').slice(0, 4))
    bad.send(encodePacket(0x5a, Buffer.from('garbage')))
    await bad.closed
    good.send(...transaction('first').slice(4))
    await good.until(() => good.responses.at(-1)?.type === 'accept')
    const later = await mtaConnect({ port })
    later.send(...transaction('later'))
    await later.until(() => later.responses.at(-1)?.type === 'accept')
    good.socket.destroy()
    later.socket.destroy()
  })

  it('listens on a unix socket with the given mode, and removes it on close', async () => {
    const sock = path.join(dir, 'milter.sock')
    server = createMilterServer({ ...base, listen: `unix:${sock}`, tmpDir: dir, socketMode: 0o600 })
    expect(await server.listen()).toEqual([{ kind: 'unix', path: sock }])
    expect((await stat(sock)).mode & 0o777).toBe(0o600)
    const client = await mtaConnect({ path: sock })
    client.send(...transaction('over unix'))
    await client.until(() => client.responses.at(-1)?.type === 'accept')
    client.socket.destroy()
    await server.close()
    server = undefined
    expect(existsSync(sock)).toBe(false)
  })

  it('replaces a stale unix socket, but not a live one or a regular file', async () => {
    const sock = path.join(dir, 'stale.sock')
    // A listener killed before it could unlink its socket leaves the file behind.
    const child = spawnSync(process.execPath, [
      '-e',
      `require('node:net').createServer().listen(${JSON.stringify(sock)}, () => process.kill(process.pid, 'SIGKILL'))`,
    ])
    expect(child.signal).toBe('SIGKILL')
    expect((await stat(sock)).isSocket()).toBe(true)

    server = createMilterServer({ ...base, listen: `unix:${sock}`, tmpDir: dir })
    await server.listen()

    const second = createMilterServer({ ...base, listen: `unix:${sock}`, tmpDir: dir })
    await expect(second.listen()).rejects.toThrow(/another process listens/)
    await second.close()

    const file = path.join(dir, 'plain-file')
    await writeFile(file, 'x')
    const third = createMilterServer({ ...base, listen: `unix:${file}`, tmpDir: dir })
    await expect(third.listen()).rejects.toThrow(/not a socket/)
    await third.close()
    expect(existsSync(file)).toBe(true)
  })

  it('lets an answer in progress finish on close, then closes the connection', async () => {
    let release: () => void = () => {}
    server = createMilterServer({
      ...base,
      listen: 'inet:127.0.0.1:0',
      tmpDir: dir,
      closeTimeoutMs: 5000,
      onMessage: () =>
        new Promise((resolve) => {
          release = () => resolve({ action: 'accept' })
        }),
    })
    const [bound] = await server.listen()
    const client = await mtaConnect({ port: (bound as { port: number }).port })
    client.send(...transaction('slow'))
    await new Promise((resolve) => setTimeout(resolve, 100))
    const closing = server.close()
    setTimeout(() => release(), 100)
    await closing
    server = undefined
    await client.closed
    expect(client.responses.at(-1)).toEqual({ type: 'accept' })
  })

  it('drops a connection whose MTA does not read the answer, after the idle timeout', async () => {
    server = createMilterServer({
      ...base,
      listen: 'inet:127.0.0.1:0',
      tmpDir: dir,
      idleTimeoutMs: 500,
      // More than the socket buffers of both ends hold: the write waits for the MTA to read.
      onMessage: async () => ({ action: 'accept' as const, body: Buffer.alloc(30 * 1024 * 1024, 0x78) }),
    })
    const [bound] = await server.listen()
    const client = await mtaConnect({ port: (bound as { port: number }).port })
    client.send(...transaction('never read'))
    client.socket.pause()
    for (let waited = 0; server.connections > 0 && waited < 8_000; waited += 50)
      await new Promise((resolve) => setTimeout(resolve, 50))
    expect(server.connections).toBe(0)
    client.socket.destroy()
  })

  it('refuses an invalid listen address at creation', () => {
    expect(() => createMilterServer({ ...base, listen: 'inet:8891' })).toThrow(/not a milter address/)
  })
})
