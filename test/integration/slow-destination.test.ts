/**
 * A destination that answers slowly must not hold up mail for the others: a message that
 * waits `delivery.destinationWait` for one of its sessions is deferred (4.4.5, busy) and its
 * place in the delivery stage goes to other mail, which is then delivered at once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SinkSet, sendMail, startSinks, testMessage, until } from '../delivery/harness.js'
import { type FakeDns, startFakeDns } from '../support/dns-server.js'
import { type LogLine, type MailscreenProcess, startMailscreen, stopAll } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'

const SLOW = '127.0.70.1'
const FAST = '127.0.70.2'
/** The slow host holds each reply after DATA this long. */
const SLOW_REPLY_MS = 1_500

describe('a slow destination', () => {
  let dns: FakeDns
  let sinks: SinkSet
  let ms: MailscreenProcess | undefined

  beforeAll(async () => {
    const hosts: Record<string, string> = { 'slow.example': SLOW, 'fast.example': FAST }
    dns = await startFakeDns(({ name, type }) => {
      const address = hosts[name]
      if (!address) return { rcode: 'NXDOMAIN' }
      return type === 'A' ? { a: [address] } : {}
    })
    sinks = await startSinks([SLOW, FAST], (host) => (host === SLOW ? { replyDelayMs: SLOW_REPLY_MS } : {}))
    ms = await startMailscreen(await freePort(), {
      routing: { resolver: { servers: [dns.server] } },
      delivery: {
        relay: null,
        mxPort: sinks.port,
        // Two sessions in all (so four messages in the delivery stage), one per destination.
        maxConnections: 2,
        maxConnectionsPerDestination: 1,
        destinationWait: '400ms',
      },
    })
  })
  afterAll(async () => {
    await stopAll(ms, sinks)
    await dns.close()
  })

  const logs = (): readonly LogLine[] => (ms as MailscreenProcess).logs
  const deliveredAt = (id: string): number => logs().findIndex((l) => l.qid === id && l.msg === 'delivered')

  it('defers what waited too long for it as busy, delivers the other mail first, and all of it in the end', async () => {
    const port = (ms as MailscreenProcess).port
    const send = async (to: string, tag: string): Promise<string> => {
      const sent = await sendMail(port, 'tester@sender.example', [to], testMessage(tag))
      expect(sent.id, sent.replies[0]?.text).toBeDefined()
      return sent.id as string
    }
    // Five for the slow host fill the delivery stage; the one for the fast host comes last.
    const slow = await Promise.all([1, 2, 3, 4, 5].map((i) => send(`u${i}@slow.example`, `slow-${i}`)))
    // Scans run side by side and may finish in any order: the fast one is sent once the slow
    // ones are through theirs (a verdict is logged once delivery has the message).
    const scanned = (id: string): boolean => logs().some((l) => l.qid === id && l.msg === 'verdict')
    await until(() => slow.every(scanned), 'the slow messages scanned', 10_000)
    const fast = await send('u@fast.example', 'fast')

    await until(() => deliveredAt(fast) >= 0, 'the fast message delivered', 10_000)
    // It did not wait for the slow host: its first message was still in its 1.5 s reply.
    const first = slow.map(deliveredAt).filter((at) => at >= 0)
    expect(first.every((at) => at > deliveredAt(fast))).toBe(true)
    const busy = logs().filter((l) => l.msg === 'deferred' && String(l.to).endsWith('@slow.example'))
    expect(busy.length).toBeGreaterThan(0)
    // Ours to say, not the host's fault: the retry schedule does not move on for it.
    expect(busy.every((l) => l.attempts === 0)).toBe(true)
    expect(String(busy[0]?.reply)).toMatch(
      // (ms under a second, whole seconds past it: a loaded machine waits longer)
      /^4\.4\.5 127\.0\.70\.1:\d+ busy: waited \d+ m?s for one of its 1 sessions$/,
    )

    // Retried until each got its turn: every slow message arrives, once.
    await until(() => slow.every((id) => deliveredAt(id) >= 0), 'every slow message delivered', 30_000)
    const tags = sinks
      .get(SLOW)
      .messages.map((m) => /<(slow-\d)@sender\.example>/.exec(m.data.toString('latin1'))?.[1])
      .sort()
    expect(tags).toEqual(['slow-1', 'slow-2', 'slow-3', 'slow-4', 'slow-5'])
    expect(sinks.get(FAST).received).toBe(1)
  })

  it('waits as long as it takes when no other mail waits for a place', async () => {
    const port = (ms as MailscreenProcess).port
    const before = logs().filter((l) => l.msg === 'deferred').length
    // Three for the slow host (one session, 1.5 s each) and nothing else: no one to make room for.
    const ids = await Promise.all(
      [6, 7, 8].map(async (i) => {
        const sent = await sendMail(
          port,
          'tester@sender.example',
          [`u${i}@slow.example`],
          testMessage(`slow-${i}`),
        )
        return sent.id as string
      }),
    )
    await until(() => ids.every((id) => deliveredAt(id) >= 0), 'the three delivered', 15_000)
    expect(logs().filter((l) => l.msg === 'deferred').length).toBe(before)
  })
})
