/**
 * DNS for the dnsbl plugin: query names (reversed IPv4 octets, IPv6 nibbles per RFC 5782),
 * DNS server specs, one A or TXT query with a hard timeout, and what an A answer means.
 *
 * Why our own module on node:dns rather than the `dnsbl` npm package: that package reports
 * only listed/unlisted, swallows DNS errors (a dead server looks like "not listed") and
 * defaults to public resolvers. We need the return codes (they pick the symbol), the TXT
 * text (evidence), TTLs (for the cache), failures kept apart from "not listed" (NXDOMAIN),
 * and the servers the administrator configured — by default the system's own resolvers,
 * never a public one.
 */
import { getServers, Resolver } from 'node:dns/promises'
import { isIP } from 'node:net'

/** One A record of an answer. */
export interface ARecord {
  readonly address: string
  /** Seconds, as the server gave it. */
  readonly ttl: number
}

/** Where and how long to ask. */
export interface QueryOptions {
  /** `setServers` strings (`127.0.0.1:5300`, `[::1]:53`); undefined = the system's resolvers. */
  readonly servers?: readonly string[]
  /** The whole query, whatever c-ares would do with retries and several servers. */
  readonly timeoutMs: number
  readonly signal?: AbortSignal
}

/** Why a query gave no usable answer. `kind` is for logs and tests; the message names the query. */
export class LookupError extends Error {
  constructor(
    readonly kind: 'timeout' | 'aborted' | 'dns' | 'blocked' | 'bogus',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
    this.name = 'LookupError'
  }
}

/** The 16 bytes of an IPv6 address, or undefined if it is not one. */
function ipv6Bytes(address: string): Uint8Array | undefined {
  // isIP accepts a zone index (fe80::1%eth0); no DNSBL lists link-local scopes.
  if (isIP(address) !== 6 || address.includes('%')) return undefined
  let text = address
  const bytes = new Uint8Array(16)
  // An embedded IPv4 tail (::ffff:192.0.2.1, 64:ff9b::192.0.2.1) becomes two hex groups.
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (dotted) {
    const [a = 0, b = 0, c = 0, d = 0] = (dotted[2] as string).split('.').map(Number)
    text = `${dotted[1]}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const halves = text.split('::')
  const head = halves[0] ? halves[0].split(':') : []
  const tail = halves.length > 1 && halves[1] ? halves[1].split(':') : []
  const groups = [...head, ...new Array<string>(8 - head.length - tail.length).fill('0'), ...tail]
  groups.forEach((group, i) => {
    const value = Number.parseInt(group, 16)
    bytes[i * 2] = value >> 8
    bytes[i * 2 + 1] = value & 0xff
  })
  return bytes
}

/**
 * The name a DNSBL is asked about for an address, without the zone: IPv4 octets reversed
 * (`192.0.2.1` → `1.2.0.192`), IPv6 as 32 reversed nibbles (RFC 5782 section 2.4).
 * IPv4-mapped IPv6 (`::ffff:192.0.2.1`) is looked up as the IPv4 address it is.
 * Undefined for anything that is not an IP address.
 *
 * @example reverseName('2001:db8::1') // '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2'
 */
export function reverseName(address: string): string | undefined {
  if (isIP(address) === 4) return address.split('.').reverse().join('.')
  const bytes = ipv6Bytes(address)
  if (bytes === undefined) return undefined
  const mapped = bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff
  if (mapped) return [bytes[15], bytes[14], bytes[13], bytes[12]].join('.')
  const nibbles: string[] = []
  for (let i = 15; i >= 0; i--) {
    const byte = bytes[i] as number
    nibbles.push((byte & 0xf).toString(16), (byte >> 4).toString(16))
  }
  return nibbles.join('.')
}

/**
 * Parse a DNS server spec into the form `Resolver.setServers` takes: `host:port`,
 * `[v6]:port`, or a bare address (port 53). The host must be an IP address: naming the DNS
 * server would need DNS. Returns an error text instead when the spec is not usable.
 */
export function parseServer(spec: string): { server: string } | { error: string } {
  const text = spec.trim()
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text)
  let host: string
  let port: string | undefined
  if (bracketed) {
    host = bracketed[1] as string
    port = bracketed[2]
  } else if (isIP(text) !== 0) {
    host = text
  } else {
    const colon = text.lastIndexOf(':')
    host = colon === -1 ? text : text.slice(0, colon)
    port = colon === -1 ? undefined : text.slice(colon + 1)
  }
  const family = isIP(host)
  if (family === 0)
    return { error: `${JSON.stringify(spec)}: the host must be an IP address (host:port, [v6]:port or host)` }
  if (bracketed && family !== 6) return { error: `${JSON.stringify(spec)}: only IPv6 goes in brackets` }
  if (port !== undefined && (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65_535))
    return { error: `${JSON.stringify(spec)}: the port must be 1-65535` }
  if (port === undefined) return { server: host }
  return { server: family === 6 ? `[${host}]:${port}` : `${host}:${port}` }
}

/** Numeric value of a dotted IPv4 address (callers pass valid addresses). */
export function ipv4Value(address: string): number {
  return address.split('.').reduce((value, octet) => value * 256 + Number(octet), 0)
}

const LOOPBACK_NET = ipv4Value('127.0.0.0')
const REFUSED_NET = ipv4Value('127.255.255.0')

/** What the A answer of a DNSBL means. */
export type AnswerMeaning =
  | { readonly listed: true; readonly codes: readonly string[] }
  | { readonly listed: false; readonly kind: 'blocked' | 'bogus'; readonly failure: string }

/**
 * Interpret the addresses a DNSBL returned. Return codes live in 127.0.0.0/8 (RFC 5782).
 * 127.255.255.0/24 is what Spamhaus and others answer to refused queries (public or
 * unregistered resolvers, over quota): a failed lookup, not a listing. An address outside
 * 127.0.0.0/8 is a resolver rewriting NXDOMAIN (ad redirection) or a broken zone: a failure too.
 */
export function interpretAnswer(addresses: readonly string[]): AnswerMeaning {
  const refused = addresses.filter((a) => isIP(a) === 4 && ipv4Value(a) >>> 8 === REFUSED_NET >>> 8)
  if (refused.length > 0)
    return { listed: false, kind: 'blocked', failure: `query refused (${refused.join(', ')})` }
  const bogus = addresses.filter((a) => isIP(a) !== 4 || ipv4Value(a) >>> 24 !== LOOPBACK_NET >>> 24)
  if (bogus.length > 0)
    return { listed: false, kind: 'bogus', failure: `answer outside 127.0.0.0/8 (${bogus.join(', ')})` }
  return { listed: true, codes: addresses }
}

/** Answers that mean "no such record" rather than "could not ask". */
const NOT_FOUND = new Set(['ENOTFOUND', 'ENODATA'])

/** The least time one server is given, however many share the budget. */
const MIN_TRY_MS = 100

/**
 * How long one server is asked, with `leftMs` of the query's budget left and `turns` servers
 * still to ask (this one included): an equal share, at least MIN_TRY_MS, and never past the
 * budget; the last one gets what is left.
 */
export function turnMs(leftMs: number, turns: number): number {
  return turns <= 1 ? leftMs : Math.min(leftMs, Math.max(MIN_TRY_MS, Math.floor(leftMs / turns)))
}

/**
 * Ask one server (or c-ares' default when `server` is undefined) on a resolver of its own, so
 * that our timer and the caller's signal cancel exactly this query. NXDOMAIN/NODATA resolve to
 * undefined.
 */
async function askServer<T>(
  server: string | undefined,
  tryMs: number,
  what: string,
  options: QueryOptions,
  ask: (resolver: Resolver) => Promise<T>,
): Promise<T | undefined> {
  const resolver = new Resolver({ timeout: tryMs, tries: 1 })
  if (server !== undefined) resolver.setServers([server])
  let timedOut = false
  // c-ares' timeout is not an exact bound on a try: our own timer is.
  const timer = setTimeout(() => {
    timedOut = true
    resolver.cancel()
  }, tryMs)
  const cancel = () => resolver.cancel()
  options.signal?.addEventListener('abort', cancel, { once: true })
  try {
    return await ask(resolver)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown'
    if (NOT_FOUND.has(code)) return undefined
    if (code === 'ETIMEOUT' || timedOut)
      throw new LookupError('timeout', `${what}: no answer within ${options.timeoutMs} ms`, { cause: err })
    if (code === 'ECANCELLED') throw new LookupError('aborted', `${what}: aborted`, { cause: err })
    throw new LookupError('dns', `${what}: ${code}${server === undefined ? '' : ` from ${server}`}`, {
      cause: err,
    })
  } finally {
    clearTimeout(timer)
    options.signal?.removeEventListener('abort', cancel)
  }
}

/**
 * Run one query, asking the servers in turn until one answers. We take the turns ourselves
 * rather than give c-ares the list: with one try it does not move on after a SERVFAIL or
 * REFUSED, and it would let a dead first server use the whole budget. Each server gets an
 * equal share of what is left; a failure of any kind but "aborted" passes to the next.
 */
async function query<T>(
  name: string,
  type: 'A' | 'TXT',
  options: QueryOptions,
  ask: (resolver: Resolver) => Promise<T>,
): Promise<T | undefined> {
  const what = `${type} ${name}`
  if (options.signal?.aborted) throw new LookupError('aborted', `${what}: aborted`)
  const configured = options.servers ?? getServers()
  const servers = configured.length > 0 ? configured : [undefined]
  const deadline = performance.now() + options.timeoutMs
  let failure: LookupError | undefined
  for (let turn = 0; turn < servers.length; turn++) {
    if (options.signal?.aborted) throw new LookupError('aborted', `${what}: aborted`)
    const left = Math.floor(deadline - performance.now())
    if (left <= 0) break
    try {
      return await askServer(servers[turn], turnMs(left, servers.length - turn), what, options, ask)
    } catch (err) {
      if (!(err instanceof LookupError) || err.kind === 'aborted') throw err
      failure = err
    }
  }
  throw failure ?? new LookupError('timeout', `${what}: no answer within ${options.timeoutMs} ms`)
}

/** A records of `name` with TTLs; undefined for NXDOMAIN or no A record. Throws {@link LookupError}. */
export function queryA(name: string, options: QueryOptions): Promise<readonly ARecord[] | undefined> {
  return query(name, 'A', options, (r) => r.resolve4(name, { ttl: true }))
}

/** TXT records of `name`, each one's strings joined; [] when there are none. Throws {@link LookupError}. */
export async function queryTxt(name: string, options: QueryOptions): Promise<readonly string[]> {
  const records = await query(name, 'TXT', options, (r) => r.resolveTxt(name))
  return (records ?? []).map((chunks) => chunks.join(''))
}
