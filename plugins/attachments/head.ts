/**
 * The first bytes of a MIME part's decoded content without decoding all of it: magic-number
 * detection needs about a kilobyte, and a 20 MB base64 attachment should not be decoded in
 * full just to learn it is a PDF.
 */
import type { MimePart } from '../../src/pipeline/plugin.js'

const BASE64 = new Uint8Array(256)
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=')
  BASE64[c.charCodeAt(0)] = 1

function transferEncoding(part: MimePart): string {
  return (
    part.headers
      .find(([n]) => n.toLowerCase() === 'content-transfer-encoding')?.[1]
      .trim()
      .toLowerCase() ?? ''
  )
}

/**
 * The first `n` bytes of `part.content()` (fewer if the content is shorter), identical to
 * `part.content().subarray(0, n)`. Base64 is decoded from just enough of the body (junk
 * between groups skipped, as the full decode does); other encodings are not worth it and
 * use the full decode.
 */
export function contentHead(raw: Buffer, part: MimePart, n: number): Buffer {
  const encoding = transferEncoding(part)
  if (encoding === '' || encoding === '7bit' || encoding === '8bit' || encoding === 'binary')
    return raw.subarray(part.bodyStart, Math.min(part.end, part.bodyStart + n))
  if (encoding !== 'base64') return part.content().subarray(0, n)
  // Whole groups only: the first 4k alphabet characters decode to the first 3k bytes.
  const want = Math.ceil(n / 3) * 4
  const chars = Buffer.allocUnsafe(want)
  let count = 0
  for (let i = part.bodyStart; i < part.end && count < want; i++) {
    const c = raw[i] as number
    if (BASE64[c] === 1) chars[count++] = c
  }
  return Buffer.from(chars.subarray(0, count).toString('latin1'), 'base64').subarray(0, n)
}
