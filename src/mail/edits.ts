import { isNonAscii } from './ascii.js'
import { headerEnd } from './message.js'

/** A change to the message's header, decided after the verdict. Checks never make these. */
export type HeaderEdit =
  | { readonly op: 'prepend'; readonly name: string; readonly value: string }
  | { readonly op: 'tagSubject'; readonly tag: string; readonly position?: 'start' | 'end' }
  /** Remove every field of this name (e.g. a sender's own forged `X-Spam-Flag`). */
  | { readonly op: 'remove'; readonly name: string }

/**
 * Fold a header field so no line passes ~78 characters (RFC 5322 §2.1.1): at spaces, and
 * inside a longer run of text after its commas (`tests=A,B,...`, as SpamAssassin folds it),
 * so that no list, however long, makes a line past the hard limit of 998.
 */
export function foldHeader(name: string, value: string, eol: string): string {
  const words = value.replace(/[\r\n]+/g, ' ').split(' ')
  let line = `${name}:`
  let out = ''
  const fits = (text: string) => line.length + text.length <= 78
  for (const word of words) {
    if (fits(` ${word}`)) {
      line += ` ${word}`
      continue
    }
    // Each piece ends after a comma; the first starts the word. A piece goes on the name's own
    // line however long it is: a field cannot begin on a continuation line.
    const pieces = word.split(/(?<=,)/)
    pieces.forEach((piece, i) => {
      const text = i === 0 ? ` ${piece}` : piece
      if (fits(text) || line === `${name}:`) line += text
      else {
        out += `${line}${eol}`
        line = `\t${piece}`
      }
    })
  }
  return `${out}${line}${eol}`
}

/** The line ending the message itself uses (CRLF unless its first line ends in a bare LF). */
export function lineEnding(raw: Buffer): string {
  const lf = raw.indexOf(0x0a)
  return lf > 0 && raw[lf - 1] === 0x0d ? '\r\n' : lf === -1 ? '\r\n' : '\n'
}

/** Split a header block into whole fields (each with its continuation lines and line ending). */
function fieldsOf(headerText: string): string[] {
  const fields: string[] = []
  for (const line of headerText.split(/(?<=\n)/)) {
    if ((line[0] === ' ' || line[0] === '\t') && fields.length > 0) fields[fields.length - 1] += line
    else fields.push(line)
  }
  return fields
}

function fieldName(field: string): string {
  return field
    .slice(0, Math.max(0, field.indexOf(':')))
    .trim()
    .toLowerCase()
}

/** Drop every field whose name is in `names` (lower case). */
export function removeFields(headerText: string, names: ReadonlySet<string>): string {
  return fieldsOf(headerText)
    .filter((field) => !names.has(fieldName(field)))
    .join('')
}

/** Keep only the fields whose name is in `names` (lower case), in order. */
export function pickFields(headerText: string, names: ReadonlySet<string>): string {
  return fieldsOf(headerText)
    .filter((field) => names.has(fieldName(field)))
    .join('')
}

/** An RFC 2047 encoded word at the start, or at the end, of a header value. */
const ENCODED_WORD_FIRST = /^=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=(\s|$)/
const ENCODED_WORD_LAST = /(^|\s)=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=$/

/**
 * A subject value with `tag` added, or undefined when it already has it there. A tag that is
 * not ASCII goes in as encoded words ({@link asHeaderText}); beside an encoded word of the
 * subject, the space between them goes inside ours, since space between two encoded words is
 * dropped when they are decoded (RFC 2047 §6.2).
 */
export function taggedSubject(value: string, tag: string, position: 'start' | 'end'): string | undefined {
  const text = asHeaderText(tag)
  if (value === '' || value === text) return value === '' ? text : undefined
  if (text === tag) {
    if (position === 'start' ? value.startsWith(tag) : value.endsWith(tag)) return undefined
    return position === 'start' ? `${tag} ${value}` : `${value} ${tag}`
  }
  // The tag as it goes beside plain text, and beside an encoded word: either form means tagged.
  if (position === 'start') {
    const [plain, inner] = [`${text} `, `${asHeaderText(`${tag} `)} `]
    if (value.startsWith(plain) || value.startsWith(inner)) return undefined
    return (ENCODED_WORD_FIRST.test(value) ? inner : plain) + value
  }
  const [plain, inner] = [` ${text}`, ` ${asHeaderText(` ${tag}`)}`]
  if (value.endsWith(plain) || value.endsWith(inner)) return undefined
  return value + (ENCODED_WORD_LAST.test(value) ? inner : plain)
}

/**
 * Text for a header field we write (a tag, a `header` action's value): as it is when it is
 * ASCII, else as RFC 2047 encoded words (UTF-8, base64), since the message's header may be
 * anything from 7-bit to raw 8-bit in another charset.
 */
export function asHeaderText(tag: string): string {
  if (!isNonAscii(tag)) return tag
  const words: string[] = []
  let chunk = ''
  // 39 bytes of UTF-8 are 52 of base64: a word of 64 characters, within the 75 of §2, and one
  // fits on a line after "Subject: " within 78.
  for (const char of tag) {
    if (Buffer.byteLength(chunk + char, 'utf8') > 39) {
      words.push(chunk)
      chunk = ''
    }
    chunk += char
  }
  words.push(chunk)
  return words.map((w) => `=?UTF-8?B?${Buffer.from(w, 'utf8').toString('base64')}?=`).join(' ')
}

/** Tag the first Subject field (or add one). Already-tagged stays as is. */
function tagSubject(headerText: string, tag: string, position: 'start' | 'end', eol: string): string {
  const fields = fieldsOf(headerText)
  const at = fields.findIndex((field) => fieldName(field) === 'subject')
  if (at === -1) return `${headerText}${foldHeader('Subject', taggedSubject('', tag, position) ?? tag, eol)}`
  const field = fields[at] as string
  const ending = field.endsWith('\r\n') ? '\r\n' : field.endsWith('\n') ? '\n' : ''
  const value = field
    .slice(field.indexOf(':') + 1, field.length - ending.length)
    .replace(/\r?\n[ \t]+/g, ' ')
    .trim()
  const tagged = taggedSubject(value, tag, position)
  if (tagged === undefined) return headerText
  fields[at] = foldHeader('Subject', tagged, eol).slice(0, ending === '' ? -eol.length : undefined)
  return fields.join('')
}

/**
 * The empty line that ends a header block as {@link headerEnd} found it (CRLF or LF, whatever
 * the lines before it use), or '' when the block has none.
 */
function emptyLineOf(block: string): string {
  if (block === '\r\n' || block === '\n') return block
  if (block.endsWith('\r\n\r\n')) return '\r\n'
  return block.endsWith('\n\n') ? '\n' : ''
}

/**
 * A header that begins with white space (malformed: there is no field for it to continue)
 * would continue the last field we prepend, and a reader would see neither. A first line
 * that is a field but for its indent (` From: a@example.org`) becomes that field; lines that
 * are not (and their continuations) go, as they belong to no field.
 */
function settleOrphan(block: string): string {
  const fields = fieldsOf(block)
  const first = fields[0] ?? ''
  if (!/^[ \t]/.test(first)) return block
  const unindented = first.replace(/^[ \t]+/, '')
  return /^[!-9;-~]+:/.test(unindented) ? unindented + fields.slice(1).join('') : fields.slice(1).join('')
}

/**
 * Apply header edits to raw message bytes. Returns the parts of the new message (so the body
 * is never copied); the body bytes stay exactly as received.
 */
export function applyEdits(raw: Buffer, edits: readonly HeaderEdit[]): Buffer[] {
  const eol = lineEnding(raw)
  const prepended = edits
    .filter((e) => e.op === 'prepend')
    .map((e) => foldHeader(e.name, asHeaderText(e.value), eol))
    .join('')
  const rewrites = edits.filter((e) => e.op !== 'prepend')
  const orphan = prepended !== '' && (raw[0] === 0x20 || raw[0] === 0x09)
  if (rewrites.length === 0 && !orphan) return [Buffer.from(prepended, 'utf8'), raw]
  const end = headerEnd(raw)
  // Header bytes may hold raw 8-bit text; latin1 maps bytes 1:1 so they survive the round trip.
  let headerText = raw.subarray(0, end).toString('latin1')
  // The empty line that ends the header: kept as it was, never added to a message without one.
  const separator = emptyLineOf(headerText)
  headerText = headerText.slice(0, headerText.length - separator.length)
  if (separator === '' && headerText !== '' && !headerText.endsWith('\n')) headerText += eol
  if (orphan) headerText = settleOrphan(headerText)
  const removed = new Set(rewrites.flatMap((e) => (e.op === 'remove' ? [e.name.toLowerCase()] : [])))
  if (removed.size > 0) headerText = removeFields(headerText, removed)
  for (const edit of rewrites)
    if (edit.op === 'tagSubject') headerText = tagSubject(headerText, edit.tag, edit.position ?? 'start', eol)
  return [
    Buffer.from(prepended, 'utf8'),
    Buffer.from(headerText, 'latin1'),
    Buffer.from(separator, 'latin1'),
    raw.subarray(end),
  ]
}
