import { type ParsedMail, simpleParser } from 'mailparser'
import { type MimePart, mimeStructure } from './mime-parts.js'

/**
 * A read-only view of one message for checks. The raw bytes are read once; the MIME parse
 * (mailparser) happens on first use of {@link MessageView.parsed} and is shared by every check.
 */
export interface MessageView {
  /** Size of the raw message in bytes. */
  readonly size: number
  /** The raw message exactly as received (headers and body). Do not mutate. */
  readonly raw: Buffer
  /** The unfolded values of a header, in order; cheap, no MIME parse. Name is case-insensitive. */
  header(name: string): readonly string[]
  /** The full MIME parse, done once on first call and shared by all checks. */
  parsed(): Promise<ParsedMail>
  /** Every leaf MIME part with its file name and byte range; walked once, on first call. */
  parts(): readonly MimePart[]
  /**
   * Why {@link parts} is not every part, when the walk reached one of its limits (2,000 parts,
   * multiparts 20 deep); undefined when it is. A check that must see every part says so.
   */
  partsIncomplete(): string | undefined
}

/** Where the header block ends: the index of the first byte of the body (or raw.length). */
export function headerEnd(raw: Buffer): number {
  // A message that starts with an empty line has an empty header (RFC 5322 §2.1).
  if (raw[0] === 0x0a) return 1
  if (raw[0] === 0x0d && raw[1] === 0x0a) return 2
  const crlf = raw.indexOf('\r\n\r\n')
  const lf = raw.indexOf('\n\n')
  if (crlf === -1 && lf === -1) return raw.length
  if (crlf === -1) return lf + 2
  if (lf === -1 || crlf < lf) return crlf + 4
  return lf + 2
}

/** Split a header block into unfolded `[name, value]` fields, in order. */
export function parseHeaderBlock(block: string): Array<[string, string]> {
  const fields: Array<[string, string]> = []
  for (const line of block.split(/\r?\n/)) {
    if (line === '') continue
    const last = fields[fields.length - 1]
    if ((line[0] === ' ' || line[0] === '\t') && last) {
      last[1] += ` ${line.trim()}`
      continue
    }
    const colon = line.indexOf(':')
    if (colon <= 0) continue
    fields.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()])
  }
  return fields
}

/** Build a {@link MessageView} over raw message bytes. */
export function createMessageView(raw: Buffer): MessageView {
  let fields: Array<[string, string]> | undefined
  let parse: Promise<ParsedMail> | undefined
  let walked: { parts: MimePart[]; incomplete?: string } | undefined
  return {
    size: raw.length,
    raw,
    header(name) {
      fields ??= parseHeaderBlock(raw.subarray(0, headerEnd(raw)).toString('latin1'))
      const wanted = name.toLowerCase()
      return fields.filter(([n]) => n.toLowerCase() === wanted).map(([, v]) => v)
    },
    parsed() {
      parse ??= simpleParser(raw, { skipHtmlToText: true, skipTextToHtml: true, skipTextLinks: true })
      return parse
    },
    parts() {
      walked ??= mimeStructure(raw)
      return walked.parts
    },
    partsIncomplete() {
      walked ??= mimeStructure(raw)
      return walked.incomplete
    },
  }
}
