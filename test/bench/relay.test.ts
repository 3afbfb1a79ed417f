import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { BenchClient } from '../../src/bench/client.js'
import { createDurableRelay, type DurableRelay } from '../../src/bench/relay.js'
import { type Sink, startSink } from '../../src/bench/sink.js'
import { reply } from '../../src/ingress/smtp-reply.js'

let relay: DurableRelay | undefined
let sink: Sink | undefined
let dir: string | undefined

afterEach(async () => {
  await relay?.close()
  await sink?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

describe('the durable relay (bench baseline)', () => {
  it('forwards each message unchanged over reused sessions and deletes its file once the next hop took it', async () => {
    dir = await mkdtemp(join(tmpdir(), 'relay-test-'))
    sink = await startSink()
    relay = createDurableRelay({ dir, nextHop: { host: '127.0.0.1', port: sink.port }, sessions: 2 })
    const { port } = await relay.server.listen('127.0.0.1', 0)
    const client = await BenchClient.open('127.0.0.1', port)
    const bodies = [0, 1, 2, 3].map((i) =>
      Buffer.from(`Subject: relay ${i}\r\n\r\n..dot-stuffed line ${i}\r\n`),
    )
    for (const body of bodies)
      expect(await client.send('a@example.org', ['b@example.net'], body)).toMatch(/^250 /)
    await client.close()
    await sink.waitFor(4)
    const received = sink.messages.map((m) => m.data.toString()).sort()
    expect(received).toEqual([0, 1, 2, 3].map((i) => `Subject: relay ${i}\r\n\r\n.dot-stuffed line ${i}\r\n`))
    expect(sink.messages.every((m) => m.rcptTo.join() === 'b@example.net')).toBe(true)
    // The file goes only after the sink's 250; poll (up to 5 s on a loaded machine) for the unlinks.
    for (let i = 0; i < 250 && (await readdir(dir)).length > 0; i++)
      await new Promise((r) => setTimeout(r, 20))
    expect(await readdir(dir)).toEqual([])
    expect(relay.failures).toBe(0)
  })

  it('counts a message the next hop refuses, and keeps its file', async () => {
    dir = await mkdtemp(join(tmpdir(), 'relay-test-'))
    sink = await startSink({ decide: () => reply(550, '5.1.1', 'no such user') })
    relay = createDurableRelay({ dir, nextHop: { host: '127.0.0.1', port: sink.port } })
    const { port } = await relay.server.listen('127.0.0.1', 0)
    const client = await BenchClient.open('127.0.0.1', port)
    await client.send('a@example.org', ['nobody@example.net'], Buffer.from('Subject: x\r\n\r\nx\r\n'))
    await client.close()
    for (let i = 0; i < 250 && relay.failures === 0; i++) await new Promise((r) => setTimeout(r, 20))
    expect(relay.failures).toBe(1)
    expect(await readdir(dir)).toHaveLength(1)
  })
})
