import { describe, expect, it } from 'vitest'
import { DotDecoder } from '../../src/ingress/dot-decoder.js'

/** Feed `chunks` and collect what comes out; `rest` is everything after the terminator. */
function decode(chunks: readonly string[]): { body: string; rest: string | undefined } {
  const out: Buffer[] = []
  const decoder = new DotDecoder((data) => out.push(Buffer.from(data)))
  let rest: string | undefined
  for (const chunk of chunks) {
    if (rest !== undefined) rest += chunk
    else rest = decoder.feed(Buffer.from(chunk, 'latin1'))?.toString('latin1')
  }
  return { body: Buffer.concat(out).toString('latin1'), rest }
}

/** The RFC 5321 4.5.2 rules written the obvious way, on the whole input at once. */
function reference(input: string): { body: string; rest: string | undefined } {
  const framed = `\r\n${input}`
  const end = framed.indexOf('\r\n.\r\n')
  if (end === -1) return { body: framed.replaceAll('\r\n.', '\r\n').slice(2), rest: undefined }
  return {
    body: framed
      .slice(0, end + 2)
      .replaceAll('\r\n.', '\r\n')
      .slice(2),
    rest: framed.slice(end + 5),
  }
}

/** Every way to cut `text` in two and in three pieces. */
function* splits(text: string): Generator<string[]> {
  for (let i = 0; i <= text.length; i++) {
    for (let j = i; j <= text.length; j++) yield [text.slice(0, i), text.slice(i, j), text.slice(j)]
  }
}

describe('DotDecoder', () => {
  it('passes a plain message through and stops at CRLF.CRLF', () => {
    const result = decode(['Subject: hi\r\n\r\nHello\r\n.\r\n'])
    expect(result).toEqual({ body: 'Subject: hi\r\n\r\nHello\r\n', rest: '' })
  })

  it('decodes an empty message', () => {
    expect(decode(['.\r\n'])).toEqual({ body: '', rest: '' })
  })

  it('removes the stuffed dot at the start of any line, the first one included', () => {
    const result = decode(['..first\r\nmid\r\n..\r\n...three\r\n.x\r\n.\r\n'])
    expect(result.body).toBe('.first\r\nmid\r\n.\r\n..three\r\nx\r\n')
  })

  it('keeps a CR that follows a stuffed dot', () => {
    expect(decode(['a\r\n.\rb\r\n.\r\n']).body).toBe('a\r\n\rb\r\n')
    expect(decode(['a\r\n.\r', 'b\r\n.\r\n']).body).toBe('a\r\n\rb\r\n')
    expect(decode(['a\r\n.\r', '\r\n.\r\n']).body).toBe('a\r\n\r\r\n')
  })

  it('finds the terminator wherever the chunks split it, in two or three pieces', () => {
    const input = 'A: b\r\n\r\n..dot\r\nx\r\r\n.\r\nMAIL FROM:<a@b>\r\n'
    const expected = { body: 'A: b\r\n\r\n.dot\r\nx\r\r\n', rest: 'MAIL FROM:<a@b>\r\n' }
    let cases = 0
    for (const pieces of splits(input)) {
      const { body, rest } = decode(pieces)
      expect({ body, rest }).toEqual(expected)
      cases++
    }
    expect(cases).toBeGreaterThan(800)
  })

  it('finds the terminator when fed one byte at a time', () => {
    const { body, rest } = decode('..a\r\n\r\n.\r\nQUIT\r\n'.split(''))
    expect(body).toBe('.a\r\n\r\n')
    expect(rest).toBe('QUIT\r\n')
  })

  it('does not end on a dot line with bare LF (no SMTP smuggling)', () => {
    const input = 'a\n.\nb\r\n.\nc\n.\r\nd\r.\r\ne\r\n.\r\n'
    const result = decode([input])
    expect(result.body).toBe('a\n.\nb\r\n\nc\n.\r\nd\r.\r\ne\r\n')
    expect(result.rest).toBe('')
  })

  it('passes bare-LF lines through unchanged', () => {
    expect(decode(['one\ntwo\n\nthree\r\n.\r\n']).body).toBe('one\ntwo\n\nthree\r\n')
  })

  it('returns the pipelined bytes after the terminator and hands them back untouched later', () => {
    const out: Buffer[] = []
    const decoder = new DotDecoder((data) => out.push(data))
    expect(decoder.feed(Buffer.from('body\r\n'))).toBeUndefined()
    expect(decoder.done).toBe(false)
    const rest = decoder.feed(Buffer.from('.\r\nMAIL FROM:<>\r\nRCPT TO:<a@b>\r\n'))
    expect(rest?.toString()).toBe('MAIL FROM:<>\r\nRCPT TO:<a@b>\r\n')
    expect(decoder.done).toBe(true)
    expect(decoder.feed(Buffer.from('QUIT\r\n'))?.toString()).toBe('QUIT\r\n')
    expect(Buffer.concat(out).toString()).toBe('body\r\n')
  })

  it('agrees with the reference decoder on random input in random chunks', () => {
    let seed = 42
    const random = (n: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
      return seed % n
    }
    const alphabet = ['\r', '\n', '.', 'a', '\r\n', '\r\n.']
    for (let round = 0; round < 2000; round++) {
      let input = ''
      const length = 1 + random(40)
      for (let i = 0; i < length; i++) input += alphabet[random(alphabet.length)]
      input += '\r\n.\r\nTAIL'
      const chunks: string[] = []
      for (let at = 0; at < input.length; ) {
        const size = 1 + random(6)
        chunks.push(input.slice(at, at + size))
        at += size
      }
      const expected = reference(input)
      const { body, rest } = decode(chunks)
      expect({ input, body, rest }).toEqual({ input, ...expected })
    }
  })
})
