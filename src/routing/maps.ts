/**
 * The routing maps folder (`routing.dir`, default `./rules`): `local-host-names`, `aliases`,
 * `recipientmap`, `mailertable` and `users`, each optional, loaded into one immutable
 * {@link RoutingMaps} value with every problem of every file collected. A bad line never
 * stops the rest of its file from loading; a missing file is an empty map.
 */
import { readFileSync, statSync } from 'node:fs'
import { isIP } from 'node:net'
import { join } from 'node:path'
import { z } from 'zod'
import { parseHostPort } from '../config/address.js'
import { type AliasMap, findAliasLoops, parseAliases } from './aliases.js'
import { type LocalHostNames, parseLocalHostNames } from './local-host-names.js'
import { type Mailertable, parseMailertable } from './mailertable.js'
import { parseRecipientMap, type RecipientMap } from './recipient-map.js'
import type { MapProblem } from './text.js'
import { type DirectoryUser, memoryUserDirectory, parseUserRows, type UserDirectory } from './users.js'

/** The map files of the routing folder, by their exact file names. */
export const MAP_FILES = ['local-host-names', 'aliases', 'recipientmap', 'mailertable', 'users'] as const

/** The name of one map file. */
export type MapName = (typeof MAP_FILES)[number]

/** A DNS server: `192.0.2.53`, `192.0.2.53:5353`, `::1` or `[::1]:5353`. */
const dnsServer = z.string().refine(
  (value) => {
    if (isIP(value) !== 0) return true
    const parsed = parseHostPort(value)
    return parsed !== undefined && isIP(parsed.host) !== 0
  },
  { message: 'not a DNS server address (ip, ip:port or [ipv6]:port)' },
)

/**
 * The `routing:` section of `mailscreen.yaml`.
 *
 * @example
 * routing:
 *   dir: ./rules            # the maps folder, relative to the config file
 *   hopLimit: 30            # more Received: headers than this: bounced as a mail loop
 *   resolver:
 *     servers: [127.0.0.1:5353]   # empty: the system resolver
 */
export const routingSection = z
  .object({
    /** The folder holding `local-host-names`, `aliases`, `recipientmap`, `mailertable`, `users`. */
    dir: z.string().min(1).default('./rules'),
    /** A message with more `Received:` headers than this is bounced as a mail loop. */
    hopLimit: z.number().int().min(1).max(1000).default(30),
    /** DNS for MX/A/AAAA lookups of next hops. */
    resolver: z
      .object({
        /** Resolver addresses; empty means the system's (`/etc/resolv.conf`). */
        servers: z.array(dnsServer).default([]),
      })
      .strict()
      .prefault({}),
  })
  .strict()

/** The validated `routing:` section. */
export type RoutingConfig = z.output<typeof routingSection>

/** Every map, loaded and frozen, with the problems found in them. */
export interface RoutingMaps {
  /** The folder the maps came from (empty for maps built in memory). */
  readonly dir: string
  /**
   * For each map file: the path it was read from, or undefined when absent (the router only
   * lists present maps in its trace). For a directory given in {@link BuildOptions}, its name.
   */
  readonly files: Readonly<Record<MapName, string | undefined>>
  readonly localHostNames: LocalHostNames
  readonly aliases: AliasMap
  readonly recipientMap: RecipientMap
  readonly mailertable: Mailertable
  readonly users: UserDirectory
  /** Every bad line of every file (and unreadable files, line 0), by file, by line. */
  readonly problems: readonly MapProblem[]
}

/** The text of some map files, for {@link buildRoutingMaps}. */
export type MapTexts = Partial<Record<MapName, { readonly file: string; readonly text: string }>>

export interface BuildOptions {
  /** Reads `:include:` files (default: `fs.readFileSync`). */
  readonly readFile?: (path: string) => string
  /** A user directory from elsewhere (a database later); replaces the `users` file. */
  readonly users?: UserDirectory
}

/**
 * Build the maps from file texts already read. Adds the checks that need several maps:
 * alias loops (which names are ours comes from `local-host-names`) and directory domains
 * that are not ours (their users would be unreachable through the directory).
 */
export function buildRoutingMaps(texts: MapTexts, dir = '', options: BuildOptions = {}): RoutingMaps {
  const problems: MapProblem[] = []
  const take = <T>(parsed: { map: T; problems: readonly MapProblem[] }): T => {
    problems.push(...parsed.problems)
    return parsed.map
  }
  const local = texts['local-host-names']
  const localHostNames = take(
    local ? parseLocalHostNames(local.text, local.file) : { map: { domains: new Map() }, problems: [] },
  )
  const isLocal = (domain: string): boolean => localHostNames.domains.has(domain)
  const aliasText = texts.aliases
  const aliases = take(
    aliasText
      ? parseAliases(aliasText.text, aliasText.file, options.readFile ? { readFile: options.readFile } : {})
      : { map: { entries: new Map() }, problems: [] },
  )
  problems.push(...findAliasLoops(aliases, isLocal))
  const recipient = texts.recipientmap
  const recipientMap = take(
    recipient
      ? parseRecipientMap(recipient.text, recipient.file)
      : { map: { addresses: new Map(), domains: new Map() }, problems: [] },
  )
  const table = texts.mailertable
  const mailertable = take(
    table ? parseMailertable(table.text, table.file) : { map: { entries: new Map() }, problems: [] },
  )
  let users = options.users
  if (!users) {
    const usersText = texts.users
    const rows: readonly DirectoryUser[] = usersText
      ? take(parseUserRows(usersText.text, usersText.file))
      : []
    const reported = new Set<string>()
    for (const user of rows) {
      if (isLocal(user.domain) || reported.has(user.domain)) continue
      reported.add(user.domain)
      const source = user.source ?? { file: 'users', line: 0 }
      problems.push({
        ...source,
        reason: `${user.domain} is not in local-host-names: its users are not reached through the directory`,
      })
    }
    users = memoryUserDirectory(usersText?.file ?? 'users', rows)
  }
  const files = Object.fromEntries(MAP_FILES.map((name) => [name, texts[name]?.file])) as Record<
    MapName,
    string | undefined
  >
  // A directory from elsewhere counts as present under its own name.
  if (options.users) files.users = options.users.name
  return Object.freeze({
    dir,
    files: Object.freeze(files),
    localHostNames: Object.freeze(localHostNames),
    aliases: Object.freeze(aliases),
    recipientMap: Object.freeze(recipientMap),
    mailertable: Object.freeze(mailertable),
    users,
    problems: Object.freeze(inFileOrder(problems)),
  })
}

/** Problems grouped by file (in order of first appearance), by line within a file. */
function inFileOrder(problems: readonly MapProblem[]): MapProblem[] {
  const rank = new Map<string, number>()
  for (const p of problems) if (!rank.has(p.file)) rank.set(p.file, rank.size)
  return [...problems].sort((a, b) => (rank.get(a.file) ?? 0) - (rank.get(b.file) ?? 0) || a.line - b.line)
}

/** Maps with nothing in them: every domain is foreign, everything goes to the relay or MX. */
export function emptyRoutingMaps(): RoutingMaps {
  return buildRoutingMaps({})
}

/**
 * Read the map files of `dir` and build the maps. A missing file is an empty map; a file
 * that exists but cannot be read, and a missing folder, are problems (line 0). Synchronous:
 * it runs at start-up and on reload, and `:include:` files are read while parsing.
 */
export function loadRoutingMaps(dir: string, options: BuildOptions = {}): RoutingMaps {
  const readFile = options.readFile ?? ((path: string) => readFileSync(path, 'utf8'))
  const texts: { -readonly [K in MapName]?: { file: string; text: string } } = {}
  const problems: MapProblem[] = []
  let folder = true
  try {
    if (!statSync(dir).isDirectory()) {
      problems.push({ file: dir, line: 0, reason: 'not a directory' })
      folder = false
    }
  } catch (err) {
    problems.push({
      file: dir,
      line: 0,
      reason: `no routing maps folder (${(err as NodeJS.ErrnoException).code})`,
    })
    folder = false
  }
  if (folder) {
    for (const name of MAP_FILES) {
      if (name === 'users' && options.users) continue
      const file = join(dir, name)
      try {
        texts[name] = { file, text: readFile(file) }
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code !== 'ENOENT')
          problems.push({ file, line: 0, reason: `cannot read: ${code ?? (err as Error).message}` })
      }
    }
  }
  const maps = buildRoutingMaps(texts, dir, { ...options, readFile })
  return Object.freeze({ ...maps, problems: Object.freeze([...problems, ...maps.problems]) })
}
