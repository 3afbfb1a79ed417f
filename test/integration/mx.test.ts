/**
 * MX delivery through the running filter: no default relay (`delivery.relay: null`), a fake
 * DNS server on loopback (`routing.resolver.servers`) serving MX/A/AAAA records that point at
 * sinks on 127.0.x.y (and ::1), and `delivery.mxPort` set to the sinks' port.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { reply } from '../../src/ingress/smtp-reply.js'
import { type SinkSet, sendMail, sleep, startSinks, testMessage, until } from '../delivery/harness.js'
import { type FakeDns, type FakeReply, startFakeDns } from '../support/dns-server.js'
import { type LogLine, type MailscreenProcess, startMailscreen, stopAll } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'

const PRIMARY = '127.0.60.1'
const SECONDARY = '127.0.60.2'
const EQUAL_A = '127.0.61.1'
const EQUAL_B = '127.0.61.2'
/** Nothing listens there. */
const DOWN = '127.0.62.1'
const BEHIND_DOWN = '127.0.62.2'
const A_ONLY = '127.0.63.1'
const SENDER_MX = '127.0.64.1'
const BEHIND_US = '127.0.65.1'
const IDN_MX = '127.0.66.1'

const mx = (...hosts: [number, string][]): FakeReply => ({
  mx: hosts.map(([preference, exchange]) => ({ preference, exchange })),
})

const ZONE: Record<string, Partial<Record<string, FakeReply>>> = {
  // Listed worst first: order must come from the preferences, not the answer.
  'pref.example': { MX: mx([20, 'mx2.pref.example'], [10, 'mx1.pref.example']) },
  'mx1.pref.example': { A: { a: [PRIMARY] } },
  'mx2.pref.example': { A: { a: [SECONDARY] } },
  'equal.example': { MX: mx([10, 'a.equal.example'], [10, 'b.equal.example']) },
  'a.equal.example': { A: { a: [EQUAL_A] } },
  'b.equal.example': { A: { a: [EQUAL_B] } },
  'down.example': { MX: mx([10, 'mx1.down.example'], [20, 'mx2.down.example']) },
  'mx1.down.example': { A: { a: [DOWN] } },
  'mx2.down.example': { A: { a: [BEHIND_DOWN] } },
  'a-only.example': { A: { a: [A_ONLY] } },
  'v6-only.example': { AAAA: { aaaa: ['::1'] } },
  'null.example': { MX: mx([0, '.']) },
  'sender.example': { MX: mx([10, 'mx.sender.example']) },
  'mx.sender.example': { A: { a: [SENDER_MX] } },
  // Our own address (mailscreen listens on 127.0.0.1) as the best MX.
  'self.example': { MX: mx([10, 'mx.self.example']) },
  'mx.self.example': { A: { a: ['127.0.0.1'] } },
  'backup.example': { MX: mx([10, 'primary.backup.example'], [20, 'mx.self.example']) },
  'primary.backup.example': { A: { a: [BEHIND_US] } },
  // bücher.example, as DNS knows it (its A-labels).
  'xn--bcher-kva.example': { MX: mx([10, 'mx.xn--bcher-kva.example']) },
  'mx.xn--bcher-kva.example': { A: { a: [IDN_MX] } },
}

describe('MX delivery through the running filter', () => {
  let dns: FakeDns
  let sinks: SinkSet
  let ms: MailscreenProcess | undefined
  let busy = true

  beforeAll(async () => {
    dns = await startFakeDns(({ name, type }) => {
      const entry = ZONE[name]
      return entry ? (entry[type] ?? {}) : { rcode: 'NXDOMAIN' }
    })
    sinks = await startSinks(
      [PRIMARY, SECONDARY, EQUAL_A, EQUAL_B, BEHIND_DOWN, A_ONLY, SENDER_MX, BEHIND_US, IDN_MX, '::1'],
      (host) =>
        host === A_ONLY
          ? {
              decide: (_tx, rcpt) =>
                busy && rcpt.startsWith('later@') ? reply(451, '4.2.1', 'come back later') : undefined,
            }
          : {},
    )
    ms = await startMailscreen(await freePort(), {
      routing: { resolver: { servers: [dns.server] } },
      delivery: { relay: null, mxPort: sinks.port, retry: ['1s'], queueRunInterval: '1s', connectTimeout: 5 },
    })
  })
  afterAll(async () => {
    await stopAll(ms, sinks)
    await dns.close()
  })

  const port = () => (ms as MailscreenProcess).port
  const logs = () => (ms as MailscreenProcess).logs
  const waitLog = (match: (l: LogLine) => boolean, ms_ = 10_000) =>
    (ms as MailscreenProcess).waitForLog(match, ms_)
  const tagged = (host: string, tag: string) =>
    sinks.get(host).messages.filter((m) => m.data.toString('latin1').includes(`<${tag}@sender.example>`))

  async function deliverOne(to: string, tag: string): Promise<string> {
    const sent = await sendMail(port(), 'tester@sender.example', [to], testMessage(tag))
    expect(sent.id, sent.replies[0]?.text).toBeDefined()
    const id = sent.id as string
    await waitLog((l) => l.qid === id && (l.msg === 'delivered' || l.msg === 'bounced'))
    return id
  }

  it('uses the lowest preference first, asking the configured resolver', async () => {
    for (let i = 0; i < 4; i++) await deliverOne(`u${i}@pref.example`, `pref-${i}`)
    expect(sinks.get(PRIMARY).received).toBe(4)
    expect(sinks.get(SECONDARY).received).toBe(0)
    expect(dns.queries).toContainEqual({ name: 'pref.example', type: 'MX' })
    const line = logs().find((l) => l.msg === 'delivered' && l.to === 'u0@pref.example')
    expect(line?.relay).toBe(`mx1.pref.example[${PRIMARY}]:${sinks.port}`)
  })

  it('shares mail between MX hosts of equal preference', async () => {
    const n = 24
    const ids = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const sent = await sendMail(
          port(),
          'tester@sender.example',
          [`u${i}@equal.example`],
          testMessage(`eq-${i}`),
        )
        return sent.id as string
      }),
    )
    for (const id of ids) await waitLog((l) => l.qid === id && l.msg === 'delivered')
    const a = sinks.get(EQUAL_A).received
    const b = sinks.get(EQUAL_B).received
    expect(a + b).toBe(n)
    // Each gets half on average; both at least once unless 24 coin flips all agree (p = 2^-23).
    expect(a).toBeGreaterThan(0)
    expect(b).toBeGreaterThan(0)
  })

  it('goes on to the next MX host when one is down, and backs off the dead one after 3 failures', async () => {
    for (let i = 0; i < 5; i++) await deliverOne(`u${i}@down.example`, `down-${i}`)
    expect(sinks.get(BEHIND_DOWN).received).toBe(5)
    const unreachable = logs().filter(
      (l) => l.msg === 'destination unreachable' && String(l.destination).includes(DOWN),
    )
    expect(unreachable).toHaveLength(3)
    expect(String(unreachable[0]?.reply)).toContain(`connect to ${DOWN}:${sinks.port}`)
    const backedOff = logs().find((l) => l.msg === 'destination backed off')
    expect(backedOff?.destination).toBe(`mx1.down.example[${DOWN}]:${sinks.port}`)
    expect(logs().some((l) => l.msg === 'deferred' && String(l.to).endsWith('@down.example'))).toBe(false)
  })

  it('delivers to the A record, or the AAAA record, of a domain without MX', async () => {
    await deliverOne('u@a-only.example', 'a-only')
    expect(tagged(A_ONLY, 'a-only').map((m) => m.rcptTo)).toEqual([['u@a-only.example']])
    await deliverOne('u@v6-only.example', 'v6-only')
    expect(tagged('::1', 'v6-only').map((m) => m.rcptTo)).toEqual([['u@v6-only.example']])
  })

  it('routes an internationalized domain by its A-labels: MX lookup and RCPT TO (SMTPUTF8)', async () => {
    const to = 'jörg@Bücher.example'
    const sent = await sendMail(port(), 'tester@sender.example', [to], testMessage('idn'), { smtpUtf8: true })
    expect(sent.id, sent.replies[0]?.text).toBeDefined()
    await waitLog((l) => l.qid === sent.id && l.msg === 'delivered')
    expect(dns.queries).toContainEqual({ name: 'xn--bcher-kva.example', type: 'MX' })
    expect(tagged(IDN_MX, 'idn').map((m) => m.rcptTo)).toEqual([['jörg@xn--bcher-kva.example']])
  })

  it('bounces a null MX at once, with a DSN to the sender through its own MX', async () => {
    const id = await deliverOne('u@null.example', 'null-mx')
    const bounced = logs().find((l) => l.qid === id && l.msg === 'bounced')
    expect(String(bounced?.reply)).toMatch(/^556 5\.1\.10 /)
    expect(logs().some((l) => l.qid === id && l.msg === 'deferred')).toBe(false)
    await until(() => tagged(SENDER_MX, 'null-mx').length > 0, 'the DSN at the sender MX')
    const dsn = tagged(SENDER_MX, 'null-mx')[0]
    expect(dsn?.mailFrom).toBe('')
    expect(dsn?.rcptTo).toEqual(['tester@sender.example'])
    const text = dsn?.data.toString('latin1') ?? ''
    expect(text).toContain('Final-Recipient: rfc822; u@null.example')
    expect(text).toContain('Status: 5.1.10')
    expect(text).not.toContain('Remote-MTA')
  })

  it('refuses mail whose best MX is ourselves instead of looping, and uses the better MX when we are a backup', async () => {
    const id = await deliverOne('u@self.example', 'self-mx')
    const bounced = logs().find((l) => l.qid === id && l.msg === 'bounced')
    expect(bounced?.reply).toBe('554 5.4.6 mail for self.example loops back to myself')
    // It was received once: it never came back to us.
    expect(
      logs().filter((l) => l.msg === 'received' && Array.isArray(l.to) && l.to.includes('u@self.example')),
    ).toHaveLength(1)
    await until(() => tagged(SENDER_MX, 'self-mx').length > 0, 'the DSN for the loop')
    expect(tagged(SENDER_MX, 'self-mx')[0]?.data.toString('latin1')).toContain('Status: 5.4.6')

    await deliverOne('u@backup.example', 'backup-mx')
    expect(tagged(BEHIND_US, 'backup-mx').map((m) => m.rcptTo)).toEqual([['u@backup.example']])
  })

  it('splits one message per next hop with an outcome per recipient: delivered, bounced, deferred then delivered', async () => {
    busy = true
    const rcpts = ['one@pref.example', 'later@a-only.example', 'gone@null.example', 'two@equal.example']
    const sent = await sendMail(port(), 'tester@sender.example', rcpts, testMessage('split'))
    const id = sent.id as string
    expect(id).toBeDefined()
    await waitLog((l) => l.qid === id && l.msg === 'deferred')
    const delivered = logs()
      .filter((l) => l.qid === id && l.msg === 'delivered')
      .map((l) => l.to)
    expect(delivered.sort()).toEqual(['one@pref.example', 'two@equal.example'])
    expect(
      logs()
        .filter((l) => l.qid === id && l.msg === 'bounced')
        .map((l) => l.to),
    ).toEqual(['gone@null.example'])
    const deferred = logs().find((l) => l.qid === id && l.msg === 'deferred')
    expect(deferred?.to).toBe('later@a-only.example')
    expect(String(deferred?.reply)).toBe('451 4.2.1 come back later')
    await until(() => tagged(SENDER_MX, 'split').length > 0, 'the DSN for gone@null.example')
    const dsn = tagged(SENDER_MX, 'split')[0]?.data.toString('latin1') ?? ''
    expect(dsn).toContain('Final-Recipient: rfc822; gone@null.example')
    expect(dsn).not.toContain('one@pref.example;')

    // The busy host recovers: the retry goes to it alone; nobody gets a second copy.
    busy = false
    await waitLog((l) => l.qid === id && l.msg === 'delivered' && l.to === 'later@a-only.example', 15_000)
    await sleep(1_500)
    expect(tagged(PRIMARY, 'split').map((m) => m.rcptTo)).toEqual([['one@pref.example']])
    expect(tagged(A_ONLY, 'split').map((m) => m.rcptTo)).toEqual([['later@a-only.example']])
    expect([...tagged(EQUAL_A, 'split'), ...tagged(EQUAL_B, 'split')].map((m) => m.rcptTo)).toEqual([
      ['two@equal.example'],
    ])
    expect(tagged(SENDER_MX, 'split')).toHaveLength(1)
  })
})
