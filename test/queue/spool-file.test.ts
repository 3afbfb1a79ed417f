import { describe, expect, it } from 'vitest'
import { newQueueId } from '../../src/queue/ids.js'
import { decodeSpoolFile, encodeHeader, SPOOL_FORMAT, type SpoolHeader } from '../../src/queue/spool-file.js'

const header: SpoolHeader = {
  v: SPOOL_FORMAT,
  id: newQueueId(),
  envelope: {
    mailFrom: '',
    rcptTo: ['rcpt@example.net'],
    client: { address: '::1' },
    peer: { address: '::1' },
    receivedAt: 1,
  },
}

describe('encodeHeader', () => {
  it('writes one line of JSON ending in LF', () => {
    const bytes = encodeHeader(header)
    expect(bytes.at(-1)).toBe(0x0a)
    expect(bytes.indexOf(0x0a)).toBe(bytes.length - 1)
    expect(JSON.parse(bytes.toString())).toEqual(header)
  })

  it('keeps a newline inside a value on the one line', () => {
    const bytes = encodeHeader({
      ...header,
      scan: { verdict: 'spam', score: 1, symbols: [], reason: 'a\nb' },
    })
    expect(bytes.indexOf(0x0a)).toBe(bytes.length - 1)
  })
})

describe('decodeSpoolFile', () => {
  it('splits a file into its header and the exact message bytes', () => {
    const message = Buffer.from('Subject: x\r\n\r\n\x00\xff\n', 'latin1')
    const decoded = decodeSpoolFile(Buffer.concat([encodeHeader(header), message]))
    expect(decoded.header).toEqual(header)
    expect(decoded.message.equals(message)).toBe(true)
  })

  it('throws on a file without a header line', () => {
    expect(() => decodeSpoolFile(Buffer.from('nothing'))).toThrow()
  })

  it('throws on a header of another format version', () => {
    expect(() => decodeSpoolFile(Buffer.from(`${JSON.stringify({ ...header, v: 2 })}\n`))).toThrow()
  })

  it('throws on a header without an envelope', () => {
    expect(() =>
      decodeSpoolFile(Buffer.from(`${JSON.stringify({ v: SPOOL_FORMAT, id: header.id })}\n`)),
    ).toThrow()
  })
})
