import { headerEnd } from './message.js'

/** A change to the message's header, decided after the verdict. Checks never make these. */
export type HeaderEdit =
  | { readonly op: 'prepend'; readonly name: string; readonly value: string }
  | { readonly op: 'tagSubject'; readonly tag: string }

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

const SUBJECT_LINE = /^subject:/i

/** Insert `tag` at the start of the first Subject field, or add one. Already-tagged stays as is. */
function tagSubject(headerText: string, tag: string, eol: string): string {
  const lines = headerText.split(/(?<=\n)/)
  const at = lines.findIndex((line) => SUBJECT_LINE.test(line))
  if (at === -1) return `${headerText}Subject: ${tag}${eol}`
  const line = lines[at] as string
  const ending = line.endsWith('\r\n') ? '\r\n' : line.endsWith('\n') ? '\n' : ''
  const value = line.slice(line.indexOf(':') + 1, line.length - ending.length).trim()
  if (value.startsWith(tag)) return headerText
  lines[at] = `Subject: ${value === '' ? tag : `${tag} ${value}`}${ending}`
  return lines.join('')
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
  const tags = edits.filter((e) => e.op === 'tagSubject')
  if (tags.length === 0) return [Buffer.from(prepended, 'utf8'), raw]
  const end = headerEnd(raw)
  // Header bytes may hold raw 8-bit text; latin1 maps bytes 1:1 so they survive the round trip.
  let headerText = raw.subarray(0, end).toString('latin1')
  const separator = headerText.endsWith(`${eol}${eol}`) ? eol : ''
  if (separator) headerText = headerText.slice(0, -eol.length)
  else if (end === raw.length && !headerText.endsWith(eol) && headerText !== '') headerText += eol
  for (const edit of tags) headerText = tagSubject(headerText, edit.tag, eol)
  return [
    Buffer.from(prepended, 'utf8'),
    Buffer.from(headerText, 'latin1'),
    Buffer.from(separator || (end === raw.length ? eol : ''), 'latin1'),
    raw.subarray(end),
  ]
}
