/**
 * The router: one recipient address in, the whole decision out, as plain data: every map
 * consulted, every expansion and rewrite, the final recipients with their next hop and why.
 * It reads only the maps it is given (the user directory through its async interface) and
 * does no DNS: an `mx` next hop names the domain whose MX records delivery will look up.
 *
 * Decision order for an address `local@domain` (docs/routing.md has the long form):
 *
 * 1. A loop (the address is one of its own ancestors) or nesting deeper than `maxDepth`:
 *    `554 5.4.6`. An address already expanded in this decision is not expanded again.
 * 2. `recipientmap`, whole address (`user@domain`, then `user-ext`/`user+ext` by the
 *    entry for `user`): rewrite; the result is routed again if its domain is ours, else final.
 * 3. If `domain` is in `local-host-names`:
 *    a. `aliases` by local part (`+ext` falls back to the base name): expand every target;
 *       bare names are in `domain`; a target naming the alias itself, or `\name`, is the
 *       local mailbox. `owner-NAME` becomes the envelope sender of the copies.
 *    b. the user directory: `all@domain` → every user of the domain or subdomain; a user →
 *       `user(+ext)@home`, final.
 *    c. `recipientmap` domain default (`@domain:...`).
 *    d. `postmaster` → the local MTA (RFC 5321 wants it to exist).
 *    e. otherwise: unknown user, `550 5.1.1`.
 * 4. Not ours: `recipientmap` domain default, else final.
 *
 * A final address's next hop: `mailertable` by longest match (`domain`, `.parent`…, `.`),
 * else the default relay if one is given, else the domain's MX hosts.
 */
import { type AliasEntry, type AliasTarget, localKey, lookupAlias } from './aliases.js'
import { lookupMailertable, type MailerRoute } from './mailertable.js'
import type { MapName, RoutingMaps } from './maps.js'
import { lookupDomainDefault, lookupRecipient, type RecipientMatch } from './recipient-map.js'
import {
  addressKey,
  formatAddress,
  isDomainLiteral,
  literalAddress,
  type MailAddress,
  parseAddress,
  quoteLocal,
  type SourceRef,
} from './text.js'
import { ALL_USERS, type DirectoryUser, findDirectoryUser } from './users.js'

/** Where a final recipient goes next. */
export type NextHop =
  | {
      /** The default relay (`delivery.relay`): the domain is neither ours nor in the mailertable. */
      readonly kind: 'relay'
      readonly host: string
      readonly port: number
    }
  | {
      /** A host from the mailertable: `mx` true = look up the host's MX records first. */
      readonly kind: 'smtp'
      readonly host: string
      readonly port: number
      readonly mx: boolean
    }
  | {
      /** The MX hosts of `domain` (lowest preference first; A/AAAA when it has none). */
      readonly kind: 'mx'
      readonly domain: string
    }
  | {
      /** Refused: at RCPT time when every recipient is refused, else bounced. */
      readonly kind: 'error'
      readonly code: number
      /** Enhanced status code, e.g. `5.1.1`. */
      readonly status: string
      readonly text: string
    }
  | {
      /** The local MTA (the re-injection relay) delivers to a local mailbox. */
      readonly kind: 'local'
    }

/** One thing the router looked at or did, in order. */
export interface RouteStep {
  /** Nesting level: 0 for the address asked about, +1 per expansion or rewrite. */
  readonly depth: number
  /** The address being routed when this happened. */
  readonly address: string
  /** The map consulted, or `route` for decisions that use no map (loops, relay, MX). */
  readonly map: MapName | 'route'
  /** `hit`: the map had an entry; `miss`: it had none; `note`: anything else. */
  readonly result: 'hit' | 'miss' | 'note'
  readonly detail: string
  /** The map line that matched. */
  readonly source?: SourceRef
}

/** A final recipient and its next hop. */
export interface RoutedRecipient {
  /** The address delivery uses (after every rewrite). */
  readonly address: string
  readonly nextHop: NextHop
  /** Why this next hop, in words. */
  readonly why: string
  /** Envelope sender for this recipient (`owner-list@…` after a list with an owner). `''` is `<>`. */
  readonly from: string
  /** The addresses it came through, from the one asked about; empty if it is that one. */
  readonly via: readonly string[]
  /** The map line that chose the next hop, if one did. */
  readonly source?: SourceRef
}

/** An SMTP refusal. */
export interface Refusal {
  readonly code: number
  readonly status: string
  readonly text: string
}

/** Everything the router decided for one address. Plain data (JSON-safe). */
export interface RouteDecision {
  /** The address as asked. */
  readonly address: string
  /** The envelope sender as given (`''` = `<>`). */
  readonly from: string
  /** True when at least one recipient has a next hop that is not an error. */
  readonly accepted: boolean
  /** The RCPT reply when nothing is deliverable: the first recipient's error. */
  readonly refusal?: Refusal
  readonly recipients: readonly RoutedRecipient[]
  readonly steps: readonly RouteStep[]
}

export interface RouteOptions {
  /** Envelope sender (`''` or `<>`: the null sender). Lists with an `owner-` alias change it. */
  readonly from?: string
  /** Where mail for domains that are neither ours nor in the mailertable goes; else their MX. */
  readonly defaultRelay?: { readonly host: string; readonly port: number }
  /** Deepest alias/rewrite nesting before the address is refused as a loop (default 20). */
  readonly maxDepth?: number
}

/** `smtp:[host]:port`, `smtp:host:port` (MX lookup), `relay:[host]:port`, `mx:domain`, `error:5.1.1:550`, `local`. */
export function formatNextHop(hop: NextHop): string {
  const bracket = (host: string): string => `[${host}]`
  switch (hop.kind) {
    case 'relay':
      return `relay:${bracket(hop.host)}:${hop.port}`
    case 'smtp':
      return `smtp:${hop.mx ? hop.host : bracket(hop.host)}:${hop.port}`
    case 'mx':
      return `mx:${hop.domain}`
    case 'error':
      return `error:${hop.status}:${hop.code}`
    case 'local':
      return 'local'
  }
}

interface Branch {
  readonly depth: number
  /** Ancestors, as asked (for `via`) and as keys (for loop detection). */
  readonly via: readonly string[]
  readonly viaKeys: readonly string[]
  readonly from: string
}

/** The state of one decision. */
class Decision {
  readonly steps: RouteStep[] = []
  readonly recipients = new Map<string, RoutedRecipient>()
  readonly expanded = new Set<string>()

  constructor(
    readonly maps: RoutingMaps,
    readonly options: RouteOptions,
    readonly maxDepth: number,
  ) {}

  step(
    branch: Branch,
    address: string,
    map: RouteStep['map'],
    result: RouteStep['result'],
    detail: string,
    source?: SourceRef,
  ): void {
    this.steps.push(
      source
        ? { depth: branch.depth, address, map, result, detail, source }
        : { depth: branch.depth, address, map, result, detail },
    )
  }

  present(map: MapName): boolean {
    return this.maps.files[map] !== undefined
  }

  isLocal(domain: string): boolean {
    return this.maps.localHostNames.domains.has(domain)
  }

  add(branch: Branch, address: string, nextHop: NextHop, why: string, source?: SourceRef): void {
    const key = address.toLowerCase()
    const earlier = this.recipients.get(key)
    // A refusal found first (a loop back to it, say) does not hide a route found later: which
    // came first is only the order of the targets.
    if (earlier && !(earlier.nextHop.kind === 'error' && nextHop.kind !== 'error')) {
      this.step(branch, address, 'route', 'note', 'already a recipient; duplicate suppressed')
      return
    }
    if (earlier)
      this.step(branch, address, 'route', 'note', 'a route after all: the refusal found earlier goes')
    const recipient: RoutedRecipient = {
      address,
      nextHop,
      why,
      from: branch.from,
      via: branch.via,
      ...(source ? { source } : {}),
    }
    this.recipients.set(key, recipient)
    const detail =
      nextHop.kind === 'error' ? `${formatNextHop(nextHop)} ${nextHop.text}` : formatNextHop(nextHop)
    this.step(branch, address, 'route', 'note', `→ ${detail} (${why})`)
  }

  refuse(branch: Branch, address: string, code: number, status: string, text: string, why: string): void {
    this.add(branch, address, { kind: 'error', code, status, text }, why)
  }
}

function child(branch: Branch, address: string, from = branch.from): Branch {
  return {
    depth: branch.depth + 1,
    via: [...branch.via, address],
    viaKeys: [...branch.viaKeys, address.toLowerCase()],
    from,
  }
}

/** Route one address. Deterministic for the same maps and options. */
export async function route(
  address: string,
  maps: RoutingMaps,
  options: RouteOptions = {},
): Promise<RouteDecision> {
  const from = normalizeSender(options.from ?? '')
  const decision = new Decision(maps, options, options.maxDepth ?? 20)
  const top: Branch = { depth: 0, via: [], viaKeys: [], from }
  const parsed = parseAddress(address)
  if (!parsed)
    decision.refuse(top, address, 501, '5.1.3', `<${address}>: bad address syntax`, 'not an address')
  else if (parsed.domain === '')
    decision.refuse(top, address, 501, '5.1.3', `<${address}>: need a fully-qualified address`, 'no domain')
  else await resolve(decision, parsed, top)
  // Defensive: every path above ends in a recipient, but a decision must never be empty.
  if (decision.recipients.size === 0)
    decision.refuse(top, address, 550, '5.1.1', `<${address}>: expands to no recipients`, 'nothing left')
  const recipients = [...decision.recipients.values()]
  const deliverable = recipients.some((r) => r.nextHop.kind !== 'error')
  const firstError = recipients.find((r) => r.nextHop.kind === 'error')?.nextHop
  const refusal =
    !deliverable && firstError?.kind === 'error'
      ? { code: firstError.code, status: firstError.status, text: firstError.text }
      : undefined
  return {
    address,
    from,
    accepted: deliverable,
    ...(refusal ? { refusal } : {}),
    recipients,
    steps: decision.steps,
  }
}

/** `<>` → `''`; `<a@b>` → `a@b`. */
function normalizeSender(from: string): string {
  const trimmed = from.trim()
  if (trimmed === '' || trimmed === '<>') return ''
  const parsed = parseAddress(trimmed)
  return parsed ? formatAddress(parsed) : trimmed
}

async function resolve(d: Decision, address: MailAddress, branch: Branch): Promise<void> {
  const text = formatAddress(address)
  const key = addressKey(address)
  const loopAt = branch.viaKeys.indexOf(key)
  if (loopAt >= 0) {
    const chain = [...branch.via.slice(loopAt), text].join(' → ')
    d.step(branch, text, 'route', 'note', `loop: ${chain}`)
    d.refuse(
      branch,
      text,
      554,
      '5.4.6',
      `<${text}>: mail loop in the routing maps (${chain})`,
      'routing loop',
    )
    return
  }
  if (branch.depth > d.maxDepth) {
    d.refuse(
      branch,
      text,
      554,
      '5.4.6',
      `<${text}>: nested more than ${d.maxDepth} levels`,
      'nesting too deep',
    )
    return
  }
  if (d.expanded.has(key)) {
    d.step(branch, text, 'route', 'note', 'already expanded in this decision; not again')
    return
  }
  d.expanded.add(key)

  const exact = lookupRecipient(d.maps.recipientMap, address)
  if (exact) return follow(d, address, exact, branch, '')
  if (d.present('recipientmap')) d.step(branch, text, 'recipientmap', 'miss', `no entry for ${key}`)

  if (!d.isLocal(address.domain)) {
    if (d.present('local-host-names'))
      d.step(branch, text, 'local-host-names', 'miss', `${address.domain} is not ours`)
    const fallback = lookupDomainDefault(d.maps.recipientMap, address)
    if (fallback) return follow(d, address, fallback, branch, `domain default ${fallback.entry.key}: `)
    return finalHop(d, address, branch)
  }
  const ours = d.maps.localHostNames.domains.get(address.domain)
  d.step(branch, text, 'local-host-names', 'hit', `${address.domain} is ours`, ours)

  const alias = lookupAlias(d.maps.aliases, address.local)
  if (alias) return expandAlias(d, address, alias.entry, alias.extension, branch)
  if (d.present('aliases')) d.step(branch, text, 'aliases', 'miss', `no alias ${localKey(address.local)}`)

  if (d.present('users')) {
    const local = localKey(address.local)
    if (local === ALL_USERS) {
      const members = await d.maps.users.members(address.domain)
      if (members.length > 0) {
        d.step(branch, text, 'users', 'hit', `${ALL_USERS}@${address.domain}: ${members.length} users`)
        for (const user of members) await deliverUser(d, address, user, '', child(branch, text))
        return
      }
      d.step(branch, text, 'users', 'miss', `no users in ${address.domain}`)
    } else {
      const match = await findDirectoryUser(d.maps.users, local, address.domain)
      if (match) return deliverUser(d, address, match.user, match.extension ?? '', branch, true)
      d.step(branch, text, 'users', 'miss', `no user ${local} in ${address.domain}`)
    }
  }

  const fallback = lookupDomainDefault(d.maps.recipientMap, address)
  if (fallback) return follow(d, address, fallback, branch, `domain default ${fallback.entry.key}: `)

  if (localKey(address.local) === 'postmaster') {
    d.add(branch, text, { kind: 'local' }, 'postmaster of a domain of ours, not in any map: the local MTA')
    return
  }
  d.refuse(
    branch,
    text,
    550,
    '5.1.1',
    `<${text}>: user unknown`,
    `no map knows ${localKey(address.local)} in ${address.domain}`,
  )
}

/** Apply a recipientmap match: route the result again if it is ours, else it is final. */
async function follow(
  d: Decision,
  address: MailAddress,
  match: RecipientMatch,
  branch: Branch,
  what: string,
): Promise<void> {
  const text = formatAddress(address)
  const rewritten = formatAddress(match.rewritten)
  const extension = match.extension ? ` (entry ${match.entry.key}, extension ${match.extension})` : ''
  d.step(
    branch,
    text,
    'recipientmap',
    'hit',
    `${what}: ${text} → ${rewritten}${extension}`,
    match.entry.source,
  )
  const next = child(branch, text)
  if (d.isLocal(match.rewritten.domain)) return resolve(d, match.rewritten, next)
  return finalHop(d, match.rewritten, next)
}

/** Expand an alias's targets (including `:include:` lists) in file order. */
async function expandAlias(
  d: Decision,
  address: MailAddress,
  entry: AliasEntry,
  extension: string | undefined,
  branch: Branch,
): Promise<void> {
  const text = formatAddress(address)
  const shown = entry.targets.map(describeTarget).join(', ') || '(nothing)'
  const dropped = extension ? ` (extension ${extension} dropped)` : ''
  d.step(branch, text, 'aliases', 'hit', `${entry.name}: ${shown}${dropped}`, entry.source)
  let from = branch.from
  const owner = d.maps.aliases.entries.get(`owner-${entry.name}`)
  if (owner && branch.from !== '') {
    // The alias name unquoted (`help desk`): written back as an address, it needs its quotes.
    from = `${quoteLocal(`owner-${entry.name}`)}@${address.domain}`
    d.step(
      branch,
      text,
      'aliases',
      'hit',
      `owner-${entry.name} exists: envelope sender becomes ${from}`,
      owner.source,
    )
  }
  const next = child(branch, text, from)
  let count = 0
  const walk = async (targets: readonly AliasTarget[], level: Branch): Promise<void> => {
    for (const target of targets) {
      if (target.kind === 'include') {
        const detail = target.error
          ? `:include:${target.path}: ${target.error}`
          : `:include:${target.path}: ${target.targets.length} entries`
        d.step(branch, text, 'aliases', target.error ? 'miss' : 'hit', detail, target.source)
        await walk(target.targets, level)
        continue
      }
      count++
      if (target.kind === 'mailbox') {
        const mailbox = `${target.local}@${address.domain}`
        d.add(
          level,
          mailbox,
          { kind: 'local' },
          `\\${target.local} in alias ${entry.name}: the local mailbox`,
          target.source,
        )
        continue
      }
      const qualified: MailAddress = target.address.domain
        ? target.address
        : { local: target.address.local, domain: address.domain }
      const self =
        qualified.domain === address.domain &&
        (localKey(qualified.local) === entry.name || localKey(qualified.local) === localKey(address.local))
      if (self) {
        d.add(
          level,
          text,
          { kind: 'local' },
          `alias ${entry.name} names itself: the local mailbox`,
          target.source,
        )
        continue
      }
      await resolve(d, qualified, level)
    }
  }
  await walk(entry.targets, next)
  if (count === 0)
    d.refuse(
      branch,
      text,
      550,
      '5.1.1',
      `<${text}>: alias ${entry.name} expands to no recipients`,
      'empty alias',
    )
}

function describeTarget(target: AliasTarget): string {
  switch (target.kind) {
    case 'address':
      return formatAddress(target.address)
    case 'mailbox':
      return `\\${target.local}`
    case 'include':
      return `:include:${target.path}`
  }
}

/** A directory user: the mailbox at `local(+ext)@home`, final. */
async function deliverUser(
  d: Decision,
  address: MailAddress,
  user: DirectoryUser,
  extension: string,
  branch: Branch,
  announce = false,
): Promise<void> {
  const text = formatAddress(address)
  const home: MailAddress = { local: `${user.local}${extension}`, domain: user.home }
  const homeText = formatAddress(home)
  if (announce) {
    d.step(branch, text, 'users', 'hit', `${user.address} lives on ${user.home} → ${homeText}`, user.source)
    return finalHop(d, home, child(branch, text))
  }
  // A member of all@…: the branch is already one level down; show the member under its home address.
  d.step(branch, homeText, 'users', 'hit', `member ${user.address}, home ${user.home}`, user.source)
  // No loop check: a home address is final, so it may equal the address asked about.
  return finalHop(d, home, branch)
}

function nextHopOf(route: MailerRoute, domain: string): NextHop {
  switch (route.kind) {
    case 'smtp':
      return { kind: 'smtp', host: route.host, port: route.port, mx: route.mx }
    case 'mx':
      // A literal has no MX records: the host it names is the one (as Sendmail does).
      return isDomainLiteral(domain)
        ? { kind: 'smtp', host: literalAddress(domain), port: 25, mx: false }
        : { kind: 'mx', domain }
    case 'error':
      return { kind: 'error', code: route.code, status: route.status, text: route.text }
    case 'local':
      return { kind: 'local' }
  }
}

/** The next hop of a final address, and why. */
export interface FinalHop {
  readonly nextHop: NextHop
  readonly why: string
  /** The mailertable line, when one chose it. */
  readonly source?: SourceRef
  /** The mailertable key that matched. */
  readonly key?: string
}

/**
 * The next hop of an address that needs no more expansion: `mailertable` by longest match,
 * else an address literal's host, else the default relay, else the domain's MX hosts. The
 * output queue asks this again on every retry, so a deferred message follows a mailertable
 * changed meanwhile (a SIGHUP), without its aliases being expanded a second time.
 */
export function finalNextHop(
  address: MailAddress,
  maps: RoutingMaps,
  defaultRelay?: { readonly host: string; readonly port: number },
): FinalHop {
  const entry = lookupMailertable(maps.mailertable, address.domain)
  if (entry)
    return {
      nextHop: nextHopOf(entry.route, address.domain),
      why: `mailertable entry ${entry.key}`,
      source: entry.source,
      key: entry.key,
    }
  // An address literal goes to that host only without a default relay: the relay (the MTA
  // in front) knows whether the literal is itself, and applies its own outbound policy.
  if (isDomainLiteral(address.domain) && !defaultRelay) {
    const host = literalAddress(address.domain)
    return { nextHop: { kind: 'smtp', host, port: 25, mx: false }, why: 'an address literal: that host' }
  }
  if (defaultRelay)
    return {
      nextHop: { kind: 'relay', host: defaultRelay.host, port: defaultRelay.port },
      why: 'no mailertable route: the default relay',
    }
  return {
    nextHop: { kind: 'mx', domain: address.domain },
    why: `no mailertable route and no default relay: the MX hosts of ${address.domain}`,
  }
}

/** The next hop of a final address: mailertable, else default relay, else MX. */
function finalHop(d: Decision, address: MailAddress, branch: Branch): void {
  const text = formatAddress(address)
  const hop = finalNextHop(address, d.maps, d.options.defaultRelay)
  if (hop.key !== undefined) {
    const match = hop.key === address.domain ? hop.key : `${hop.key} (for ${address.domain})`
    d.step(branch, text, 'mailertable', 'hit', match, hop.source)
  } else if (d.present('mailertable'))
    d.step(branch, text, 'mailertable', 'miss', `no entry for ${address.domain}`)
  d.add(branch, text, hop.nextHop, hop.why, hop.source)
}
