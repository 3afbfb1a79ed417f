import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { MailscreenError } from '../../src/errors.js'
import { deleteQueued, queuedState, readQueued, requeueFailed } from '../../src/queue/admin.js'
import { newQueueId, type QueueId } from '../../src/queue/ids.js'
import { Spool, type SpoolState } from '../../src/queue/spool.js'
import { SPOOL_FORMAT } from '../../src/queue/spool-file.js'

const MESSAGE = Buffer.from('Subject: admin\r\n\r\nbody\r\n')

let dir: string
let spool: Spool

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailscreen-admin-'))
  spool = new Spool(dir)
  await spool.init()
})

afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

async function queue(state: SpoolState): Promise<QueueId> {
  const id = newQueueId()
  const envelope = {
    mailFrom: 'a@example.org',
    rcptTo: ['b@example.net', 'c@example.net'],
    client: { address: '192.0.2.1' },
    peer: { address: '127.0.0.1' },
    receivedAt: Date.now(),
  }
  await spool.create(state, { v: SPOOL_FORMAT, id, envelope }, MESSAGE)
  return id
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise
  } catch (err) {
    expect(err).toBeInstanceOf(MailscreenError)
    return (err as MailscreenError).code
  }
  return undefined
}

describe('queue administration', () => {
  it('finds a message in its state, and names the quarantine instead of finding it there', async () => {
    const deferred = await queue('deferred')
    const held = await queue('quarantine')
    expect(await queuedState(spool, deferred)).toBe('deferred')
    expect((await readQueued(spool, deferred)).entry.message).toEqual(MESSAGE)
    await expect(queuedState(spool, held)).rejects.toThrow(
      /is in quarantine \(see: mailscreen quarantine show/,
    )
    expect(await codeOf(queuedState(spool, newQueueId()))).toBe('MSC_NOT_FOUND')
  })

  it('deletes deferred mail with its retry state, leaving no file behind', async () => {
    const id = await queue('deferred')
    await spool.writeRetry(id, {
      phase: 'deliver',
      attempts: 1,
      nextAttemptAt: 0,
      pending: ['b@example.net'],
    })
    expect(await deleteQueued(spool, id, 4242)).toEqual(['deferred'])
    expect(await readdir(join(dir, 'deferred'))).toEqual([])
    expect(await codeOf(deleteQueued(spool, id, undefined))).toBe('MSC_NOT_FOUND')
  })

  it('refuses mail in flight while a mailscreen runs, and deletes it when none does', async () => {
    for (const state of ['incoming', 'processing', 'outgoing'] as const) {
      const id = await queue(state)
      expect(await codeOf(deleteQueued(spool, id, 4242))).toBe('MSC_IN_FLIGHT')
      expect(await spool.find(id)).toBe(state)
      expect(await deleteQueued(spool, id, undefined)).toEqual([state])
      expect(await spool.find(id)).toBeUndefined()
    }
  })

  it('with no mailscreen running, deletes every copy a crash left (original and scanned copy)', async () => {
    const id = await queue('processing')
    const header = (await spool.peek('processing', id)).header
    await spool.create('outgoing', header, MESSAGE)
    expect(await deleteQueued(spool, id, undefined)).toEqual(['processing', 'outgoing'])
    expect(await spool.find(id)).toBeUndefined()
  })

  it('requeues failed mail as a scan due now, for every recipient, and nothing else', async () => {
    const id = await queue('failed')
    await requeueFailed(spool, id)
    expect(await spool.find(id)).toBe('deferred')
    expect(await spool.readRetry(id)).toEqual({
      phase: 'scan',
      attempts: 0,
      nextAttemptAt: 0,
      pending: ['b@example.net', 'c@example.net'],
    })
    expect(await codeOf(requeueFailed(spool, id))).toBe('MSC_NOT_FAILED')
    expect(await codeOf(requeueFailed(spool, await queue('outgoing')))).toBe('MSC_NOT_FAILED')
  })

  it('puts requeued mail back in failed/ when its copy in deferred/ could not be fsynced, and reports the error', async () => {
    const id = await queue('failed')
    const syncing = spool as unknown as { syncDir: (state: string) => Promise<void> }
    const syncDir = syncing.syncDir.bind(spool)
    syncing.syncDir = (state) =>
      state === 'deferred'
        ? Promise.reject(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }))
        : syncDir(state)
    await expect(requeueFailed(spool, id)).rejects.toMatchObject({ code: 'EIO' })
    syncing.syncDir = syncDir
    expect(await spool.find(id)).toBe('failed')
    expect((await spool.read('failed', id)).message).toEqual(MESSAGE)
    expect(await readdir(join(dir, 'deferred'))).toEqual([])
  })

  it('leaves failed mail and no retry state behind when the requeue cannot write', async () => {
    const id = await queue('failed')
    const create = spool.create.bind(spool)
    spool.create = () => Promise.reject(Object.assign(new Error('ENOSPC: no space left'), { code: 'ENOSPC' }))
    await expect(requeueFailed(spool, id)).rejects.toMatchObject({ code: 'ENOSPC' })
    spool.create = create
    expect(await spool.find(id)).toBe('failed')
    expect(await readdir(join(dir, 'deferred'))).toEqual([])
  })

  it('requeues once when two requeues race: the other is told the message left failed/', async () => {
    const id = await queue('failed')
    const outcomes = await Promise.allSettled([requeueFailed(spool, id), requeueFailed(spool, id)])
    expect(outcomes.map((o) => o.status).sort()).toEqual(['fulfilled', 'rejected'])
    expect(outcomes.find((o) => o.status === 'rejected')).toMatchObject({ reason: { code: 'MSC_NOT_FOUND' } })
    expect(await spool.find(id)).toBe('deferred')
    expect((await readdir(join(dir, 'failed'))).filter((name) => name.includes(id))).toEqual([])
  })

  it('starts the queue lifetime of requeued mail again, and leaves its bytes and arrival alone', async () => {
    const id = await queue('failed')
    const before = await spool.read('failed', id)
    const requeuedAt = Date.now()
    await requeueFailed(spool, id)
    const after = await spool.read('deferred', id)
    expect(after.message).toEqual(before.message)
    expect(after.header.envelope).toEqual(before.header.envelope)
    expect(after.header.lifetimeFrom).toBeGreaterThanOrEqual(requeuedAt)
  })
})
