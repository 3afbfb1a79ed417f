/**
 * The user directory: one row per user, the official address and the home subdomain (the
 * server where the mailbox lives).
 *
 *     # official address       home subdomain
 *     ann@corp.example         a.corp.example
 *     bob@corp.example         a.corp.example
 *     carol@corp.example       b.corp.example
 *
 * `ann@corp.example` and `ann@<any>.corp.example` both reach Ann's mailbox,
 * `ann@a.corp.example` (a `+extension` is kept). `all@corp.example` reaches every user of
 * corp.example; `all@b.corp.example` the users whose home is b.corp.example. Lists and
 * aliases belong to the main domain (the `aliases` file). Moving a user = editing one row.
 *
 * The router reads the directory through {@link UserDirectory}, whose methods are async, so
 * a SQLite or PostgreSQL backend can implement it later; the text file is the first backend.
 */
import {
  extensionSplits,
  logicalLines,
  type MapProblem,
  normalizeDomain,
  type Parsed,
  parseAddress,
  type SourceRef,
  words,
} from './text.js'

/** One user of the directory. */
export interface DirectoryUser {
  /** The official address, lower case: `ann@corp.example`. */
  readonly address: string
  /** The local part, lower case: `ann`. */
  readonly local: string
  /** The main domain: `corp.example`. */
  readonly domain: string
  /** The home subdomain (or the main domain itself): `a.corp.example`. */
  readonly home: string
  /** Where the row is, for backends that have lines. */
  readonly source?: SourceRef
}

/** The local part that expands to every user of a domain or subdomain. */
export const ALL_USERS = 'all'

/** Lookups the router needs. Implementations must be deterministic for one loaded state. */
export interface UserDirectory {
  /** What backs it, for traces: the file name, or a database name later. */
  readonly name: string
  /**
   * The user `local@domain` reaches: `domain` is the user's main domain or any subdomain of
   * it (the most specific main domain wins). `local` is compared case-insensitively and
   * without extension; callers strip `+ext` themselves.
   */
  findUser(local: string, domain: string): Promise<DirectoryUser | undefined>
  /**
   * `all@domain`: every user of a main domain, or else every user whose home is `domain`;
   * in a stable order. Empty when the directory does not know the domain.
   */
  members(domain: string): Promise<readonly DirectoryUser[]>
  /** How many users there are. */
  count(): Promise<number>
}

/** A user found for an address, and the `+extension` carried to the home address. */
export interface UserMatch {
  readonly user: DirectoryUser
  readonly extension?: string
}

/** Find the user for `local@domain`: exact local part first, then without its `+extension`. */
export async function findDirectoryUser(
  directory: UserDirectory,
  local: string,
  domain: string,
): Promise<UserMatch | undefined> {
  const exact = await directory.findUser(local, domain)
  if (exact) return { user: exact }
  for (const { base, extension } of extensionSplits(local, '+')) {
    const user = await directory.findUser(base, domain)
    if (user) return { user, extension }
  }
  return undefined
}

/** The in-memory directory a `users` file loads into. */
class TextUserDirectory implements UserDirectory {
  readonly #byAddress = new Map<string, DirectoryUser>()
  readonly #byDomain = new Map<string, DirectoryUser[]>()
  readonly #byHome = new Map<string, DirectoryUser[]>()

  constructor(
    readonly name: string,
    users: readonly DirectoryUser[],
  ) {
    for (const user of users) {
      this.#byAddress.set(user.address, user)
      push(this.#byDomain, user.domain, user)
      push(this.#byHome, user.home, user)
    }
    Object.freeze(this)
  }

  async findUser(local: string, domain: string): Promise<DirectoryUser | undefined> {
    const name = local.toLowerCase()
    const labels = normalizeDomain(domain).split('.')
    // Most specific first, down to the last two labels (a bare TLD is never a main domain).
    for (let i = 0; i < Math.max(1, labels.length - 1); i++) {
      const user = this.#byAddress.get(`${name}@${labels.slice(i).join('.')}`)
      if (user) return user
    }
    return undefined
  }

  async members(domain: string): Promise<readonly DirectoryUser[]> {
    const key = normalizeDomain(domain)
    return this.#byDomain.get(key) ?? this.#byHome.get(key) ?? []
  }

  async count(): Promise<number> {
    return this.#byAddress.size
  }
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key)
  if (list) list.push(value)
  else map.set(key, [value])
}

/** An empty directory (no `users` file). */
export function emptyUserDirectory(name = 'users'): UserDirectory {
  return new TextUserDirectory(name, [])
}

/** A directory over rows already in memory (tests, benchmarks, other loaders). */
export function memoryUserDirectory(name: string, users: readonly DirectoryUser[]): UserDirectory {
  return new TextUserDirectory(name, users)
}

/** Parse a `users` file into a directory. Bad lines are reported and skipped. */
export function parseUsers(text: string, file: string): Parsed<UserDirectory> {
  const { map, problems } = parseUserRows(text, file)
  return { map: new TextUserDirectory(file, map), problems }
}

/** Parse a `users` file into its rows, in file order. Bad lines are reported and skipped. */
export function parseUserRows(text: string, file: string): Parsed<readonly DirectoryUser[]> {
  const users: DirectoryUser[] = []
  const seen = new Map<string, number>()
  const problems: MapProblem[] = []
  for (const { line, text: body } of logicalLines(text, false)) {
    const problem = (reason: string): void => {
      problems.push({ file, line, reason })
    }
    const fields = words(body)
    if (fields.length !== 2) {
      problem('expected "user@domain  home.subdomain"')
      continue
    }
    const address = parseAddress(fields[0] as string)
    if (!address || address.domain === '' || address.domain.startsWith('[')) {
      problem(`not a user@domain address: ${JSON.stringify(fields[0])}`)
      continue
    }
    const local = address.local.toLowerCase()
    if (local === ALL_USERS) {
      problem(`"${ALL_USERS}" is reserved: all@domain expands to every user`)
      continue
    }
    if (/\+/.test(local)) {
      problem(`a user name cannot contain "+" (it starts an extension): ${local}`)
      continue
    }
    const home = normalizeDomain(fields[1] as string)
    const homeAddress = parseAddress(`x@${home}`)
    if (!homeAddress || home.startsWith('[')) {
      problem(`not a domain name: ${JSON.stringify(fields[1])}`)
      continue
    }
    if (home !== address.domain && !home.endsWith(`.${address.domain}`)) {
      problem(`home ${home} is not ${address.domain} or a subdomain of it`)
      continue
    }
    const key = `${local}@${address.domain}`
    const first = seen.get(key)
    if (first !== undefined) {
      problem(`duplicate user ${key} (first on line ${first}); ignored`)
      continue
    }
    seen.set(key, line)
    users.push(Object.freeze({ address: key, local, domain: address.domain, home, source: { file, line } }))
  }
  return { map: users, problems }
}
