/**
 * The dnsbl check: asks every configured zone about the forwarded client, in parallel,
 * through a per-thread answer cache and a circuit breaker per zone, and turns return codes
 * into hits.
 *
 * Failure semantics with several zones. A zone fails when its query times out, the server
 * errs (SERVFAIL, REFUSED, unreachable), it answers 127.255.255.x ("refused") or outside
 * 127.0.0.0/8, or the zone is paused by its breaker. NXDOMAIN is "not listed", not a failure.
 * - No zone failed: the hits, possibly none.
 * - Some zone failed and no zone produced a hit: throw. The result is incomplete and there
 *   is nothing else to report, so the runner's failure policy decides (DNSBL_FAIL; the
 *   plugin's default `continue` delivers, `tempfail` retries later).
 * - Some zone failed but another zone listed the client: return those hits and log the
 *   failures at warn. Throwing would replace a definite listing by a 0-weight DNSBL_FAIL,
 *   so a failure elsewhere would make a listed client look cleaner; DNSBL hits only add
 *   score, so what we report is a lower bound either way.
 */
import type { Check, CheckContext, Hit, Logger } from '../../src/pipeline/plugin.js'
import { CircuitBreaker } from './breaker.js'
import { TtlCache } from './cache.js'
import { interpretAnswer, ipv4Value, LookupError, queryA, queryTxt, reverseName } from './lookup.js'
import type { DnsblOptions, ZoneSpec } from './options.js'

/** A zone's answer about one address: its return codes and TXT texts. */
export interface Listing {
  readonly codes: readonly string[]
  readonly txt: readonly string[]
}

/** What the check needs besides its options; the clock is injectable for tests. */
export interface CheckDeps {
  /** Thread-level logger (breaker state changes). */
  readonly log: Logger
  /** Milliseconds; default `Date.now`. */
  readonly now?: () => number
}

type ZoneOutcome =
  | { readonly zone: ZoneSpec; readonly listing: Listing | null }
  | { readonly zone: ZoneSpec; readonly failure: string }

/** The RFC 5782 test entry every DNSBL must list: what a probe asks for. */
const PROBE_NAME = '2.0.0.127'

/**
 * The hits one zone's listing gives: each return code goes to the first range that holds it,
 * else to the zone's `symbol`, else nowhere. One hit per symbol; evidence = the zone, its
 * return codes, then the TXT texts.
 */
export function hitsFor(zone: ZoneSpec, listing: Listing): Hit[] {
  const bySymbol = new Map<string, string[]>()
  for (const code of listing.codes) {
    const value = ipv4Value(code)
    const symbol = zone.codes.find((c) => c.low <= value && value <= c.high)?.symbol ?? zone.symbol
    if (symbol === undefined) continue
    const codes = bySymbol.get(symbol) ?? []
    if (!codes.includes(code)) codes.push(code)
    bySymbol.set(symbol, codes)
  }
  return [...bySymbol].map(([symbol, codes]) => ({ symbol, evidence: [zone.zone, ...codes, ...listing.txt] }))
}

/** Build the per-message check. State (cache, breakers) lives as long as the returned function. */
export function createCheck(opts: DnsblOptions, deps: CheckDeps): Check {
  const now = deps.now ?? Date.now
  // null = "not listed", cached for negativeTtlSeconds.
  const cache = new TtlCache<Listing | null>(opts.cacheSize, now)
  const breakers = new Map(opts.zones.map((z) => [z.zone, new CircuitBreaker({ ...opts.breaker, now })]))
  const servers = opts.servers !== undefined ? { servers: opts.servers } : {}
  const queryOptions = (signal: AbortSignal) => ({ ...servers, timeoutMs: opts.timeoutMs, signal })

  /** Ask one name; a listing comes with its TXT (a TXT failure only loses the text). */
  async function ask(name: string, ctx: CheckContext): Promise<{ listing: Listing | null; ttlMs: number }> {
    const records = await queryA(name, queryOptions(ctx.signal))
    if (records === undefined || records.length === 0)
      return { listing: null, ttlMs: opts.negativeTtlSeconds * 1000 }
    const meaning = interpretAnswer(records.map((r) => r.address))
    if (!meaning.listed) throw new LookupError(meaning.kind, `A ${name}: ${meaning.failure}`)
    let txt: readonly string[] = []
    try {
      txt = await queryTxt(name, queryOptions(ctx.signal))
    } catch (err) {
      ctx.log.debug({ err: String(err) }, 'dnsbl txt failed')
    }
    return {
      listing: { codes: meaning.codes, txt },
      ttlMs: Math.min(...records.map((r) => r.ttl)) * 1000,
    }
  }

  /** The probe succeeds on any real answer: listed, or NXDOMAIN from a zone without the test entry. */
  async function probe(zone: ZoneSpec, signal: AbortSignal): Promise<void> {
    const name = `${PROBE_NAME}.${zone.zone}`
    const records = await queryA(name, queryOptions(signal))
    const meaning = records === undefined ? undefined : interpretAnswer(records.map((r) => r.address))
    if (meaning !== undefined && !meaning.listed)
      throw new LookupError(meaning.kind, `A ${name}: ${meaning.failure}`)
  }

  async function lookupZone(zone: ZoneSpec, reversed: string, ctx: CheckContext): Promise<ZoneOutcome> {
    const name = `${reversed}.${zone.zone}`
    const cached = cache.get(name)
    if (cached !== undefined) return { zone, listing: cached }
    const breaker = breakers.get(zone.zone) as CircuitBreaker
    const admission = breaker.admit()
    if (admission === 'skip') {
      const until = new Date(breaker.pausedUntil ?? now()).toISOString()
      ctx.log.debug({ zone: zone.zone, until }, 'dnsbl zone skipped')
      return { zone, failure: `${zone.zone}: paused until ${until} after failed lookups` }
    }
    if (admission === 'probe') {
      let resumed = false
      try {
        await probe(zone, ctx.signal)
        resumed = true
      } catch (err) {
        deps.log.debug({ zone: zone.zone, err: String(err) }, 'dnsbl probe failed')
        return { zone, failure: `${zone.zone}: still failing, paused again (${(err as Error).message})` }
      } finally {
        // Also when the probe was abandoned (abort): never leave the breaker in `probing`.
        if (resumed) {
          breaker.probeSucceeded()
          deps.log.info({ zone: zone.zone }, 'dnsbl zone resumed')
        } else breaker.probeFailed()
      }
    }
    try {
      const answer = await ask(name, ctx)
      breaker.succeeded()
      cache.set(name, answer.listing, answer.ttlMs)
      return { zone, listing: answer.listing }
    } catch (err) {
      const message = (err as Error).message
      // Our own abort (plugin timeout, shutdown) says nothing about the zone.
      if (!(err instanceof LookupError && err.kind === 'aborted') && breaker.failed())
        deps.log.warn(
          { zone: zone.zone, failures: opts.breaker.failures, pauseMs: opts.breaker.pauseMs, err: message },
          'dnsbl zone paused',
        )
      return { zone, failure: `${zone.zone}: ${message}` }
    }
  }

  return async (ctx) => {
    const { client, peer } = ctx.envelope
    // Without XFORWARD/XCLIENT the "client" is the MTA in front: never look up our own MTA.
    if (client.address === peer.address) {
      ctx.log.debug({ client: client.address }, 'dnsbl skipped: client not forwarded')
      return []
    }
    const reversed = reverseName(client.address)
    if (reversed === undefined) {
      ctx.log.debug({ client: client.address }, 'dnsbl skipped: not an IP address')
      return []
    }
    const outcomes = await Promise.all(opts.zones.map((zone) => lookupZone(zone, reversed, ctx)))
    const hits: Hit[] = []
    const failures: string[] = []
    for (const outcome of outcomes) {
      if ('failure' in outcome) failures.push(outcome.failure)
      else if (outcome.listing !== null) hits.push(...hitsFor(outcome.zone, outcome.listing))
    }
    if (failures.length > 0) {
      if (hits.length === 0)
        throw new Error(`dnsbl lookup of ${client.address} failed: ${failures.join('; ')}`)
      ctx.log.warn({ client: client.address, failures }, 'dnsbl lookup failed')
    }
    return hits
  }
}
