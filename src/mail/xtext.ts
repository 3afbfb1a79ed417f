/**
 * RFC 3461 xtext, the encoding of ESMTP parameter values (ENVID, ORCPT, XFORWARD's NAME and
 * HELO): `+XX` is one byte, every other character stands for itself.
 */
import { isUtf8 } from 'node:buffer'

/** Decode xtext; the bytes are read as UTF-8 (Postfix encodes a UTF-8 name byte by byte). Undefined when malformed. */
export function decodeXtext(text: string): string | undefined {
  if (!text.includes('+')) return text
  const parts: Buffer[] = []
  let start = 0
  for (let plus = text.indexOf('+'); plus !== -1; plus = text.indexOf('+', start)) {
    const hex = text.slice(plus + 1, plus + 3)
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined
    parts.push(Buffer.from(text.slice(start, plus), 'utf8'), Buffer.of(Number.parseInt(hex, 16)))
    start = plus + 3
  }
  parts.push(Buffer.from(text.slice(start), 'utf8'))
  const bytes = Buffer.concat(parts)
  return isUtf8(bytes) ? bytes.toString('utf8') : undefined
}

/** Encode as xtext: `+`, `=`, controls, space and every byte of a non-ASCII character as `+XX`. */
export function encodeXtext(text: string): string {
  let out = ''
  for (const ch of text) {
    const code = ch.codePointAt(0) as number
    if (code > 0x20 && code < 0x7f && ch !== '+' && ch !== '=') out += ch
    else
      for (const byte of Buffer.from(ch, 'utf8'))
        out += `+${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}
