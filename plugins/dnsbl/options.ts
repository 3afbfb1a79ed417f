/**
 * The dnsbl plugin's options: zones with their symbols and return-code ranges, DNS servers,
 * timeout, cache and circuit breaker. Validated once at start-up, then compiled into
 * {@link DnsblOptions} (numeric ranges, default weights filled in).
 */
import { isIP } from 'node:net'
import { z } from 'zod'
import type { SymbolTable } from '../../src/pipeline/plugin.js'
import { ipv4Value, parseServer } from './lookup.js'

/** Reserved: the runner's automatic failure symbol of this plugin. */
export const FAIL_SYMBOL = 'DNSBL_FAIL'

const SYMBOL_NAME = /^[A-Z][A-Z0-9_]*$/
// The longest query name is an IPv6 nibble name: 64 characters with its dot, of 253.
const MAX_ZONE_LENGTH = 253 - 64

/** A return-code range of one zone, compiled. */
export interface CodeRange {
  readonly from: string
  readonly to: string
  /** `from` and `to` as numbers, for matching. */
  readonly low: number
  readonly high: number
  readonly symbol: string
  readonly weight: number
  readonly description: string
}

/** One configured zone, compiled. */
export interface ZoneSpec {
  readonly zone: string
  /** For any return code no range claims; absent when only `codes` count. */
  readonly symbol?: string
  readonly weight: number
  readonly description: string
  readonly codes: readonly CodeRange[]
}

/** The validated options `setup` gets. */
export interface DnsblOptions {
  /** `setServers` strings; undefined = the system's resolvers. */
  readonly servers?: readonly string[]
  readonly zones: readonly ZoneSpec[]
  readonly timeoutMs: number
  readonly cacheSize: number
  readonly negativeTtlSeconds: number
  readonly breaker: { readonly failures: number; readonly pauseMs: number }
}

const symbolName = z
  .string()
  .regex(
    SYMBOL_NAME,
    'a symbol is upper-case letters, digits and _, starting with a letter (e.g. RBL_EXAMPLE)',
  )

function codeProblem(address: string): string | undefined {
  if (isIP(address) !== 4 || !address.startsWith('127.'))
    return 'a return code is an IPv4 address in 127.0.0.0/8 (e.g. 127.0.0.2)'
  if (address.startsWith('127.255.255.'))
    return '127.255.255.0/24 means "query refused" and is never a listing'
  return undefined
}

const returnCode = z.string().superRefine((address, ctx) => {
  const problem = codeProblem(address)
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem })
})

const codeRange = z
  .object({
    /** One return code; or use `from` and `to` for a range. */
    code: returnCode.optional(),
    from: returnCode.optional(),
    to: returnCode.optional(),
    symbol: symbolName,
    /** Default weight of `symbol`; default: the zone's `score`. */
    score: z.number().finite().optional(),
    description: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    const single = c.code !== undefined
    if (single ? c.from !== undefined || c.to !== undefined : c.from === undefined || c.to === undefined)
      ctx.addIssue({ code: 'custom', message: 'give either `code` or both `from` and `to`' })
    else if (
      c.from !== undefined &&
      c.to !== undefined &&
      codeProblem(c.from) === undefined &&
      codeProblem(c.to) === undefined &&
      ipv4Value(c.from) > ipv4Value(c.to)
    )
      ctx.addIssue({ code: 'custom', message: `\`from\` ${c.from} is above \`to\` ${c.to}`, path: ['to'] })
  })

const zoneName = z
  .string()
  .transform((name) => name.trim().toLowerCase().replace(/\.$/, ''))
  .superRefine((name, ctx) => {
    const labels = name.split('.')
    const valid =
      name.length <= MAX_ZONE_LENGTH &&
      labels.length >= 2 &&
      labels.every((l) => /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/.test(l))
    if (!valid)
      ctx.addIssue({
        code: 'custom',
        message: `not a DNS zone name of at most ${MAX_ZONE_LENGTH} characters (e.g. bl.example.org)`,
      })
  })

const zone = z
  .object({
    /** The DNSBL's zone, e.g. `zen.spamhaus.org`. */
    zone: zoneName,
    /** The symbol for a listing (for codes no entry of `codes` claims, when those are given). */
    symbol: symbolName.optional(),
    /** Default weight of the zone's symbols. */
    score: z.number().finite().default(1),
    description: z.string().min(1).optional(),
    /** Return codes with symbols of their own. */
    codes: z.array(codeRange).min(1).optional(),
  })
  .strict()
  .superRefine((entry, ctx) => {
    if (entry.symbol === undefined && entry.codes === undefined)
      ctx.addIssue({ code: 'custom', message: 'give the zone a `symbol`, `codes`, or both' })
    const ranges = (entry.codes ?? []).map((c) => {
      const from = c.code ?? c.from
      const to = c.code ?? c.to
      return from === undefined || to === undefined || codeProblem(from) || codeProblem(to)
        ? undefined
        : { low: ipv4Value(from), high: ipv4Value(to), text: from === to ? from : `${from}-${to}` }
    })
    ranges.forEach((range, i) => {
      if (range === undefined) return
      const other = ranges.findIndex(
        (r, j) => j < i && r !== undefined && r.low <= range.high && range.low <= r.high,
      )
      if (other !== -1)
        ctx.addIssue({
          code: 'custom',
          message: `${range.text} overlaps codes.${other} (${ranges[other]?.text}); a return code must map to one symbol`,
          path: ['codes', i],
        })
    })
  })

const server = z.string().transform((spec, ctx) => {
  const parsed = parseServer(spec)
  if ('error' in parsed) {
    ctx.addIssue({ code: 'custom', message: parsed.error })
    return z.NEVER
  }
  return parsed.server
})

/** The zod schema of the plugin's `options:`. */
export const options = z
  .object({
    /** DNS servers to ask; default: the system's resolvers (/etc/resolv.conf). */
    servers: z.array(server).min(1).optional(),
    zones: z.array(zone).min(1),
    /** Milliseconds one DNS query may take, all retries included. */
    timeoutMs: z.number().int().min(1).max(30_000).default(2000),
    /** Answers kept per worker thread (least recently used go first); 0 turns the cache off. */
    cacheSize: z.number().int().min(0).default(10_000),
    /** Seconds a "not listed" answer is kept (node:dns does not expose the SOA minimum). */
    negativeTtlSeconds: z.number().int().min(0).default(60),
    /** Per zone: pause it after this many failures in a row, for this long, then probe. */
    breaker: z
      .object({
        failures: z.number().int().min(1).default(5),
        pauseMs: z.number().int().min(1).default(60_000),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((o, ctx) => {
    const seenZones = new Map<string, number>()
    const seenSymbols = new Map<string, string>()
    const claim = (symbol: string, path: (string | number)[]) => {
      const where = path.join('.')
      const first = seenSymbols.get(symbol)
      if (symbol === FAIL_SYMBOL)
        ctx.addIssue({ code: 'custom', message: `${FAIL_SYMBOL} is reserved for failed lookups`, path })
      else if (first !== undefined)
        ctx.addIssue({
          code: 'custom',
          message: `symbol ${symbol} is already used by ${first}; every symbol must be unique`,
          path,
        })
      else seenSymbols.set(symbol, where)
    }
    o.zones.forEach((entry, i) => {
      const first = seenZones.get(entry.zone)
      if (first !== undefined)
        ctx.addIssue({
          code: 'custom',
          message: `zone ${entry.zone} is already configured as zones.${first}; give all its codes there`,
          path: ['zones', i, 'zone'],
        })
      else seenZones.set(entry.zone, i)
      if (entry.symbol !== undefined) claim(entry.symbol, ['zones', i, 'symbol'])
      entry.codes?.forEach((c, j) => {
        claim(c.symbol, ['zones', i, 'codes', j, 'symbol'])
      })
    })
  })
  .transform((o): DnsblOptions => {
    const zones = o.zones.map((entry): ZoneSpec => {
      const codes = (entry.codes ?? []).map((c): CodeRange => {
        const from = (c.code ?? c.from) as string
        const to = (c.code ?? c.to) as string
        const range = from === to ? from : `${from}-${to}`
        return {
          from,
          to,
          low: ipv4Value(from),
          high: ipv4Value(to),
          symbol: c.symbol,
          weight: c.score ?? entry.score,
          description: c.description ?? `Client listed on ${entry.zone} with return code ${range}`,
        }
      })
      const description =
        entry.description ??
        (codes.length > 0
          ? `Client listed on ${entry.zone} with a return code not in its codes`
          : `Client listed on ${entry.zone}`)
      return {
        zone: entry.zone,
        ...(entry.symbol !== undefined ? { symbol: entry.symbol } : {}),
        weight: entry.score,
        description,
        codes,
      }
    })
    return {
      ...(o.servers !== undefined ? { servers: o.servers } : {}),
      zones,
      timeoutMs: o.timeoutMs,
      cacheSize: o.cacheSize,
      negativeTtlSeconds: o.negativeTtlSeconds,
      breaker: o.breaker,
    }
  })

/** Every symbol the options name, with its default weight (evidence: zone, codes, TXT). */
export function symbolTable(opts: DnsblOptions): SymbolTable {
  const table: Record<string, { description: string; weight: number }> = {}
  for (const zone of opts.zones) {
    if (zone.symbol !== undefined) table[zone.symbol] = { description: zone.description, weight: zone.weight }
    for (const c of zone.codes) table[c.symbol] = { description: c.description, weight: c.weight }
  }
  return table
}
