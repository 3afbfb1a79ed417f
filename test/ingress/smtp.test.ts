import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { BenchClient } from '../../src/bench/client.js'
import { configSchema } from '../../src/config/schema.js'
import { createSmtpIngress } from '../../src/ingress/smtp.js'
import type { SmtpServer } from '../../src/ingress/smtp-server.js'
import type { QueueId } from '../../src/queue/ids.js'
import { Spool } from '../../src/queue/spool.js'

const MESSAGE = Buffer.from('From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n')

describe('createSmtpIngress', () => {
  let dir: string
  let server: SmtpServer | undefined
  afterEach(async () => {
    await server?.close()
    await rm(dir, { recursive: true, force: true })
  })

  async function start(breakSpool: boolean) {
    dir = await mkdtemp(join(tmpdir(), 'mailscreen-ingress-'))
    const spool = new Spool(dir)
    await spool.init()
    // A spool whose tmp/ vanished fails every write, as a full or broken disk would.
    if (breakSpool) await rm(join(dir, 'tmp'), { recursive: true })
    const queued: QueueId[] = []
    const config = configSchema.parse({ hostname: 'mailscreen.test' })
    server = createSmtpIngress({
      config,
      spool,
      log: pino({ level: 'silent' }),
      onQueued: (id) => queued.push(id),
    })
    const { port } = await server.listen('127.0.0.1', 0)
    return { port, spool, queued }
  }

  it('answers 250 2.0.0 with the queue ID only once the message is in incoming/', async () => {
    const { port, spool, queued } = await start(false)
    const client = await BenchClient.open('127.0.0.1', port)
    const reply = await client.send('a@example.org', ['b@example.net'], MESSAGE)
    await client.close()
    expect(reply).toMatch(/^250 2\.0\.0 Ok: queued as [0-9A-Za-z]{16}$/)
    const id = reply.slice(-16) as QueueId
    expect(queued).toEqual([id])
    expect((await spool.read('incoming', id)).message).toEqual(MESSAGE)
  })

  it('answers 451 4.3.0 when the spool cannot store the message, and queues nothing', async () => {
    const { port, spool, queued } = await start(true)
    const client = await BenchClient.open('127.0.0.1', port)
    await expect(client.send('a@example.org', ['b@example.net'], MESSAGE)).rejects.toThrow(
      /^unexpected reply: 451 4\.3\.0/,
    )
    await client.close()
    expect(queued).toEqual([])
    expect(await spool.list('incoming')).toEqual([])
  })
})
