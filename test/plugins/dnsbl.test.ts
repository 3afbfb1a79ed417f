import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { createCheck, hitsFor } from '../../plugins/dnsbl/check.js'
import dnsbl from '../../plugins/dnsbl/index.js'
import { interpretAnswer, parseServer, queryA, reverseName, turnMs } from '../../plugins/dnsbl/lookup.js'
import type { DnsblOptions, ZoneSpec } from '../../plugins/dnsbl/options.js'
import {
  type CheckContext,
  createMessageView,
  declaredSymbols,
  optionsSchema,
  parseOptions,
} from '../../src/pipeline/plugin.js'
import { newQueueId } from '../../src/queue/ids.js'
import { silentLog, testEnvelope } from '../support/check.js'
import { type FakeDns, type FakeReply, startFakeDns } from '../support/dns-server.js'

const ZONE = 'bl.example.test'

/** The options as an administrator writes them (the issue's example). */
const EXAMPLE = {
  servers: ['127.0.0.1:5300'],
  zones: [{ zone: ZONE, symbol: 'RBL_EXAMPLE', score: 5 }],
}

/** `path: message` for every issue, as the registry reports them. */
function problems(raw: unknown): string[] {
  const result = optionsSchema(dnsbl, process.cwd()).safeParse(raw)
  return result.success ? [] : result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`)
}

function parse(raw: unknown): DnsblOptions {
  return parseOptions(dnsbl, raw)
}

/** A pino logger that keeps its lines, to assert on log events. */
function capturingLog() {
  const lines: Array<Record<string, unknown> & { msg: string; level: number }> = []
  const log = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line)) })
  return { log, lines, events: (msg: string) => lines.filter((l) => l.msg === msg) }
}

function context(
  client: string,
  options: { peer?: string; signal?: AbortSignal; log?: CheckContext['log'] } = {},
): CheckContext {
  return {
    queueId: newQueueId(),
    envelope: {
      ...testEnvelope,
      client: { address: client },
      peer: { address: options.peer ?? '127.0.0.1' },
    },
    message: createMessageView(Buffer.from('Subject: hi\r\n\r\nhello\r\n')),
    log: options.log ?? silentLog,
    signal: options.signal ?? AbortSignal.timeout(10_000),
    deadline: Date.now() + 10_000,
  }
}

describe('turnMs', () => {
  it('shares the budget left among the servers still to ask, at least 100 ms each, never past the budget', () => {
    expect(turnMs(2_000, 2)).toBe(1_000)
    expect(turnMs(2_000, 1)).toBe(2_000)
    expect(turnMs(300, 4)).toBe(100)
    // Less left than a least share: that is all this turn gets.
    expect(turnMs(50, 2)).toBe(50)
  })
})

describe('reverseName', () => {
  it('reverses IPv4 octets', () => {
    expect(reverseName('192.0.2.1')).toBe('1.2.0.192')
    expect(reverseName('127.0.0.2')).toBe('2.0.0.127')
  })

  it('writes IPv6 as 32 reversed nibbles (RFC 5782 example), full or compressed, any case', () => {
    const rfc = 'b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2'
    expect(reverseName('2001:db8:1:2:3:4:567:89ab')).toBe(rfc)
    expect(reverseName('2001:0DB8:0001:0002:0003:0004:0567:89AB')).toBe(rfc)
    const one = `1.0.0.0.${'0.'.repeat(20)}8.b.d.0.1.0.0.2`
    expect(reverseName('2001:db8::1')).toBe(one)
    expect(reverseName('2001:0db8:0000:0000:0000:0000:0000:0001')).toBe(one)
    expect(reverseName('::1')).toBe(`1${'.0'.repeat(31)}`)
    expect(reverseName('::')).toBe(`0${'.0'.repeat(31)}`)
    expect(reverseName('fe80::')).toBe(`${'0.'.repeat(28)}0.8.e.f`)
  })

  it('looks an IPv4-mapped IPv6 address up as IPv4, in dotted or hex form', () => {
    expect(reverseName('::ffff:192.0.2.1')).toBe('1.2.0.192')
    expect(reverseName('::FFFF:c000:0201')).toBe('1.2.0.192')
  })

  it('keeps other embedded IPv4 (NAT64) as IPv6 nibbles', () => {
    expect(reverseName('64:ff9b::192.0.2.1')).toBe(`1.0.2.0.0.0.0.c.${'0.'.repeat(16)}b.9.f.f.4.6.0.0`)
  })

  it('is undefined for anything that is not an IP address', () => {
    for (const bad of ['', 'example.org', '192.0.2.256', '192.0.2', '2001:db8::1::2', 'fe80::1%eth0'])
      expect(reverseName(bad), bad).toBeUndefined()
  })
})

describe('parseServer', () => {
  it('accepts host:port, [v6]:port and a bare address', () => {
    expect(parseServer('127.0.0.1:5300')).toEqual({ server: '127.0.0.1:5300' })
    expect(parseServer('[::1]:5300')).toEqual({ server: '[::1]:5300' })
    expect(parseServer('[::1]')).toEqual({ server: '::1' })
    expect(parseServer('127.0.0.1')).toEqual({ server: '127.0.0.1' })
    expect(parseServer('::1')).toEqual({ server: '::1' })
  })

  it('rejects names, bad ports and bracketed IPv4', () => {
    expect(parseServer('dns.example.org:53')).toEqual({
      error: expect.stringMatching(/must be an IP address/),
    })
    expect(parseServer('localhost')).toEqual({ error: expect.stringMatching(/must be an IP address/) })
    expect(parseServer('127.0.0.1:0')).toEqual({ error: expect.stringMatching(/port must be 1-65535/) })
    expect(parseServer('127.0.0.1:65536')).toEqual({ error: expect.stringMatching(/port/) })
    expect(parseServer('127.0.0.1:x')).toEqual({ error: expect.stringMatching(/port/) })
    expect(parseServer('[127.0.0.1]:53')).toEqual({ error: expect.stringMatching(/only IPv6/) })
  })
})

describe('options', () => {
  it("accepts the issue's example and fills in the defaults", () => {
    const opts = parse(EXAMPLE)
    expect(opts).toEqual({
      servers: ['127.0.0.1:5300'],
      zones: [
        { zone: ZONE, symbol: 'RBL_EXAMPLE', weight: 5, description: `Client listed on ${ZONE}`, codes: [] },
      ],
      timeoutMs: 2000,
      cacheSize: 10_000,
      negativeTtlSeconds: 60,
      breaker: { failures: 5, pauseMs: 60_000 },
    })
    expect(declaredSymbols(dnsbl, opts)).toEqual({
      RBL_EXAMPLE: { description: `Client listed on ${ZONE}`, weight: 5 },
    })
  })

  it('defaults to the system resolvers: no servers at all, never a public one', () => {
    const opts = parse({ zones: [{ zone: ZONE, symbol: 'RBL_EXAMPLE' }] })
    expect(opts.servers).toBeUndefined()
    expect(opts.zones[0]?.weight).toBe(1)
  })

  it('compiles code ranges; a range without a score takes the zone score', () => {
    const opts = parse({
      servers: ['[::1]:53', '127.0.0.1'],
      zones: [
        {
          zone: 'ZEN.Example.Test.',
          symbol: 'RBL_ZEN',
          score: 2,
          codes: [
            { from: '127.0.0.2', to: '127.0.0.3', symbol: 'RBL_ZEN_SBL', score: 5 },
            { from: '127.0.0.4', to: '127.0.0.7', symbol: 'RBL_ZEN_XBL' },
            { code: '127.0.0.10', symbol: 'RBL_ZEN_PBL', score: 0.5, description: 'Dynamic IP space' },
          ],
        },
        { zone: 'codes-only.example.test', codes: [{ code: '127.0.0.2', symbol: 'RBL_ONLY' }] },
      ],
    })
    expect(opts.servers).toEqual(['[::1]:53', '127.0.0.1'])
    expect(opts.zones[0]?.zone).toBe('zen.example.test')
    expect(opts.zones[0]?.codes.map((c) => [c.from, c.to, c.symbol, c.weight])).toEqual([
      ['127.0.0.2', '127.0.0.3', 'RBL_ZEN_SBL', 5],
      ['127.0.0.4', '127.0.0.7', 'RBL_ZEN_XBL', 2],
      ['127.0.0.10', '127.0.0.10', 'RBL_ZEN_PBL', 0.5],
    ])
    expect(opts.zones[1]?.symbol).toBeUndefined()
    const table = declaredSymbols(dnsbl, opts)
    expect(Object.keys(table).sort()).toEqual([
      'RBL_ONLY',
      'RBL_ZEN',
      'RBL_ZEN_PBL',
      'RBL_ZEN_SBL',
      'RBL_ZEN_XBL',
    ])
    expect(table.RBL_ZEN_XBL).toEqual({
      description: 'Client listed on zen.example.test with return code 127.0.0.4-127.0.0.7',
      weight: 2,
    })
    expect(table.RBL_ZEN_PBL).toEqual({ description: 'Dynamic IP space', weight: 0.5 })
  })

  it('rejects bad symbol names with a clear message', () => {
    for (const symbol of ['rbl_example', '1RBL', 'RBL-EXAMPLE', '_RBL', ''])
      expect(problems({ zones: [{ zone: ZONE, symbol }] }), symbol).toEqual([
        expect.stringMatching(/^zones\.0\.symbol: a symbol is upper-case letters, digits and _/),
      ])
  })

  it('rejects a symbol used twice, across zones and codes, and the reserved DNSBL_FAIL', () => {
    expect(
      problems({
        zones: [
          { zone: ZONE, symbol: 'RBL_A' },
          { zone: 'other.example.test', symbol: 'RBL_B', codes: [{ code: '127.0.0.2', symbol: 'RBL_A' }] },
        ],
      }),
    ).toEqual([
      'zones.1.codes.0.symbol: symbol RBL_A is already used by zones.0.symbol; every symbol must be unique',
    ])
    expect(problems({ zones: [{ zone: ZONE, symbol: 'DNSBL_FAIL' }] })).toEqual([
      'zones.0.symbol: DNSBL_FAIL is reserved for failed lookups',
    ])
  })

  it('rejects a zone without symbol or codes, a duplicate zone and bad zone names', () => {
    expect(problems({ zones: [{ zone: ZONE }] })).toEqual([
      'zones.0: give the zone a `symbol`, `codes`, or both',
    ])
    expect(
      problems({
        zones: [
          { zone: ZONE, symbol: 'RBL_A' },
          { zone: `${ZONE.toUpperCase()}.`, symbol: 'RBL_B' },
        ],
      }),
    ).toEqual([`zones.1.zone: zone ${ZONE} is already configured as zones.0; give all its codes there`])
    for (const zone of ['localhost', 'bad..example', '-x.example', 'a b.example', `${'a'.repeat(190)}.test`])
      expect(problems({ zones: [{ zone, symbol: 'RBL_A' }] }), zone).toEqual([
        expect.stringMatching(/^zones\.0\.zone: not a DNS zone name/),
      ])
  })

  it('rejects bad return codes and ranges', () => {
    const withCodes = (codes: unknown[]) => problems({ zones: [{ zone: ZONE, codes }] })
    expect(withCodes([{ code: '10.0.0.2', symbol: 'RBL_A' }])).toEqual([
      'zones.0.codes.0.code: a return code is an IPv4 address in 127.0.0.0/8 (e.g. 127.0.0.2)',
    ])
    expect(withCodes([{ from: '127.255.255.0', to: '127.255.255.255', symbol: 'RBL_A' }])).toEqual([
      'zones.0.codes.0.from: 127.255.255.0/24 means "query refused" and is never a listing',
      'zones.0.codes.0.to: 127.255.255.0/24 means "query refused" and is never a listing',
    ])
    expect(withCodes([{ from: '127.0.0.7', to: '127.0.0.4', symbol: 'RBL_A' }])).toEqual([
      'zones.0.codes.0.to: `from` 127.0.0.7 is above `to` 127.0.0.4',
    ])
    expect(withCodes([{ code: '127.0.0.2', from: '127.0.0.2', to: '127.0.0.3', symbol: 'RBL_A' }])).toEqual([
      'zones.0.codes.0: give either `code` or both `from` and `to`',
    ])
    expect(withCodes([{ from: '127.0.0.2', symbol: 'RBL_A' }])).toEqual([
      'zones.0.codes.0: give either `code` or both `from` and `to`',
    ])
    expect(
      withCodes([
        { from: '127.0.0.2', to: '127.0.0.5', symbol: 'RBL_A' },
        { code: '127.0.0.4', symbol: 'RBL_B' },
      ]),
    ).toEqual([
      'zones.0.codes.1: 127.0.0.4 overlaps codes.0 (127.0.0.2-127.0.0.5); a return code must map to one symbol',
    ])
  })

  it('rejects bad servers, unknown keys and out-of-range numbers', () => {
    expect(problems({ ...EXAMPLE, servers: ['dns.example.org'] })).toEqual([
      expect.stringMatching(/^servers\.0: "dns\.example\.org": the host must be an IP address/),
    ])
    expect(problems({ ...EXAMPLE, servers: [] })).toHaveLength(1)
    expect(problems({ ...EXAMPLE, zones: [] })).toEqual([expect.stringMatching(/^zones: /)])
    expect(problems({ ...EXAMPLE, timeout: 5 })).toEqual([expect.stringMatching(/Unrecognized key.*timeout/)])
    expect(problems({ ...EXAMPLE, timeoutMs: 0 })).toEqual([expect.stringMatching(/^timeoutMs: /)])
    expect(problems({ ...EXAMPLE, breaker: { failures: 0 } })).toEqual([
      expect.stringMatching(/^breaker\.failures: /),
    ])
    expect(problems({ ...EXAMPLE, zones: [{ zone: ZONE, symbol: 'RBL_A', weight: 5 }] })).toEqual([
      expect.stringMatching(/^zones\.0: Unrecognized key.*weight/),
    ])
  })
})

describe('interpretAnswer', () => {
  it('counts 127.0.0.0/8 codes as a listing', () => {
    expect(interpretAnswer(['127.0.0.2', '127.0.0.4'])).toEqual({
      listed: true,
      codes: ['127.0.0.2', '127.0.0.4'],
    })
    expect(interpretAnswer(['127.255.254.255'])).toEqual({ listed: true, codes: ['127.255.254.255'] })
  })

  it('treats 127.255.255.0/24 as a failed (refused) lookup, even next to a real code', () => {
    for (const codes of [['127.255.255.254'], ['127.255.255.0'], ['127.0.0.2', '127.255.255.252']])
      expect(interpretAnswer(codes), codes.join()).toEqual({
        listed: false,
        kind: 'blocked',
        failure: expect.stringMatching(/^query refused \(127\.255\.255\.\d+\)$/),
      })
  })

  it('treats an answer outside 127.0.0.0/8 as a failure (NXDOMAIN rewriting)', () => {
    expect(interpretAnswer(['198.51.100.7'])).toEqual({
      listed: false,
      kind: 'bogus',
      failure: 'answer outside 127.0.0.0/8 (198.51.100.7)',
    })
  })
})

describe('hitsFor (return codes to symbols)', () => {
  const [zen, only] = parse({
    zones: [
      {
        zone: 'zen.example.test',
        symbol: 'RBL_ZEN',
        codes: [
          { from: '127.0.0.2', to: '127.0.0.3', symbol: 'SBL', score: 5 },
          { from: '127.0.0.4', to: '127.0.0.7', symbol: 'XBL' },
        ],
      },
      { zone: 'only.example.test', codes: [{ code: '127.0.0.2', symbol: 'ONLY' }] },
    ],
  }).zones as [ZoneSpec, ZoneSpec]

  it('maps each code to its range, unclaimed codes to the zone symbol, one hit per symbol', () => {
    const listing = { codes: ['127.0.0.2', '127.0.0.4', '127.0.0.5', '127.0.0.10'], txt: ['why'] }
    expect(hitsFor(zen, listing)).toEqual([
      { symbol: 'SBL', evidence: ['zen.example.test', '127.0.0.2', 'why'] },
      { symbol: 'XBL', evidence: ['zen.example.test', '127.0.0.4', '127.0.0.5', 'why'] },
      { symbol: 'RBL_ZEN', evidence: ['zen.example.test', '127.0.0.10', 'why'] },
    ])
  })

  it('drops codes no range claims when the zone has no symbol of its own', () => {
    expect(hitsFor(only, { codes: ['127.0.0.3'], txt: [] })).toEqual([])
    expect(hitsFor(only, { codes: ['127.0.0.2'], txt: [] })).toEqual([
      { symbol: 'ONLY', evidence: ['only.example.test', '127.0.0.2'] },
    ])
  })
})

describe('the check against a fake DNS server', () => {
  let dns: FakeDns | undefined
  const extra: FakeDns[] = []
  afterEach(async () => {
    await dns?.close()
    dns = undefined
    for (const d of extra.splice(0)) await d.close()
  })

  /** A fake server answering per (reversed name, type) from a table; missing = NXDOMAIN. */
  async function serve(table: Record<string, FakeReply>): Promise<FakeDns> {
    dns = await startFakeDns(
      ({ name, type }) => table[`${name} ${type}`] ?? table[name] ?? { rcode: 'NXDOMAIN' },
    )
    return dns
  }

  function checkWith(server: FakeDns, more: Record<string, unknown> = {}, now?: () => number) {
    const opts = parse({
      servers: [server.server],
      zones: [{ zone: ZONE, symbol: 'RBL_EXAMPLE', score: 5 }],
      ...more,
    })
    const { log, lines, events } = capturingLog()
    return { check: createCheck(opts, { log, ...(now ? { now } : {}) }), lines, events }
  }

  it('does not look up a client that was not forwarded (client = the MTA itself)', async () => {
    const server = await serve({ [`1.0.0.127.${ZONE}`]: { a: ['127.0.0.2'] } })
    const { check } = checkWith(server)
    const { log, events } = capturingLog()
    expect(await check(context('127.0.0.1', { peer: '127.0.0.1', log }))).toEqual([])
    expect(server.queries).toEqual([])
    expect(events('dnsbl skipped: client not forwarded')).toEqual([
      expect.objectContaining({ level: 20, client: '127.0.0.1' }),
    ])
  })

  it('reports a listing with its code and TXT; asks A, then TXT', async () => {
    const name = `1.2.0.192.${ZONE}`
    const server = await serve({
      [name]: { a: ['127.0.0.2'], txt: ['Listed, see https://example.test/192.0.2.1'] },
    })
    const { check } = checkWith(server)
    expect(await check(context('192.0.2.1'))).toEqual([
      { symbol: 'RBL_EXAMPLE', evidence: [ZONE, '127.0.0.2', 'Listed, see https://example.test/192.0.2.1'] },
    ])
    expect(server.queries).toEqual([
      { name, type: 'A' },
      { name, type: 'TXT' },
    ])
  })

  it('looks IPv6 clients up by nibbles', async () => {
    const name = `${reverseName('2001:db8::bad')}.${ZONE}`
    const server = await serve({ [name]: { a: ['127.0.0.4'] } })
    const { check } = checkWith(server)
    expect(await check(context('2001:db8::bad'))).toEqual([
      { symbol: 'RBL_EXAMPLE', evidence: [ZONE, '127.0.0.4'] },
    ])
    expect(server.queries[0]?.name).toBe(`d.a.b.0.${'0.'.repeat(20)}8.b.d.0.1.0.0.2.${ZONE}`)
  })

  it('NXDOMAIN and NODATA are "not listed": no hit, no TXT query, no failure', async () => {
    const server = await serve({ [`2.2.0.192.${ZONE}`]: { a: [] } })
    const { check } = checkWith(server)
    expect(await check(context('192.0.2.1'))).toEqual([])
    expect(await check(context('192.0.2.2'))).toEqual([])
    expect(server.queries.map((q) => q.type)).toEqual(['A', 'A'])
  })

  it('keeps the listing when the TXT query fails or times out', async () => {
    const server = await serve({
      [`1.2.0.192.${ZONE} A`]: { a: ['127.0.0.2'] },
      [`1.2.0.192.${ZONE} TXT`]: { rcode: 'SERVFAIL' },
      [`2.2.0.192.${ZONE} A`]: { a: ['127.0.0.3'] },
      [`2.2.0.192.${ZONE} TXT`]: 'silent',
    })
    const { check } = checkWith(server, { timeoutMs: 100 })
    expect(await check(context('192.0.2.1'))).toEqual([
      { symbol: 'RBL_EXAMPLE', evidence: [ZONE, '127.0.0.2'] },
    ])
    expect(await check(context('192.0.2.2'))).toEqual([
      { symbol: 'RBL_EXAMPLE', evidence: [ZONE, '127.0.0.3'] },
    ])
  })

  it('a 127.255.255.x answer is a failed lookup: the check throws', async () => {
    const server = await serve({ [`1.2.0.192.${ZONE}`]: { a: ['127.255.255.254'], txt: ['refused'] } })
    const { check } = checkWith(server)
    await expect(check(context('192.0.2.1'))).rejects.toThrow(
      `dnsbl lookup of 192.0.2.1 failed: ${ZONE}: A 1.2.0.192.${ZONE}: query refused (127.255.255.254)`,
    )
    // Not cached: the next message asks again.
    await expect(check(context('192.0.2.1'))).rejects.toThrow(/query refused/)
    expect(server.queries.filter((q) => q.type === 'A')).toHaveLength(2)
  })

  it('SERVFAIL and REFUSED are failures, not "not listed"', async () => {
    const server = await serve({
      [`1.2.0.192.${ZONE}`]: { rcode: 'SERVFAIL' },
      [`2.2.0.192.${ZONE}`]: { rcode: 'REFUSED' },
    })
    const { check } = checkWith(server)
    await expect(check(context('192.0.2.1'))).rejects.toThrow(/ESERVFAIL/)
    await expect(check(context('192.0.2.2'))).rejects.toThrow(/EREFUSED/)
  })

  it('with several zones, a failed zone does not hide another zone listing the client', async () => {
    // good.example.test lists 192.0.2.1 only; broken.example.test fails for everything.
    dns = await startFakeDns(({ name }) =>
      name.endsWith('.broken.example.test')
        ? { rcode: 'SERVFAIL' }
        : name === '1.2.0.192.good.example.test'
          ? { a: ['127.0.0.2'] }
          : { rcode: 'NXDOMAIN' },
    )
    const server = dns
    const opts = parse({
      servers: [server.server],
      zones: [
        { zone: 'good.example.test', symbol: 'RBL_GOOD' },
        { zone: 'broken.example.test', symbol: 'RBL_BROKEN' },
      ],
    })
    const { log, events } = capturingLog()
    const check = createCheck(opts, { log: silentLog })
    expect(await check(context('192.0.2.1', { log }))).toEqual([
      { symbol: 'RBL_GOOD', evidence: ['good.example.test', '127.0.0.2'] },
    ])
    expect(events('dnsbl lookup failed')).toEqual([
      expect.objectContaining({
        level: 40,
        failures: [expect.stringMatching(/^broken\.example\.test: .*ESERVFAIL/)],
      }),
    ])
    // Not listed where it answered and failed elsewhere: incomplete, nothing to report → throw.
    await expect(check(context('192.0.2.9'))).rejects.toThrow(/broken\.example\.test: .*ESERVFAIL/)
  })

  it('caches answers for their TTL, and "not listed" for negativeTtlSeconds', async () => {
    const server = await serve({ [`1.2.0.192.${ZONE}`]: { a: ['127.0.0.2'], txt: ['t'], ttl: 10 } })
    const clock = { now: 1_000_000 }
    const { check } = checkWith(server, { negativeTtlSeconds: 30 }, () => clock.now)
    const listedQueries = () => server.queries.filter((q) => q.name.startsWith('1.2.0.192')).length
    const hit = [{ symbol: 'RBL_EXAMPLE', evidence: [ZONE, '127.0.0.2', 't'] }]
    expect(await check(context('192.0.2.1'))).toEqual(hit)
    expect(listedQueries()).toBe(2)
    clock.now += 9_999
    expect(await check(context('192.0.2.1'))).toEqual(hit)
    expect(listedQueries()).toBe(2)
    clock.now += 1
    expect(await check(context('192.0.2.1'))).toEqual(hit)
    expect(listedQueries()).toBe(4)

    const unlistedQueries = () => server.queries.filter((q) => q.name.startsWith('2.2.0.192')).length
    expect(await check(context('192.0.2.2'))).toEqual([])
    clock.now += 29_999
    expect(await check(context('192.0.2.2'))).toEqual([])
    expect(unlistedQueries()).toBe(1)
    clock.now += 1
    expect(await check(context('192.0.2.2'))).toEqual([])
    expect(unlistedQueries()).toBe(2)
  })

  it('a TTL of 0 and cacheSize 0 mean no caching; the cache is bounded', async () => {
    const server = await serve({ [`1.2.0.192.${ZONE}`]: { a: ['127.0.0.2'], ttl: 0 } })
    const { check } = checkWith(server)
    await check(context('192.0.2.1'))
    await check(context('192.0.2.1'))
    expect(server.queries.filter((q) => q.type === 'A')).toHaveLength(2)

    const off = checkWith(server, { cacheSize: 0 }).check
    server.queries.length = 0
    await off(context('192.0.2.2'))
    await off(context('192.0.2.2'))
    expect(server.queries).toHaveLength(2)

    const small = checkWith(server, { cacheSize: 1 }).check
    server.queries.length = 0
    for (const ip of ['192.0.2.3', '192.0.2.4', '192.0.2.3', '192.0.2.4']) await small(context(ip))
    expect(server.queries).toHaveLength(4)
    await small(context('192.0.2.4'))
    expect(server.queries).toHaveLength(4)
  })

  it('a silent server costs the timeout, not more, also with two servers configured', async () => {
    const silent = await startFakeDns(() => 'silent')
    const silent2 = await startFakeDns(() => 'silent')
    extra.push(silent, silent2)
    for (const servers of [[silent.server], [silent.server, silent2.server]]) {
      const opts = parse({ servers, timeoutMs: 300, zones: [{ zone: ZONE, symbol: 'RBL_EXAMPLE' }] })
      const check = createCheck(opts, { log: silentLog })
      const started = performance.now()
      await expect(check(context('192.0.2.1'))).rejects.toThrow(/no answer within 300 ms/)
      const elapsed = performance.now() - started
      expect(elapsed, servers.join()).toBeGreaterThanOrEqual(290)
      // Generous for a loaded CI machine, and still far below c-ares' own retries (seconds).
      expect(elapsed, servers.join()).toBeLessThan(1_000)
    }
    expect(silent.queries.length).toBeGreaterThanOrEqual(2)
  })

  it('asks the second server in time when the first is dead', async () => {
    const silent = await startFakeDns(() => 'silent')
    const good = await startFakeDns(({ name }) =>
      name.startsWith('2.2.0.192.') ? { a: ['127.0.0.2'] } : { rcode: 'NXDOMAIN' },
    )
    extra.push(silent, good)
    const opts = parse({
      servers: [silent.server, good.server],
      timeoutMs: 1_500,
      zones: [{ zone: ZONE, symbol: 'RBL_EXAMPLE' }],
    })
    const check = createCheck(opts, { log: silentLog })
    expect((await check(context('192.0.2.2'))).map((h) => h.symbol)).toEqual(['RBL_EXAMPLE'])
    expect(await check(context('192.0.2.3'))).toEqual([])
    expect(silent.queries.length).toBeGreaterThan(0)
  })

  it('asks the next server after a SERVFAIL or REFUSED, and fails naming the last when all do', async () => {
    const servfail = await startFakeDns(() => ({ rcode: 'SERVFAIL' }))
    const refused = await startFakeDns(() => ({ rcode: 'REFUSED' }))
    const good = await startFakeDns(({ name }) =>
      name.startsWith('2.2.0.192.') ? { a: ['127.0.0.2'] } : { rcode: 'NXDOMAIN' },
    )
    extra.push(servfail, refused, good)
    const checkOn = (servers: string[]) =>
      createCheck(parse({ servers, timeoutMs: 1_500, zones: [{ zone: ZONE, symbol: 'RBL_EXAMPLE' }] }), {
        log: silentLog,
      })
    const check = checkOn([servfail.server, refused.server, good.server])
    expect((await check(context('192.0.2.2'))).map((h) => h.symbol)).toEqual(['RBL_EXAMPLE'])
    expect(await check(context('192.0.2.3'))).toEqual([])
    // A and TXT for the listed client, A for the other: each asked of all three in turn.
    expect([servfail.queries.length, refused.queries.length, good.queries.length]).toEqual([3, 3, 3])
    await expect(checkOn([servfail.server, refused.server])(context('192.0.2.2'))).rejects.toThrow(
      `A 2.2.0.192.${ZONE}: EREFUSED from ${refused.server}`,
    )
  })

  it("stops a query when the check's signal aborts", async () => {
    const silent = await startFakeDns(() => 'silent')
    extra.push(silent)
    const started = performance.now()
    await expect(
      queryA(`1.2.0.192.${ZONE}`, {
        servers: [silent.server],
        timeoutMs: 5000,
        signal: AbortSignal.timeout(100),
      }),
    ).rejects.toMatchObject({ kind: 'aborted' })
    expect(performance.now() - started).toBeLessThan(1000)
  })

  it('pauses a failing zone, skips it without a query, probes 2.0.0.127 after the pause, and resumes', async () => {
    let healthy = false
    dns = await startFakeDns(({ name }) =>
      healthy && name.startsWith('2.0.0.127.')
        ? { a: ['127.0.0.2'] }
        : healthy
          ? { rcode: 'NXDOMAIN' }
          : { rcode: 'SERVFAIL' },
    )
    const clock = { now: 1_000_000 }
    const { check, events } = checkWith(dns, { breaker: { failures: 3, pauseMs: 60_000 } }, () => clock.now)
    const ip = (n: number) => `192.0.2.${n}`
    for (let n = 1; n <= 3; n++) await expect(check(context(ip(n)))).rejects.toThrow(/ESERVFAIL/)
    expect(events('dnsbl zone paused')).toEqual([
      expect.objectContaining({ level: 40, zone: ZONE, failures: 3, pauseMs: 60_000 }),
    ])
    expect(dns.queries).toHaveLength(3)

    // Paused: a failure without a query, at no cost.
    await expect(check(context(ip(4)))).rejects.toThrow(/paused until .* after failed lookups/)
    expect(dns.queries).toHaveLength(3)

    // The pause is over but the zone still fails: one probe, paused again, no real query.
    clock.now += 60_000
    await expect(check(context(ip(5)))).rejects.toThrow(/still failing, paused again/)
    expect(dns.queries.slice(3)).toEqual([{ name: `2.0.0.127.${ZONE}`, type: 'A' }])
    await expect(check(context(ip(6)))).rejects.toThrow(/paused until/)
    expect(dns.queries).toHaveLength(4)
    expect(events('dnsbl zone paused')).toHaveLength(1)

    // Healthy again: the probe succeeds, the breaker closes, the real query follows.
    healthy = true
    clock.now += 60_000
    expect(await check(context(ip(7)))).toEqual([])
    expect(dns.queries.slice(4)).toEqual([
      { name: `2.0.0.127.${ZONE}`, type: 'A' },
      { name: `7.2.0.192.${ZONE}`, type: 'A' },
    ])
    expect(events('dnsbl zone resumed')).toEqual([expect.objectContaining({ level: 30, zone: ZONE })])
    expect(await check(context(ip(8)))).toEqual([])
    expect(dns.queries).toHaveLength(7)
  })
})

describe('plugin definition', () => {
  it('is advisory by default and leaves room for a probe, A and TXT', () => {
    expect(dnsbl.name).toBe('dnsbl')
    expect(dnsbl.onError).toBe('continue')
    expect(dnsbl.timeoutMs).toBeGreaterThanOrEqual(3 * 2000)
  })

  it('setup returns a check that answers from the configured server', async () => {
    const server = await startFakeDns(({ name }) =>
      name === `1.2.0.192.${ZONE}` ? { a: ['127.0.0.2'] } : { rcode: 'NXDOMAIN' },
    )
    try {
      const check = await dnsbl.setup(parse({ ...EXAMPLE, servers: [server.server] }), { log: silentLog })
      expect(await check(context('192.0.2.1'))).toEqual([
        { symbol: 'RBL_EXAMPLE', evidence: [ZONE, '127.0.0.2'] },
      ])
    } finally {
      await server.close()
    }
  })
})
