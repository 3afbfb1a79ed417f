import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { SmtpReplyError } from '../../src/errors.js'
import type { Envelope } from '../../src/ingress/envelope.js'
import { newQueueId, type QueueId } from '../../src/queue/ids.js'
import { SPOOL_STATES, Spool } from '../../src/queue/spool.js'
import { type RetryState, SPOOL_FORMAT, type SpoolHeader } from '../../src/queue/spool-file.js'

const envelope: Envelope = {
  mailFrom: 'sender@example.org',
  rcptTo: ['a@example.net', 'b@example.net'],
  client: { address: '192.0.2.1', helo: 'client.example.org' },
  peer: { address: '127.0.0.1' },
  receivedAt: 1_700_000_000_000,
}

const MESSAGE = Buffer.from(
  'Subject: test\r\nFrom: sender@example.org\r\n\r\nbody \xe9\xff\r\n.\r\n',
  'latin1',
)

let dir: string
let spool: Spool

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailscreen-spool-'))
  spool = new Spool(dir)
  await spool.init()
})

afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

function header(id: QueueId = newQueueId()): SpoolHeader {
  return { v: SPOOL_FORMAT, id, envelope }
}

function failingStream(err: Error): Readable {
  return Readable.from(
    (async function* () {
      yield Buffer.from('Subject: partial\r\n\r\n')
      yield Buffer.alloc(64 * 1024, 0x61)
      throw err
    })(),
  )
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}

describe('Spool.init', () => {
  it('puts a quarantined message a dead release had claimed back into quarantine at start-up', async () => {
    const h = header()
    await spool.create('quarantine', h, MESSAGE)
    const claim = await spool.claim('quarantine', h.id)
    expect(await spool.list('quarantine')).toEqual([])
    await expect(spool.claim('quarantine', h.id)).rejects.toMatchObject({ code: 'ENOENT' })
    // The releasing process dies here.
    await new Spool(dir, false).recover()
    expect(await spool.list('quarantine')).toEqual([h.id])
    expect(claim.entry.header.id).toBe(h.id)
  })

  it('finishes at start-up a release that died once its copy had taken the claim: sent once, not back in quarantine', async () => {
    const h = header()
    await spool.create('quarantine', h, MESSAGE)
    const claim = await spool.claim('quarantine', h.id)
    const copy = { ...h, id: newQueueId(), releasedFrom: h.id }
    // No deferred/ for the last step: the release stops where a crash would stop it.
    await rm(join(dir, 'deferred'), { recursive: true })
    await expect(claim.release(copy, MESSAGE)).rejects.toMatchObject({ code: 'ENOENT' })
    await mkdir(join(dir, 'deferred'))
    await new Spool(dir, false).recover()
    expect(await spool.list('quarantine')).toEqual([])
    expect(await readdir(join(dir, 'quarantine'))).toEqual([])
    expect(await spool.list('deferred')).toEqual([copy.id])
    expect(await spool.read('deferred', copy.id)).toEqual({ header: copy, message: MESSAGE })
    expect(await spool.readRetry(copy.id)).toEqual({
      phase: 'deliver',
      attempts: 0,
      nextAttemptAt: 0,
      pending: envelope.rcptTo,
    })
  })

  it('starts with a claimed file that cannot be read as a spool file: it goes back for the listings to show', async () => {
    const id = newQueueId()
    await writeFile(join(dir, 'quarantine', `${id}.claimed`), 'not a spool file\n')
    await expect(new Spool(dir, false).recover()).resolves.toBeDefined()
    expect(await readdir(join(dir, 'quarantine'))).toEqual([id])
  })

  it('puts the message back when its release copy cannot be written', async () => {
    const h = header()
    await spool.create('quarantine', h, MESSAGE)
    const claim = await spool.claim('quarantine', h.id)
    await rm(join(dir, 'tmp'), { recursive: true })
    await expect(
      claim.release({ ...h, id: newQueueId(), releasedFrom: h.id }, MESSAGE),
    ).rejects.toMatchObject({
      code: 'MSC_SPOOL_WRITE_FAILED',
    })
    expect(await readdir(join(dir, 'quarantine'))).toEqual([h.id])
    expect(await spool.list('deferred')).toEqual([])
  })

  it('creates every state directory, tmp/ and the admin journal', async () => {
    expect((await readdir(dir)).sort()).toEqual([...SPOOL_STATES, 'tmp', 'admin'].sort())
  })

  it('can run again on an existing spool without losing messages', async () => {
    const h = header()
    await spool.create('outgoing', h, MESSAGE)
    await spool.init()
    expect(await spool.list('outgoing')).toEqual([h.id])
  })
})

describe('Spool.receive', () => {
  it('does not hand back the contents of a message too large to hold in memory', async () => {
    const big = Buffer.alloc(600 * 1024, 0x61)
    const result = await spool.receive(
      header(),
      Readable.from([big.subarray(0, 300_000), big.subarray(300_000)]),
    )
    expect(result).toEqual({ size: big.length })
  })

  it('stores a stream in incoming/ as the header line followed by the exact bytes and returns size and contents', async () => {
    const h = header()
    const result = await spool.receive(h, Readable.from([MESSAGE.subarray(0, 10), MESSAGE.subarray(10)]))
    expect(result).toEqual({ size: MESSAGE.length, entry: { header: h, message: MESSAGE } })
    const file = await readFile(spool.path('incoming', h.id))
    const newline = file.indexOf(0x0a)
    expect(JSON.parse(file.subarray(0, newline).toString())).toEqual(h)
    expect(file.subarray(newline + 1).equals(MESSAGE)).toBe(true)
    expect(await readdir(join(dir, 'tmp'))).toEqual([])
  })

  it('stores a message larger than one stream chunk intact', async () => {
    const h = header()
    const big = Buffer.alloc(1024 * 1024 + 7)
    for (let i = 0; i < big.length; i++) big[i] = i % 251
    expect((await spool.receive(h, Readable.from([big]))).size).toBe(big.length)
    expect((await spool.read('incoming', h.id)).message.equals(big)).toBe(true)
  })

  it('stores an empty message with size 0', async () => {
    const h = header()
    expect((await spool.receive(h, Readable.from([]))).size).toBe(0)
    expect((await spool.read('incoming', h.id)).message.length).toBe(0)
  })

  it('stores nothing in incoming/ and rejects with MSC_SPOOL_WRITE_FAILED when the stream errors', async () => {
    const h = header()
    await expect(spool.receive(h, failingStream(new Error('connection reset')))).rejects.toMatchObject({
      code: 'MSC_SPOOL_WRITE_FAILED',
    })
    expect(await readdir(join(dir, 'incoming'))).toEqual([])
    // The half-written slot stays in tmp/ for reuse; it is never a message.
    expect(await spool.find(h.id)).toBeUndefined()
  })

  it('takes a message back out of incoming/ when the directory fsync fails, and rejects', async () => {
    const h = header()
    const syncing = spool as unknown as { syncDir: (state: string) => Promise<void> }
    const syncDir = syncing.syncDir
    syncing.syncDir = () => Promise.reject(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }))
    await expect(spool.receive(h, Readable.from([MESSAGE]))).rejects.toMatchObject({
      code: 'MSC_SPOOL_WRITE_FAILED',
    })
    // The client is told 451 and sends it again: nothing of this attempt may be delivered.
    expect(await readdir(join(dir, 'incoming'))).toEqual([])
    expect(await spool.find(h.id)).toBeUndefined()
    syncing.syncDir = syncDir
    const again = header()
    await spool.receive(again, Readable.from([MESSAGE]))
    expect((await spool.read('incoming', again.id)).message).toEqual(MESSAGE)
    // The slot went back to tmp/ and was used again, not lost.
    expect(await readdir(join(dir, 'tmp'))).toEqual([])
  })

  it('does not take again a slot whose file failed the write itself: the next message is stored', async () => {
    // A directory where the slot's file should be: opening it fails (EISDIR) every time, also as root.
    const slot = spool.takeSlot()
    spool.returnSlot(slot)
    await mkdir(join(dir, 'tmp', slot))
    await expect(spool.receive(header(), Readable.from([MESSAGE]))).rejects.toMatchObject({
      code: 'MSC_SPOOL_WRITE_FAILED',
    })
    const next = header()
    await spool.receive(next, Readable.from([MESSAGE]))
    expect((await spool.read('incoming', next.id)).message).toEqual(MESSAGE)
  })

  it('passes through a stream error that carries an SMTP responseCode', async () => {
    const h = header()
    const tooBig = new SmtpReplyError('MSC_SPOOL_WRITE_FAILED', 552, '5.3.4', 'message too big')
    await expect(spool.receive(h, failingStream(tooBig))).rejects.toBe(tooBig)
    expect(await readdir(join(dir, 'incoming'))).toEqual([])
  })

  it('fails with MSC_SPOOL_WRITE_FAILED and stores nothing when tmp/ is missing', async () => {
    await rm(join(dir, 'tmp'), { recursive: true })
    const h = header()
    await expect(spool.receive(h, Readable.from([MESSAGE]))).rejects.toMatchObject({
      code: 'MSC_SPOOL_WRITE_FAILED',
    })
    expect(await readdir(join(dir, 'incoming'))).toEqual([])
  })

  it('gives concurrent receives distinct files, so no two messages share bytes', async () => {
    const headers = Array.from({ length: 20 }, () => header())
    await Promise.all(
      headers.map((h, i) =>
        spool.receive(h, Readable.from([Buffer.from(`Subject: ${i}\r\n\r\nbody ${i}\r\n`)])),
      ),
    )
    for (const [i, h] of headers.entries())
      expect((await spool.read('incoming', h.id)).message.toString()).toBe(
        `Subject: ${i}\r\n\r\nbody ${i}\r\n`,
      )
  })

  it('works with fsync turned off', async () => {
    const fast = new Spool(dir, false)
    const h = header()
    expect((await fast.receive(h, Readable.from([MESSAGE]))).size).toBe(MESSAGE.length)
    expect((await fast.read('incoming', h.id)).message.equals(MESSAGE)).toBe(true)
  })
})

describe('Spool.create', () => {
  it('writes a whole file into a state, joining message parts in order', async () => {
    const h = header()
    await spool.create('outgoing', h, [Buffer.from('X-A: 1\r\n'), MESSAGE])
    const entry = await spool.read('outgoing', h.id)
    expect(entry.header).toEqual(h)
    expect(entry.message.equals(Buffer.concat([Buffer.from('X-A: 1\r\n'), MESSAGE]))).toBe(true)
    expect(await readdir(join(dir, 'tmp'))).toEqual([])
  })

  it('replaces an older file of the same ID', async () => {
    const h = header()
    await spool.create('outgoing', h, Buffer.from('old'))
    await spool.create(
      'outgoing',
      { ...h, scan: { verdict: 'clean', score: 0, symbols: [] } },
      Buffer.from('new'),
    )
    const entry = await spool.read('outgoing', h.id)
    expect(entry.message.toString()).toBe('new')
    expect(entry.header.scan?.verdict).toBe('clean')
  })

  it('fails with MSC_SPOOL_WRITE_FAILED and stores nothing when tmp/ is missing', async () => {
    await rm(join(dir, 'tmp'), { recursive: true })
    const h = header()
    await expect(spool.create('outgoing', h, MESSAGE)).rejects.toMatchObject({
      code: 'MSC_SPOOL_WRITE_FAILED',
    })
    expect(await readdir(join(dir, 'outgoing'))).toEqual([])
  })
})

describe('Spool.stage and commit', () => {
  it('keeps a staged file invisible until it is committed', async () => {
    const h = header()
    await spool.stage(`${h.id}.scan`, h, MESSAGE)
    expect(await spool.find(h.id)).toBeUndefined()
    await spool.commit(`${h.id}.scan`, 'quarantine', h.id)
    expect(await spool.find(h.id)).toBe('quarantine')
    expect(await readdir(join(dir, 'tmp'))).toEqual([])
  })

  it('reuses the file of a removed message for the next one instead of creating a new inode', async () => {
    const first = header()
    await spool.receive(first, Readable.from([MESSAGE]))
    const inode = (await stat(spool.path('incoming', first.id))).ino
    await spool.remove('incoming', first.id)
    expect(await readdir(join(dir, 'incoming'))).toEqual([])
    const second = header()
    await spool.receive(second, Readable.from([Buffer.from('Subject: short\r\n\r\nx\r\n')]))
    expect((await stat(spool.path('incoming', second.id))).ino).toBe(inode)
    // The reused file was cut to the new content: nothing of the longer one is left.
    expect((await spool.read('incoming', second.id)).message.toString()).toBe('Subject: short\r\n\r\nx\r\n')
  })

  it('cuts a reused file to the new content when a whole file is written over a longer one', async () => {
    const long = header()
    await spool.create('outgoing', long, Buffer.alloc(64 * 1024, 0x61))
    await spool.remove('outgoing', long.id)
    const short = header()
    await spool.create('deferred', short, [Buffer.from('Subject: s\r\n\r\n'), Buffer.from('y\r\n')])
    expect((await spool.read('deferred', short.id)).message.toString()).toBe('Subject: s\r\n\r\ny\r\n')
  })
})

describe('Spool.move, read, remove, list and find', () => {
  it('moves a message between states', async () => {
    const h = header()
    await spool.receive(h, Readable.from([MESSAGE]))
    await spool.move(h.id, 'incoming', 'processing')
    expect(await spool.find(h.id)).toBe('processing')
    expect(await exists(spool.path('incoming', h.id))).toBe(false)
    expect((await spool.read('processing', h.id)).message.equals(MESSAGE)).toBe(true)
  })

  it('rejects a move of a message that is not in the source state', async () => {
    await expect(spool.move(newQueueId(), 'incoming', 'processing')).rejects.toThrow()
  })

  it('finds nothing for an unknown ID', async () => {
    expect(await spool.find(newQueueId())).toBeUndefined()
  })

  it('lists only queue IDs, oldest first', async () => {
    const ids = [newQueueId(), newQueueId(), newQueueId()]
    for (const id of [...ids].reverse()) await spool.create('deferred', header(id), MESSAGE)
    await spool.writeRetry(ids[0] as QueueId, {
      phase: 'deliver',
      attempts: 1,
      nextAttemptAt: 0,
      pending: [],
    })
    await writeFile(join(dir, 'deferred', 'README'), 'not a message')
    expect(await spool.list('deferred')).toEqual(ids)
    // Counted the same way: messages only, not their retry states or stray files.
    expect(await spool.count('deferred')).toBe(3)
    expect(await spool.count('failed')).toBe(0)
  })

  it('lists an empty state as an empty array', async () => {
    expect(await spool.list('failed')).toEqual([])
  })

  it('removes a message', async () => {
    const h = header()
    await spool.create('outgoing', h, MESSAGE)
    await spool.remove('outgoing', h.id)
    expect(await spool.find(h.id)).toBeUndefined()
  })

  it('removes a deferred message together with its retry state', async () => {
    const h = header()
    await spool.create('deferred', h, MESSAGE)
    await spool.writeRetry(h.id, { phase: 'scan', attempts: 1, nextAttemptAt: 5, pending: [] })
    await spool.remove('deferred', h.id)
    expect(await readdir(join(dir, 'deferred'))).toEqual([])
    expect(await spool.readRetry(h.id)).toBeUndefined()
  })

  it('does not fail when removing a message that is already gone', async () => {
    await expect(spool.remove('outgoing', newQueueId())).resolves.toBeUndefined()
  })
})

describe('Spool.writeRetry and readRetry', () => {
  it('round-trips the retry state', async () => {
    const h = header()
    await spool.create('deferred', h, MESSAGE)
    const state: RetryState = {
      phase: 'deliver',
      attempts: 3,
      nextAttemptAt: 1_700_000_900_000,
      pending: ['b@example.net'],
      lastError: '451 4.3.0 try later',
    }
    await spool.writeRetry(h.id, state)
    expect(await spool.readRetry(h.id)).toEqual(state)
    expect(await readdir(join(dir, 'tmp'))).toEqual([])
  })

  it('replaces an earlier retry state', async () => {
    const id = newQueueId()
    await spool.writeRetry(id, { phase: 'deliver', attempts: 1, nextAttemptAt: 1, pending: ['a@x'] })
    await spool.writeRetry(id, { phase: 'deliver', attempts: 2, nextAttemptAt: 2, pending: [] })
    expect((await spool.readRetry(id))?.attempts).toBe(2)
  })

  it('writes a retry state through a slot of its own, never over a file left in tmp/ under its name', async () => {
    const id = newQueueId()
    // A crash left tmp/<ID>.retry; start-up adopts it as a slot, and it goes to hold a new file.
    await writeFile(join(dir, 'tmp', `${id}.retry`), 'old')
    await spool.recover()
    let slot = spool.takeSlot()
    while (slot !== `${id}.retry`) slot = spool.takeSlot()
    await writeFile(join(dir, 'tmp', slot), 'a message being staged')
    const state: RetryState = { phase: 'deliver', attempts: 1, nextAttemptAt: 1, pending: ['a@example.net'] }
    await spool.writeRetry(id, state)
    expect(await readFile(join(dir, 'tmp', slot), 'utf8')).toBe('a message being staged')
    expect(await spool.readRetry(id)).toEqual(state)
  })

  it('returns undefined when no retry state was saved', async () => {
    expect(await spool.readRetry(newQueueId())).toBeUndefined()
  })

  it('returns undefined for an unreadable retry file', async () => {
    const id = newQueueId()
    await writeFile(join(dir, 'deferred', `${id}.retry`), '{not json')
    expect(await spool.readRetry(id)).toBeUndefined()
  })
})

describe('Spool.peek', () => {
  it('reads the header and the start of a large message but reports its full size', async () => {
    const h = header()
    const big = Buffer.concat([Buffer.from('Subject: big\r\n\r\n'), Buffer.alloc(300_000, 0x62)])
    await spool.create('outgoing', h, big)
    const entry = await spool.peek('outgoing', h.id)
    expect(entry.header).toEqual(h)
    expect(entry.size).toBe(big.length)
    expect(entry.message.length).toBeLessThan(65_536)
    expect(entry.message.equals(big.subarray(0, entry.message.length))).toBe(true)
    expect(entry.mtimeMs).toBeGreaterThan(0)
  })

  it('reads a small message whole', async () => {
    const h = header()
    await spool.create('incoming', h, MESSAGE)
    const entry = await spool.peek('incoming', h.id)
    expect(entry.size).toBe(MESSAGE.length)
    expect(entry.message.equals(MESSAGE)).toBe(true)
  })

  it('honours a smaller byte budget', async () => {
    const h = header()
    await spool.create('incoming', h, MESSAGE)
    const headerLength = JSON.stringify(h).length + 1
    const entry = await spool.peek('incoming', h.id, headerLength + 5)
    expect(entry.message.toString('latin1')).toBe(MESSAGE.subarray(0, 5).toString('latin1'))
    expect(entry.size).toBe(MESSAGE.length)
  })
})

describe('Spool corrupt files', () => {
  it('fails read with MSC_SPOOL_CORRUPT for a file that is not a spool file', async () => {
    const id = newQueueId()
    await writeFile(join(dir, 'incoming', id), 'this is not json\nSubject: x\r\n\r\n')
    await expect(spool.read('incoming', id)).rejects.toMatchObject({ code: 'MSC_SPOOL_CORRUPT' })
  })

  it('fails read with MSC_SPOOL_CORRUPT for a file without a header line', async () => {
    const id = newQueueId()
    await writeFile(join(dir, 'incoming', id), 'no newline at all')
    await expect(spool.read('incoming', id)).rejects.toMatchObject({ code: 'MSC_SPOOL_CORRUPT' })
  })

  it('fails read with MSC_SPOOL_CORRUPT for a header of another format version', async () => {
    const id = newQueueId()
    await writeFile(join(dir, 'incoming', id), `${JSON.stringify({ v: 99, id, envelope })}\nbody`)
    await expect(spool.read('incoming', id)).rejects.toMatchObject({ code: 'MSC_SPOOL_CORRUPT' })
  })

  it('fails peek with MSC_SPOOL_CORRUPT for a file that is not a spool file', async () => {
    const id = newQueueId()
    await writeFile(join(dir, 'incoming', id), '{"truncated":')
    await expect(spool.peek('incoming', id)).rejects.toMatchObject({ code: 'MSC_SPOOL_CORRUPT' })
  })
})

describe('Spool.recover', () => {
  it('moves messages left in processing/ back to incoming/ and returns their IDs', async () => {
    const a = header()
    const b = header()
    await spool.create('processing', a, MESSAGE)
    await spool.create('processing', b, MESSAGE)
    expect(await spool.recover()).toEqual([a.id, b.id])
    expect(await spool.list('processing')).toEqual([])
    expect(await spool.list('incoming')).toEqual([a.id, b.id])
    expect((await spool.read('incoming', a.id)).message.equals(MESSAGE)).toBe(true)
  })

  it('drops the processing copy when the same ID already sits in outgoing/', async () => {
    const h = header()
    await spool.create('processing', h, Buffer.from('unscanned'))
    await spool.create('outgoing', h, Buffer.from('scanned'))
    expect(await spool.recover()).toEqual([])
    expect(await spool.list('processing')).toEqual([])
    expect(await spool.list('incoming')).toEqual([])
    expect((await spool.read('outgoing', h.id)).message.toString()).toBe('scanned')
  })

  it('scans again a message whose original reached quarantine/ but whose delivered copy did not reach outgoing/', async () => {
    const h = header()
    await spool.create('processing', h, MESSAGE)
    await spool.create('quarantine', h, MESSAGE)
    expect(await spool.recover()).toEqual([h.id])
    expect(await spool.list('incoming')).toEqual([h.id])
    expect(await spool.list('quarantine')).toEqual([h.id])
  })

  it.each(['deferred', 'failed'] as const)(
    'drops the processing copy when the same ID already sits in %s/',
    async (state) => {
      const h = header()
      await spool.create('processing', h, MESSAGE)
      await spool.create(state, h, MESSAGE)
      expect(await spool.recover()).toEqual([])
      expect(await spool.find(h.id)).toBe(state)
    },
  )

  it('keeps files left in tmp/ as reusable slots and never treats them as messages', async () => {
    await writeFile(join(dir, 'tmp', 'half-written'), 'x')
    await writeFile(join(dir, 'tmp', `${newQueueId()}.retry`), '{}')
    await spool.recover()
    const slots = await readdir(join(dir, 'tmp'))
    expect(slots).toContain('half-written')
    for (const state of SPOOL_STATES) expect(await readdir(join(dir, state))).toEqual([])
    // The next message overwrites a slot: the leftover bytes are gone.
    const h = header()
    await spool.receive(h, Readable.from([MESSAGE]))
    expect((await spool.read('incoming', h.id)).message).toEqual(MESSAGE)
  })

  it('finishes moving into deferred/ a message whose delivery retry state was written before a crash', async () => {
    const h = header()
    await spool.create('outgoing', h, MESSAGE)
    const state = { phase: 'deliver', attempts: 1, nextAttemptAt: 0, pending: ['b@example.net'] } as const
    await spool.writeRetry(h.id, state)
    expect(await spool.recover()).toEqual([])
    expect(await spool.find(h.id)).toBe('deferred')
    expect(await spool.readRetry(h.id)).toEqual(state)
  })

  it('removes a retry state left alone in deferred/ whose message went elsewhere', async () => {
    // A scan tempfail cut short: the retry state was written, the message is back in the scan.
    const scanned = header()
    await spool.create('processing', scanned, MESSAGE)
    await spool.writeRetry(scanned.id, { phase: 'scan', attempts: 1, nextAttemptAt: 0, pending: [] })
    // And one whose message is gone (delivered, or deleted by the administrator).
    const gone = newQueueId()
    await spool.writeRetry(gone, { phase: 'deliver', attempts: 1, nextAttemptAt: 0, pending: [] })
    // A deferred message keeps its own.
    const kept = header()
    await spool.create('deferred', kept, MESSAGE)
    await spool.writeRetry(kept.id, { phase: 'deliver', attempts: 2, nextAttemptAt: 0, pending: [] })
    expect(await spool.recover()).toEqual([scanned.id])
    expect((await readdir(join(dir, 'deferred'))).sort()).toEqual([kept.id, `${kept.id}.retry`])
  })

  it('does nothing to a clean spool', async () => {
    const h = header()
    await spool.create('incoming', h, MESSAGE)
    expect(await spool.recover()).toEqual([])
    expect(await spool.list('incoming')).toEqual([h.id])
  })
})
