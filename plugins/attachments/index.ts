/**
 * attachments — MailScanner's filename and filetype rules: every attachment's name, its
 * content type by magic bytes, and the names inside zip archives (listed from the central
 * directory, never extracted) are checked against a rules file, first match wins. A denied
 * file is `ATTACHMENT_BANNED` (category `banned`), with the MIME part to strip and the
 * rule's reason for the recipient. Password-protected archives are banned too (unless
 * `allowEncrypted`); archives that go past a listing limit or cannot be read, and attached
 * messages nested too deep, are `unscannable`.
 */
import { join } from 'node:path'
import { z } from 'zod'
import { packageRoot } from '../../src/package-root.js'
import {
  type CheckContext,
  createMessageView,
  definePlugin,
  type Hit,
  type MimePart,
  type OptionsEnv,
} from '../../src/pipeline/plugin.js'
import { contentHead } from './head.js'
import { detectType, type FileType, HEAD_BYTES } from './magic.js'
import { judgeNames, loadRules, type Match, type NamedMatch, type RuleSet, RulesError } from './rules.js'
import { hasEndRecord, type InflateBudget, isZipName, listZip, type ZipLimits } from './zip.js'

/** The rules shipped with mailscreen. */
export const DEFAULT_RULES = join(packageRoot, 'rules', 'attachments.rules')

/** At most this many evidence lines per hit; the rest are counted. */
const MAX_EVIDENCE = 10

const options = (env: OptionsEnv) =>
  z
    .object({
      /**
       * The rules file: an absolute path, or relative to the config file's directory.
       * Default: the shipped `rules/attachments.rules`.
       */
      rules: z.string().min(1).optional(),
      /** Let password-protected zip entries through (MailScanner's default is to block them). */
      allowEncrypted: z.boolean().default(false),
      /** List the names inside zip attachments and check them with the same rules. */
      listZip: z.boolean().default(true),
      /** Zip levels opened: 1 = the attached zip only, 3 = a zip in a zip in the attached zip. */
      maxZipDepth: z.number().int().min(1).max(10).default(3),
      /** Zip entries listed per attachment, all nesting levels together. */
      maxZipEntries: z.number().int().min(1).max(1_000_000).default(1000),
      /**
       * Sum of the uncompressed sizes a zip attachment declares, all levels together; also what
       * nested zips may inflate to in one message, all attachments together.
       */
      maxZipBytes: z
        .number()
        .int()
        .min(1)
        .max(2 * 1024 ** 3)
        .default(100 * 1024 ** 2),
      /** Uncompressed : compressed size of one zip entry (entries over 1 MiB). */
      maxZipRatio: z.number().min(1).default(100),
      /** Message levels opened: 1 = the message only, 5 = four attached messages (message/rfc822) deep. */
      maxMessageDepth: z.number().int().min(1).max(20).default(5),
    })
    .strict()
    .transform((o, ctx) => {
      const file = o.rules === undefined ? DEFAULT_RULES : env.path(o.rules)
      try {
        return { ...o, rules: file, ruleSet: loadRules(file) }
      } catch (err) {
        if (!(err instanceof RulesError)) throw err
        for (const problem of err.problems)
          ctx.addIssue({ code: 'custom', message: problem, path: ['rules'] })
        return z.NEVER
      }
    })

export type AttachmentsOptions = z.output<ReturnType<typeof options>>

const SYMBOLS = {
  ATTACHMENT_BANNED: {
    description: 'A file name or file type a deny rule matched (evidence: file: reason (rule))',
    weight: 0,
    category: 'banned',
  },
  ATTACHMENT_ENCRYPTED: {
    description: 'A password-protected (encrypted) zip entry: its content cannot be checked',
    weight: 0,
    category: 'banned',
  },
  ATTACHMENT_ZIP_LIMIT: {
    description: 'A zip went past a listing limit (depth, entries, declared size, compression ratio)',
    weight: 0,
    category: 'unscannable',
  },
  ATTACHMENT_ZIP_UNREADABLE: {
    description: 'A zip attachment (or a zip nested in one) whose directory or data cannot be read',
    weight: 0,
    category: 'unscannable',
  },
  ATTACHMENT_MIME_LIMIT: {
    description:
      'The MIME structure went past what is walked (2,000 parts, multiparts 20 deep): the parts beyond were not checked',
    weight: 0,
    category: 'unscannable',
  },
  ATTACHMENT_TOO_DEEP: {
    description: 'Attached messages nested deeper than maxMessageDepth: the inner ones were not checked',
    weight: 0,
    category: 'unscannable',
  },
} as const

type AttachmentSymbol = keyof typeof SYMBOLS

/**
 * A name as it may appear in evidence, logs and notices: control and text-direction
 * characters shown as `\u{..}` (a name is untrusted and must not break a header line or
 * reorder the text around it), at most 150 characters.
 */
export function shownName(name: string): string {
  let safe = ''
  for (const c of name) {
    const code = c.codePointAt(0) as number
    const hidden =
      code < 0x20 ||
      (code >= 0x7f && code <= 0x9f) ||
      code === 0x200e ||
      code === 0x200f ||
      (code >= 0x202a && code <= 0x202e) ||
      (code >= 0x2066 && code <= 0x2069)
    safe += hidden ? `\\u{${code.toString(16)}}` : c
  }
  return safe.length <= 150 ? safe : `${safe.slice(0, 100)}…${safe.slice(-49)}`
}

/** An attachment: a named part, a declared attachment, or an application/* part (checked by magic only). */
function isAttachment(part: MimePart): boolean {
  return (
    part.filename !== undefined ||
    part.disposition === 'attachment' ||
    part.contentType.startsWith('application/')
  )
}

function isMessage(part: MimePart): boolean {
  return part.contentType === 'message/rfc822' || part.contentType === 'message/global'
}

const ZIP_TYPES = new Set(['application/zip', 'application/x-zip-compressed', 'application/x-zip'])

/** Findings per symbol and per top-level MIME part, in order. */
class Findings {
  private readonly bySymbol = new Map<AttachmentSymbol, Map<string, string[]>>()

  add(symbol: AttachmentSymbol, part: string, evidence: string): void {
    const parts = this.bySymbol.get(symbol) ?? new Map<string, string[]>()
    this.bySymbol.set(symbol, parts)
    const list = parts.get(part)
    if (list) list.push(evidence)
    else parts.set(part, [evidence])
  }

  /** One hit per symbol and part, its evidence capped at {@link MAX_EVIDENCE} lines. */
  hits(): Hit[] {
    const hits: Hit[] = []
    for (const [symbol, parts] of this.bySymbol)
      for (const [part, evidence] of parts) {
        const shown =
          evidence.length <= MAX_EVIDENCE
            ? evidence
            : [...evidence.slice(0, MAX_EVIDENCE - 1), `… and ${evidence.length - (MAX_EVIDENCE - 1)} more`]
        hits.push({ symbol, evidence: shown, parts: [part] })
      }
    return hits
  }
}

/** What one message's check needs besides the part at hand. */
interface Scan {
  readonly ruleSet: RuleSet
  readonly opts: AttachmentsOptions
  readonly limits: ZipLimits
  /** What nested zips may still inflate to, for the whole message. */
  readonly budget: InflateBudget
  readonly findings: Findings
  readonly log: CheckContext['log']
}

function describeMatch(match: Match): string {
  const { rule, detail } = match
  return `${rule.reason} (${rule.where}${detail ? `: ${detail}` : ''})`
}

/** What decided, saying under which name when that is not the one shown (`also named evil.exe: ...`). */
function describeNamed({ match, name }: NamedMatch, shown: string | undefined): string {
  return name === undefined || name === shown
    ? describeMatch(match)
    : `also named ${shownName(name)}: ${describeMatch(match)}`
}

/** Record a ban: the finding charged to part `id`, and its log line with the rule that decided. */
function ban(scan: Scan, id: string, evidence: string, match: Match, fields: Record<string, string>): void {
  scan.findings.add('ATTACHMENT_BANNED', id, evidence)
  const { where, text, log } = match.rule
  scan.log.info({ part: id, ...fields, rule: where, pattern: text, note: log }, 'attachment banned')
}

/** List a zip attachment and judge every name in it. */
function checkZip(scan: Scan, part: MimePart, id: string, display: string): void {
  const { ruleSet, opts, limits, findings, log } = scan
  const listing = listZip(part.content(), limits, scan.budget)
  const encrypted: string[] = []
  for (const entry of listing.names) {
    if (entry.encrypted) encrypted.push(shownName(entry.name))
    const judged = judgeNames(ruleSet, [entry.name, ...entry.otherNames], {})
    if (judged?.match.rule.action !== 'deny') continue
    const container = [...entry.within].reverse().map(shownName).concat(display).join(' in ')
    const evidence = `${shownName(entry.name)} (in ${container}): ${describeNamed(judged, entry.name)}`
    ban(scan, id, evidence, judged.match, { file: display, entry: shownName(entry.name) })
  }
  if (encrypted.length > 0 && !opts.allowEncrypted) {
    const names = encrypted.length <= 3 ? encrypted.join(', ') : `${encrypted.slice(0, 3).join(', ')}, …`
    findings.add(
      'ATTACHMENT_ENCRYPTED',
      id,
      `${display}: password-protected archive (${names}); its content cannot be checked for viruses`,
    )
  }
  for (const problem of listing.problems)
    findings.add(
      problem.kind === 'limit' ? 'ATTACHMENT_ZIP_LIMIT' : 'ATTACHMENT_ZIP_UNREADABLE',
      id,
      `${display}: ${problem.detail}`,
    )
  if (listing.problems.length > 0)
    log.info({ part: id, file: display, problems: listing.problems.length }, 'archive not fully listed')
}

/** Judge one attachment: its name and content by the rules, then the names inside it if it is a zip. */
function checkAttachment(
  scan: Scan,
  raw: Buffer,
  part: MimePart,
  id: string,
  within: readonly string[],
): void {
  const { ruleSet, opts } = scan
  const own =
    part.filename === undefined ? `unnamed ${part.contentType} part ${part.id}` : shownName(part.filename)
  const display = [own, ...[...within].reverse()].join(' in ')
  let computed = false
  let detected: FileType | undefined
  const detect = (): FileType | undefined => {
    if (!computed) {
      detected = detectType(contentHead(raw, part, HEAD_BYTES))
      computed = true
    }
    return detected
  }
  const names = [part.filename, part.otherName].filter((n): n is string => n !== undefined)
  const judged = judgeNames(ruleSet, names, { contentType: part.contentType, detect })
  if (judged?.match.rule.action === 'deny') {
    ban(scan, id, `${display}: ${describeNamed(judged, part.filename)}`, judged.match, { file: display })
    // The whole part goes; what is inside it does not matter any more.
    return
  }
  if (!opts.listZip) return
  const type = detect()
  if (type?.id === 'zip') {
    checkZip(scan, part, id, display)
    return
  }
  // Zip tools also open a zip behind other bytes (a self-extractor stub); one with no zip
  // structure at all opens nowhere and is not a risk.
  const claimsZip = names.some(isZipName) || ZIP_TYPES.has(part.contentType)
  if (type === undefined && claimsZip && hasEndRecord(part.content())) checkZip(scan, part, id, display)
}

/**
 * uuencode's first line (`begin 644 name`; `begin-base64 644 name` from `uuencode -m`). Mail
 * clients still unpack such a block in a plain-text body and offer it as an attachment.
 */
const UUENCODE_BEGIN = /^begin(?:-base64)? +[0-7]{3,4} +(.*?)[ \t]*\r?$/gm

/** Judge the names of the files uuencoded in a plain-text body, as MailScanner does. */
function checkUuencoded(
  scan: Scan,
  raw: Buffer,
  part: MimePart,
  id: string,
  within: readonly string[],
): void {
  const encoding = part.headers
    .find(([name]) => name.toLowerCase() === 'content-transfer-encoding')?.[1]
    .trim()
    .toLowerCase()
  // Unencoded text shows `begin` as it is: most bodies are passed over without decoding them.
  // Quoted-printable can spell it otherwise (`=62egin`, a soft break), so it is decoded.
  const identity =
    encoding === undefined || encoding === '7bit' || encoding === '8bit' || encoding === 'binary'
  if (identity && !raw.subarray(part.bodyStart, part.end).includes('begin')) return
  for (const [, name] of part.content().toString('latin1').matchAll(UUENCODE_BEGIN)) {
    if (!name) continue
    const judged = judgeNames(scan.ruleSet, [name], {})
    if (judged?.match.rule.action !== 'deny') continue
    const display = [`${shownName(name)} (uuencoded in part ${part.id})`, ...[...within].reverse()].join(
      ' in ',
    )
    ban(scan, id, `${display}: ${describeMatch(judged.match)}`, judged.match, { file: display })
  }
}

/**
 * Walk leaf parts; an attached message (message/rfc822) is walked too, its findings
 * charged to the outer part that carries it (what `strip` can remove).
 */
function checkParts(
  scan: Scan,
  raw: Buffer,
  parts: readonly MimePart[],
  outer: string | undefined,
  within: readonly string[],
): void {
  for (const part of parts) {
    const id = outer ?? part.id
    if (isAttachment(part)) checkAttachment(scan, raw, part, id, within)
    else if (part.contentType === 'text/plain') checkUuencoded(scan, raw, part, id, within)
    if (!isMessage(part)) continue
    const name = part.filename === undefined ? `attached message ${part.id}` : shownName(part.filename)
    if (within.length + 1 >= scan.opts.maxMessageDepth) {
      scan.findings.add(
        'ATTACHMENT_TOO_DEEP',
        id,
        `${[name, ...[...within].reverse()].join(' in ')}: attached messages nested more than ${scan.opts.maxMessageDepth - 1} deep were not checked`,
      )
      continue
    }
    const inner = createMessageView(part.content())
    const incomplete = inner.partsIncomplete()
    if (incomplete) scan.findings.add('ATTACHMENT_MIME_LIMIT', id, `${name}: ${incomplete}`)
    checkParts(scan, inner.raw, inner.parts(), id, [...within, name])
  }
}

export default definePlugin({
  name: 'attachments',
  description: 'Filename and filetype rules for attachments and the names inside zip archives',
  options,
  symbols: SYMBOLS,
  timeoutMs: 10_000,
  onError: 'tempfail',
  setup(opts) {
    const limits: ZipLimits = {
      maxDepth: opts.maxZipDepth,
      maxEntries: opts.maxZipEntries,
      maxUncompressedBytes: opts.maxZipBytes,
      maxRatio: opts.maxZipRatio,
    }
    return async ({ message, log }) => {
      const scan: Scan = {
        ruleSet: opts.ruleSet,
        opts,
        limits,
        budget: { left: opts.maxZipBytes },
        findings: new Findings(),
        log,
      }
      checkParts(scan, message.raw, message.parts(), undefined, [])
      // A name past the walker's limits would go unchecked: the message is unscannable.
      const incomplete = message.partsIncomplete()
      const whole: Hit[] = incomplete ? [{ symbol: 'ATTACHMENT_MIME_LIMIT', evidence: [incomplete] }] : []
      return [...scan.findings.hits(), ...whole]
    }
  },
})
