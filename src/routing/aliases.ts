/**
 * `aliases` in the Sendmail/Postfix format (aliases(5)):
 *
 *     # name: target, target, ...
 *     postmaster:   root
 *     root:         \root, sysadm@unix.example.edu
 *     staff:        ann, bob@example.edu,
 *                   carol@cs.example.edu          # a line starting with whitespace continues
 *     "help desk":  helpdesk
 *     students-l:   :include:lists/students       # relative to this file's folder
 *     owner-students-l: ann
 *
 * - Names are local parts, matched case-insensitively, for every domain in
 *   `local-host-names`. A name with `@` is refused (use `recipientmap` for whole addresses).
 * - Targets: `name` (a local name in the domain being expanded, looked up again), `user@domain`
 *   (looked up again when the domain is ours), `\name` (the local mailbox `name`, never
 *   expanded further), `:include:/path` (a list file, one or more comma-separated addresses
 *   per line, `#` comments; read when the maps are loaded; nested includes allowed).
 *   A target equal to the alias itself (`root: root, other`) means the local mailbox, as in
 *   Sendmail and Postfix, not a loop.
 * - RFC 822 comments in target lists (`bob@example.com (Bob, sales)`) are dropped.
 * - `|command` and `/file` targets are reported and ignored: mailscreen relays mail, it
 *   does not run programs or write mailbox files.
 * - `user+ext` falls back to the alias `user` (the extension is dropped, as Postfix does for
 *   aliases). `-` is not an extension delimiter here, so `owner-list` and `list-request` are
 *   ordinary names.
 * - `owner-NAME`: when NAME is expanded and `owner-NAME` exists, the envelope sender of the
 *   copies made by that expansion becomes `owner-NAME@domain`, so delivery errors go to the
 *   list owner (Sendmail). A null sender stays null.
 * - A name listed twice: the first entry counts, the second is reported (Postfix).
 */
import { readFileSync } from 'node:fs'
import { dirname, isAbsolute, resolve } from 'node:path'
import {
  extensionSplits,
  logicalLines,
  type MailAddress,
  type MapProblem,
  type Parsed,
  parseAddress,
  type SourceRef,
  unquoteLocal,
} from './text.js'

/** One target of an alias. */
export type AliasTarget =
  | {
      /** An address or bare name, routed again. */
      readonly kind: 'address'
      readonly address: MailAddress
      readonly source: SourceRef
    }
  | {
      /** `\name`: the local mailbox, not expanded further. */
      readonly kind: 'mailbox'
      readonly local: string
      readonly source: SourceRef
    }
  | {
      /** `:include:path`, read at load time. */
      readonly kind: 'include'
      /** The absolute path that was read. */
      readonly path: string
      readonly targets: readonly AliasTarget[]
      /** Why the file could not be used (the targets are then empty). */
      readonly error?: string
      readonly source: SourceRef
    }

/** One alias: its name (lower case, unquoted) and targets in file order. */
export interface AliasEntry {
  readonly name: string
  readonly targets: readonly AliasTarget[]
  readonly source: SourceRef
}

/** A parsed aliases file. */
export interface AliasMap {
  readonly entries: ReadonlyMap<string, AliasEntry>
}

export interface AliasParseOptions {
  /** Reads an `:include:` file; throws when it cannot. Default: `fs.readFileSync(path, 'utf8')`. */
  readonly readFile?: (path: string) => string
  /** Nested `:include:` levels allowed (default 10). */
  readonly maxIncludeDepth?: number
}

/** The lookup form of a local part: unquoted, lower case. */
export function localKey(local: string): string {
  return unquoteLocal(local).toLowerCase()
}

/** A target list split into its targets. */
interface TargetList {
  readonly targets: string[]
  /** A `(` comment ran to the end of the line: whatever followed it was taken as comment. */
  readonly unclosedComment: boolean
}

/**
 * Split a target list at commas outside double quotes, angle brackets and RFC 822 comments,
 * and drop the comments, as Postfix reads aliases: `bob@example.com (Bob Smith, sales)` is
 * `bob@example.com`. Comments nest, and `\` escapes a character in them and in quotes.
 */
function splitTargets(text: string): TargetList {
  // Most lists quote nothing: one split instead of a character loop (files of 100,000s of lines).
  if (!text.includes('"') && !text.includes('<') && !text.includes('(')) {
    const targets = text
      .split(',')
      .map((t) => t.trim())
      .filter((t) => t !== '')
    return { targets, unclosedComment: false }
  }
  const out: string[] = []
  let current = ''
  let quoted = false
  let angle = 0
  let comment = 0
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string
    if (c === '\\' && (quoted || comment > 0) && i + 1 < text.length) {
      if (comment === 0) current += c + (text[i + 1] as string)
      i++
      continue
    }
    if (comment > 0) {
      if (c === '(') comment++
      else if (c === ')') comment--
      // Nothing in its place: `frank(x)@example.com` is frank@example.com (RFC 822 §3.4.3).
      continue
    }
    if (c === '"') quoted = !quoted
    else if (!quoted && c === '(') {
      comment = 1
      continue
    } else if (!quoted && c === '<') angle++
    else if (!quoted && c === '>') angle = Math.max(0, angle - 1)
    if (c === ',' && !quoted && angle === 0) {
      out.push(current.trim())
      current = ''
    } else current += c
  }
  out.push(current.trim())
  return { targets: out.filter((t) => t !== ''), unclosedComment: comment > 0 }
}

/** Report a comment left open: the targets after it were read as part of it. */
function checkComment(list: TargetList, source: SourceRef, ctx: Context): string[] {
  if (list.unclosedComment)
    ctx.problems.push({ ...source, reason: 'a "(" comment is not closed: the rest of the line is ignored' })
  return list.targets
}

/** The index of the first `:` outside double quotes, or -1. */
function nameEnd(text: string): number {
  let quoted = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (c === '\\' && quoted) i++
    else if (c === '"') quoted = !quoted
    else if (c === ':' && !quoted) return i
  }
  return -1
}

interface Context {
  readonly readFile: (path: string) => string
  readonly maxIncludeDepth: number
  readonly problems: MapProblem[]
  /** Include files being read, outermost first (cycle check). */
  readonly includeStack: string[]
}

/** Classify and parse one target; undefined (with a problem) when it is unusable. */
function parseTarget(raw: string, source: SourceRef, ctx: Context): AliasTarget | undefined {
  let text = raw
  // A whole-token quoted string may wrap a command, a file or an include with spaces.
  if (text.length >= 2 && text.startsWith('"') && text.endsWith('"')) {
    const inner = text.slice(1, -1)
    if (/^[|/]|^:include:/i.test(inner)) text = inner
  }
  const problem = (reason: string): undefined => {
    ctx.problems.push({ ...source, reason })
    return undefined
  }
  if (text.startsWith('|'))
    return problem(`${raw}: program delivery is not supported (mailscreen relays mail); target ignored`)
  if (text.startsWith('/'))
    return problem(`${raw}: delivery to a file is not supported (mailscreen relays mail); target ignored`)
  const include = text.startsWith(':') ? /^:include:\s*(.*)$/i.exec(text) : null
  if (include) return readInclude((include[1] as string).trim(), source, ctx)
  if (text.startsWith('\\')) {
    const address = parseAddress(text.slice(1))
    if (address?.domain !== '') return problem(`${raw}: \\ must be followed by a local name`)
    return { kind: 'mailbox', local: address.local, source }
  }
  const address = parseAddress(text)
  if (!address) return problem(`not an address: ${JSON.stringify(raw)}`)
  return { kind: 'address', address, source }
}

/** Read and parse an `:include:` list; problems in it name the list file and its lines. */
function readInclude(pathText: string, source: SourceRef, ctx: Context): AliasTarget | undefined {
  if (pathText === '') {
    ctx.problems.push({ ...source, reason: ':include: without a file name' })
    return undefined
  }
  const path = isAbsolute(pathText) ? pathText : resolve(dirname(source.file), pathText)
  const fail = (error: string): AliasTarget => {
    ctx.problems.push({ ...source, reason: `:include:${pathText}: ${error}` })
    return { kind: 'include', path, targets: [], error, source }
  }
  if (ctx.includeStack.includes(path)) return fail('includes itself (through nested :include:)')
  if (ctx.includeStack.length >= ctx.maxIncludeDepth)
    return fail(`more than ${ctx.maxIncludeDepth} nested :include: levels`)
  let text: string
  try {
    text = ctx.readFile(path)
  } catch (err) {
    return fail(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  ctx.includeStack.push(path)
  const targets: AliasTarget[] = []
  // A list file has no continuation lines: each line holds one or more comma-separated targets.
  for (const { line, text: body } of logicalLines(text, false)) {
    for (const raw of checkComment(splitTargets(body), { file: path, line }, ctx)) {
      const target = parseTarget(raw, { file: path, line }, ctx)
      if (target) targets.push(target)
    }
  }
  ctx.includeStack.pop()
  return { kind: 'include', path, targets, source }
}

/**
 * Parse an aliases file. Every bad line or target is reported with file and line; the rest
 * still loads. An alias whose targets are all unusable is kept (with no targets), so mail to
 * it is refused as "expands to nothing" rather than "unknown user".
 */
export function parseAliases(text: string, file: string, options: AliasParseOptions = {}): Parsed<AliasMap> {
  const ctx: Context = {
    readFile: options.readFile ?? ((path) => readFileSync(path, 'utf8')),
    maxIncludeDepth: options.maxIncludeDepth ?? 10,
    problems: [],
    includeStack: [],
  }
  const entries = new Map<string, AliasEntry>()
  for (const { line, text: body, orphan } of logicalLines(text, true)) {
    const source = { file, line }
    if (orphan) {
      ctx.problems.push({
        ...source,
        reason: 'continuation line (starts with whitespace) with no alias before it',
      })
      continue
    }
    const colon = nameEnd(body)
    if (colon < 0) {
      ctx.problems.push({ ...source, reason: 'expected "name: target, target, ..."' })
      continue
    }
    const rawName = body.slice(0, colon).trim()
    const name = parseAddress(rawName)
    if (!name) {
      ctx.problems.push({ ...source, reason: `not an alias name: ${JSON.stringify(rawName)}` })
      continue
    }
    if (name.domain !== '') {
      ctx.problems.push({
        ...source,
        reason: `alias names have no domain (${rawName}); use recipientmap for whole addresses`,
      })
      continue
    }
    const key = localKey(name.local)
    const first = entries.get(key)
    if (first) {
      ctx.problems.push({
        ...source,
        reason: `duplicate alias ${key} (first on line ${first.source.line}); ignored`,
      })
      continue
    }
    const rawTargets = checkComment(splitTargets(body.slice(colon + 1)), source, ctx)
    if (rawTargets.length === 0) ctx.problems.push({ ...source, reason: `alias ${key} has no targets` })
    const targets: AliasTarget[] = []
    for (const raw of rawTargets) {
      const target = parseTarget(raw, source, ctx)
      if (target) targets.push(target)
    }
    entries.set(key, { name: key, targets, source })
  }
  return { map: { entries }, problems: ctx.problems }
}

/** An alias found for a local part, and the `+extension` that was dropped to find it. */
export interface AliasMatch {
  readonly entry: AliasEntry
  readonly extension?: string
}

/** Find the alias for a local part: exact name first, then without its `+extension`. */
export function lookupAlias(map: AliasMap, local: string): AliasMatch | undefined {
  const key = localKey(local)
  const exact = map.entries.get(key)
  if (exact) return { entry: exact }
  if (!key.includes('+')) return undefined
  for (const split of extensionSplits(key, '+')) {
    const entry = map.entries.get(split.base)
    if (entry) return { entry, extension: split.extension }
  }
  return undefined
}

/** Every address target of an alias, with `:include:` lists flattened. */
export function flattenTargets(targets: readonly AliasTarget[]): AliasTarget[] {
  return targets.flatMap((t) => (t.kind === 'include' ? flattenTargets(t.targets) : [t]))
}

/**
 * Find alias loops when the maps load (`a: b`, `b: a`), so they are reported before any
 * mail meets them. An edge goes from an alias to every target that is a bare name or an
 * address in one of our domains and names another alias. Self-references (`root: root`)
 * are local delivery, not loops. Each loop is reported once, at the line of its first alias
 * in file order. (The router detects loops again per message, so this check only informs.)
 */
export function findAliasLoops(map: AliasMap, isLocal: (domain: string) => boolean): MapProblem[] {
  const edges = new Map<string, string[]>()
  for (const entry of map.entries.values()) {
    const next: string[] = []
    for (const target of flattenTargets(entry.targets)) {
      if (target.kind !== 'address') continue
      if (target.address.domain !== '' && !isLocal(target.address.domain)) continue
      const match = lookupAlias(map, target.address.local)
      if (match && match.entry.name !== entry.name) next.push(match.entry.name)
    }
    edges.set(entry.name, next)
  }
  const problems: MapProblem[] = []
  const reported = new Set<string>()
  const state = new Map<string, 'open' | 'done'>()
  const report = (cycle: string[]): void => {
    const id = [...cycle].sort().join(' ')
    if (reported.has(id)) return
    reported.add(id)
    const first = cycle
      .map((n) => map.entries.get(n) as AliasEntry)
      .sort((a, b) => a.source.line - b.source.line)[0] as AliasEntry
    const start = cycle.indexOf(first.name)
    const ordered = [...cycle.slice(start), ...cycle.slice(0, start), first.name]
    problems.push({ ...first.source, reason: `alias loop: ${ordered.join(' → ')}` })
  }
  // Depth first with a stack of our own, not recursion: a chain of thousands of aliases is a
  // valid file, and must not overflow the call stack.
  for (const root of edges.keys()) {
    if (state.has(root)) continue
    const path: Array<{ name: string; next: number }> = [{ name: root, next: 0 }]
    state.set(root, 'open')
    while (path.length > 0) {
      const frame = path[path.length - 1] as { name: string; next: number }
      const targets = edges.get(frame.name) ?? []
      if (frame.next >= targets.length) {
        path.pop()
        state.set(frame.name, 'done')
        continue
      }
      const next = targets[frame.next++] as string
      const seen = state.get(next)
      if (seen === 'open') {
        const names = path.map((f) => f.name)
        report(names.slice(names.indexOf(next)))
      } else if (seen === undefined) {
        state.set(next, 'open')
        path.push({ name: next, next: 0 })
      }
    }
  }
  return problems
}
