/**
 * The output queue's sweep of `deferred/` and `outgoing/`, on a real spool in a temp dir and a
 * real sink as the relay: one message that cannot be handled never stops the others, a message
 * never scanned is never delivered because its retry state was lost, and a message left in
 * `outgoing/` by a failed attempt is tried again. And scanned messages handed on from memory
 * (`deliverNow`): their original in `processing/` is retired only once they are delivered or
 * safely in `deferred/`.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { type Sink, startSink } from '../../src/bench/sink.js'
import { Destinations } from '../../src/delivery/destinations.js'
import { Dispatcher } from '../../src/delivery/dispatch.js'
import { NextHopDns } from '../../src/delivery/mx.js'
import { DeliveryQueue } from '../../src/delivery/queue-runner.js'
import type { Envelope } from '../../src/ingress/envelope.js'
import { reply } from '../../src/ingress/smtp-reply.js'
import { newQueueId, type QueueId } from '../../src/queue/ids.js'
import { Spool } from '../../src/queue/spool.js'
import type { SpoolHeader } from '../../src/queue/spool-file.js'
import { emptyRoutingMaps } from '../../src/routing/maps.js'
import { testMessage, until } from './harness.js'

const silent = pino({ level: 'silent' })

/**
 * A dispatcher that can be told to throw on its next delivery (our side failing, e.g. ENOSPC),
 * or to hold every delivery until a promise settles.
 */
class FlakyDispatcher extends Dispatcher {
  failNext = false
  hold: Promise<void> | undefined
  override deliver(...args: Parameters<Dispatcher['deliver']>): ReturnType<Dispatcher['deliver']> {
    if (this.failNext) {
      this.failNext = false
      return Promise.reject(new Error('ENOSPC: no space left on device'))
    }
    if (this.hold) return this.hold.then(() => super.deliver(...args))
    return super.deliver(...args)
  }
}

describe('DeliveryQueue sweep', () => {
  let dir: string
  let spool: Spool
  let sink: Sink
  let destinations: Destinations
  let queue: DeliveryQueue
  let dispatcher: FlakyDispatcher
  let rescans: Array<{ id: QueueId; attempts: number }>
  /** The relay takes later@… too from now on. */
  let laterWelcome = false

  beforeEach(async () => {
    laterWelcome = false
    dir = await mkdtemp(join(tmpdir(), 'mailscreen-queue-runner-'))
    spool = new Spool(join(dir, 'spool'), false)
    await spool.init()
    // The relay refuses gone@…, defers later@…; everything else is delivered.
    sink = await startSink({
      decide: (_tx, rcpt) =>
        rcpt.startsWith('gone@')
          ? reply(550, '5.1.1', 'no such user')
          : rcpt.startsWith('later@') && !laterWelcome
            ? reply(451, '4.3.0', 'try again later')
            : undefined,
    })
    destinations = new Destinations({
      hostname: 'mailscreen.test',
      maxConnections: 4,
      maxPerDestination: 4,
      maxMessagesPerConnection: 100,
      connectTimeoutMs: 2_000,
      backoffAfter: 3,
      backoffMinMs: 30_000,
      backoffMaxMs: 600_000,
    })
    const relay = { host: '127.0.0.1', port: sink.port }
    dispatcher = new FlakyDispatcher({
      routing: () => ({ maps: emptyRoutingMaps(), hopLimit: 30, dns: new NextHopDns({ servers: [] }) }),
      relay,
      local: relay,
      lmtp: false,
      tls: { relay: 'none', mx: 'may' },
      maxRecipientsPerTransaction: 1000,
      mxPort: 25,
      hostname: 'mailscreen.test',
      ownAddresses: new Set(['127.0.0.1']),
      destinations,
      log: silent,
    })
    rescans = []
    queue = new DeliveryQueue({
      spool,
      dispatcher,
      hopLimit: () => 30,
      log: silent,
      hostname: 'mailscreen.test',
      concurrency: 4,
      retry: [60_000],
      queueLifetimeMs: 86_400_000,
      runIntervalMs: 3_600_000,
      onRescan: (id, attempts) => rescans.push({ id, attempts }),
    })
    await queue.start()
  })

  afterEach(async () => {
    await queue.stop()
    await destinations.close()
    await sink.close()
    await rm(dir, { recursive: true, force: true })
  })

  /** Two sweeps: the first retries and writes the DSN (and it is delivered), the second finds nothing left. */
  async function sweepTwice(): Promise<void> {
    await queue.flush()
    await until(
      () => queue.pending === 0 && sink.messages.some((m) => m.mailFrom === ''),
      'the DSN delivered',
    )
    await queue.flush()
    await until(() => queue.pending === 0, 'the queue idle')
  }

  /** The next `count` DSN writes fail (a full disk, say); returns how many failures are left. */
  function failDsnWrites(count: number): () => number {
    const create = spool.create.bind(spool)
    let failures = count
    spool.create = async (state, header, ...rest) => {
      if (header.dsnFor !== undefined && failures-- > 0)
        throw Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' })
      return create(state, header, ...rest)
    }
    return () => failures
  }

  function header(rcptTo: readonly string[], scanned: boolean, mailFrom = 'sender@example.org'): SpoolHeader {
    const envelope: Envelope = {
      mailFrom,
      rcptTo: [...rcptTo],
      client: { address: '192.0.2.1' },
      peer: { address: '127.0.0.1' },
      receivedAt: Date.now(),
    }
    return {
      v: 1,
      id: newQueueId(),
      envelope,
      ...(scanned ? { scan: { verdict: 'clean', score: 0, symbols: [] } } : {}),
    }
  }

  /** A scanned message in `deferred/` after one failed delivery, due at `due`. */
  async function deferredDelivery(rcpt: string, tag: string, due = 0): Promise<SpoolHeader> {
    const waiting = header([rcpt], true)
    await spool.create('deferred', waiting, testMessage(tag))
    await spool.writeRetry(waiting.id, { phase: 'deliver', attempts: 1, nextAttemptAt: due, pending: [rcpt] })
    return waiting
  }

  const delivered = (tag: string) =>
    sink.messages.filter((m) => m.data.toString().includes(`<${tag}@sender.example>`))

  it('one message whose header line is long (150 recipients) does not stop the sweep of the others', async () => {
    const many = Array.from({ length: 150 }, (_, i) => `recipient-number-${i}@example.net`)
    const waiting = header(many, false)
    await spool.create('deferred', waiting, testMessage('many'))
    await spool.writeRetry(waiting.id, { phase: 'scan', attempts: 2, nextAttemptAt: 0, pending: many })
    await deferredDelivery('b@example.net', 'next')

    await queue.flush()
    expect(rescans).toEqual([{ id: waiting.id, attempts: 2 }])
    expect(await spool.find(waiting.id)).toBe('incoming')
    await until(() => delivered('next').length === 1, 'the newer deferred message delivered')
    expect(delivered('many')).toEqual([])
  })

  it('a message never scanned whose retry state was lost goes back to the scan, never out', async () => {
    const unscanned = header(['c@example.net'], false)
    await spool.create('deferred', unscanned, testMessage('unscanned'))
    // Lost with a crash: no retry file at all.
    const scanned = header(['d@example.net'], true)
    await spool.create('deferred', scanned, testMessage('scanned'))

    await queue.flush()
    expect(rescans.map((r) => r.id)).toEqual([unscanned.id])
    expect(await spool.find(unscanned.id)).toBe('incoming')
    await until(() => delivered('scanned').length === 1, 'the scanned one delivered')
    expect(delivered('unscanned')).toEqual([])
  })

  it('a message whose delivery attempt threw on our side stays in outgoing/ and goes with the next sweep', async () => {
    const stuck = header(['e@example.net'], true)
    await spool.create('outgoing', stuck, testMessage('stuck'))
    dispatcher.failNext = true
    queue.enqueue(stuck.id)
    await until(() => queue.pending === 0, 'the failed attempt over')
    expect(await spool.find(stuck.id)).toBe('outgoing')
    expect(delivered('stuck')).toEqual([])
    await queue.flush()
    await until(() => delivered('stuck').length === 1, 'the stuck message delivered')
    await until(() => queue.pending === 0, 'the queue idle')
    expect(await spool.find(stuck.id)).toBeUndefined()
  })

  it('a DSN that cannot be written does not make the next attempt deliver again to the recipient already done', async () => {
    const mixed = header(['kept@example.net', 'gone@example.net'], true)
    await spool.create('outgoing', mixed, testMessage('mixed'))
    // The DSN for gone@ cannot be written the first time (a full disk, say).
    const failuresLeft = failDsnWrites(1)
    queue.enqueue(mixed.id)
    await until(
      () => queue.pending === 0 && failuresLeft() === 0 && delivered('mixed').length === 1,
      'the attempt over',
    )
    expect(await spool.find(mixed.id)).toBe('outgoing')
    await sweepTwice()
    // (The DSN quotes the message's headers: it is told apart by its null sender.)
    const copies = delivered('mixed').filter((m) => m.mailFrom !== '')
    expect(copies.map((m) => m.rcptTo)).toEqual([['kept@example.net']])
    const dsns = sink.messages.filter((m) => m.mailFrom === '')
    expect(dsns).toHaveLength(1)
    expect(dsns[0]?.data.toString()).toContain('Final-Recipient: rfc822; gone@example.net')
    expect(await spool.find(mixed.id)).toBeUndefined()
  })

  it('sends a DSN that quotes 8-bit headers as BODY=8BITMIME', async () => {
    const h = header(['gone@example.net'], true)
    await spool.create('outgoing', h, testMessage('umlaut', ['X-Note: Grüße aus Köln']))
    queue.enqueue(h.id)
    await until(
      () => queue.pending === 0 && sink.messages.some((m) => m.mailFrom === ''),
      'the DSN delivered',
    )
    const dsn = sink.messages.find((m) => m.mailFrom === '')
    expect(dsn?.data.includes(Buffer.from('Grüße aus Köln'))).toBe(true)
    expect(dsn?.body).toBe('8BITMIME')
  })

  it('reports no failure to a recipient whose NOTIFY leaves FAILURE out, and honours RET, ENVID and ORCPT', async () => {
    const quiet = header(['gone@example.net'], true)
    const silenced: SpoolHeader = {
      ...quiet,
      envelope: {
        ...quiet.envelope,
        dsn: { recipients: { 'gone@example.net': { notify: ['SUCCESS', 'DELAY'] } } },
      },
    }
    await spool.create('outgoing', silenced, testMessage('silenced'))
    queue.enqueue(silenced.id)
    const told = header(['gone@example.net'], true)
    const asking: SpoolHeader = {
      ...told,
      envelope: {
        ...told.envelope,
        dsn: {
          ret: 'FULL',
          envid: 'env-7',
          recipients: { 'gone@example.net': { notify: ['FAILURE'], orcpt: 'rfc822;Gone@Example.NET' } },
        },
      },
    }
    await spool.create('outgoing', asking, testMessage('asking'))
    queue.enqueue(asking.id)
    await until(
      () => queue.pending === 0 && sink.messages.some((m) => m.mailFrom === ''),
      'the DSN delivered',
    )
    await queue.flush()
    await until(() => queue.pending === 0, 'the queue idle')
    const dsns = sink.messages.filter((m) => m.mailFrom === '')
    expect(dsns).toHaveLength(1)
    const text = dsns[0]?.data.toString('latin1') ?? ''
    expect(text).toContain('<asking@sender.example>')
    expect(text).toContain('Original-Envelope-Id: env-7\r\nReporting-MTA: dns; mailscreen.test')
    expect(text).toContain(
      'Original-Recipient: rfc822; Gone@Example.NET\r\nFinal-Recipient: rfc822; gone@example.net',
    )
    // RET=FULL: the whole message comes back, its body too.
    expect(text).toContain('Content-Type: message/rfc822')
    expect(text).toContain('body of asking')
    expect(await spool.find(silenced.id)).toBeUndefined()
  })

  it('returns only the headers of a message the bounce action refused, whatever RET asked', async () => {
    const h = header(['someone@example.net'], true)
    const refused: SpoolHeader = { ...h, envelope: { ...h.envelope, dsn: { ret: 'FULL' } } }
    await queue.refuse(
      refused.id,
      { header: refused, message: testMessage('infected') },
      '550 5.7.1 virus found',
    )
    await until(() => sink.messages.some((m) => m.mailFrom === ''), 'the DSN delivered')
    const text = sink.messages.find((m) => m.mailFrom === '')?.data.toString('latin1') ?? ''
    expect(text).toContain('Content-Type: text/rfc822-headers')
    expect(text).toContain('<infected@sender.example>')
    expect(text).not.toContain('body of infected')
  })

  it('sends one DSN when the first one written could not be fsynced into outgoing/', async () => {
    const mixed = header(['kept@example.net', 'gone@example.net'], true)
    await spool.create('outgoing', mixed, testMessage('mixed'))
    const syncing = spool as unknown as { syncDir: (state: string) => Promise<void> }
    const syncDir = syncing.syncDir.bind(spool)
    let failures = 1
    let dsnWritten = false
    const create = spool.create.bind(spool)
    spool.create = async (state, header, ...rest) => {
      dsnWritten ||= header.dsnFor !== undefined
      return create(state, header, ...rest)
    }
    syncing.syncDir = (state) =>
      state === 'outgoing' && dsnWritten && failures-- > 0
        ? Promise.reject(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }))
        : syncDir(state)
    queue.enqueue(mixed.id)
    await until(() => queue.pending === 0 && failures === 0, 'the first attempt over')
    // That DSN is not left in outgoing/ beside the one the next attempt writes.
    expect(await spool.list('outgoing')).toEqual([mixed.id])
    await sweepTwice()
    expect(sink.messages.filter((m) => m.mailFrom === '')).toHaveLength(1)
    expect(delivered('mixed').filter((m) => m.mailFrom !== '')).toHaveLength(1)
    expect(await spool.list('outgoing')).toEqual([])
  })

  it('remembers the recipients already done when the retry fails again while a sweep lists deferred/', async () => {
    const mixed = header(['kept@example.net', 'gone@example.net'], true)
    await spool.create('outgoing', mixed, testMessage('mixed'))
    // The DSN for gone@ cannot be written twice running (a full disk, say), and the listing of
    // deferred/ is slow (a big directory, a busy threadpool): the retry fails inside it.
    const failuresLeft = failDsnWrites(2)
    const list = spool.list.bind(spool)
    spool.list = async (state) => {
      const listed = await list(state)
      if (state === 'deferred') await new Promise((r) => setTimeout(r, 300))
      return listed
    }
    queue.enqueue(mixed.id)
    await until(() => queue.pending === 0 && failuresLeft() === 1, 'the first attempt over')
    for (let sweep = 0; sweep < 3; sweep++) {
      await queue.flush()
      await until(() => queue.pending === 0, 'the queue idle')
    }
    const copies = delivered('mixed').filter((m) => m.mailFrom !== '')
    expect(copies.map((m) => m.rcptTo)).toEqual([['kept@example.net']])
    expect(sink.messages.filter((m) => m.mailFrom === '')).toHaveLength(1)
    expect(await spool.find(mixed.id)).toBeUndefined()
  })

  it('counts the queue lifetime from a release or requeue, when the header says so, not from the arrival', async () => {
    // Both arrived two days ago (the lifetime is one); one was sent on by the administrator now.
    const old = Date.now() - 2 * 86_400_000
    for (const [tag, lifetimeFrom] of [
      ['expired', undefined],
      ['released', Date.now()],
    ] as const) {
      const h = header(['later@example.net'], true)
      const aged = {
        ...h,
        envelope: { ...h.envelope, receivedAt: old },
        ...(lifetimeFrom ? { lifetimeFrom } : {}),
      }
      await spool.create('deferred', aged, testMessage(tag))
      await spool.writeRetry(h.id, {
        phase: 'deliver',
        attempts: 1,
        nextAttemptAt: 0,
        pending: ['later@example.net'],
      })
    }
    await queue.flush()
    await until(
      () => queue.pending === 0 && sink.messages.some((m) => m.mailFrom === ''),
      'the DSN delivered',
    )
    const dsns = sink.messages.filter((m) => m.mailFrom === '').map((m) => m.data.toString())
    // The relay still answers 451: the expired message is bounced, the released one waits.
    expect(dsns).toHaveLength(1)
    expect(dsns[0]).toContain('<expired@sender.example>')
    expect(await spool.list('deferred')).toHaveLength(1)
    const [waiting] = await spool.list('deferred')
    expect((await spool.read('deferred', waiting as QueueId)).message.toString()).toContain(
      '<released@sender.example>',
    )
  })

  it('a deferred message deleted (queue delete) while its retry runs is not retried, and leaves no retry state', async () => {
    const doomed = await deferredDelivery('later@example.net', 'doomed')
    let release = (): void => {}
    dispatcher.hold = new Promise((resolve) => {
      release = resolve
    })
    const sweep = queue.flush()
    await until(() => queue.pending === 1, 'the retry under way')
    // The CLI's delete, from another process, while the attempt holds the message in memory.
    expect(await spool.discard('deferred', doomed.id)).toBe(true)
    release()
    await sweep
    await until(() => queue.pending === 0, 'the attempt over')
    expect(await spool.find(doomed.id)).toBeUndefined()
    expect(await spool.readRetry(doomed.id)).toBeUndefined()
    // A later sweep finds nothing to retry.
    await queue.flush()
    expect(queue.pending).toBe(0)
  })

  it('a flush during a running sweep still sweeps (mail not yet due goes now)', async () => {
    await deferredDelivery('f@example.net', 'later', Date.now() + 3_600_000)
    // A periodic sweep (not forced) skips it; the flush asked for meanwhile must not.
    const periodic = (queue as unknown as { sweep(force: boolean): Promise<void> }).sweep(false)
    const flush = queue.flush()
    await Promise.all([periodic, flush])
    await until(() => delivered('later').length === 1, 'the not-yet-due message flushed')
  })

  it('sends the DSN for a sender with a UTF-8 address over SMTPUTF8, so it is not refused', async () => {
    const sender = 'jürgen@bücher.example'
    const refused = header(['gone@example.net'], true, sender)
    await spool.create('outgoing', refused, testMessage('utf8-dsn'))
    queue.enqueue(refused.id)
    await until(() => sink.messages.some((m) => m.mailFrom === ''), 'the DSN delivered')
    const dsn = sink.messages.find((m) => m.mailFrom === '')
    expect(dsn?.rcptTo).toEqual(['jürgen@xn--bcher-kva.example'])
    expect(dsn?.data.toString('utf8')).toContain('Final-Recipient: rfc822; gone@example.net')
  })

  /** A message as the scan leaves it: the original in processing/, the scanned copy in memory. */
  async function scannedInProcessing(tag: string, rcptTo: readonly string[]) {
    const original = header(rcptTo, false)
    await spool.create('processing', original, testMessage(tag))
    const entry = {
      header: { ...original, scan: { verdict: 'clean', score: 0, symbols: [] } },
      message: testMessage(tag, ['X-mailscreen-Scanned: test']),
    }
    return { id: original.id, entry }
  }

  it('delivers a scanned message handed on from memory, then retires its original', async () => {
    const { id, entry } = await scannedInProcessing('now', ['g@example.net'])
    expect(queue.deliverNow(id, entry)).toBe(true)
    await until(() => delivered('now').length === 1 && queue.pending === 0, 'delivered from memory')
    // The copy sent is the scanned one, and nothing of it is left in any state.
    expect(delivered('now')[0]?.data.toString()).toContain('X-mailscreen-Scanned: test')
    expect(await spool.find(id)).toBeUndefined()
  })

  it('writes a scanned message with a deferred recipient into deferred/ before it retires the original', async () => {
    const { id, entry } = await scannedInProcessing('half', ['g@example.net', 'later@example.net'])
    expect(queue.deliverNow(id, entry)).toBe(true)
    await until(() => queue.pending === 0, 'the attempt over')
    expect(delivered('half').map((m) => m.rcptTo)).toEqual([['g@example.net']])
    expect(await spool.find(id)).toBe('deferred')
    const stored = await spool.read('deferred', id)
    expect(stored.message.toString()).toContain('X-mailscreen-Scanned: test')
    expect(stored.header.scan?.verdict).toBe('clean')
    const retry = await spool.readRetry(id)
    expect(retry?.pending).toEqual(['later@example.net'])
    expect(retry?.lastError).toMatch(/^451 4\.3\.0/)
  })

  it('delivers a deferred scanned copy once, from deferred/, when its original in processing/ cannot be retired', async () => {
    const { id, entry } = await scannedInProcessing('stuck', ['later@example.net'])
    const remove = spool.remove.bind(spool)
    let failures = 1
    spool.remove = async (state, removed) => {
      if (state === 'processing' && removed === id && failures-- > 0)
        throw Object.assign(new Error('EIO'), { code: 'EIO' })
      return remove(state, removed)
    }
    expect(queue.deliverNow(id, entry)).toBe(true)
    await until(() => queue.pending === 0, 'the attempt over')
    expect(await spool.readRetry(id)).toMatchObject({ pending: ['later@example.net'] })
    laterWelcome = true
    for (let sweep = 0; sweep < 3; sweep++) {
      await queue.flush()
      await until(() => queue.pending === 0, 'the sweep over')
    }
    expect(delivered('stuck')).toHaveLength(1)
    expect(await spool.readRetry(id)).toBeUndefined()
  })

  it('leaves no retry state behind when the deferred copy could not be written, and delivers from memory later', async () => {
    const { id, entry } = await scannedInProcessing('nospace', ['later@example.net'])
    const create = spool.create.bind(spool)
    let failures = 1
    spool.create = async (state, header, ...rest) => {
      if (state === 'deferred' && failures-- > 0) throw Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' })
      return create(state, header, ...rest)
    }
    expect(queue.deliverNow(id, entry)).toBe(true)
    await until(() => queue.pending === 0, 'the attempt over')
    expect(await spool.readRetry(id)).toBeUndefined()
    expect(await readdir(join(dir, 'spool', 'deferred'))).toEqual([])
    laterWelcome = true
    await queue.flush()
    await until(() => delivered('nospace').length === 1 && queue.pending === 0, 'delivered from memory')
    expect(await readdir(join(dir, 'spool', 'deferred'))).toEqual([])
  })

  it('keeps a scanned message whose attempt threw, original in processing/, and delivers it with the next sweep', async () => {
    const { id, entry } = await scannedInProcessing('threw', ['h@example.net'])
    dispatcher.failNext = true
    expect(queue.deliverNow(id, entry)).toBe(true)
    await until(() => queue.pending === 0, 'the failed attempt over')
    expect(await spool.find(id)).toBe('processing')
    expect(delivered('threw')).toEqual([])
    await queue.flush()
    await until(() => delivered('threw').length === 1 && queue.pending === 0, 'delivered by the sweep')
    expect(delivered('threw')[0]?.data.toString()).toContain('X-mailscreen-Scanned: test')
    expect(await spool.find(id)).toBeUndefined()
  })

  it('takes no scanned message that would hold more than 64 MiB of scanned mail in memory', async () => {
    const small = await scannedInProcessing('small', ['j@example.net'])
    const huge = await scannedInProcessing('huge', ['j@example.net'])
    const hugeEntry = { ...huge.entry, message: Buffer.alloc(64 * 1024 * 1024 + 1, 0x61) }
    expect(queue.deliverNow(huge.id, hugeEntry)).toBe(false)
    expect(queue.deliverNow(small.id, small.entry)).toBe(true)
    await until(() => delivered('small').length === 1 && queue.pending === 0, 'the small one delivered')
    expect(await spool.find(huge.id)).toBe('processing')
  })

  it('takes no scanned message while every place of the stage is taken', async () => {
    let release!: () => void
    dispatcher.hold = new Promise((resolve) => {
      release = resolve
    })
    const held = await Promise.all(
      [1, 2, 3, 4].map((n) => scannedInProcessing(`held${n}`, ['i@example.net'])),
    )
    for (const { id, entry } of held) expect(queue.deliverNow(id, entry)).toBe(true)
    const extra = await scannedInProcessing('extra', ['i@example.net'])
    // Concurrency 4: the fifth must go through outgoing/ instead, and the queue leaves it alone.
    expect(queue.deliverNow(extra.id, extra.entry)).toBe(false)
    release()
    await until(() => queue.pending === 0, 'the held ones delivered')
    expect(sink.messages.filter((m) => /<held\d@sender\.example>/.test(m.data.toString()))).toHaveLength(4)
    expect(delivered('extra')).toEqual([])
    expect(await spool.find(extra.id)).toBe('processing')
  })
})
