// The milter protocol layer against Debian's real `miltertest` (the MTA side of libmilter's
// protocol, driven by Lua scripts), plus raw sockets for what miltertest cannot send: a packet
// that is too long and a command byte that does not exist. The server runs in this process
// with a small handler that decides by the Subject:
//   GTUBE       → reject 550 5.7.1
//   quarantine  → quarantine (hold) with a reason
//   replace     → new body, Subject changed
//   slow        → answers after the time budget (the default action, tempfail, applies)
//   otherwise   → accept, X-mailscreen-Scanned added and X-First inserted on top
// miltertest prints nothing when a script fails, so every script reports through mt.echo and
// the test reads the verdict from its output.
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { promisify } from 'node:util'
import { pino } from 'pino'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { encodeCommand, encodePacket, FrameDecoder } from '../../src/ingress/milter/codec.js'
import { createMilterServer, type MilterServer } from '../../src/ingress/milter/server.js'
import { type MilterDecision, type MilterMessage, readContent } from '../../src/ingress/milter/session.js'

const MILTERTEST = '/usr/bin/miltertest'
const run = promisify(execFile)

interface Seen {
  readonly message: MilterMessage
  readonly content: string
}

let dir: string
let server: MilterServer
let unixServer: MilterServer
let port: number
let unixPath: string
const seen: Seen[] = []
/** Every log line the servers wrote, parsed. */
const logLines: { msg: string; code?: string; level: number }[] = []
const log = pino(
  { level: 'debug' },
  new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) logLines.push(JSON.parse(line))
      done()
    },
  }),
)

async function decide(message: MilterMessage): Promise<MilterDecision> {
  const content = (await readContent(message.content)).toString('latin1')
  seen.push({ message, content })
  const subject = message.headers.find((h) => h.name.toLowerCase() === 'subject')?.value ?? ''
  if (subject.includes('GTUBE')) {
    return {
      action: 'reject',
      reply: { code: 550, status: '5.7.1', text: 'Message rejected as spam (GTUBE)' },
    }
  }
  if (subject.includes('quarantine')) return { action: 'quarantine', reason: 'held by mailscreen test' }
  if (subject.includes('replace')) {
    return {
      action: 'accept',
      headers: [{ op: 'chgheader', name: 'Subject', index: 1, value: `{Stripped} ${subject}` }],
      body: Buffer.from('The attachment was removed.\r\n'),
    }
  }
  if (subject.includes('slow')) await new Promise((resolve) => setTimeout(resolve, 1500))
  return {
    action: 'accept',
    headers: [
      { op: 'addheader', name: 'X-mailscreen-Scanned', value: 'clean' },
      { op: 'insheader', index: 0, name: 'X-First', value: 'top' },
    ],
  }
}

beforeAll(async () => {
  if (!existsSync(MILTERTEST)) throw new Error(`${MILTERTEST} missing: run scripts/install-deps.sh`)
  dir = await mkdtemp(path.join(os.tmpdir(), 'miltertest-'))
  const options = {
    timeoutMs: 500,
    defaultAction: 'tempfail' as const,
    progressIntervalMs: 0,
    spillThreshold: 4096,
    tmpDir: dir,
    onMessage: decide,
    log,
  }
  server = createMilterServer({ ...options, listen: 'inet:127.0.0.1:0' })
  const [bound] = await server.listen()
  port = (bound as { port: number }).port
  unixPath = path.join(dir, 'milter.sock')
  unixServer = createMilterServer({ ...options, listen: `unix:${unixPath}` })
  await unixServer.listen()
})

afterAll(async () => {
  await server?.close()
  await unixServer?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

beforeEach(() => {
  seen.length = 0
})

/** Helpers every script starts with. */
const PRELUDE = `
function check(ok, what)
  if not ok then
    mt.echo("FAIL: " .. what)
    error(what)
  end
end
function open()
  local conn = mt.connect(SOCKET, 5, 0.2)
  check(conn ~= nil, "connect to " .. SOCKET)
  return conn
end
function ok(result, what)
  check(result == nil, what .. ": " .. tostring(result))
end
-- Everything up to the headers of one message.
function envelope(conn, subject)
  ok(mt.mailfrom(conn, "<sender@example.com>", "BODY=8BITMIME"), "mailfrom")
  ok(mt.rcptto(conn, "<one@example.net>"), "rcptto one")
  ok(mt.rcptto(conn, "<two@example.net>"), "rcptto two")
  ok(mt.header(conn, "From", "Sender <sender@example.com>"), "header From")
  ok(mt.header(conn, "Subject", subject), "header Subject")
  -- We negotiate NOEOH; miltertest then refuses to send the step at all.
  if not mt.test_option(conn, SMFIP_NOEOH) then ok(mt.eoh(conn), "eoh") end
end
`

/** Run one Lua script; it passes when it echoes PASS and exits 0. */
async function miltertest(
  body: string,
  socket = `inet:${port}@127.0.0.1`,
): Promise<{ code: number; stdout: string }> {
  const file = path.join(dir, `script-${Date.now()}-${Math.random().toString(36).slice(2)}.lua`)
  await writeFile(file, `SOCKET = "${socket}"\n${PRELUDE}\n${body}\nmt.echo("PASS")\n`)
  try {
    const { stdout } = await run(MILTERTEST, ['-s', file], { timeout: 20_000 })
    return { code: 0, stdout }
  } catch (err) {
    const e = err as { code?: number; stdout?: string }
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '' }
  } finally {
    await rm(file, { force: true })
  }
}

async function expectPass(body: string, socket?: string): Promise<void> {
  const result = await miltertest(body, socket)
  expect(result.stdout).not.toContain('FAIL')
  expect(result.stdout).toContain('PASS')
  expect(result.code).toBe(0)
}

const CLEAN_TRANSACTION = `
conn = open()
ok(mt.macro(conn, SMFIC_CONNECT, "j", "mx.example.org", "{client_addr}", "192.0.2.25"), "connect macros")
ok(mt.conninfo(conn, "client.example", "192.0.2.25"), "conninfo")
ok(mt.helo(conn, "helo.client.example"), "helo")
ok(mt.macro(conn, SMFIC_MAIL, "i", "4XyZ1AbC", "{auth_authen}", "alice"), "mail macros")
envelope(conn, "a clean message")
ok(mt.bodystring(conn, "Hello,\\r\\nthis is clean.\\r\\n"), "body")
ok(mt.eom(conn), "eom")
check(mt.getreply(conn) == SMFIR_ACCEPT, "eom reply is accept: " .. tostring(mt.getreply(conn)))
check(mt.eom_check(conn, MT_HDRADD, "X-mailscreen-Scanned", "clean"), "X-mailscreen-Scanned added")
check(mt.eom_check(conn, MT_HDRINSERT, "X-First", "top", 0), "X-First inserted at the top")
check(not mt.eom_check(conn, MT_BODYCHANGE), "body unchanged")
mt.disconnect(conn)
`

describe('miltertest against the milter server', () => {
  it('negotiates only what mailscreen needs', async () => {
    await expectPass(`
conn = open()
ok(mt.negotiate(conn, nil, nil, nil), "negotiate")
check(mt.test_action(conn, SMFIF_ADDHDRS), "ADDHDRS")
check(mt.test_action(conn, SMFIF_CHGHDRS), "CHGHDRS")
check(mt.test_action(conn, SMFIF_CHGBODY), "CHGBODY")
check(mt.test_action(conn, SMFIF_QUARANTINE), "QUARANTINE")
check(not mt.test_action(conn, SMFIF_ADDRCPT), "no ADDRCPT")
check(not mt.test_action(conn, SMFIF_DELRCPT), "no DELRCPT")
check(not mt.test_action(conn, SMFIF_CHGFROM), "no CHGFROM")
check(not mt.test_option(conn, SMFIP_NODATA), "DATA wanted")
check(not mt.test_option(conn, SMFIP_NR_DATA), "a reply to DATA")
check(mt.test_option(conn, SMFIP_NOUNKNOWN), "NOUNKNOWN")
check(not mt.test_option(conn, SMFIP_NOCONNECT), "connect wanted")
check(not mt.test_option(conn, SMFIP_NOHDRS), "headers wanted")
check(not mt.test_option(conn, SMFIP_NOBODY), "body wanted")
check(mt.test_option(conn, SMFIP_NOEOH), "NOEOH")
check(mt.test_option(conn, SMFIP_NR_HDR), "no reply to headers")
check(mt.test_option(conn, SMFIP_NR_BODY), "no reply to body chunks")
mt.disconnect(conn)
`)
  })

  it('runs a full transaction: connect info, macros, envelope, headers, body; headers added', async () => {
    await expectPass(CLEAN_TRANSACTION)
    expect(seen).toHaveLength(1)
    const { message, content } = seen[0] as Seen
    expect(message.envelope).toMatchObject({
      mailFrom: 'sender@example.com',
      rcptTo: ['one@example.net', 'two@example.net'],
      client: { address: '192.0.2.25', name: 'client.example', helo: 'helo.client.example' },
      body: '8BITMIME',
    })
    expect(message.queueId).toBe('4XyZ1AbC')
    expect(message.authUser).toBe('alice')
    expect(message.macros).toMatchObject({ j: 'mx.example.org', client_addr: '192.0.2.25' })
    expect(content).toBe(
      'From: Sender <sender@example.com>\r\nSubject: a clean message\r\n\r\nHello,\r\nthis is clean.\r\n',
    )
  })

  it('rejects GTUBE with the 550 5.7.1 reply', async () => {
    await expectPass(`
conn = open()
ok(mt.conninfo(conn, "spammer.example", "198.51.100.9"), "conninfo")
envelope(conn, "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X")
ok(mt.bodystring(conn, "buy now\\r\\n"), "body")
ok(mt.eom(conn), "eom")
check(mt.getreply(conn) == SMFIR_REPLYCODE, "eom reply is a reply code: " .. tostring(mt.getreply(conn)))
check(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", "Message rejected as spam (GTUBE)"), "550 5.7.1 text")
check(not mt.eom_check(conn, MT_HDRADD), "nothing added to a rejected message")
mt.disconnect(conn)
`)
  })

  it('quarantines with a reason and accepts', async () => {
    await expectPass(`
conn = open()
envelope(conn, "please quarantine me")
ok(mt.bodystring(conn, "x\\r\\n"), "body")
ok(mt.eom(conn), "eom")
check(mt.getreply(conn) == SMFIR_ACCEPT, "accepted")
check(mt.eom_check(conn, MT_QUARANTINE, "held by mailscreen test"), "quarantined with the reason")
mt.disconnect(conn)
`)
  })

  it('replaces the body and changes the subject', async () => {
    await expectPass(`
conn = open()
envelope(conn, "replace the attachment")
ok(mt.bodystring(conn, "MIME with a bad attachment\\r\\n"), "body")
ok(mt.eom(conn), "eom")
check(mt.getreply(conn) == SMFIR_ACCEPT, "accepted")
check(mt.eom_check(conn, MT_BODYCHANGE, "The attachment was removed.\\r\\n"), "body replaced")
check(mt.eom_check(conn, MT_HDRCHANGE, "Subject", "{Stripped} replace the attachment"), "subject changed")
mt.disconnect(conn)
`)
  })

  it('spills a large body to a temp file and removes it afterwards', async () => {
    await expectPass(`
conn = open()
envelope(conn, "big message")
for i = 1, 20 do
  ok(mt.bodystring(conn, string.rep("0123456789", 100) .. "\\r\\n"), "body chunk " .. i)
end
ok(mt.eom(conn), "eom")
check(mt.getreply(conn) == SMFIR_ACCEPT, "accepted")
mt.disconnect(conn)
`)
    expect(seen).toHaveLength(1)
    const content = (seen[0] as Seen).message.content
    expect(content.path?.startsWith(dir)).toBe(true)
    expect(content.size).toBeGreaterThan(20_000)
    expect(existsSync(content.path as string)).toBe(false)
  })

  it('forgets a message aborted mid-body and takes the next one on the same connection', async () => {
    await expectPass(`
conn = open()
ok(mt.conninfo(conn, "client.example", "192.0.2.25"), "conninfo")
envelope(conn, "first, aborted")
ok(mt.bodystring(conn, "FIRST BODY\\r\\n"), "first body")
ok(mt.abort(conn), "abort")
ok(mt.mailfrom(conn, "<second@example.com>"), "second mailfrom")
ok(mt.rcptto(conn, "<three@example.net>"), "second rcptto")
ok(mt.header(conn, "Subject", "second"), "second header")
ok(mt.bodystring(conn, "SECOND BODY\\r\\n"), "second body")
ok(mt.eom(conn), "second eom")
check(mt.getreply(conn) == SMFIR_ACCEPT, "second message accepted")
check(mt.eom_check(conn, MT_HDRADD, "X-mailscreen-Scanned", "clean"), "header added")
mt.disconnect(conn)
`)
    expect(seen).toHaveLength(1)
    const { message, content } = seen[0] as Seen
    expect(message.envelope.mailFrom).toBe('second@example.com')
    expect(message.envelope.rcptTo).toEqual(['three@example.net'])
    expect(content).toBe('Subject: second\r\n\r\nSECOND BODY\r\n')
    expect(await readdir(dir)).toEqual(['milter.sock'])
  })

  it('answers the default action (tempfail 451 4.7.1) when the handler overruns its budget', async () => {
    await expectPass(`
conn = open()
envelope(conn, "slow scan")
ok(mt.bodystring(conn, "x\\r\\n"), "body")
ok(mt.eom(conn), "eom")
check(mt.getreply(conn) == SMFIR_REPLYCODE, "reply code")
check(mt.eom_check(conn, MT_SMTPREPLY, "451", "4.7.1",
  "Message content could not be scanned in time, try again later"), "451 4.7.1")
mt.disconnect(conn)
`)
  })

  it('serves several miltertest sessions at once', async () => {
    const results = await Promise.all(Array.from({ length: 6 }, () => miltertest(CLEAN_TRANSACTION)))
    for (const result of results) expect(result.stdout).toContain('PASS')
    expect(seen).toHaveLength(6)
  })

  it('speaks over a unix socket', async () => {
    await expectPass(CLEAN_TRANSACTION, `unix:${unixPath}`)
  })

  it('cleans up after an abrupt disconnect mid-message', async () => {
    await expectPass(`
conn = open()
envelope(conn, "dropped")
for i = 1, 10 do ok(mt.bodystring(conn, string.rep("z", 1000) .. "\\r\\n"), "body") end
mt.disconnect(conn, false)
`)
    await waitFor(() => server.connections === 0)
    await waitFor(async () => (await readdir(dir)).length === 1)
    expect(seen).toHaveLength(0)
  })
})

describe('malformed packets from a raw socket', () => {
  /**
   * Send each chunk once every earlier one has been answered (as an MTA waits for the OPTNEG
   * answer); resolve with the response codes once the server closes the connection.
   */
  async function sendRaw(...chunks: Buffer[]): Promise<{ closed: boolean; replies: number[] }> {
    const socket = net.connect(port, '127.0.0.1')
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
    const decoder = new FrameDecoder()
    const replies: number[] = []
    socket.on('data', (chunk: Buffer) => {
      for (const packet of decoder.push(chunk)) replies.push(packet.code)
    })
    socket.on('error', () => {})
    const closed = new Promise<boolean>((resolve) => {
      socket.on('close', () => resolve(true))
      setTimeout(() => resolve(false), 5000)
    })
    for (const [i, chunk] of chunks.entries()) {
      if (i > 0) await waitFor(() => replies.length >= i || socket.destroyed)
      socket.write(chunk)
    }
    const result = await closed
    socket.destroy()
    return { closed: result, replies }
  }

  const OPTNEG = encodeCommand({ type: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff })

  it('ends the session on a packet longer than the maximum; the next miltertest session works', async () => {
    const header = Buffer.alloc(4)
    header.writeUInt32BE(0x7fff_ffff, 0)
    const result = await sendRaw(OPTNEG, Buffer.concat([header, Buffer.from('B')]))
    expect(result.closed).toBe(true)
    expect(result.replies).toEqual([0x4f]) // the OPTNEG answer, then nothing
    await waitFor(() => logLines.some((l) => l.code === 'MSC_MILTER_PACKET_TOO_LONG'))
    expect(logLines.find((l) => l.code === 'MSC_MILTER_PACKET_TOO_LONG')?.msg).toBe('milter session error')
    await expectPass(CLEAN_TRANSACTION)
  })

  it('ends the session on an unknown command; the next miltertest session works', async () => {
    const result = await sendRaw(OPTNEG, encodePacket(0x5a, Buffer.from('what is this')))
    expect(result.closed).toBe(true)
    await waitFor(() => logLines.some((l) => l.code === 'MSC_MILTER_UNKNOWN_COMMAND'))
    await expectPass(CLEAN_TRANSACTION)
  })

  it('ends the session on a command before negotiation, and on garbage', async () => {
    expect((await sendRaw(encodeCommand({ type: 'helo', name: 'x' }))).closed).toBe(true)
    await waitFor(() => logLines.some((l) => l.code === 'MSC_MILTER_STATE'))
    expect((await sendRaw(Buffer.from('EHLO mail.example.com\r\n'))).closed).toBe(true)
    await expectPass(CLEAN_TRANSACTION)
    expect(server.connections).toBe(0)
  })
})

async function waitFor(condition: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
