/**
 * Administrator commands when one file operation fails (EIO), as the fault-injection review
 * found them: nothing may be left where no listing shows it, and a command that did its work
 * must not say it failed (the administrator would run it again, and the message go twice).
 */
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { afterEach, beforeEach, expect, it, vi } from 'vitest'
import { requeueFailed } from '../../src/queue/admin.js'
import { newQueueId } from '../../src/queue/ids.js'
import { Spool } from '../../src/queue/spool.js'
import { SPOOL_FORMAT, type SpoolHeader } from '../../src/queue/spool-file.js'

const real = vi.hoisted(
  () => ({}) as { renameSync?: typeof fs.renameSync; unlink?: typeof fsp.unlink; fsync?: typeof fs.fsync },
)

vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs')>()
  real.renameSync = actual.renameSync
  real.fsync = actual.fsync
  return { ...actual, renameSync: vi.fn(actual.renameSync), fsync: vi.fn(actual.fsync) }
})
vi.mock('node:fs/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs/promises')>()
  real.unlink = actual.unlink
  return { ...actual, unlink: vi.fn(actual.unlink) }
})

const eio = (): Error => Object.assign(new Error('EIO: i/o error'), { code: 'EIO' })
const MESSAGE = Buffer.from('Subject: held\r\n\r\nhello\r\n')

let dir: string
let spool: Spool

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailscreen-spool-faults-'))
  spool = new Spool(dir, false)
  await spool.init()
})

afterEach(async () => {
  vi.mocked(fs.renameSync).mockImplementation(real.renameSync as typeof fs.renameSync)
  vi.mocked(fsp.unlink).mockImplementation(real.unlink as typeof fsp.unlink)
  vi.mocked(fs.fsync).mockImplementation(real.fsync as typeof fs.fsync)
  await rm(dir, { recursive: true, force: true })
})

function header(): SpoolHeader {
  const client = { address: '192.0.2.1' }
  return {
    v: SPOOL_FORMAT,
    id: newQueueId(),
    envelope: { mailFrom: 'a@example.org', rcptTo: ['b@example.net'], client, peer: client, receivedAt: 0 },
  }
}

it('puts a quarantined message back where listings show it when its release copy cannot take the claim', async () => {
  const h = header()
  await spool.create('quarantine', h, MESSAGE)
  const claim = await spool.claim('quarantine', h.id)
  vi.mocked(fs.renameSync).mockImplementation((from, to) => {
    if (String(from).includes(`${join(dir, 'tmp')}/`) && String(to).endsWith('.claimed')) throw eio()
    return (real.renameSync as typeof fs.renameSync)(from, to)
  })
  const copy = { ...h, id: newQueueId(), releasedFrom: h.id }
  await expect(claim.release(copy, MESSAGE)).rejects.toMatchObject({ code: 'EIO' })
  expect(await spool.list('quarantine')).toEqual([h.id])
  expect(await readdir(join(dir, 'quarantine'))).toEqual([h.id])
  expect(await spool.list('deferred')).toEqual([])
})

it('reports a requeue done, saying what is left to do, when only removing its claim fails', async () => {
  const h = header()
  await spool.create('failed', h, MESSAGE)
  vi.mocked(fsp.unlink).mockImplementation(async (path) => {
    if (String(path).endsWith('.claimed')) throw eio()
    return (real.unlink as typeof fsp.unlink)(path)
  })
  const note = await requeueFailed(spool, h.id)
  expect(note).toMatch(new RegExp(`claim failed/${h.id}\\.claimed could not be removed \\(EIO`))
  expect(await spool.list('deferred')).toEqual([h.id])
})

it('drops a received message whose directory fsync failed and could not be renamed back: nothing answered 451 stays in incoming/', async () => {
  const durable = new Spool(dir, true)
  await durable.init()
  vi.mocked(fs.fsync).mockImplementationOnce((_fd, callback) => callback(eio()))
  vi.mocked(fs.renameSync).mockImplementation((from, to) => {
    if (String(from).includes(`${join(dir, 'incoming')}/`) && String(to).includes(`${join(dir, 'tmp')}/`))
      throw eio()
    return (real.renameSync as typeof fs.renameSync)(from, to)
  })
  const h = header()
  await expect(durable.receive(h, Readable.from([MESSAGE]))).rejects.toMatchObject({
    code: 'MSC_SPOOL_WRITE_FAILED',
  })
  expect(await readdir(join(dir, 'incoming'))).toEqual([])
  // The next message is taken as usual.
  const next = header()
  await expect(durable.receive(next, Readable.from([MESSAGE]))).resolves.toMatchObject({
    size: MESSAGE.length,
  })
  expect(await durable.list('incoming')).toEqual([next.id])
})

it('takes a claim as removed once it is unlinked, even when the directory fsync after it fails', async () => {
  const durable = new Spool(dir, true)
  await durable.init()
  const h = header()
  await durable.create('failed', h, MESSAGE)
  const claim = await durable.claim('failed', h.id)
  vi.mocked(fs.fsync).mockImplementation((_fd, callback) => callback(eio()))
  await expect(claim.done()).resolves.toBeUndefined()
  expect(await readdir(join(dir, 'failed'))).toEqual([])
})
