import { headerEnd } from './message.js'

/** A change to the message's header, decided after the verdict. Checks never make these. */
export type HeaderEdit =
  | { readonly op: 'prepend'; readonly name: string; readonly value: string }
  | { readonly op: 'tagSubject'; readonly tag: string; readonly position?: 'start' | 'end' }
  /** Remove every field of this name (e.g. a sender's own forged `X-Spam-Flag`). */
  | { readonly op: 'remove'; readonly name: string }

/** Fold a header field at spaces so no line passes ~78 characters (RFC 5322 §2.1.1). */
export function foldHeader(name: string, value: string, eol: string): string {
  const words = value.replace(/[\r\n]+/g, ' ').split(' ')
  let line = `${name}:`
  let out = ''
  for (const word of words) {
    if (line.length + 1 + word.length > 78 && line.trim() !== `${name}:`) {
      out += `${line}${eol}`
      line = `\t${word}`
    } else line += ` ${word}`
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

/** A subject value with `tag` added, or undefined when it already has it there. */
export function taggedSubject(value: string, tag: string, position: 'start' | 'end'): string | undefined {
  if (position === 'start' ? value.startsWith(tag) : value.endsWith(tag)) return undefined
  return value === '' ? tag : position === 'start' ? `${tag} ${value}` : `${value} ${tag}`
}

/** Tag the first Subject field (or add one). Already-tagged stays as is. */
function tagSubject(headerText: string, tag: string, position: 'start' | 'end', eol: string): string {
  const fields = fieldsOf(headerText)
  const at = fields.findIndex((field) => fieldName(field) === 'subject')
  if (at === -1) return `${headerText}Subject: ${tag}${eol}`
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
 * Apply header edits to raw message bytes. Returns the parts of the new message (so the body
 * is never copied); the body bytes stay exactly as received.
 */
export function applyEdits(raw: Buffer, edits: readonly HeaderEdit[]): Buffer[] {
  const eol = lineEnding(raw)
  const prepended = edits
    .filter((e) => e.op === 'prepend')
    .map((e) => foldHeader(e.name, e.value, eol))
    .join('')
  const rewrites = edits.filter((e) => e.op !== 'prepend')
  if (rewrites.length === 0) return [Buffer.from(prepended, 'utf8'), raw]
  const end = headerEnd(raw)
  // Header bytes may hold raw 8-bit text; latin1 maps bytes 1:1 so they survive the round trip.
  let headerText = raw.subarray(0, end).toString('latin1')
  // The empty line that ends the header: kept as it was, never added to a message without one.
  const separator =
    end === raw.length ? '' : headerText.endsWith(`${eol}${eol}`) || headerText === eol ? eol : ''
  if (separator) headerText = headerText.slice(0, -eol.length)
  else if (end === raw.length && !headerText.endsWith(eol) && headerText !== '') headerText += eol
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
