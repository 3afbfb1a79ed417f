/**
 * The attachment rules file: parsing (every error as `file:line: reason`) and first-match
 * evaluation. Pure: no I/O besides {@link loadRules} reading the file.
 *
 * One rule per line: `allow|deny <pattern> <reason> [| <log text>]`. See
 * `rules/attachments.rules` for the documented syntax and the README for examples.
 */
import { readFileSync } from 'node:fs'
import { basename } from 'node:path'
import { FAMILIES, type FileType, isTypeName, mismatch, TYPE_IDS, typeMatches } from './magic.js'

export type Action = 'allow' | 'deny'

/** What a rule looks at. */
export type Pattern =
  /** The name ends with one of these (lower case, with the leading dot: `.exe`, `.tar.gz`). */
  | { readonly kind: 'extension'; readonly extensions: readonly string[] }
  /** A regular expression tested on the name (trailing dots and spaces removed, case kept). */
  | { readonly kind: 'regex'; readonly regex: RegExp }
  /** A document/image/archive extension followed by a program one: `invoice.pdf.exe`. */
  | { readonly kind: 'double-extension' }
  /** The content's type by its first bytes: a type id (`pe`) or a family (`executable`). */
  | { readonly kind: 'type'; readonly type: string }
  /** The content contradicts the name's extension or the declared Content-Type. */
  | { readonly kind: 'mismatch' }

export interface Rule {
  readonly action: Action
  readonly pattern: Pattern
  /** The pattern as written, for evidence and logs. */
  readonly text: string
  /** Shown to the recipient (strip notices); '' on an allow line without one. */
  readonly reason: string
  /** Extra text for the log line, if the rule gives one. */
  readonly log?: string
  /** `file:line`, with the file's base name: `attachments.rules:12`. */
  readonly where: string
}

/** A parsed, frozen rules file. */
export interface RuleSet {
  readonly file: string
  readonly rules: readonly Rule[]
  /** Some rule reads content (`type:` or `mismatch`), so attachments' first bytes are needed. */
  readonly readsContent: boolean
}

/** A rules file that does not parse: every problem, each `file:line: reason`. */
export class RulesError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'))
    this.name = 'RulesError'
  }
}

/**
 * Extensions the `double-extension` check treats as "looks harmless" (documents, images,
 * media, archives) and as "runs code". `report.pdf.exe` and `photo.jpg   .scr` match; so
 * does any name whose harmless-looking extension is followed by a program one.
 */
export const HARMLESS_EXTENSIONS = [
  'pdf',
  'doc',
  'docx',
  'docm',
  'xls',
  'xlsx',
  'xlsm',
  'ppt',
  'pptx',
  'rtf',
  'txt',
  'csv',
  'odt',
  'ods',
  'odp',
  'jpg',
  'jpeg',
  'png',
  'gif',
  'bmp',
  'tif',
  'tiff',
  'htm',
  'html',
  'mp3',
  'mp4',
  'avi',
  'mov',
  'wav',
  'zip',
  'rar',
  '7z',
  'eml',
  'msg',
] as const
export const PROGRAM_EXTENSIONS = [
  'exe',
  'com',
  'scr',
  'pif',
  'bat',
  'cmd',
  'vbs',
  'vbe',
  'js',
  'jse',
  'wsf',
  'wsh',
  'hta',
  'cpl',
  'msi',
  'lnk',
  'ps1',
  'jar',
  'reg',
  'dll',
] as const

const DOUBLE_EXTENSION = new RegExp(
  `\\.(${HARMLESS_EXTENSIONS.join('|')})\\s*\\.(${PROGRAM_EXTENSIONS.join('|')})$`,
)

const ALLOWED_FLAGS = new Set(['i', 'm', 's', 'u', 'v'])

/**
 * The name as Windows would save it: trailing dots and spaces dropped (`evil.exe. ` runs as
 * `evil.exe`), lower case. Extension and double-extension patterns look at this.
 */
export function normalizeName(name: string): string {
  return trimName(name).toLowerCase()
}

/** The name without trailing dots and white space, case kept: what `/regex/` patterns see. */
export function trimName(name: string): string {
  return name.replace(/[.\s]+$/u, '')
}

/** Split off a leading `/regex/flags`; throws a message on a malformed one. */
function splitRegex(text: string): { regex: RegExp; source: string; rest: string } {
  let inClass = false
  let i = 1
  for (; i < text.length; i++) {
    const c = text[i]
    if (c === '\\') i++
    else if (c === '[') inClass = true
    else if (c === ']') inClass = false
    else if (c === '/' && !inClass) break
  }
  if (i >= text.length) throw new Error('unterminated regular expression (no closing /)')
  const body = text.slice(1, i)
  const flags = /^[a-z]*/.exec(text.slice(i + 1))?.[0] ?? ''
  const after = text.slice(i + 1 + flags.length)
  if (after !== '' && !/^\s/.test(after))
    throw new Error(`unexpected ${JSON.stringify(after.split(/\s/)[0])} after the regular expression`)
  if (body === '') throw new Error('empty regular expression')
  for (const flag of flags)
    if (!ALLOWED_FLAGS.has(flag))
      throw new Error(`regular expression flag "${flag}" is not allowed (use i, m, s, u or v)`)
  let regex: RegExp
  try {
    regex = new RegExp(body, flags)
  } catch (err) {
    throw new Error(`bad regular expression: ${(err as Error).message}`)
  }
  return { regex, source: text.slice(0, i + 1 + flags.length), rest: after }
}

function parsePattern(token: string): Pattern {
  if (token === 'double-extension') return { kind: 'double-extension' }
  if (token === 'mismatch') return { kind: 'mismatch' }
  if (token.startsWith('type:')) {
    const type = token.slice('type:'.length)
    if (!isTypeName(type))
      throw new Error(
        `unknown file type ${JSON.stringify(type)} (families: ${FAMILIES.join(', ')}; types: ${TYPE_IDS.join(', ')})`,
      )
    return { kind: 'type', type }
  }
  const extensions = token.split(',').map((item) => {
    const ext = /^\*?(\.[^\s*?/\\,|]+)$/.exec(item)?.[1]
    if (ext === undefined || ext === '.' || ext.endsWith('.'))
      throw new Error(
        `unknown pattern ${JSON.stringify(item)}: expected *.ext or .ext (comma separated), /regex/flags, double-extension, type:<type> or mismatch`,
      )
    return ext.toLowerCase()
  })
  return { kind: 'extension', extensions }
}

function parseLine(line: string, where: string): Rule {
  const action = /^(\S+)/.exec(line)?.[1] ?? ''
  if (action !== 'allow' && action !== 'deny')
    throw new Error(`expected allow or deny at the start of the line, found ${JSON.stringify(action)}`)
  const afterAction = line.slice(action.length).trimStart()
  if (afterAction === '') throw new Error(`${action} without a pattern`)
  let pattern: Pattern
  let text: string
  let rest: string
  if (afterAction.startsWith('/')) {
    const split = splitRegex(afterAction)
    pattern = { kind: 'regex', regex: split.regex }
    text = split.source
    rest = split.rest
  } else {
    text = /^\S+/.exec(afterAction)?.[0] ?? ''
    pattern = parsePattern(text)
    rest = afterAction.slice(text.length)
  }
  const bar = rest.indexOf('|')
  const reason = (bar === -1 ? rest : rest.slice(0, bar)).trim()
  const log = bar === -1 ? '' : rest.slice(bar + 1).trim()
  if (action === 'deny' && reason === '')
    throw new Error('a deny rule needs a reason after the pattern (it is shown to the recipient)')
  return Object.freeze({
    action,
    pattern: Object.freeze(pattern),
    text,
    reason,
    ...(log ? { log } : {}),
    where,
  })
}

/**
 * Parse a rules file's text. `file` names it in errors. Throws {@link RulesError} with every
 * problem (not just the first), so one run shows all lines to fix.
 */
export function parseRules(text: string, file: string): RuleSet {
  const rules: Rule[] = []
  const problems: string[] = []
  const name = basename(file)
  const lines = text.split('\n')
  for (const [index, raw] of lines.entries()) {
    const line = raw.replace(/\r$/, '').trim()
    if (line === '' || line.startsWith('#')) continue
    try {
      rules.push(parseLine(line, `${name}:${index + 1}`))
    } catch (err) {
      problems.push(`${file}:${index + 1}: ${(err as Error).message}`)
    }
  }
  if (problems.length > 0) throw new RulesError(problems)
  return Object.freeze({
    file,
    rules: Object.freeze(rules),
    readsContent: rules.some((r) => r.pattern.kind === 'type' || r.pattern.kind === 'mismatch'),
  })
}

/** Read and parse a rules file; an unreadable file is a {@link RulesError} too. */
export function loadRules(file: string): RuleSet {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new RulesError([`${file}: cannot read the rules file: ${(err as Error).message}`])
  }
  return parseRules(text, file)
}

/** What the rules are asked about: an attachment, or a name listed inside an archive. */
export interface Candidate {
  /** The file name (for archive entries, the path inside the archive). */
  readonly name?: string
  /** The declared Content-Type (MIME parts only). */
  readonly contentType?: string
  /**
   * The content's type by magic, computed on first call. Absent when the content cannot be
   * read (names listed from an archive): `type:` and `mismatch` rules then never match.
   */
  readonly detect?: () => FileType | undefined
}

/** The rule that decided, and what it found (for `type:` and `mismatch`: the content's type). */
export interface Match {
  readonly rule: Rule
  readonly detail?: string
}

interface Names {
  readonly trimmed: string
  readonly normalized: string
}

function matchOne(rule: Rule, candidate: Candidate, names: Names | undefined): Match | undefined {
  const { pattern } = rule
  switch (pattern.kind) {
    case 'extension':
      return names !== undefined && pattern.extensions.some((ext) => names.normalized.endsWith(ext))
        ? { rule }
        : undefined
    case 'regex':
      return names !== undefined && pattern.regex.test(names.trimmed) ? { rule } : undefined
    case 'double-extension':
      return names !== undefined && DOUBLE_EXTENSION.test(names.normalized) ? { rule } : undefined
    case 'type': {
      const detected = candidate.detect?.()
      return detected && typeMatches(detected, pattern.type)
        ? { rule, detail: `the content is ${detected.label}` }
        : undefined
    }
    case 'mismatch': {
      const detected = candidate.detect?.()
      // The name as Windows saves it (`report.pdf.` is `report.pdf`), as the other rules see it.
      const why = detected && mismatch(detected, names?.trimmed, candidate.contentType)
      return why ? { rule, detail: why } : undefined
    }
  }
}

/** The first rule that matches the candidate, or undefined when none does (the file is allowed). */
export function firstMatch(set: RuleSet, candidate: Candidate): Match | undefined {
  const trimmed = candidate.name === undefined ? undefined : trimName(candidate.name)
  const names = trimmed === undefined ? undefined : { trimmed, normalized: trimmed.toLowerCase() }
  for (const rule of set.rules) {
    const match = matchOne(rule, candidate, names)
    if (match) return match
  }
  return undefined
}

/** The rule that decided a file that goes by several names, and the name it decided on. */
export interface NamedMatch {
  readonly match: Match
  readonly name: string | undefined
}

/**
 * Judge a file that goes by several names (a part's `filename=` and `name=`, a zip entry's
 * stored name and Info-ZIP Unicode Path), each also as cut at its first NUL (as unzip and any
 * C program cut it: `evil.exe\0.txt` is saved as `evil.exe`): the first rule that denies any
 * of them, else what decided the first name. Without names, what decides the nameless file.
 */
export function judgeNames(
  set: RuleSet,
  names: readonly string[],
  candidate: Omit<Candidate, 'name'>,
): NamedMatch | undefined {
  const all = new Set<string>()
  for (const name of names) {
    all.add(name)
    const nul = name.indexOf('\0')
    if (nul !== -1) all.add(name.slice(0, nul))
  }
  if (all.size === 0) {
    const match = firstMatch(set, candidate)
    return match && { match, name: undefined }
  }
  let first: NamedMatch | undefined
  for (const name of all) {
    const match = firstMatch(set, { ...candidate, name })
    if (match?.rule.action === 'deny') return { match, name }
    if (name === names[0]) first = match && { match, name }
  }
  return first
}
