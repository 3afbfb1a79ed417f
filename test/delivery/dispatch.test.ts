import { networkInterfaces } from 'node:os'
import { pino } from 'pino'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Destinations } from '../../src/delivery/destinations.js'
import {
  countReceived,
  Dispatcher,
  type DispatcherOptions,
  type Outcome,
  ownAddresses,
  type RoutedRecipient,
} from '../../src/delivery/dispatch.js'
import { NextHopDns } from '../../src/delivery/mx.js'
import type { Envelope } from '../../src/ingress/envelope.js'
import { reply } from '../../src/ingress/smtp-reply.js'
import { createSmtpServer, type SmtpServer } from '../../src/ingress/smtp-server.js'
import { buildRoutingMaps, type MapTexts, type RoutingMaps } from '../../src/routing/maps.js'
import { type FakeDns, type FakeReply, startFakeDns } from '../support/dns-server.js'
import { type SinkSet, sleep, startSinks, testMessage } from './harness.js'

const silent = pino({ level: 'silent' })

const ENVELOPE: Envelope = {
  mailFrom: 'sender@sender.example',
  rcptTo: [],
  client: { address: '127.0.0.1' },
  peer: { address: '127.0.0.1' },
  receivedAt: Date.now(),
}

const A = '127.0.80.1'
const B = '127.0.80.2'
const RELAY = '127.0.80.9'
const LIVE = '127.0.81.2'
const PRIMARY = '127.0.81.3'
/** Nothing listens here: connections are refused. */
const DEAD = '127.0.81.1'
/** A server that takes its time over each message (started by its test). */
const SLOW = '127.0.85.1'

/** The fake DNS zone of these tests: names → records. */
const ZONE: Record<string, Partial<Record<'MX' | 'A' | 'AAAA', FakeReply>>> = {
  'mx.example': {
    MX: {
      mx: [
        { preference: 20, exchange: 'live.mx.example' },
        { preference: 10, exchange: 'dead.mx.example' },
      ],
    },
  },
  'dead.mx.example': { A: { a: [DEAD] } },
  'busy.example': {
    MX: {
      mx: [
        { preference: 10, exchange: 'slow.mx.example' },
        { preference: 20, exchange: 'live.mx.example' },
      ],
    },
  },
  'slow.mx.example': { A: { a: [SLOW] } },
  'busy-behind-dead.example': {
    MX: {
      mx: [
        { preference: 10, exchange: 'dead.mx.example' },
        { preference: 20, exchange: 'slow.mx.example' },
      ],
    },
  },
  'live.mx.example': { A: { a: [LIVE] } },
  'only-dead.example': { MX: { mx: [{ preference: 10, exchange: 'dead.mx.example' }] } },
  'null.example': { MX: { mx: [{ preference: 0, exchange: '.' }] } },
  'broken.example': { MX: { rcode: 'SERVFAIL' } },
  'implicit.example': { A: { a: [LIVE] } },
  'self.example': { MX: { mx: [{ preference: 10, exchange: 'mx.self.example' }] } },
  'mx.self.example': { A: { a: ['127.0.0.1'] } },
  'by-name.example': { MX: { mx: [{ preference: 10, exchange: 'MailScreen.Test' }] } },
  'mailscreen.test': { A: { a: [LIVE] } },
  'backup.example': {
    MX: {
      mx: [
        { preference: 20, exchange: 'mx.self.example' },
        { preference: 10, exchange: 'primary.backup.example' },
        { preference: 30, exchange: 'live.mx.example' },
      ],
    },
  },
  'primary.backup.example': { A: { a: [PRIMARY] } },
  'backup-down.example': {
    MX: {
      mx: [
        { preference: 10, exchange: 'dead.mx.example' },
        { preference: 20, exchange: 'mx.self.example' },
      ],
    },
  },
}

function maps(texts: Record<string, string>): RoutingMaps {
  const files: MapTexts = Object.fromEntries(
    Object.entries(texts).map(([name, text]) => [name, { file: name, text }]),
  )
  return buildRoutingMaps(files)
}

/** `status code recipient @hop` per outcome, for readable assertions. */
function summary(outcomes: readonly Outcome[]): string[] {
  return outcomes.map((o) => `${o.recipient} ${o.status} ${o.code}`)
}

describe('Dispatcher', () => {
  let dns: FakeDns
  let sinks: SinkSet
  let destinations: Destinations | undefined
  let laterRefused = 0
  beforeAll(async () => {
    dns = await startFakeDns(({ name, type }) => {
      const zone = ZONE[name]
      if (!zone) return { rcode: 'NXDOMAIN' }
      return zone[type as 'MX' | 'A' | 'AAAA'] ?? {}
    })
    sinks = await startSinks([A, B, RELAY, LIVE, PRIMARY], (host) => ({
      decide: (_tx, rcpt) => {
        if (host === B && rcpt.startsWith('nobody@'))
          return reply(550, '5.1.1', `<${rcpt}>: Recipient address rejected: User unknown`)
        if (host === A && rcpt.startsWith('later@')) {
          laterRefused++
          return reply(451, '4.2.0', 'mailbox busy, try later')
        }
        return undefined
      },
    }))
  })
  afterAll(async () => {
    await sinks.close()
    await dns.close()
  })
  afterEach(async () => {
    await destinations?.close()
    destinations = undefined
  })

  function dispatcher(
    routingMaps: RoutingMaps,
    overrides: Partial<DispatcherOptions> & { backoffAfter?: number } = {},
  ): Dispatcher {
    destinations =
      overrides.destinations ??
      new Destinations({
        hostname: 'mailscreen.test',
        maxConnections: 10,
        maxPerDestination: 10,
        maxMessagesPerConnection: 100,
        connectTimeoutMs: 2_000,
        backoffAfter: overrides.backoffAfter ?? 100,
        backoffMinMs: 60_000,
        backoffMaxMs: 600_000,
      })
    const resolver = new NextHopDns({ servers: [dns.server], timeoutMs: 500, tries: 1 })
    return new Dispatcher({
      routing: () => ({ maps: routingMaps, hopLimit: 30, dns: resolver }),
      relay: { host: RELAY, port: sinks.port },
      local: { host: RELAY, port: sinks.port },
      lmtp: false,
      tls: { relay: 'none', mx: 'may' },
      maxRecipientsPerTransaction: 1000,
      mxPort: sinks.port,
      hostname: 'mailscreen.test',
      ownAddresses: new Set(['127.0.0.1']),
      log: silent,
      ...overrides,
      destinations,
    })
  }

  async function send(d: Dispatcher, rcptTo: readonly string[], tag: string, from = ENVELOPE.mailFrom) {
    const { routed, refused } = await d.expand(rcptTo, from)
    const sent = await d.deliver(routed, {
      envelope: { ...ENVELOPE, mailFrom: from, rcptTo },
      message: testMessage(tag),
    })
    return { routed, refused, sent }
  }

  const received = (host: string, tag: string) =>
    sinks.get(host).messages.filter((m) => m.data.toString('latin1').includes(`<${tag}@sender.example>`))

  it('splits a message per next hop, with an outcome per recipient carrying the remote reply', async () => {
    const port = sinks.port
    const d = dispatcher(
      maps({ mailertable: `a.example smtp:[${A}]:${port}\nb.example smtp:[${B}]:${port}\n` }),
    )
    const { sent } = await send(
      d,
      ['x@a.example', 'later@a.example', 'y@b.example', 'nobody@b.example', 'z@elsewhere.example'],
      'split',
    )
    expect(summary(sent)).toEqual([
      'x@a.example delivered 250',
      'later@a.example deferred 451',
      'y@b.example delivered 250',
      'nobody@b.example failed 550',
      'z@elsewhere.example delivered 250',
    ])
    const nobody = sent[3] as Outcome
    expect(nobody.reply).toBe('550 5.1.1 <nobody@b.example>: Recipient address rejected: User unknown')
    expect(nobody.remoteMta).toBe(B)
    expect(nobody.hop).toBe(`${B}:${port}`)
    expect(sent[4]?.hop).toBe(`${RELAY}:${port}`)
    expect(received(A, 'split').map((m) => m.rcptTo)).toEqual([['x@a.example']])
    expect(received(B, 'split').map((m) => m.rcptTo)).toEqual([['y@b.example']])
    expect(received(RELAY, 'split').map((m) => m.rcptTo)).toEqual([['z@elsewhere.example']])
    expect(laterRefused).toBe(1)
  })

  it('expands aliases once: one copy per final recipient, the list owner as envelope sender, unknown users refused', async () => {
    const port = sinks.port
    const d = dispatcher(
      maps({
        'local-host-names': 'example.org\n',
        aliases: 'team: ann@a.example, bob@b.example, ghost\nowner-team: ann@a.example\n',
        mailertable: `a.example smtp:[${A}]:${port}\nb.example smtp:[${B}]:${port}\n`,
      }),
    )
    const { routed, refused, sent } = await send(
      d,
      ['team@example.org', 'ANN@a.example', 'nope@example.org'],
      'team',
    )
    expect(routed).toEqual<RoutedRecipient[]>([
      { address: 'ann@a.example', from: 'owner-team@example.org', original: 'team@example.org' },
      { address: 'bob@b.example', from: 'owner-team@example.org', original: 'team@example.org' },
    ])
    expect(refused.map((o) => [o.recipient, o.status, o.reply, o.originalRecipient])).toEqual([
      ['ghost@example.org', 'failed', '550 5.1.1 <ghost@example.org>: user unknown', 'team@example.org'],
      ['nope@example.org', 'failed', '550 5.1.1 <nope@example.org>: user unknown', undefined],
    ])
    expect(summary(sent)).toEqual(['ann@a.example delivered 250', 'bob@b.example delivered 250'])
    expect(received(A, 'team').map((m) => [m.mailFrom, m.rcptTo])).toEqual([
      ['owner-team@example.org', ['ann@a.example']],
    ])
  })

  it('sends at most 100 recipients per transaction to a mailertable or MX host, and maxRecipientsPerTransaction to the relay', async () => {
    const d = dispatcher(maps({ mailertable: `a.example smtp:[${A}]:${sinks.port}\n` }), {
      maxRecipientsPerTransaction: 120,
    })
    const many = (domain: string) => Array.from({ length: 150 }, (_, i) => `r${i}@${domain}`)
    const { sent } = await send(d, [...many('a.example'), ...many('relayed.example')], 'chunks')
    expect(sent.every((o) => o.status === 'delivered')).toBe(true)
    const sizes = (host: string) =>
      received(host, 'chunks')
        .map((m) => m.rcptTo.length)
        .sort((x, y) => x - y)
    expect(sizes(A)).toEqual([50, 100])
    expect(sizes(RELAY)).toEqual([30, 120])
  })

  it('tries MX hosts lowest preference first and goes on to the next one when a host cannot be reached', async () => {
    const d = dispatcher(maps({}), { relay: null })
    const { sent } = await send(d, ['u@mx.example'], 'mx-next')
    expect(summary(sent)).toEqual(['u@mx.example delivered 250'])
    expect(sent[0]?.hop).toBe(`live.mx.example[${LIVE}]:${sinks.port}`)
    expect(sent[0]?.remoteMta).toBe('live.mx.example')
    expect(received(LIVE, 'mx-next')).toHaveLength(1)
  })

  it('delivers to the A record of a domain without MX (implicit MX)', async () => {
    const d = dispatcher(maps({}), { relay: null })
    const { sent } = await send(d, ['u@implicit.example'], 'implicit')
    expect(summary(sent)).toEqual(['u@implicit.example delivered 250'])
    expect(sent[0]?.hop).toBe(`implicit.example[${LIVE}]:${sinks.port}`)
  })

  it('bounces a null MX and a domain that does not exist at once; defers when DNS fails', async () => {
    const d = dispatcher(maps({}), { relay: null })
    const { sent } = await send(d, ['u@null.example', 'u@nowhere.example', 'u@broken.example'], 'dns-errors')
    expect(sent.map((o) => [o.recipient, o.status, o.reply.slice(0, 14)])).toEqual([
      ['u@null.example', 'failed', '556 5.1.10 nul'],
      ['u@nowhere.example', 'failed', '550 5.1.2 Host'],
      ['u@broken.example', 'deferred', '451 4.4.3 MX l'],
    ])
    expect(sent[0]?.remoteMta).toBeUndefined()
  })

  it('refuses mail whose best MX is ourselves (by address or by name), and uses only better MX hosts when we are a backup', async () => {
    const d = dispatcher(maps({}), { relay: null })
    const { sent } = await send(
      d,
      ['u@self.example', 'u@by-name.example', 'u@backup.example', 'u@backup-down.example'],
      'self',
    )
    expect(sent.map((o) => [o.recipient, o.status, o.reply])).toEqual([
      ['u@self.example', 'failed', '554 5.4.6 mail for self.example loops back to myself'],
      ['u@by-name.example', 'failed', '554 5.4.6 mail for by-name.example loops back to myself'],
      ['u@backup.example', 'delivered', expect.stringMatching(/^250 /)],
      ['u@backup-down.example', 'deferred', expect.stringContaining(`connect to ${DEAD}:${sinks.port}`)],
    ])
    expect(sent[2]?.hop).toBe(`primary.backup.example[${PRIMARY}]:${sinks.port}`)
    // The backup MX did not fall through to the host behind us either.
    expect(received(LIVE, 'self')).toHaveLength(0)
  })

  it('backs off a destination that keeps failing and stops connecting to it', async () => {
    let greetings = 0
    const grumpy = createSmtpServer({
      hostname: 'grumpy.test',
      maxSize: 1_000_000,
      onConnect: () => {
        greetings++
        return reply(421, '4.3.2', 'too busy')
      },
      onMessage: async () => reply(250, '2.0.0', 'Ok'),
    })
    const { port } = await grumpy.listen('127.0.83.1', 0)
    try {
      const d = dispatcher(maps({ mailertable: `grumpy.example smtp:[127.0.83.1]:${port}\n` }), {
        backoffAfter: 2,
      })
      for (let i = 0; i < 4; i++) {
        const { sent } = await send(d, ['u@grumpy.example'], `grumpy-${i}`)
        expect(sent[0]?.status).toBe('deferred')
        if (i < 2) expect(sent[0]?.reply).toContain('421 4.3.2 too busy')
        else expect(sent[0]?.reply).toContain('backed off until')
      }
      expect(greetings).toBe(2)
    } finally {
      await grumpy.close()
    }
  })

  it('defers for a busy MX host as busy: no other MX host, no Remote-MTA, no verdict on the host', async () => {
    const slow = createSmtpServer({
      hostname: 'slow.test',
      maxSize: 1_000_000,
      onMessage: async (_tx, data) => {
        for await (const _ of data as AsyncIterable<Buffer>);
        await sleep(800)
        return reply(250, '2.0.0', 'Ok')
      },
    })
    const { port } = await slow.listen(SLOW, sinks.port)
    try {
      destinations = new Destinations({
        hostname: 'mailscreen.test',
        maxConnections: 10,
        maxPerDestination: 1,
        destinationWaitMs: 100,
        othersWaiting: () => true,
        maxMessagesPerConnection: 100,
        connectTimeoutMs: 2_000,
        backoffAfter: 1,
        backoffMinMs: 60_000,
        backoffMaxMs: 600_000,
      })
      const d = dispatcher(maps({}), { relay: null, destinations })
      const [first, second, third] = await Promise.all([
        send(d, ['one@busy.example'], 'busy-1'),
        send(d, ['two@busy.example'], 'busy-2'),
        send(d, ['three@busy-behind-dead.example'], 'busy-3'),
      ])
      expect(summary(first.sent)).toEqual(['one@busy.example delivered 250'])
      expect(summary(second.sent)).toEqual(['two@busy.example deferred 0'])
      expect(second.sent[0]).toMatchObject({ busy: true, hop: `slow.mx.example[${SLOW}]:${port}` })
      expect(second.sent[0]?.remoteMta).toBeUndefined()
      expect(received(LIVE, 'busy-2')).toEqual([])
      expect(destinations.backedOff(Destinations.key(SLOW, port))).toBeUndefined()
      // Busy behind a host that failed is an ordinary deferral, and says why.
      expect(third.sent[0]).toMatchObject({ status: 'deferred' })
      expect(third.sent[0]?.busy).toBeUndefined()
      expect(third.sent[0]?.reply).toContain(DEAD)
      expect(third.sent[0]?.reply).toContain('busy: waited')
    } finally {
      await slow.close()
    }
  })

  it('reuses connections per destination within the per-destination and global limits', async () => {
    const active = new Map<string, number>()
    const peak = { total: 0, per: new Map<string, number>() }
    const connections = new Map<string, number>()
    let total = 0
    const servers: SmtpServer[] = []
    const hosts = ['127.0.84.1', '127.0.84.2']
    let port = 0
    for (const host of hosts) {
      const server = createSmtpServer({
        hostname: host,
        maxSize: 1_000_000,
        onConnect: () => {
          connections.set(host, (connections.get(host) ?? 0) + 1)
          return undefined
        },
        onMessage: async (_tx, data) => {
          for await (const _ of data as AsyncIterable<Buffer>);
          total++
          active.set(host, (active.get(host) ?? 0) + 1)
          peak.total = Math.max(
            peak.total,
            [...active.values()].reduce((a, b) => a + b, 0),
          )
          peak.per.set(host, Math.max(peak.per.get(host) ?? 0, active.get(host) ?? 0))
          await sleep(30)
          active.set(host, (active.get(host) ?? 1) - 1)
          return reply(250, '2.0.0', 'Ok')
        },
      })
      port = (await server.listen(host, port)).port
      servers.push(server)
    }
    try {
      destinations = new Destinations({
        hostname: 'mailscreen.test',
        maxConnections: 3,
        maxPerDestination: 2,
        maxMessagesPerConnection: 100,
        connectTimeoutMs: 2_000,
        backoffAfter: 3,
        backoffMinMs: 1_000,
        backoffMaxMs: 1_000,
      })
      const d = dispatcher(
        maps({
          mailertable: `one.example smtp:[${hosts[0]}]:${port}\ntwo.example smtp:[${hosts[1]}]:${port}\n`,
        }),
        { destinations },
      )
      const runs = Array.from({ length: 24 }, (_, i) =>
        send(d, [`u${i}@${i % 2 ? 'one' : 'two'}.example`], `limit-${i}`),
      )
      const results = await Promise.all(runs)
      expect(results.every((r) => r.sent[0]?.status === 'delivered')).toBe(true)
      expect(total).toBe(24)
      expect(peak.total).toBeLessThanOrEqual(3)
      expect(peak.total).toBeGreaterThanOrEqual(2)
      for (const host of hosts) {
        expect(peak.per.get(host)).toBeLessThanOrEqual(2)
        // 12 messages each over at most two sessions: connections were reused.
        expect(connections.get(host)).toBeLessThanOrEqual(2)
      }
    } finally {
      for (const server of servers) await server.close()
    }
  })

  it('answers RCPT-time checks: unknown local user, mailertable error:, foreign domains accepted', async () => {
    const d = dispatcher(
      maps({
        'local-host-names': 'example.org\n',
        aliases: 'ann: ann@a.example\n',
        mailertable: 'old.example error:5.1.2:550 old.example is retired\n',
      }),
    )
    expect(await d.check('bob@example.org', 'x@sender.example')).toEqual({
      code: 550,
      status: '5.1.1',
      text: '<bob@example.org>: user unknown',
    })
    expect(await d.check('u@old.example', '')).toEqual({
      code: 550,
      status: '5.1.2',
      text: 'old.example is retired',
    })
    expect(await d.check('ann@example.org', '')).toBeUndefined()
    expect(await d.check('u@foreign.example', '')).toBeUndefined()
    // Unparsable or unqualified: left to the listener, as before routing.
    expect(await d.check('root', '')).toBeUndefined()
    // Maps that cannot refuse anything answer at once, without a promise.
    expect(dispatcher(maps({})).check('u@foreign.example', '')).toBeUndefined()
    // Nowhere to deliver locally.
    const noLocal = dispatcher(maps({ 'local-host-names': 'example.org\n' }), { local: null })
    expect(await noLocal.check('postmaster@example.org', '')).toMatchObject({ code: 550, status: '5.3.5' })
    // In milter mode the MTA delivers: only what the maps refuse is refused.
    expect(await noLocal.check('postmaster@example.org', '', { mtaDelivers: true })).toBeUndefined()
    expect(await noLocal.check('nobody@example.org', '', { mtaDelivers: true })).toMatchObject({
      code: 550,
      status: '5.1.1',
    })
  })
})

describe('countReceived', () => {
  it('counts Received: fields in the header only, whatever their case and folding', () => {
    const message = Buffer.from(
      'Received: from a by b; Mon, 1 Jan 2026 00:00:00 +0000\r\nreceived : from c\r\n  by d\r\nX-Received: no\r\nSubject: x\r\n\r\nReceived: in the body\r\n',
    )
    expect(countReceived(message)).toBe(2)
    expect(countReceived(Buffer.from('Subject: none\r\n\r\n'))).toBe(0)
  })
})

describe('ownAddresses', () => {
  it('is every non-loopback interface address and the listeners, not only where mailscreen listens', () => {
    const own = ownAddresses([{ host: '127.0.0.1' }, { host: '127.0.0.7' }])
    for (const list of Object.values(networkInterfaces()))
      for (const info of list ?? [])
        expect(own.has(info.address.replace(/%.*$/, ''))).toBe(!info.internal || info.address === '127.0.0.1')
    expect(own.has('127.0.0.7')).toBe(true)
    expect(own.has('0.0.0.0')).toBe(false)
  })
})
