/**
 * The router of the output queue: a message's recipients are routed with the loaded maps
 * (aliases, recipientmap, user directory, mailertable), split per next hop and envelope
 * sender, and each part is sent to its destination: the default relay, the local MTA, a
 * mailertable host, or the MX hosts of a domain (lowest preference first, shuffled among
 * equals, the next one when a host cannot be reached, A/AAAA when there is no MX, a bounce
 * for a null MX or for a domain whose best MX is ourselves). Every recipient gets its own
 * outcome. docs/routing.md, "Delivery", has the long form.
 */
import { networkInterfaces } from 'node:os'
import type { Logger } from 'pino'
import type { HostPort } from '../config/address.js'
import { type DsnRequest, dsnOf, type Envelope, type RecipientDsn } from '../ingress/envelope.js'
import { isNonAscii } from '../mail/ascii.js'
import { headerEnd } from '../mail/message.js'
import type { RoutingMaps } from '../routing/maps.js'
import { finalNextHop, type NextHop, type Refusal, route } from '../routing/router.js'
import { type MailAddress, parseAddress } from '../routing/text.js'
import { Destinations } from './destinations.js'
import type { NextHopDns } from './mx.js'
import { formatHop, type TlsLevel } from './smtp-client.js'
import type { RecipientResult, RecipientStatus } from './transport.js'

/** Recipients per transaction to a mailertable host or an MX host (RFC 5321's minimum a server must take). */
export const RECIPIENTS_PER_TRANSACTION = 100

/** A final recipient of a message, kept in the retry state between attempts. */
export interface RoutedRecipient {
  /** The address delivery uses (after aliases and rewrites). */
  readonly address: string
  /** The envelope sender for it (`owner-list@…` after a list with an owner; `''` = `<>`). */
  readonly from: string
  /** Its next hop is the local MTA whatever the mailertable says (`\name`, `postmaster`). */
  readonly local?: true
  /** The recipient as the sender gave it, when routing rewrote or expanded it. */
  readonly original?: string
}

/** One recipient's outcome at one attempt. */
export interface Outcome extends RecipientResult {
  readonly routed: RoutedRecipient
  /** Where it went, for logs: `host:port`, or `mx.example.org[192.0.2.25]:25`; our host name when decided here. */
  readonly hop: string
  readonly durationMs?: number
  /** Deferred only because every session to its destination stayed busy: not a failed attempt. */
  readonly busy?: true
  /** The TLS version and cipher of the session that took it; absent: clear text (or no session). */
  readonly tls?: string
}

/** The routing state in force (swapped as a whole on reload). */
export interface RoutingState {
  readonly maps: RoutingMaps
  readonly hopLimit: number
  readonly dns: NextHopDns
}

export interface DispatcherOptions {
  readonly routing: () => RoutingState
  /** The default relay; null: foreign domains go to their MX hosts. */
  readonly relay: HostPort | null
  /** The local MTA, for `local` next hops; null: there is none. */
  readonly local: HostPort | null
  /** Speak LMTP to the relay and the local MTA. */
  readonly lmtp: boolean
  /** STARTTLS to the relay and the local MTA (`relay`), and to MX and mailertable hosts (`mx`). */
  readonly tls: { readonly relay: TlsLevel; readonly mx: TlsLevel }
  /** Recipients per transaction to the relay and the local MTA (`delivery.maxRecipientsPerTransaction`). */
  readonly maxRecipientsPerTransaction: number
  /** The SMTP port of MX hosts. */
  readonly mxPort: number
  /** Our name: MX hosts of that name are ourselves; DSNs and hop labels of local decisions. */
  readonly hostname: string
  /** Our IP addresses: an MX host with one of them is ourselves. */
  readonly ownAddresses: ReadonlySet<string>
  readonly destinations: Destinations
  readonly log: Logger
}

/** Where one group of recipients goes. */
type Target =
  /** The relay or the local MTA: the host as configured (a name is resolved by the system). */
  | { readonly kind: 'direct'; readonly host: string; readonly port: number; readonly lmtp: boolean }
  /** A mailertable `[host]`: its A/AAAA records, no MX lookup. */
  | { readonly kind: 'host'; readonly host: string; readonly port: number }
  /** The MX hosts of `name` (a recipient domain, or a mailertable `smtp:host`). */
  | { readonly kind: 'mx'; readonly name: string; readonly port: number; readonly mailertable: boolean }

/** One host to try. */
interface Candidate {
  /** What to connect to: an IP address, or the configured name of the relay. */
  readonly host: string
  readonly port: number
  readonly lmtp: boolean
  readonly tls: TlsLevel
  /** For logs. */
  readonly label: string
  /** For DSNs (`Remote-MTA: dns; name`). */
  readonly remoteMta: string
}

/** A refusal decided here, without any remote host: a status and the reply text. */
interface Verdict {
  readonly status: RecipientStatus
  readonly code: number
  readonly reply: string
}

interface Group {
  readonly target: Target
  readonly label: string
  readonly from: string
  readonly recipients: RoutedRecipient[]
}

/** The message as the dispatcher sends it. */
export interface DispatchMessage {
  readonly envelope: Envelope
  readonly message: Buffer
}

/** How many `Received:` fields a message's header carries (its hop count). */
export function countReceived(message: Buffer): number {
  const head = message.subarray(0, headerEnd(message)).toString('latin1')
  return head.match(/^received[ \t]*:/gim)?.length ?? 0
}

/**
 * Our IP addresses: every interface's, and the listeners'. Every interface's, not only where
 * mailscreen listens: behind Postfix the public address is Postfix's, and mail sent there
 * comes back to us through content_filter (a backup MX sending to itself).
 */
export function ownAddresses(listen: readonly { readonly host: string }[]): Set<string> {
  const out = new Set<string>()
  // Loopback interfaces only through a listener: 127.0.0.x and ::1 are where other local
  // servers (the MTA, test sinks) live.
  for (const list of Object.values(networkInterfaces()))
    for (const info of list ?? []) if (!info.internal) out.add(info.address.replace(/%.*$/, ''))
  for (const { host } of listen) if (host !== '0.0.0.0' && host !== '::') out.add(host)
  return out
}

/**
 * The DSN parameters that go on to the next hop with these recipients: RET and ENVID, and each
 * recipient's NOTIFY and ORCPT as the sender gave them for the address it wrote. For an
 * address routing rewrote or expanded, that address goes as ORCPT unless the sender gave one
 * (RFC 3461 4.2), so a DSN from further on still names what the sender wrote.
 */
function passedOn(request: DsnRequest, recipients: readonly RoutedRecipient[]) {
  const forRecipient = (r: RoutedRecipient): RecipientDsn | undefined => {
    const given = dsnOf(request, r.original ?? r.address)
    if (r.original === undefined || given?.orcpt !== undefined || isNonAscii(r.original)) return given
    return { ...given, orcpt: `rfc822;${r.original}` }
  }
  return {
    ...(request.ret ? { ret: request.ret } : {}),
    ...(request.envid ? { envid: request.envid } : {}),
    recipients: recipients.map(forRecipient),
  }
}

function decided(r: RoutedRecipient, verdict: Verdict, hop: string): Outcome {
  return {
    recipient: r.address,
    status: verdict.status,
    code: verdict.code,
    reply: verdict.reply,
    routed: r,
    hop,
    ...(r.original ? { originalRecipient: r.original } : {}),
  }
}

function refusalVerdict(refusal: Refusal): Verdict {
  return {
    status: refusal.code >= 500 ? 'failed' : 'deferred',
    code: refusal.code,
    reply: `${refusal.code} ${refusal.status} ${refusal.text}`,
  }
}

/** How to answer an RCPT-time check. */
export interface CheckOptions {
  /**
   * The MTA in front delivers the message itself (milter mode): only what the maps refuse is
   * refused, not what mailscreen's own output queue could not deliver (local recipients
   * without `delivery.local`).
   */
  readonly mtaDelivers?: boolean
}

/** Routes recipients and delivers to their next hops. */
export class Dispatcher {
  constructor(private readonly opts: DispatcherOptions) {}

  /** Where `local` next hops go, if anywhere. */
  get localTarget(): HostPort | null {
    return this.opts.local
  }

  /**
   * The RCPT-time answer for a recipient: a refusal when routing refuses every address it
   * expands to (unknown user of a domain of ours `550 5.1.1`, a mailertable `error:` entry,
   * a loop in the maps), else undefined. Bad syntax is left to the listener (as before routing).
   * Synchronous when the maps cannot refuse anything (no domain of ours, no `error:` entry).
   */
  check(
    address: string,
    from: string,
    options: CheckOptions = {},
  ): Refusal | undefined | Promise<Refusal | undefined> {
    const { maps } = this.opts.routing()
    if (!canRefuse(maps)) return undefined
    return this.checkRouted(address, from, maps, options)
  }

  private async checkRouted(
    address: string,
    from: string,
    maps: RoutingMaps,
    options: CheckOptions,
  ): Promise<Refusal | undefined> {
    const decision = await route(address, maps, this.routeOptions(from))
    if (decision.refusal) return decision.refusal.status === '5.1.3' ? undefined : decision.refusal
    if (options.mtaDelivers) return undefined
    const live = decision.recipients.filter((r) => r.nextHop.kind !== 'error')
    if (this.opts.local === null && live.every((r) => r.nextHop.kind === 'local'))
      return { code: 550, status: '5.3.5', text: `<${address}>: local delivery is not configured here` }
    return undefined
  }

  private routeOptions(from: string): { from: string; defaultRelay?: HostPort } {
    return this.opts.relay ? { from, defaultRelay: this.opts.relay } : { from }
  }

  /**
   * Route a message's recipients (as the sender gave them) to their final recipients.
   * Refused addresses come back as outcomes (`failed`, or `deferred` for a 4xx); an address
   * reached twice is delivered once.
   */
  async expand(
    rcptTo: readonly string[],
    mailFrom: string,
  ): Promise<{ routed: RoutedRecipient[]; refused: Outcome[] }> {
    const { maps } = this.opts.routing()
    const routed: RoutedRecipient[] = []
    const refused: Outcome[] = []
    const seen = new Set<string>()
    const add = (r: RoutedRecipient): void => {
      const key = r.address.toLowerCase()
      if (seen.has(key)) return
      seen.add(key)
      routed.push(r)
    }
    for (const rcpt of rcptTo) {
      const parsed = parseAddress(rcpt)
      // Unqualified (or unparsable) addresses were accepted by the listener; the local MTA
      // knows what to do with them, as it did before mailscreen routed anything.
      if (!parsed?.domain) {
        add({ address: rcpt, from: mailFrom, local: true })
        continue
      }
      const decision = await route(rcpt, maps, this.routeOptions(mailFrom))
      for (const r of decision.recipients) {
        // Sent in the form routing judged (a domain in A-labels, which a next hop without
        // SMTPUTF8 takes too), never in a spelling the maps did not see.
        const original = r.address.toLowerCase() === rcpt.toLowerCase() ? {} : { original: rcpt }
        const base: RoutedRecipient = { address: r.address, from: r.from, ...original }
        if (r.nextHop.kind === 'error') {
          const verdict = refusalVerdict(r.nextHop)
          // A 4xx (mailertable `error:tempfail`) is asked again at the next attempt.
          if (verdict.status === 'deferred') add(base)
          else if (!seen.has(r.address.toLowerCase())) {
            seen.add(r.address.toLowerCase())
            refused.push(decided(base, verdict, this.opts.hostname))
          }
          continue
        }
        add(r.nextHop.kind === 'local' ? { ...base, local: true } : base)
      }
    }
    return { routed, refused }
  }

  /**
   * One delivery attempt for final recipients: next hops from the maps in force now, one
   * transaction per next hop and envelope sender, all at once. Resolves with an outcome per
   * recipient, in the order given; never rejects for remote trouble.
   */
  async deliver(recipients: readonly RoutedRecipient[], msg: DispatchMessage): Promise<Outcome[]> {
    const { maps } = this.opts.routing()
    const outcomes = new Map<RoutedRecipient, Outcome>()
    const groups = new Map<string, Group>()
    const chunks = new Map<string, number>()
    for (const r of recipients) {
      const target = this.targetOf(r, maps)
      if ('status' in target) {
        outcomes.set(r, decided(r, target, this.opts.hostname))
        continue
      }
      // RFC 5321 4.5.3.1.8: a server must take 100 recipients per message, not more. The relay
      // and the local MTA (our own MTA) take what they are configured for (Postfix's
      // smtpd_recipient_limit, 1000 by default): a 100,000-member list goes in parts at once,
      // not 1000 per retry.
      const limit =
        target.target.kind === 'direct' ? this.opts.maxRecipientsPerTransaction : RECIPIENTS_PER_TRANSACTION
      const base = `${target.label}\u0000${r.from}`
      let chunk = chunks.get(base) ?? 0
      if ((groups.get(`${base}\u0000${chunk}`)?.recipients.length ?? 0) >= limit) chunks.set(base, ++chunk)
      const key = `${base}\u0000${chunk}`
      const group = groups.get(key)
      if (group) group.recipients.push(r)
      else groups.set(key, { target: target.target, label: target.label, from: r.from, recipients: [r] })
    }
    const sent = await Promise.all([...groups.values()].map((g) => this.sendGroup(g, msg)))
    for (const list of sent) for (const o of list) outcomes.set(o.routed, o)
    return recipients.map((r) => outcomes.get(r) as Outcome)
  }

  /** The target of a final recipient, or a verdict when it cannot go anywhere. */
  private targetOf(r: RoutedRecipient, maps: RoutingMaps): { target: Target; label: string } | Verdict {
    const parsed = r.local ? undefined : parseAddress(r.address)
    let hop: NextHop
    if (r.local || !parsed?.domain) hop = { kind: 'local' }
    else hop = finalNextHop(parsed as MailAddress, maps, this.opts.relay ?? undefined).nextHop
    switch (hop.kind) {
      case 'error':
        return refusalVerdict(hop)
      case 'local': {
        const local = this.opts.local
        if (!local)
          return {
            status: 'failed',
            code: 550,
            reply: '550 5.3.5 local delivery is not configured here (delivery.local / delivery.relay)',
          }
        return {
          target: { kind: 'direct', host: local.host, port: local.port, lmtp: this.opts.lmtp },
          label: `local:${formatHop(local.host, local.port)}`,
        }
      }
      case 'relay':
        return {
          target: { kind: 'direct', host: hop.host, port: hop.port, lmtp: this.opts.lmtp },
          label: `relay:${formatHop(hop.host, hop.port)}`,
        }
      case 'smtp':
        return hop.mx
          ? {
              target: { kind: 'mx', name: hop.host, port: hop.port, mailertable: true },
              label: `smtp:${hop.host}:${hop.port}`,
            }
          : {
              target: { kind: 'host', host: hop.host, port: hop.port },
              label: `smtp:[${hop.host}]:${hop.port}`,
            }
      case 'mx':
        return {
          target: { kind: 'mx', name: hop.domain, port: this.opts.mxPort, mailertable: false },
          label: `mx:${hop.domain}`,
        }
    }
  }

  private async sendGroup(group: Group, msg: DispatchMessage): Promise<Outcome[]> {
    const { destinations, log } = this.opts
    const found = await this.candidates(group.target)
    if (!Array.isArray(found)) return group.recipients.map((r) => decided(r, found, this.opts.hostname))
    const { envelope, message } = msg
    const tx = {
      mailFrom: group.from,
      rcptTo: group.recipients.map((r) => r.address),
      message,
      size: message.length,
      smtpUtf8: envelope.smtpUtf8 === true,
      eightBit: envelope.body === '8BITMIME',
      ...(envelope.dsn ? { dsn: passedOn(envelope.dsn, group.recipients) } : {}),
    }
    const errors: string[] = []
    let code = 0
    let backedOff = 0
    for (const c of found) {
      const key = Destinations.key(c.host, c.port, c.lmtp, c.tls)
      const until = destinations.backedOff(key)
      if (until !== undefined) {
        backedOff++
        errors.push(`${c.label}: backed off until ${new Date(until).toISOString()}`)
        continue
      }
      const result = await destinations.transport(c.host, c.port, c.lmtp, c.tls).send(tx)
      // Busy is ours to say, not the host's: no Remote-MTA, no verdict on the host's health,
      // and no other MX host (a busy destination is not a broken one). After a better host
      // failed it is an ordinary deferral, with that failure in the reply.
      if (result.busy)
        return result.recipients.map((rr, i) => {
          const r = group.recipients[i] as RoutedRecipient
          if (errors.length > 0)
            return decided(r, { ...rr, reply: [...errors, rr.reply].join('; ') }, c.label)
          const busy = rr.status === 'deferred' ? { busy: true as const } : {}
          return { ...decided(r, rr, c.label), ...busy, durationMs: result.durationMs }
        })
      if (result.unreachable) {
        const first = result.recipients[0]
        errors.push(first?.reply ?? `${c.label}: no reply`)
        code = first?.code ?? 0
        const backoff = destinations.failed(key)
        log.info({ destination: c.label, reply: first?.reply }, 'destination unreachable')
        if (backoff !== undefined)
          log.warn({ destination: c.label, until: new Date(backoff).toISOString() }, 'destination backed off')
        continue
      }
      destinations.succeeded(key)
      return result.recipients.map((rr, i) => {
        const r = group.recipients[i] as RoutedRecipient
        return {
          ...rr,
          ...(rr.local ? {} : { remoteMta: c.remoteMta }),
          ...(r.original ? { originalRecipient: r.original } : {}),
          routed: r,
          hop: c.label,
          durationMs: result.durationMs,
          ...(result.tls === undefined ? {} : { tls: result.tls }),
        }
      })
    }
    const reply =
      backedOff === found.length && found.length > 0
        ? `${group.label}: every host is backed off after failed connections (${errors.join('; ')})`
        : errors.join('; ')
    return group.recipients.map((r) =>
      decided(r, { status: 'deferred', code, reply: reply || `${group.label}: no host to try` }, group.label),
    )
  }

  /** The hosts to try for a target, in order, or a verdict for every recipient of it. */
  private async candidates(target: Target): Promise<Candidate[] | Verdict> {
    const { dns } = this.opts.routing()
    if (target.kind === 'direct') {
      const label = formatHop(target.host, target.port)
      const tls = this.opts.tls.relay
      return [{ host: target.host, port: target.port, lmtp: target.lmtp, tls, label, remoteMta: target.host }]
    }
    if (target.kind === 'host') {
      const found = await dns.addresses(target.host, false)
      if (found.kind !== 'addresses')
        return { status: 'deferred', code: 0, reply: `mailertable host ${found.reason}` }
      return found.addresses.map((ip) => ({
        host: ip,
        port: target.port,
        lmtp: false,
        tls: this.opts.tls.mx,
        label: ip === target.host ? formatHop(ip, target.port) : `${target.host}[${ip}]:${target.port}`,
        remoteMta: target.host,
      }))
    }
    return this.mxCandidates(target)
  }

  private async mxCandidates(target: Target & { kind: 'mx' }): Promise<Candidate[] | Verdict> {
    const { dns } = this.opts.routing()
    const { name, port } = target
    const answer = await dns.mx(name)
    // A mailertable host that does not resolve is the administrator's to fix: retry meanwhile.
    const notFound = (text: string): Verdict =>
      target.mailertable
        ? { status: 'deferred', code: 451, reply: `451 4.4.3 ${text}` }
        : { status: 'failed', code: 550, reply: `550 5.1.2 ${text}` }
    switch (answer.kind) {
      case 'tempfail':
        return {
          status: 'deferred',
          code: 451,
          reply: `451 4.4.3 MX lookup of ${name} failed: ${answer.reason}`,
        }
      case 'nxdomain':
        return notFound(`Host or domain name not found: ${name} (NXDOMAIN)`)
      case 'null':
        return {
          status: 'failed',
          code: 556,
          reply: `556 5.1.10 ${name} does not accept mail (null MX, RFC 7505)`,
        }
      default:
    }
    const hosts = answer.kind === 'hosts' ? answer.hosts : [{ name, preference: 0 }]
    const resolved = await Promise.all(hosts.map(async (h) => ({ ...h, found: await dns.addresses(h.name) })))
    const hostname = this.opts.hostname.toLowerCase()
    const isSelf = (h: (typeof resolved)[number]): boolean =>
      h.name === hostname ||
      (h.found.kind === 'addresses' && h.found.addresses.some((ip) => this.opts.ownAddresses.has(ip)))
    const self = resolved.filter(isSelf).map((h) => h.preference)
    // RFC 5321 5.1: when we are one of the MX hosts, only the better ones may be used.
    const usable = self.length > 0 ? resolved.filter((h) => h.preference < Math.min(...self)) : resolved
    if (usable.length === 0)
      return { status: 'failed', code: 554, reply: `554 5.4.6 mail for ${name} loops back to myself` }
    const out: Candidate[] = []
    const problems: string[] = []
    for (const h of usable) {
      if (h.found.kind !== 'addresses') {
        problems.push(h.found.reason)
        continue
      }
      for (const ip of h.found.addresses)
        out.push({
          host: ip,
          port,
          lmtp: false,
          tls: this.opts.tls.mx,
          label: `${h.name}[${ip}]:${port}`,
          remoteMta: h.name,
        })
    }
    if (out.length > 0) return out
    if (answer.kind === 'implicit' && resolved.every((h) => h.found.kind === 'none'))
      return notFound(`no MX and no A/AAAA record for ${name}`)
    return {
      status: 'deferred',
      code: 451,
      reply: `451 4.4.3 no address for the mail hosts of ${name}: ${problems.join('; ')}`,
    }
  }
}

/** Whether routing with these maps can refuse an address (it cannot without our domains or `error:` entries). */
const refusing = new WeakMap<RoutingMaps, boolean>()
function canRefuse(maps: RoutingMaps): boolean {
  let known = refusing.get(maps)
  if (known === undefined) {
    known =
      maps.localHostNames.domains.size > 0 ||
      [...maps.mailertable.entries.values()].some((e) => e.route.kind === 'error')
    refusing.set(maps, known)
  }
  return known
}
