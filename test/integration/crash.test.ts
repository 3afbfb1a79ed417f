/**
 * kill -9 with mail in flight: every message mailscreen answered `250 ... queued as ID` must
 * reach the next hop after a restart on the same spool — at least once (duplicates are allowed
 * and counted), never zero times — and the queue must end empty.
 */
import { randomBytes } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { BenchClient } from '../../src/bench/client.js'
import { type Sink, type SinkMessage, startSink } from '../../src/bench/sink.js'
import { cleanup, type MailscreenProcess, startMailscreen } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'

const TOTAL = 500
const CONCURRENCY = 20
/** SIGKILL once this many 250s have come back (while the rest are still being sent). */
const KILL_AFTER = 250
const RUN = randomBytes(4).toString('hex')
const SENDER = 'crash-sender@example.org'
const STATES = ['incoming', 'processing', 'outgoing', 'deferred', 'quarantine', 'failed'] as const

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

async function waitUntil(cond: () => boolean | Promise<boolean>, what: () => string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`)
    await sleep(200)
  }
}

/** Message `n`, CRLF line ends, no line starts with a dot (BenchClient sends it as is). */
function message(n: number): Buffer {
  const lines = [
    'From: Crash Test <crash-sender@example.org>',
    `To: rcpt${n}@example.net`,
    `Subject: crash test ${n}`,
    'Date: Mon, 23 Nov 2026 20:00:00 +0000',
    `Message-ID: <crash-${RUN}-${n}@example.org>`,
    `X-Crash-Id: ${RUN}-${n}`,
    '',
  ]
  const count = 5 + ((n * 13) % 120)
  for (let i = 0; i < count; i++) lines.push(`message ${n} line ${i} ${'x'.repeat((n + i) % 70)}`)
  return Buffer.from(`${lines.join('\r\n')}\r\n`, 'latin1')
}

function crashId(msg: SinkMessage): number | undefined {
  const end = msg.data.indexOf('\r\n\r\n')
  const header = msg.data.subarray(0, end === -1 ? msg.data.length : end).toString('latin1')
  const m = /^X-Crash-Id: ([0-9a-f]+)-(\d+)\r?$/m.exec(header)
  if (!m || m[1] !== RUN) return undefined
  return Number(m[2])
}

async function spoolSnapshot(spoolDir: string): Promise<Record<(typeof STATES)[number], string[]>> {
  const out = {} as Record<(typeof STATES)[number], string[]>
  for (const state of STATES) {
    out[state] = (await readdir(join(spoolDir, state)).catch(() => [])).filter((name) =>
      /^[0-9A-Za-z]{16}$/.test(name),
    )
  }
  return out
}

describe('crash safety (SIGKILL with 500 messages in flight)', () => {
  let sink: Sink | undefined
  const instances: MailscreenProcess[] = []
  afterEach(async () => {
    for (const ms of instances.splice(0)) await ms.kill()
    await sink?.close()
    sink = undefined
  })

  it('delivers every acknowledged message after a restart on the same spool; the queue ends empty', {
    timeout: 110_000,
  }, async () => {
    sink = await startSink()
    const theSink = sink
    const copies = new Map<number, SinkMessage[]>()
    const foreign: SinkMessage[] = []
    theSink.on('message', (msg) => {
      const n = crashId(msg)
      if (n === undefined) foreign.push(msg)
      else copies.set(n, [...(copies.get(n) ?? []), msg])
    })

    const port = await freePort()
    const config = { delivery: { relay: `127.0.0.1:${theSink.port}` } }
    const first = await startMailscreen(port, config)
    instances.push(first)
    const dir = first.dir
    try {
      // Push TOTAL messages over CONCURRENCY connections; SIGKILL part-way.
      const acked = new Map<number, string>()
      const failures: string[] = []
      let next = 0
      let killed: Promise<void> | undefined
      let stats = { sentWhenKilled: 0, ackedWhenKilled: 0, atSinkWhenKilled: 0 }
      const started = Date.now()
      // Warm up first (each worker sets its plugins up on its first task), so that the crash
      // finds messages in every stage: incoming, processing, outgoing, at the sink.
      const warm = await BenchClient.open('127.0.0.1', port)
      const warmReply = await warm.send(SENDER, ['rcpt0@example.net'], message(0))
      await warm.close()
      const warmId = /^250 2\.0\.0 Ok: queued as ([0-9A-Za-z]{16})$/.exec(warmReply)?.[1]
      expect(warmId, warmReply).toBeDefined()
      acked.set(0, warmId as string)
      next = 1
      await theSink.waitFor(1, 20_000)
      const clients = await Promise.all(
        Array.from({ length: CONCURRENCY }, () => BenchClient.open('127.0.0.1', port)),
      )
      await Promise.all(
        clients.map(async (client) => {
          for (let n = next++; n < TOTAL; n = next++) {
            let reply: string
            try {
              reply = await client.send(SENDER, [`rcpt${n}@example.net`], message(n))
            } catch (err) {
              // The crash: this connection is gone, and message n was never acknowledged.
              failures.push(`${n}: ${(err as Error).message}`)
              return
            }
            const id = /^250 2\.0\.0 Ok: queued as ([0-9A-Za-z]{16})$/.exec(reply)?.[1]
            if (id === undefined) throw new Error(`message ${n}: unexpected reply ${reply}`)
            acked.set(n, id)
            if (acked.size >= KILL_AFTER && killed === undefined) {
              stats = {
                sentWhenKilled: next,
                ackedWhenKilled: acked.size,
                atSinkWhenKilled: theSink.received,
              }
              killed = first.kill()
            }
          }
          await client.close()
        }),
      )
      expect(killed, 'mailscreen was killed part-way').toBeDefined()
      await killed
      expect(first.child.signalCode).toBe('SIGKILL')
      // The kill really interrupted sends in progress; later messages were never sent.
      expect(stats.sentWhenKilled).toBeLessThan(TOTAL)
      expect(failures.length).toBeGreaterThan(0)
      expect(acked.size).toBeGreaterThanOrEqual(KILL_AFTER)
      expect(acked.size).toBeLessThan(TOTAL)
      expect(new Set(acked.values()).size).toBe(acked.size)

      // What the crash left behind. Recovery will put back what was being scanned, unless
      // its scanned copy had already reached a later state.
      const left = await spoolSnapshot(first.spoolDir)
      const later = new Set([...left.outgoing, ...left.deferred, ...left.quarantine, ...left.failed])
      const toRecover = left.processing.filter((id) => !later.has(id))
      const atSinkBeforeRestart = theSink.received
      console.log(
        `crash: killed after ${stats.ackedWhenKilled} acks (${stats.sentWhenKilled} sends started, ` +
          `${stats.atSinkWhenKilled} at the sink); ${acked.size} acked in all, ${failures.length} sends cut off; ` +
          `spool: ${STATES.map((s) => `${s}=${left[s].length}`).join(' ')}; at the sink before restart: ${atSinkBeforeRestart}`,
      )

      // Restart on the same spool; the sink stayed up all along.
      const second = await startMailscreen(port, config, dir)
      instances.push(second)
      const recovered = second.logs.find((l) => l.msg === 'recovered from processing')
      if (toRecover.length > 0) {
        expect(recovered, 'the recovery log line').toBeDefined()
        expect(recovered?.count).toBe(toRecover.length)
        expect(recovered?.ids).toEqual(toRecover.sort().slice(0, 20))
      } else {
        expect(recovered).toBeUndefined()
      }

      // Every acknowledged message arrives, at least once.
      const missing = () => [...acked.keys()].filter((n) => !copies.has(n))
      await waitUntil(
        () => missing().length === 0,
        () => `${missing().length} acknowledged messages to reach the sink (e.g. ${missing().slice(0, 5)})`,
        60_000,
      )
      // The queue drains completely.
      let rows: unknown[] = []
      await waitUntil(
        async () => {
          const list = await second.cli(['queue', 'list', '--json'])
          expect(list.code, list.stderr).toBe(0)
          rows = JSON.parse(list.stdout) as unknown[]
          return rows.length === 0
        },
        () => `an empty queue; still: ${JSON.stringify(rows).slice(0, 1000)}`,
        30_000,
      )
      expect(await spoolSnapshot(second.spoolDir)).toEqual({
        incoming: [],
        processing: [],
        outgoing: [],
        deferred: [],
        quarantine: [],
        failed: [],
      })

      // Each acknowledged message, scanned under the ID it was acknowledged with, bytes intact.
      expect(foreign).toEqual([])
      for (const [n, qid] of acked) {
        const got = copies.get(n) ?? []
        const original = message(n)
        expect(
          got.some((m) =>
            m.data
              .toString('latin1')
              .includes(`X-mailscreen-Scanned: mailscreen on mailscreen.test (id ${qid})`),
          ),
          `message ${n} (${qid}) scanned under its queue ID`,
        ).toBe(true)
        for (const m of got) {
          expect(m.mailFrom).toBe(SENDER)
          expect(m.rcptTo).toEqual([`rcpt${n}@example.net`])
          expect(
            m.data.subarray(m.data.length - original.length).equals(original),
            `message ${n} bytes`,
          ).toBe(true)
        }
      }
      const ackedCopies = [...acked.keys()].reduce((sum, n) => sum + (copies.get(n)?.length ?? 0), 0)
      const duplicates = ackedCopies - acked.size
      const unacked = [...copies.keys()].filter((n) => !acked.has(n))
      console.log(
        `crash: all ${acked.size} acknowledged messages delivered in ${Date.now() - started} ms; ` +
          `${duplicates} duplicate deliveries; ${unacked.length} never-acknowledged messages delivered too; ` +
          `${theSink.received - atSinkBeforeRestart} deliveries after the restart`,
      )
      expect(duplicates).toBeGreaterThanOrEqual(0)
      const stopped = await second.stop()
      expect(stopped).toBe(0)
    } finally {
      await Promise.all(instances.splice(0).map((ms) => ms.kill()))
      await cleanup(dir)
    }
  })
})
