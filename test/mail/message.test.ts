import { describe, expect, it } from 'vitest'
import { createMessageView, headerEnd, parseHeaderBlock } from '../../src/mail/message.js'

describe('headerEnd', () => {
  it('finds the first body byte after a CRLF blank line', () => {
    const raw = Buffer.from('A: b\r\nC: d\r\n\r\nbody')
    expect(headerEnd(raw)).toBe(14)
    expect(raw.subarray(headerEnd(raw)).toString()).toBe('body')
  })

  it('finds the first body byte after an LF blank line', () => {
    const raw = Buffer.from('A: b\nC: d\n\nbody')
    expect(headerEnd(raw)).toBe(11)
    expect(raw.subarray(headerEnd(raw)).toString()).toBe('body')
  })

  it('returns the length of a message with no blank line', () => {
    const raw = Buffer.from('A: b\r\nC: d\r\n')
    expect(headerEnd(raw)).toBe(raw.length)
  })

  it('returns 0 for an empty buffer', () => {
    expect(headerEnd(Buffer.alloc(0))).toBe(0)
  })

  it('uses whichever separator comes first', () => {
    const lfFirst = Buffer.from('A: b\n\nbody\r\n\r\nmore')
    expect(headerEnd(lfFirst)).toBe(6)
    const crlfFirst = Buffer.from('A: b\r\n\r\nbody\n\nmore')
    expect(headerEnd(crlfFirst)).toBe(8)
  })
})

describe('parseHeaderBlock', () => {
  it('splits fields into name and trimmed value, in order', () => {
    expect(parseHeaderBlock('A: 1\r\nB:2\r\nA:  3  \r\n')).toEqual([
      ['A', '1'],
      ['B', '2'],
      ['A', '3'],
    ])
  })

  it('unfolds continuation lines with one space', () => {
    expect(parseHeaderBlock('Subject: one\r\n two\r\n\tthree\r\n')).toEqual([['Subject', 'one two three']])
  })

  it('skips lines without a field name', () => {
    expect(parseHeaderBlock('garbage\r\n: empty name\r\nA: 1\r\n')).toEqual([['A', '1']])
  })
})

describe('createMessageView', () => {
  const raw = Buffer.from(
    'Received: from a\r\n by b\r\nReceived: from c\r\nSubject: hello\r\n\tworld\r\nMessage-ID: <1@example.org>\r\n\r\nX-Fake: in the body\r\n',
  )

  it('exposes the raw bytes and their size', () => {
    const view = createMessageView(raw)
    expect(view.raw).toBe(raw)
    expect(view.size).toBe(raw.length)
  })

  it('returns unfolded header values', () => {
    expect(createMessageView(raw).header('subject')).toEqual(['hello world'])
  })

  it('looks header names up case-insensitively', () => {
    const view = createMessageView(raw)
    expect(view.header('SUBJECT')).toEqual(['hello world'])
    expect(view.header('message-id')).toEqual(['<1@example.org>'])
  })

  it('returns every occurrence of a repeated header in order', () => {
    expect(createMessageView(raw).header('received')).toEqual(['from a by b', 'from c'])
  })

  it('returns an empty list for a missing header', () => {
    expect(createMessageView(raw).header('date')).toEqual([])
  })

  it('does not take header-like lines from the body', () => {
    expect(createMessageView(raw).header('x-fake')).toEqual([])
  })

  it('reads header fields of an LF-only message', () => {
    const view = createMessageView(Buffer.from('Subject: lf\n folded\n\nbody\n'))
    expect(view.header('subject')).toEqual(['lf folded'])
  })

  it('parses the message once and returns the same promise on every call', async () => {
    const view = createMessageView(raw)
    const first = view.parsed()
    const second = view.parsed()
    expect(second).toBe(first)
    const mail = await first
    expect(mail.subject).toBe('hello world')
    expect(mail.messageId).toBe('<1@example.org>')
  })

  it('returns the same parse to a call made after the first parse finished', async () => {
    const view = createMessageView(raw)
    const first = view.parsed()
    await first
    expect(view.parsed()).toBe(first)
  })
})
