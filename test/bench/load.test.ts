import { afterEach, describe, expect, it } from 'vitest'
import { runLoad } from '../../src/bench/load.js'
import { benchIdOf, benchMessage } from '../../src/bench/message.js'
import { type Sink, startSink } from '../../src/bench/sink.js'

const sinks: Sink[] = []

afterEach(async () => {
  await Promise.all(sinks.splice(0).map((sink) => sink.close()))
})

async function sink(replyDelayMs?: number): Promise<Sink> {
  const started = await startSink({ keep: false, ...(replyDelayMs ? { replyDelayMs } : {}) })
  sinks.push(started)
  return started
}

const base = { host: '127.0.0.1', size: 2048, reuse: false }

describe('runLoad', () => {
  it('closed loop: one client sends its next message once the last was answered', async () => {
    const target = await sink(40)
    const load = await runLoad({ ...base, port: target.port, messages: 5, concurrency: 1 })
    expect(load.errors).toEqual([])
    expect(target.received).toBe(5)
    // Each message waits only for its own reply: the slow sink slows the load down instead.
    for (const ms of load.acceptMs) expect(ms).toBeLessThan(200)
    expect(load.elapsedMs).toBeGreaterThanOrEqual(5 * 40)
  })

  it('open loop: messages are due at the offered rate and measured from then', async () => {
    const target = await sink()
    const load = await runLoad({ ...base, port: target.port, messages: 20, concurrency: 4, rate: 100 })
    expect(load.errors).toEqual([])
    expect(target.received).toBe(20)
    // Due every 10 ms from the first, whatever the replies did: the load cannot run ahead.
    const first = load.startedAt[0] as number
    expect([...load.startedAt].map((due) => due - first)).toEqual(
      Array.from({ length: 20 }, (_, seq) => expect.closeTo(seq * 10, 6)),
    )
    expect(load.elapsedMs).toBeGreaterThanOrEqual(19 * 10)
    // Nothing is sent before it is due (a timer may fire a millisecond early).
    for (const ms of load.acceptMs) expect(ms).toBeGreaterThan(0)
  })

  it('open loop: a server slower than the rate shows as queueing, not as a slower load', async () => {
    // One connection, a message due every 10 ms, each answered after 40 ms: message k can
    // start only after the k before it (k × 40 ms), though it was due at k × 10 ms.
    const target = await sink(40)
    const load = await runLoad({ ...base, port: target.port, messages: 8, concurrency: 1, rate: 100 })
    expect(load.errors).toEqual([])
    expect(target.received).toBe(8)
    expect(load.acceptMs).toHaveLength(8)
    const last = Math.max(...load.acceptMs)
    // The last one waited 7 × 40 ms for the connection, less its 70 ms head start, plus its own 40.
    expect(last).toBeGreaterThanOrEqual(7 * 40 - 70 + 40)
  })
})

describe('benchMessage and benchIdOf', () => {
  it('tag a message with its run and number, and read back only the run asked for', () => {
    const message = benchMessage(41, 2048, 3)
    expect(benchIdOf(message, 3)).toBe(41)
    expect(benchIdOf(message, 2)).toBeUndefined()
    expect(benchIdOf(benchMessage(7, 2048), 0)).toBe(7)
  })
})
