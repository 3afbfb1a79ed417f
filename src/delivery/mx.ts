/**
 * DNS for next hops: MX records of a domain (lowest preference first, shuffled among equal
 * preferences, RFC 5321 5.1), the implicit MX of a domain without MX records, RFC 7505 null
 * MX, and the A/AAAA addresses of a host. Resolver servers come from `routing.resolver.servers`;
 * none configured means the system's (`/etc/resolv.conf`).
 */
import { lookup, Resolver } from 'node:dns/promises'
import { isIP } from 'node:net'

/** One MX host. */
export interface MxHost {
  /** Lower case, no trailing dot. */
  readonly name: string
  readonly preference: number
}

/** What the MX lookup of a domain said. */
export type MxAnswer =
  /** MX hosts, lowest preference first, equal preferences in random order. */
  | { readonly kind: 'hosts'; readonly hosts: readonly MxHost[] }
  /** The domain exists but has no MX records: its own A/AAAA records are the implicit MX. */
  | { readonly kind: 'implicit' }
  /** RFC 7505 null MX (`0 .`): the domain accepts no mail. */
  | { readonly kind: 'null' }
  /** The domain does not exist. */
  | { readonly kind: 'nxdomain' }
  /** The lookup failed for now (timeout, SERVFAIL, no server). */
  | { readonly kind: 'tempfail'; readonly reason: string }

/** What an address lookup of a host said. */
export type AddressAnswer =
  | { readonly kind: 'addresses'; readonly addresses: readonly string[] }
  /** The host does not exist, or has no A/AAAA records. */
  | { readonly kind: 'none'; readonly reason: string }
  | { readonly kind: 'tempfail'; readonly reason: string }

export interface NextHopDnsOptions {
  /** DNS servers (`ip`, `ip:port`, `[ipv6]:port`); empty: the system's. */
  readonly servers: readonly string[]
  /** Per query try (default 5 s). */
  readonly timeoutMs?: number
  /** Tries per server (default 2). */
  readonly tries?: number
  /** For tests of the shuffle (default `Math.random`). */
  readonly random?: () => number
}

/** DNS error codes that say "no such name" or "no such record", as opposed to "try later". */
const NXDOMAIN = new Set(['ENOTFOUND'])
const NODATA = new Set(['ENODATA'])

function code(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message
}

/** Sort by preference and shuffle each run of equal preferences (Fisher–Yates). */
export function orderMx(records: readonly MxHost[], random: () => number = Math.random): MxHost[] {
  const sorted = [...records].sort((a, b) => a.preference - b.preference)
  const out: MxHost[] = []
  for (let start = 0; start < sorted.length; ) {
    let end = start
    while (end < sorted.length && sorted[end]?.preference === sorted[start]?.preference) end++
    const run = sorted.slice(start, end)
    for (let i = run.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1))
      ;[run[i], run[j]] = [run[j] as MxHost, run[i] as MxHost]
    }
    out.push(...run)
    start = end
  }
  return out
}

/** MX and address lookups for the output queue. */
export class NextHopDns {
  private readonly resolver: Resolver
  private readonly system: boolean
  private readonly random: () => number

  constructor(options: NextHopDnsOptions) {
    this.resolver = new Resolver({ timeout: options.timeoutMs ?? 5_000, tries: options.tries ?? 2 })
    this.system = options.servers.length === 0
    if (!this.system) this.resolver.setServers([...options.servers])
    this.random = options.random ?? Math.random
  }

  /** The MX hosts of a domain (see {@link MxAnswer}). */
  async mx(domain: string): Promise<MxAnswer> {
    let records: { exchange: string; priority: number }[]
    try {
      records = await this.resolver.resolveMx(domain)
    } catch (err) {
      const why = code(err)
      if (NODATA.has(why)) return { kind: 'implicit' }
      if (NXDOMAIN.has(why)) return { kind: 'nxdomain' }
      return { kind: 'tempfail', reason: why }
    }
    if (records.length === 0) return { kind: 'implicit' }
    const hosts = records.map((r) => ({
      name: r.exchange.toLowerCase().replace(/\.$/, ''),
      preference: r.priority,
    }))
    // RFC 7505: a single `0 .` record. Mixed with real MX records, the root one is ignored.
    const real = hosts.filter((h) => h.name !== '')
    if (real.length === 0) return { kind: 'null' }
    return { kind: 'hosts', hosts: orderMx(real, this.random) }
  }

  /**
   * The addresses of a host: IPv4 first, then IPv6. `viaDns` false (a `[host]` of the
   * mailertable with no resolver servers configured) asks the system's resolver library, so
   * `/etc/hosts` counts, as it does for Sendmail's `[host]`.
   */
  async addresses(host: string, viaDns = true): Promise<AddressAnswer> {
    if (isIP(host) !== 0) return { kind: 'addresses', addresses: [host] }
    if (!viaDns && this.system) {
      try {
        const found = await lookup(host, { all: true })
        const sorted = [...found].sort((a, b) => a.family - b.family).map((a) => a.address)
        return sorted.length > 0
          ? { kind: 'addresses', addresses: sorted }
          : { kind: 'none', reason: `${host}: no address` }
      } catch (err) {
        const why = code(err)
        return NXDOMAIN.has(why) || NODATA.has(why)
          ? { kind: 'none', reason: `${host}: host not found` }
          : { kind: 'tempfail', reason: `${host}: ${why}` }
      }
    }
    const [v4, v6] = await Promise.allSettled([this.resolver.resolve4(host), this.resolver.resolve6(host)])
    const addresses = [
      ...(v4.status === 'fulfilled' ? v4.value : []),
      ...(v6.status === 'fulfilled' ? v6.value : []),
    ]
    if (addresses.length > 0) return { kind: 'addresses', addresses }
    const errors = [v4, v6].flatMap((r) => (r.status === 'rejected' ? [code(r.reason)] : []))
    const temporary = errors.find((e) => !NXDOMAIN.has(e) && !NODATA.has(e))
    if (temporary) return { kind: 'tempfail', reason: `${host}: ${temporary}` }
    return {
      kind: 'none',
      reason: errors.some((e) => NXDOMAIN.has(e))
        ? `${host}: host not found`
        : `${host}: no A or AAAA record`,
    }
  }
}
