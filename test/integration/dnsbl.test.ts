/**
 * The dnsbl plugin against a real rbldnsd (test/support/rbldnsd.ts): listings with their
 * return codes and TXT, code ranges, IPv6, the "query refused" code as a failure, the cache,
 * a silent server bounded by the timeout, the circuit breaker opening on a hung server and
 * closing again; and once through the running filter, with the client forwarded by XFORWARD.
 */
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import dnsbl from '../../plugins/dnsbl/index.js'
import {
  type Check,
  type CheckContext,
  createMessageView,
  declaredSymbols,
  parseOptions,
} from '../../src/pipeline/plugin.js'
import { runChecks } from '../../src/pipeline/runner.js'
import { newQueueId } from '../../src/queue/ids.js'
import { silentLog, testEnvelope } from '../support/check.js'
import { type FakeDns, startFakeDns } from '../support/dns-server.js'
import { useDaemon } from '../support/hooks.js'
import { byTag, field, send, sleep, startFilter, textMessage } from '../support/mail.js'
import { RBL, RBL_TXT, RBL_ZONE, startRbldnsd } from '../support/rbldnsd.js'

const RAW = Buffer.from('Subject: hi\r\n\r\nhello\r\n')

function context(client: string, log: CheckContext['log'] = silentLog): CheckContext {
  return {
    queueId: newQueueId(),
    envelope: { ...testEnvelope, client: { address: client }, peer: { address: '127.0.0.1' } },
    message: createMessageView(RAW),
    log,
    signal: AbortSignal.timeout(10_000),
    deadline: Date.now() + 10_000,
  }
}

function capturingLog() {
  const lines: Array<Record<string, unknown> & { msg: string }> = []
  const log = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line)) })
  return { log, events: (msg: string) => lines.filter((l) => l.msg === msg) }
}

const rbl = useDaemon(startRbldnsd)

async function setup(options: Record<string, unknown>, log = silentLog): Promise<Check> {
  return dnsbl.setup(parseOptions(dnsbl, { servers: [rbl().server], ...options }), { log })
}

const EXAMPLE_ZONE = { zone: RBL_ZONE, symbol: 'RBL_EXAMPLE', score: 5 }

describe('dnsbl plugin against a real rbldnsd', () => {
  it("gives a listed client the zone's symbol, with the return code and TXT as evidence", async () => {
    const check = await setup({ zones: [EXAMPLE_ZONE] })
    expect(await check(context(RBL.spam))).toEqual([
      { symbol: 'RBL_EXAMPLE', evidence: [RBL_ZONE, '127.0.0.2', RBL_TXT.spam] },
    ])
    expect(await check(context(RBL.policy))).toEqual([
      { symbol: 'RBL_EXAMPLE', evidence: [RBL_ZONE, '127.0.0.10', RBL_TXT.policy] },
    ])
  })

  it('maps return-code ranges to their own symbols', async () => {
    const check = await setup({
      zones: [
        {
          zone: RBL_ZONE,
          score: 1,
          codes: [
            { from: '127.0.0.2', to: '127.0.0.3', symbol: 'RBL_SBL', score: 5 },
            { from: '127.0.0.4', to: '127.0.0.7', symbol: 'RBL_XBL', score: 4 },
            { from: '127.0.0.10', to: '127.0.0.11', symbol: 'RBL_PBL' },
          ],
        },
      ],
    })
    // 192.0.2.4 has two entries: 127.0.0.4 and 127.0.0.2, each with its TXT.
    const exploited = await check(context(RBL.exploited))
    expect(exploited).toHaveLength(2)
    expect(exploited).toEqual(
      expect.arrayContaining([
        {
          symbol: 'RBL_XBL',
          evidence: [RBL_ZONE, '127.0.0.4', expect.any(String), expect.any(String)],
        },
        {
          symbol: 'RBL_SBL',
          evidence: [RBL_ZONE, '127.0.0.2', expect.any(String), expect.any(String)],
        },
      ]),
    )
    expect(exploited[0]?.evidence?.slice(2).sort()).toEqual([RBL_TXT.exploitedSpam, RBL_TXT.exploited].sort())
    expect(await check(context(RBL.policy))).toEqual([
      { symbol: 'RBL_PBL', evidence: [RBL_ZONE, '127.0.0.10', RBL_TXT.policy] },
    ])
    expect(await check(context(RBL.spam))).toEqual([
      { symbol: 'RBL_SBL', evidence: [RBL_ZONE, '127.0.0.2', RBL_TXT.spam] },
    ])
  })

  it('gives an unlisted client nothing', async () => {
    const check = await setup({ zones: [EXAMPLE_ZONE] })
    expect(await check(context(RBL.unlisted))).toEqual([])
    expect(await check(context('203.0.113.77'))).toEqual([])
  })

  it('looks IPv6 clients up (a listed address and an address in a listed /48)', async () => {
    const check = await setup({ zones: [EXAMPLE_ZONE] })
    expect(await check(context(RBL.v6))).toEqual([
      { symbol: 'RBL_EXAMPLE', evidence: [RBL_ZONE, '127.0.0.4', RBL_TXT.v6] },
    ])
    expect(await check(context(RBL.v6net))).toEqual([
      { symbol: 'RBL_EXAMPLE', evidence: [RBL_ZONE, '127.0.0.3', RBL_TXT.v6net] },
    ])
    expect(await check(context('2001:db8:2::1'))).toEqual([])
  })

  it('treats a 127.255.255.254 answer as a failed lookup: DNSBL_FAIL under the failure policy', async () => {
    const check = await setup({ zones: [EXAMPLE_ZONE] })
    await expect(check(context(RBL.refused))).rejects.toThrow(/query refused \(127\.255\.255\.254\)/)
    // Through the runner, as in the filter: no listing, the failure symbol, policy continue.
    const opts = parseOptions(dnsbl, { servers: [rbl().server], zones: [EXAMPLE_ZONE] })
    const [outcome] = await runChecks(
      [
        {
          name: 'dnsbl',
          check,
          timeoutMs: dnsbl.timeoutMs ?? 10_000,
          onError: dnsbl.onError ?? 'tempfail',
          symbols: declaredSymbols(dnsbl, opts),
        },
      ],
      { ...context(RBL.refused), log: silentLog },
    )
    expect(outcome?.hits.map((h) => h.symbol)).toEqual(['DNSBL_FAIL'])
    expect(outcome?.failure).toMatchObject({
      policy: 'continue',
      message: expect.stringMatching(/query refused/),
    })
  })

  it('answers a repeated lookup from the cache, without asking rbldnsd again', async () => {
    const check = await setup({ zones: [EXAMPLE_ZONE] })
    const asked = async (ip: string) =>
      (await rbl().queries()).filter((l) => l.includes(` ${ip}.${RBL_ZONE} `))
    const reversedSpam = RBL.spam.split('.').reverse().join('.')
    const reversedUnlisted = RBL.unlisted.split('.').reverse().join('.')
    const before = (await asked(reversedSpam)).length
    const beforeUnlisted = (await asked(reversedUnlisted)).length
    for (let i = 0; i < 3; i++) {
      expect(await check(context(RBL.spam))).toHaveLength(1)
      expect(await check(context(RBL.unlisted))).toEqual([])
    }
    // One A and one TXT for the listing, one A for "not listed", however often we ask.
    expect((await asked(reversedSpam)).length - before).toBe(2)
    expect((await asked(reversedUnlisted)).length - beforeUnlisted).toBe(1)
  })

  describe('slow and dead servers', () => {
    let silent: FakeDns | undefined
    afterEach(async () => {
      await silent?.close()
      silent = undefined
    })

    it('a silent DNS server costs no more than the timeout', async () => {
      silent = await startFakeDns(() => 'silent')
      const check = await dnsbl.setup(
        parseOptions(dnsbl, { servers: [silent.server], timeoutMs: 250, zones: [EXAMPLE_ZONE] }),
        { log: silentLog },
      )
      const started = performance.now()
      await expect(check(context(RBL.spam))).rejects.toThrow(/no answer within 250 ms/)
      const elapsed = performance.now() - started
      expect(elapsed).toBeGreaterThanOrEqual(240)
      // Generous for a loaded CI machine, and still far below c-ares' own retries (seconds).
      expect(elapsed).toBeLessThan(1_000)
      expect(silent.queries).toEqual([{ name: `2.2.0.192.${RBL_ZONE}`, type: 'A' }])
    })

    it('opens the breaker after repeated timeouts, then skips the zone at no cost', async () => {
      silent = await startFakeDns(() => 'silent')
      const { log, events } = capturingLog()
      const check = await dnsbl.setup(
        parseOptions(dnsbl, {
          servers: [silent.server],
          timeoutMs: 100,
          breaker: { failures: 3, pauseMs: 60_000 },
          zones: [EXAMPLE_ZONE],
        }),
        { log },
      )
      for (const ip of ['192.0.2.31', '192.0.2.32', '192.0.2.33'])
        await expect(check(context(ip))).rejects.toThrow(/no answer within 100 ms/)
      expect(events('dnsbl zone paused')).toEqual([
        expect.objectContaining({ level: 40, zone: RBL_ZONE, failures: 3, pauseMs: 60_000 }),
      ])
      // Paused means no query at all: the fourth message costs rbldnsd nothing.
      await expect(check(context('192.0.2.34'))).rejects.toThrow(/paused until/)
      expect(silent.queries).toHaveLength(3)
    })

    it('a hung rbldnsd opens the breaker; once it answers again the probe closes it', async () => {
      const { log, events } = capturingLog()
      const check = await setup(
        { timeoutMs: 100, cacheSize: 0, breaker: { failures: 2, pauseMs: 300 }, zones: [EXAMPLE_ZONE] },
        log,
      )
      process.kill(rbl().pid, 'SIGSTOP')
      try {
        await expect(check(context(RBL.spam))).rejects.toThrow(/no answer within 100 ms/)
        await expect(check(context(RBL.spam))).rejects.toThrow(/no answer within 100 ms/)
        await expect(check(context(RBL.spam))).rejects.toThrow(/paused until/)
        expect(events('dnsbl zone paused')).toHaveLength(1)
      } finally {
        process.kill(rbl().pid, 'SIGCONT')
      }
      await sleep(350)
      const before = (await rbl().queries()).length
      expect(await check(context(RBL.spam))).toEqual([
        { symbol: 'RBL_EXAMPLE', evidence: [RBL_ZONE, '127.0.0.2', RBL_TXT.spam] },
      ])
      expect(events('dnsbl zone resumed')).toEqual([expect.objectContaining({ level: 30, zone: RBL_ZONE })])
      const probe = (await rbl().queries()).slice(before)
      expect(probe[0]).toContain(` 2.0.0.127.${RBL_ZONE} A IN: NOERROR`)
    })
  })
})

/** XFORWARD attributes naming a remote client at `addr`. */
function forwarded(addr: string): Record<string, string> {
  return { ADDR: addr, NAME: 'spammer.example.test', HELO: 'spammer.example.test' }
}

describe('dnsbl in the running filter', () => {
  it('names the symbol in X-mailscreen-Verdict for a listed forwarded client, and never looks up the MTA', async () => {
    const { ms, sink } = await startFilter({
      plugins: [{ use: 'dnsbl', options: { servers: [rbl().server], zones: [EXAMPLE_ZONE] } }],
    })
    const listed = await send(ms.port, textMessage({ tag: 'listed' }), { xforward: forwarded(RBL.spam) })
    const clean = await send(ms.port, textMessage({ tag: 'unlisted' }), { xforward: forwarded(RBL.unlisted) })
    const direct = await send(ms.port, textMessage({ tag: 'direct' }))
    await sink.waitFor(3, 20_000)
    const verdictOf = (tag: string) => field(byTag(sink, tag)[0], 'X-mailscreen-Verdict')

    expect(verdictOf('listed')).toContain('RBL_EXAMPLE')
    expect(verdictOf('unlisted')).not.toContain('RBL_EXAMPLE')
    expect(verdictOf('direct')).not.toContain('RBL_EXAMPLE')

    const verdict = await ms.waitForLog((l) => l.qid === listed && l.msg === 'verdict')
    expect(verdict.symbols).toContain('RBL_EXAMPLE')
    for (const id of [clean, direct])
      expect((await ms.waitForLog((l) => l.qid === id && l.msg === 'verdict')).symbols).not.toContain(
        'RBL_EXAMPLE',
      )
    // The MTA (127.0.0.1, not forwarded) was never asked about.
    expect((await rbl().queries()).filter((l) => l.includes(` 1.0.0.127.${RBL_ZONE} `))).toEqual([])
  })
})
