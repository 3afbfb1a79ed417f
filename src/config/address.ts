import { isIP } from 'node:net'
import { z } from 'zod'

/** A `host:port` endpoint; IPv6 hosts in brackets (`[::1]:25`). */
export interface HostPort {
  readonly host: string
  readonly port: number
}

/** Parse `host:port` or `[v6]:port`. */
export function parseHostPort(text: string): HostPort | undefined {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(text.trim())
  if (!match) return undefined
  const port = Number(match[3])
  if (port > 65_535) return undefined
  return { host: (match[1] ?? match[2]) as string, port }
}

/** Zod type for `host:port`. */
export const hostPort = z.string().transform((value, ctx) => {
  const parsed = parseHostPort(value)
  if (!parsed) {
    ctx.addIssue({ code: 'custom', message: `not host:port: ${JSON.stringify(value)}` })
    return z.NEVER
  }
  return parsed
})

/** Parse an IP network `addr/len` (or a bare address as a /32 or /128). */
export function parseCidr(
  text: string,
): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const pieces = text.trim().split('/')
  if (pieces.length > 2) return undefined
  const [address = '', len] = pieces
  const version = isIP(address)
  if (version === 0) return undefined
  const max = version === 4 ? 32 : 128
  const prefix = len === undefined ? max : Number(len)
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (len !== undefined && !/^\d+$/.test(len)))
    return undefined
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' }
}

/** Zod type for a CIDR network. */
export const cidr = z.string().refine((value) => parseCidr(value) !== undefined, {
  message: 'not an IP network (e.g. 127.0.0.0/8, ::1/128)',
})
