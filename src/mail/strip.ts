import { isAscii } from 'node:buffer'
import { randomBytes } from 'node:crypto'
import libqp from 'libqp'
import { lineEnding, pickFields, removeFields } from './edits.js'
import { headerEnd } from './message.js'
import { type MimeContainer, mimeStructure } from './mime-parts.js'

/** The top-level fields that describe the body; they move into the wrapped original. */
const BODY_FIELDS = new Set(['content-type', 'content-transfer-encoding', 'content-disposition'])
const CONTENT_FIELDS = new Set(['mime-version', ...BODY_FIELDS])

/** What to take out: part IDs from {@link MimePart.id}, or the whole body. */
export type StripTarget = ReadonlySet<string> | 'all'

/**
 * Remove parts from a message and say so. The result is a `multipart/mixed` message with the
 * original's header fields: first a text part holding `notice`, then the original body with
 * the named parts cut out (its own content fields kept), unless nothing of it is left.
 * Pure; the original bytes are not changed.
 */
export function stripParts(raw: Buffer, target: StripTarget, notice: string): Buffer {
  const eol = lineEnding(raw)
  const end = headerEnd(raw)
  const headerText = raw
    .subarray(0, end)
    .toString('latin1')
    .replace(/(\r?\n)+$/, '')
  const { parts: leaves, containers } = mimeStructure(raw)
  const removedLeaves = target === 'all' ? leaves : leaves.filter((p) => target.has(p.id))
  const everything = removedLeaves.length === leaves.length
  // A multipart left without any part is not allowed (RFC 2046 §5.1.1): cut the container instead.
  const gone = new Set(removedLeaves.map((p) => p.id))
  const emptied = containers.filter((c) => {
    const inside = leaves.filter((p) => p.id.startsWith(`${c.id}.`))
    return inside.length > 0 && inside.every((p) => gone.has(p.id))
  })
  const removed: Span[] = [
    ...emptied,
    ...removedLeaves.filter((p) => !emptied.some((c) => p.id.startsWith(`${c.id}.`))),
  ]
  const boundary = `=_mailscreen_${randomBytes(12).toString('hex')}`
  const noticeBody = libqp.wrap(libqp.encode(Buffer.from(notice.replace(/\r?\n/g, '\r\n'), 'utf8')), 76)
  const other = removeFields(`${headerText}${eol}`, CONTENT_FIELDS).replace(/(\r?\n)$/, '')
  const kept = other === '' ? [] : [other]
  const body = everything ? [] : cutOut(raw.subarray(end), removed, end)
  const encoding = outerEncoding(headerText, body)
  const chunks: Buffer[] = [
    Buffer.from(
      [
        ...kept,
        'MIME-Version: 1.0',
        `Content-Type: multipart/mixed; boundary="${boundary}"`,
        ...(encoding ? [`Content-Transfer-Encoding: ${encoding}`] : []),
        '',
        'This message was changed by a content filter: parts of it were removed.',
        `--${boundary}`,
        'Content-Type: text/plain; charset=utf-8',
        'Content-Transfer-Encoding: quoted-printable',
        'Content-Disposition: inline',
        '',
        noticeBody.replace(/\r?\n/g, eol),
        '',
      ].join(eol),
      'latin1',
    ),
  ]
  if (!everything) {
    // The original body keeps the fields that describe it (MIME-Version belongs to the top).
    const contentFields = pickFields(`${headerText}${eol}`, BODY_FIELDS)
    chunks.push(Buffer.from(`--${boundary}${eol}${contentFields}${eol}`, 'latin1'))
    chunks.push(...body)
    chunks.push(Buffer.from(eol, 'latin1'))
  }
  chunks.push(Buffer.from(`--${boundary}--${eol}`, 'latin1'))
  return Buffer.concat(chunks)
}

/**
 * The new top level's Content-Transfer-Encoding: a multipart holding 8-bit octets must say
 * 8bit or binary (RFC 2045 §6.4), else a next hop takes it for 7-bit. The original's own, when
 * it said one of those; 8bit when the kept body has 8-bit octets; none (7bit) otherwise.
 */
function outerEncoding(headerText: string, body: readonly Buffer[]): string | undefined {
  const declared = pickFields(`${headerText}\n`, new Set(['content-transfer-encoding']))
  const said = declared
    .slice(declared.indexOf(':') + 1)
    .trim()
    .toLowerCase()
  if (said === '8bit' || said === 'binary') return said
  return body.some((piece) => !isAscii(piece)) ? '8bit' : undefined
}

type Span = Pick<MimeContainer, 'cutStart' | 'end'>

/** The body with each removed span's `[cutStart, end)` taken out (offsets are into the whole message). */
function cutOut(body: Buffer, removed: readonly Span[], bodyOffset: number): Buffer[] {
  const pieces: Buffer[] = []
  let at = 0
  for (const part of [...removed].sort((a, b) => a.cutStart - b.cutStart)) {
    const from = part.cutStart - bodyOffset
    if (from < at) continue
    pieces.push(body.subarray(at, from))
    at = part.end - bodyOffset
  }
  pieces.push(body.subarray(at))
  return pieces
}
