import libmime from 'libmime'
import libqp from 'libqp'
import { headerEnd, parseHeaderBlock } from './message.js'

/**
 * One leaf entity of a MIME message: where it sits in the raw bytes and what it claims to
 * be. Built by our own walker rather than mailparser because the `strip` action needs each
 * part's byte range, which mailparser does not keep.
 */
export interface MimePart {
  /** IMAP-style path: `"1"` for a single-part message's body, `"2"`, `"1.3"` inside multiparts. */
  readonly id: string
  /**
   * Declared `type/subtype`, lower case; when absent `text/plain` (RFC 2045 §5.2), or
   * `message/rfc822` inside a `multipart/digest` (RFC 2046 §5.1.5).
   */
  readonly contentType: string
  /** `attachment` or `inline` when declared. */
  readonly disposition?: string
  /** Decoded file name (Content-Disposition `filename`, else Content-Type `name`). */
  readonly filename?: string
  /**
   * Content-Type's `name` when it differs from `filename`: mail clients differ in which of
   * the two they save the file under, so a check of names must look at both.
   */
  readonly otherName?: string
  /** The part's header fields, unfolded, in order. */
  readonly headers: ReadonlyArray<readonly [string, string]>
  /**
   * Bytes of `raw` the part occupies together with the delimiter line before it: removing
   * `[cutStart, end)` leaves a well-formed multipart. `[0, raw.length)` for a single part.
   */
  readonly cutStart: number
  /** First byte of the part's own header. */
  readonly start: number
  /** First byte of the part's body. */
  readonly bodyStart: number
  /** One past its last byte (the CRLF before the next delimiter is not the part's). */
  readonly end: number
  /** The body with its Content-Transfer-Encoding undone. */
  content(): Buffer
}

/** Limits so a hostile message cannot make the walk expensive. */
const MAX_DEPTH = 20
const MAX_PARTS = 2000

function header(headers: ReadonlyArray<readonly [string, string]>, name: string): string | undefined {
  return headers.find(([n]) => n.toLowerCase() === name)?.[1]
}

function decodeBody(body: Buffer, encoding: string | undefined): Buffer {
  switch (encoding?.trim().toLowerCase()) {
    case 'base64':
      return Buffer.from(body.toString('latin1').replace(/[^A-Za-z0-9+/=]/g, ''), 'base64')
    case 'quoted-printable':
      return libqp.decode(body.toString('latin1'))
    default:
      return body
  }
}

/**
 * What follows `--boundary` at `at` on a line that starts with it: `close` for
 * `--boundary--` (whatever trails it, as before), `open` for a delimiter line (only linear
 * white space up to the line end, RFC 2046 §5.1.1), `none` for a longer boundary that merely
 * starts with this one (`--xy` is not a delimiter of boundary `x`) or other text.
 */
function delimiterKind(raw: Buffer, at: number, to: number): 'open' | 'close' | 'none' {
  if (at + 1 < to && raw[at] === 0x2d && raw[at + 1] === 0x2d) return 'close'
  let i = at
  while (i < to && (raw[i] === 0x20 || raw[i] === 0x09)) i++
  return i >= to || raw[i] === 0x0d || raw[i] === 0x0a ? 'open' : 'none'
}

/**
 * Byte offsets of the delimiter lines `--boundary` inside `[from, to)`, up to and including
 * the closing `--boundary--` (anything after it is epilogue). `closed` tells whether the
 * closing delimiter was found.
 */
function delimiters(
  raw: Buffer,
  boundary: string,
  from: number,
  to: number,
): { marks: number[]; closed: boolean } {
  const marker = Buffer.from(`--${boundary}`, 'latin1')
  const marks: number[] = []
  let at = raw.indexOf(marker, from)
  while (at !== -1 && at < to) {
    if (at === from || raw[at - 1] === 0x0a) {
      const kind = delimiterKind(raw, at + marker.length, to)
      if (kind !== 'none') marks.push(at)
      if (kind === 'close') return { marks, closed: true }
    }
    at = raw.indexOf(marker, at + marker.length)
  }
  return { marks, closed: false }
}

/** Where the body of the entity starting at `start` begins; an empty header block is allowed. */
function bodyStartOf(raw: Buffer, start: number, end: number): number {
  // A part may have no header fields at all: its first line is then the blank separator.
  if (raw[start] === 0x0a && start < end) return start + 1
  if (raw[start] === 0x0d && raw[start + 1] === 0x0a && start + 1 < end) return start + 2
  return start + headerEnd(raw.subarray(start, end))
}

/**
 * Header values are read as latin1 (one char per byte). A raw 8-bit value that is valid
 * UTF-8 (RFC 6532 mail, or a mailer that never encoded the name) is reinterpreted as UTF-8,
 * so a file name reads as sent instead of as mojibake.
 */
function utf8IfValid(value: string): string {
  if (!/[\x80-\xff]/.test(value)) return value
  const bytes = Buffer.from(value, 'latin1')
  // Characters above U+00FF did not come from raw bytes (already decoded): leave them.
  if (bytes.toString('latin1') !== value) return value
  const text = bytes.toString('utf8')
  return text.includes('\ufffd') ? value : text
}

/** Index just past the end of the line that starts at `at`. */
function lineEndAfter(raw: Buffer, at: number, to: number): number {
  const lf = raw.indexOf(0x0a, at)
  return lf === -1 || lf >= to ? to : lf + 1
}

/** Where the line break before `at` starts (CRLF or LF belong to the delimiter, RFC 2046 §5.1.1). */
function breakBefore(raw: Buffer, at: number, floor: number): number {
  if (at - 1 >= floor && raw[at - 1] === 0x0a)
    return at - 2 >= floor && raw[at - 2] === 0x0d ? at - 2 : at - 1
  return at
}

/** A multipart entity inside the message: what `strip` cuts when all its leaves go. */
export interface MimeContainer {
  readonly id: string
  readonly cutStart: number
  readonly end: number
}

interface Walk {
  readonly raw: Buffer
  readonly parts: MimePart[]
  readonly containers: MimeContainer[]
  /** Why the walk left something out (a limit it reached), if it did. */
  incomplete?: string
}

function walkEntity(
  walk: Walk,
  id: string,
  cutStart: number,
  start: number,
  end: number,
  depth: number,
  defaultType: string,
): void {
  if (walk.parts.length >= MAX_PARTS) {
    walk.incomplete = `more than ${MAX_PARTS} MIME parts`
    return
  }
  const { raw } = walk
  const bodyStart = bodyStartOf(raw, start, end)
  const headers = parseHeaderBlock(raw.subarray(start, bodyStart).toString('latin1'))
  const type = libmime.parseHeaderValue(utf8IfValid(header(headers, 'content-type') ?? defaultType))
  const contentType = type.value.trim().toLowerCase() || defaultType
  const boundary = type.params.boundary
  if (contentType.startsWith('multipart/') && boundary && depth >= MAX_DEPTH)
    walk.incomplete = `multiparts nested more than ${MAX_DEPTH} deep`
  if (contentType.startsWith('multipart/') && boundary && depth < MAX_DEPTH) {
    if (id !== '') walk.containers.push({ id, cutStart, end })
    // Inside multipart/digest a part without Content-Type is a message (RFC 2046 §5.1.5).
    const childType = contentType === 'multipart/digest' ? 'message/rfc822' : 'text/plain'
    const { marks, closed } = delimiters(raw, boundary, bodyStart, end)
    for (let i = 0; i + 1 < marks.length; i++) {
      const mark = marks[i] as number
      const next = marks[i + 1] as number
      const partStart = lineEndAfter(raw, mark, end)
      const partEnd = Math.max(partStart, breakBefore(raw, next, partStart))
      walkEntity(
        walk,
        id ? `${id}.${i + 1}` : `${i + 1}`,
        breakBefore(raw, mark, bodyStart),
        partStart,
        partEnd,
        depth + 1,
        childType,
      )
    }
    // A multipart without a closing delimiter still has its last part up to the end.
    const last = marks[marks.length - 1]
    if (last !== undefined && !closed) {
      const partStart = lineEndAfter(raw, last, end)
      walkEntity(
        walk,
        id ? `${id}.${marks.length}` : `${marks.length}`,
        breakBefore(raw, last, bodyStart),
        partStart,
        end,
        depth + 1,
        childType,
      )
    }
    return
  }
  const disposition = header(headers, 'content-disposition')
  const parsedDisposition =
    disposition === undefined ? undefined : libmime.parseHeaderValue(utf8IfValid(disposition))
  // An empty filename= names nothing: Content-Type's name= still does (as mailparser reads it).
  const filename = decodedName(parsedDisposition?.params.filename || type.params.name)
  const typeName = decodedName(type.params.name)
  const encoding = header(headers, 'content-transfer-encoding')
  let decoded: Buffer | undefined
  walk.parts.push({
    id: id || '1',
    contentType,
    ...(parsedDisposition?.value ? { disposition: parsedDisposition.value.trim().toLowerCase() } : {}),
    ...(filename ? { filename } : {}),
    ...(typeName && filename !== typeName ? { otherName: typeName } : {}),
    headers,
    cutStart,
    start,
    bodyStart,
    end,
    content() {
      decoded ??= decodeBody(raw.subarray(bodyStart, end), encoding)
      return decoded
    },
  })
}

/**
 * Every leaf part of a message, in order, with decoded names and lazy decoded contents.
 * `message/rfc822` parts are leaves here (their contents are another message).
 */
export function mimeParts(raw: Buffer): MimePart[] {
  return mimeStructure(raw).parts
}

/**
 * The leaf parts and the nested multipart containers (not the top level), in order, and why
 * the walk left something out, if it reached one of its limits.
 */
export function mimeStructure(raw: Buffer): {
  parts: MimePart[]
  containers: MimeContainer[]
  incomplete?: string
} {
  const walk: Walk = { raw, parts: [], containers: [] }
  walkEntity(walk, '', 0, 0, raw.length, 0, 'text/plain')
  const { parts, containers, incomplete } = walk
  return incomplete === undefined ? { parts, containers } : { parts, containers, incomplete }
}

/** A `filename`/`name` parameter's value with its encoded words decoded; undefined for none or empty. */
function decodedName(raw: string | undefined): string | undefined {
  return raw ? libmime.decodeWords(raw) : undefined
}
