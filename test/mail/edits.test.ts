import { isAscii } from 'node:buffer'
import libmime from 'libmime'
import { simpleParser } from 'mailparser'
import { describe, expect, it } from 'vitest'
import { applyEdits, foldHeader, type HeaderEdit, lineEnding } from '../../src/mail/edits.js'
import { createMessageView, headerEnd } from '../../src/mail/message.js'

const CRLF_MESSAGE = Buffer.from(
  'From: a@example.org\r\nTo: b@example.net\r\nSubject: hello world\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nbody line 1\r\n\r\nSubject: not a header\r\n',
)

function apply(raw: Buffer, edits: readonly HeaderEdit[]): Buffer {
  return Buffer.concat(applyEdits(raw, edits))
}

function bodyOf(raw: Buffer): Buffer {
  return raw.subarray(headerEnd(raw))
}

function headerLines(raw: Buffer): string[] {
  return raw.subarray(0, headerEnd(raw)).toString('latin1').split(/\r?\n/)
}

describe('lineEnding', () => {
  it('detects CRLF from the first line', () => {
    expect(lineEnding(Buffer.from('A: b\r\nC: d\n'))).toBe('\r\n')
  })

  it('detects a bare LF from the first line', () => {
    expect(lineEnding(Buffer.from('A: b\nC: d\r\n'))).toBe('\n')
  })

  it('defaults to CRLF when there is no line break at all', () => {
    expect(lineEnding(Buffer.from('A: b'))).toBe('\r\n')
  })
})

describe('foldHeader', () => {
  it('leaves a short field on one line ending in the given line ending', () => {
    expect(foldHeader('X-Test', 'short value', '\r\n')).toBe('X-Test: short value\r\n')
  })

  it('folds a long field at spaces so no line passes 78 characters', () => {
    const value = Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ')
    const folded = foldHeader('X-mailscreen-Report', value, '\r\n')
    const lines = folded.split('\r\n')
    expect(lines.pop()).toBe('')
    expect(lines.length).toBeGreaterThan(1)
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(78)
    for (const line of lines.slice(1)) expect(line.startsWith('\t')).toBe(true)
    expect(createMessageView(Buffer.from(`${folded}\r\n`)).header('x-mailscreen-report')).toEqual([value])
  })

  it('puts a word longer than a line on a line of its own without leaving empty lines', () => {
    const long = 'x'.repeat(120)
    const folded = foldHeader('X-Long', `before ${long} after`, '\n')
    const lines = folded.split('\n').slice(0, -1)
    expect(lines).toEqual(['X-Long: before', `\t${long}`, '\tafter'])
  })

  it('keeps a first word longer than a line on the field name line', () => {
    const long = 'y'.repeat(100)
    expect(foldHeader('X-Long', long, '\r\n')).toBe(`X-Long: ${long}\r\n`)
  })

  it('replaces line breaks inside the value so the field cannot be split or injected', () => {
    const folded = foldHeader('X-Test', 'a\r\nBcc: victim@example.org', '\r\n')
    expect(folded).toBe('X-Test: a Bcc: victim@example.org\r\n')
  })
})

describe('applyEdits prepend', () => {
  it('adds the field before the original message and keeps every original byte', () => {
    const out = apply(CRLF_MESSAGE, [{ op: 'prepend', name: 'X-mailscreen-Scanned', value: 'yes' }])
    expect(out.subarray(0, 27).toString()).toBe('X-mailscreen-Scanned: yes\r\n')
    expect(out.subarray(27).equals(CRLF_MESSAGE)).toBe(true)
  })

  it('keeps the body bytes identical', () => {
    const out = apply(CRLF_MESSAGE, [{ op: 'prepend', name: 'X-A', value: '1' }])
    const body = bodyOf(CRLF_MESSAGE)
    expect(out.subarray(out.length - body.length).equals(body)).toBe(true)
  })

  it('returns the original buffer itself as the last part, so the body is not copied', () => {
    const parts = applyEdits(CRLF_MESSAGE, [{ op: 'prepend', name: 'X-A', value: '1' }])
    expect(parts.at(-1)).toBe(CRLF_MESSAGE)
  })

  it('prepends several fields in the order given', () => {
    const out = apply(CRLF_MESSAGE, [
      { op: 'prepend', name: 'X-First', value: '1' },
      { op: 'prepend', name: 'X-Second', value: '2' },
    ])
    expect(headerLines(out).slice(0, 2)).toEqual(['X-First: 1', 'X-Second: 2'])
  })

  it('uses LF line endings for the new field when the message uses bare LF', () => {
    const raw = Buffer.from('From: a@example.org\nSubject: hi\n\nbody\n')
    const out = apply(raw, [{ op: 'prepend', name: 'X-A', value: '1' }])
    expect(out.toString()).toBe('X-A: 1\nFrom: a@example.org\nSubject: hi\n\nbody\n')
  })

  it('changes nothing when there are no edits', () => {
    expect(apply(CRLF_MESSAGE, []).equals(CRLF_MESSAGE)).toBe(true)
  })
})

describe('applyEdits tagSubject', () => {
  const tag: HeaderEdit = { op: 'tagSubject', tag: '{Spam?}' }

  it('inserts the tag at the start of the Subject and keeps the body identical', () => {
    const out = apply(CRLF_MESSAGE, [tag])
    expect(createMessageView(out).header('subject')).toEqual(['{Spam?} hello world'])
    const body = bodyOf(CRLF_MESSAGE)
    expect(out.subarray(out.length - body.length).equals(body)).toBe(true)
    expect(out.length).toBe(CRLF_MESSAGE.length + '{Spam?} '.length)
  })

  it('leaves every other header line as it was', () => {
    const out = apply(CRLF_MESSAGE, [tag])
    const before = headerLines(CRLF_MESSAGE)
    const after = headerLines(out)
    expect(after).toHaveLength(before.length)
    expect(after.filter((l) => !l.startsWith('Subject:'))).toEqual(
      before.filter((l) => !l.startsWith('Subject:')),
    )
  })

  it('does not tag a Subject that already starts with the tag', () => {
    const once = apply(CRLF_MESSAGE, [tag])
    const twice = apply(once, [tag])
    expect(twice.equals(once)).toBe(true)
  })

  it('tags only the header Subject, not a Subject: line in the body', () => {
    const out = apply(CRLF_MESSAGE, [tag])
    expect(out.toString()).toContain('\r\n\r\nbody line 1\r\n\r\nSubject: not a header\r\n')
    expect(out.toString().match(/\{Spam\?\}/g)).toHaveLength(1)
  })

  it('matches the Subject field name case-insensitively', () => {
    const raw = Buffer.from('SUBJECT: shout\r\nFrom: a@example.org\r\n\r\nbody\r\n')
    expect(createMessageView(apply(raw, [tag])).header('subject')).toEqual(['{Spam?} shout'])
  })

  it('adds a Subject with the tag when the message has none', () => {
    const raw = Buffer.from('From: a@example.org\r\nTo: b@example.net\r\n\r\nbody\r\n')
    const out = apply(raw, [tag])
    expect(out.toString()).toBe(
      'From: a@example.org\r\nTo: b@example.net\r\nSubject: {Spam?}\r\n\r\nbody\r\n',
    )
  })

  it('adds a Subject to a message that has no body, and no empty line it did not have', () => {
    const raw = Buffer.from('From: a@example.org')
    const out = apply(raw, [tag])
    expect(out.toString()).toBe('From: a@example.org\r\nSubject: {Spam?}\r\n')
  })

  it('tags an empty Subject without joining it to the next header line', () => {
    const raw = Buffer.from('Subject:\r\nFrom: a@example.org\r\n\r\nbody\r\n')
    const view = createMessageView(apply(raw, [tag]))
    expect(view.header('subject')).toEqual(['{Spam?}'])
    expect(view.header('from')).toEqual(['a@example.org'])
  })

  it('tags an empty last Subject without losing the header/body separator', () => {
    const raw = Buffer.from('From: a@example.org\r\nSubject: \r\n\r\nbody\r\n')
    const out = apply(raw, [tag])
    const body = bodyOf(raw)
    expect(bodyOf(out).equals(body)).toBe(true)
    expect(createMessageView(out).header('subject')).toEqual(['{Spam?}'])
  })

  it('keeps LF line endings in an LF-only message', () => {
    const raw = Buffer.from('From: a@example.org\nSubject: hi\n\nbody\n')
    const out = apply(raw, [{ op: 'prepend', name: 'X-A', value: '1' }, tag])
    expect(out.toString()).toBe('X-A: 1\nFrom: a@example.org\nSubject: {Spam?} hi\n\nbody\n')
    expect(out.includes('\r')).toBe(false)
  })

  it('adds a Subject with LF to an LF-only message that has none', () => {
    const raw = Buffer.from('From: a@example.org\n\nbody\n')
    expect(apply(raw, [tag]).toString()).toBe('From: a@example.org\nSubject: {Spam?}\n\nbody\n')
  })

  it('keeps raw 8-bit bytes in the header byte-identical apart from the tag', () => {
    const subject = Buffer.from('Grüße – 日本語', 'utf8')
    const raw = Buffer.concat([
      Buffer.from('From: "Jörg" <j@example.org>\r\nSubject: '),
      subject,
      Buffer.from('\r\n\r\nbody \xff\xfe\r\n', 'latin1'),
    ])
    const out = apply(raw, [tag])
    const expected = Buffer.concat([
      Buffer.from('From: "Jörg" <j@example.org>\r\nSubject: {Spam?} '),
      subject,
      Buffer.from('\r\n\r\nbody \xff\xfe\r\n', 'latin1'),
    ])
    expect(out.equals(expected)).toBe(true)
  })

  it('tags a folded Subject on its first line and keeps the continuation', () => {
    const raw = Buffer.from('Subject: a very\r\n long subject\r\nFrom: a@example.org\r\n\r\nbody\r\n')
    const out = apply(raw, [tag])
    expect(createMessageView(out).header('subject')).toEqual(['{Spam?} a very long subject'])
    expect(bodyOf(out).equals(bodyOf(raw))).toBe(true)
  })
})

describe('applyEdits remove', () => {
  const FORGED = Buffer.from(
    [
      'X-Spam-Flag: YES',
      'From: a@example.org',
      'x-spam-status: No, score=-100.0',
      '\trequired=5.0 tests=FORGED',
      'Subject: hi',
      'X-Spam-Flagged: keep me',
      'X-SPAM-FLAG : NO',
      'To: b@example.net',
      '',
      'X-Spam-Flag: NO (a body line, not a field)',
      '',
    ].join('\r\n'),
  )

  it('removes every field of the name, any case, with its continuation lines', () => {
    const out = apply(FORGED, [
      { op: 'remove', name: 'X-Spam-Flag' },
      { op: 'remove', name: 'X-Spam-Status' },
    ])
    expect(headerLines(out)).toEqual([
      'From: a@example.org',
      'Subject: hi',
      'X-Spam-Flagged: keep me',
      'To: b@example.net',
      '',
      '',
    ])
    expect(out.toString()).not.toContain('FORGED')
  })

  it('keeps the body byte for byte, including header-like body lines', () => {
    const out = apply(FORGED, [{ op: 'remove', name: 'x-spam-flag' }])
    expect(bodyOf(out).equals(bodyOf(FORGED))).toBe(true)
    expect(out.toString()).toContain('\r\n\r\nX-Spam-Flag: NO (a body line, not a field)\r\n')
  })

  it('changes nothing when no field has the name', () => {
    expect(apply(FORGED, [{ op: 'remove', name: 'X-Not-There' }]).equals(FORGED)).toBe(true)
  })

  it('does not remove a field whose name only starts with the name', () => {
    const out = apply(FORGED, [{ op: 'remove', name: 'X-Spam' }])
    expect(out.equals(FORGED)).toBe(true)
  })

  it('does not remove the fields prepended by the same edits', () => {
    const out = apply(FORGED, [
      { op: 'remove', name: 'X-Spam-Flag' },
      { op: 'prepend', name: 'X-Spam-Flag', value: 'NO' },
      { op: 'remove', name: 'X-Spam-Flag' },
    ])
    expect(createMessageView(out).header('x-spam-flag')).toEqual(['NO'])
    expect(headerLines(out)[0]).toBe('X-Spam-Flag: NO')
  })

  it('removes the last field before the blank line without losing the separator', () => {
    const raw = Buffer.from('From: a@example.org\r\nX-Spam-Flag: YES\r\n\r\nbody\r\n')
    expect(apply(raw, [{ op: 'remove', name: 'X-Spam-Flag' }]).toString()).toBe(
      'From: a@example.org\r\n\r\nbody\r\n',
    )
  })

  it('removes a folded last field of an LF-only message', () => {
    const raw = Buffer.from('From: a@example.org\nX-Spam-Status: Yes,\n  score=9\n\nbody\n')
    const out = apply(raw, [{ op: 'remove', name: 'X-Spam-Status' }])
    expect(out.toString()).toBe('From: a@example.org\n\nbody\n')
  })

  it('removes a field of a message that has no body', () => {
    const raw = Buffer.from('From: a@example.org\r\nX-Spam-Flag: YES')
    expect(apply(raw, [{ op: 'remove', name: 'X-Spam-Flag' }]).toString()).toBe('From: a@example.org\r\n')
  })

  it('removes a Subject before a tag adds a new one', () => {
    const out = apply(CRLF_MESSAGE, [
      { op: 'tagSubject', tag: '{Spam?}' },
      { op: 'remove', name: 'Subject' },
    ])
    expect(createMessageView(out).header('subject')).toEqual(['{Spam?}'])
  })

  it('keeps raw 8-bit bytes of the fields it keeps', () => {
    const raw = Buffer.concat([
      Buffer.from('X-Spam-Flag: YES\r\nSubject: '),
      Buffer.from('Grüße', 'utf8'),
      Buffer.from('\r\n\r\nbody\r\n'),
    ])
    const out = apply(raw, [{ op: 'remove', name: 'X-Spam-Flag' }])
    expect(out.equals(raw.subarray('X-Spam-Flag: YES\r\n'.length))).toBe(true)
  })
})

describe('applyEdits tagSubject at the end', () => {
  const end: HeaderEdit = { op: 'tagSubject', tag: '{Spam?}', position: 'end' }

  it('appends the tag to the Subject and keeps everything else', () => {
    const out = apply(CRLF_MESSAGE, [end])
    expect(createMessageView(out).header('subject')).toEqual(['hello world {Spam?}'])
    expect(out.length).toBe(CRLF_MESSAGE.length + ' {Spam?}'.length)
    expect(bodyOf(out).equals(bodyOf(CRLF_MESSAGE))).toBe(true)
  })

  it('does not tag twice at the end', () => {
    const once = apply(CRLF_MESSAGE, [end])
    expect(apply(once, [end]).equals(once)).toBe(true)
  })

  it('tags at the end a Subject that has the tag only at the start', () => {
    const raw = Buffer.from('Subject: {Spam?} hi\r\n\r\nbody\r\n')
    expect(createMessageView(apply(raw, [end])).header('subject')).toEqual(['{Spam?} hi {Spam?}'])
  })

  it('does not tag at the start a Subject that ends with the tag', () => {
    const raw = Buffer.from('Subject: hi {Spam?}\r\n\r\nbody\r\n')
    const out = apply(raw, [{ op: 'tagSubject', tag: '{Spam?}', position: 'start' }])
    expect(createMessageView(out).header('subject')).toEqual(['{Spam?} hi {Spam?}'])
  })

  it('adds a Subject holding only the tag when there is none or it is empty', () => {
    expect(apply(Buffer.from('From: a@example.org\n\nbody\n'), [end]).toString()).toBe(
      'From: a@example.org\nSubject: {Spam?}\n\nbody\n',
    )
    expect(
      createMessageView(apply(Buffer.from('Subject:   \r\n\r\nb\r\n'), [end])).header('subject'),
    ).toEqual(['{Spam?}'])
  })

  it('keeps LF line endings', () => {
    const raw = Buffer.from('Subject: hi\nFrom: a@example.org\n\nbody\n')
    expect(apply(raw, [end]).toString()).toBe('Subject: hi {Spam?}\nFrom: a@example.org\n\nbody\n')
  })
})

describe('applyEdits tagSubject on a folded Subject', () => {
  const FOLDED = Buffer.from(
    'From: a@example.org\r\nSubject: a very\r\n long\r\n\tsubject\r\nTo: b@example.net\r\n\r\nbody\r\n',
  )

  it('appends the tag to the unfolded value, as one field', () => {
    const out = apply(FOLDED, [{ op: 'tagSubject', tag: '{Spam?}', position: 'end' }])
    const view = createMessageView(out)
    expect(view.header('subject')).toEqual(['a very long subject {Spam?}'])
    expect(view.header('to')).toEqual(['b@example.net'])
    expect(view.header('from')).toEqual(['a@example.org'])
    expect(bodyOf(out).equals(bodyOf(FOLDED))).toBe(true)
  })

  it('recognises a tag at the end of a continuation line', () => {
    const raw = Buffer.from('Subject: a very\r\n long subject {Spam?}\r\n\r\nbody\r\n')
    expect(apply(raw, [{ op: 'tagSubject', tag: '{Spam?}', position: 'end' }]).equals(raw)).toBe(true)
  })

  it('recognises a tag on the first line of a folded Subject', () => {
    const raw = Buffer.from('Subject: {Spam?} a very\r\n long subject\r\n\r\nbody\r\n')
    expect(apply(raw, [{ op: 'tagSubject', tag: '{Spam?}' }]).equals(raw)).toBe(true)
  })

  it('refolds a long tagged Subject so no line passes 78 characters', () => {
    const words = Array.from({ length: 20 }, (_, i) => `word${i}`)
    const raw = Buffer.from(
      `Subject: ${words.slice(0, 10).join(' ')}\r\n ${words.slice(10).join(' ')}\r\nFrom: a@example.org\r\n\r\nbody\r\n`,
    )
    for (const position of ['start', 'end'] as const) {
      const out = apply(raw, [{ op: 'tagSubject', tag: '[SPAM: very long tag text here]', position }])
      const lines = headerLines(out)
      for (const line of lines) expect(line.length).toBeLessThanOrEqual(78)
      const value = createMessageView(out).header('subject')[0]
      expect(value).toBe(
        position === 'start'
          ? `[SPAM: very long tag text here] ${words.join(' ')}`
          : `${words.join(' ')} [SPAM: very long tag text here]`,
      )
      expect(lines.filter((l) => l.startsWith('From:'))).toEqual(['From: a@example.org'])
      expect(bodyOf(out).equals(bodyOf(raw))).toBe(true)
    }
  })

  it('tags a folded Subject that is the last field of a message without a body', () => {
    const raw = Buffer.from('From: a@example.org\nSubject: a\n  b')
    const out = apply(raw, [{ op: 'tagSubject', tag: 'T', position: 'end' }])
    expect(out.toString()).toBe('From: a@example.org\nSubject: a b T\n')
  })

  it('tags only the first of two Subject fields', () => {
    const raw = Buffer.from('Subject: one\r\n two\r\nSubject: three\r\n\r\nbody\r\n')
    const out = apply(raw, [{ op: 'tagSubject', tag: 'T', position: 'end' }])
    expect(createMessageView(out).header('subject')).toEqual(['one two T', 'three'])
  })

  it('tags a Subject whose value starts on a continuation line', () => {
    const raw = Buffer.from('Subject:\r\n  late value\r\nFrom: a@example.org\r\n\r\nbody\r\n')
    const view = createMessageView(apply(raw, [{ op: 'tagSubject', tag: 'T' }]))
    expect(view.header('subject')).toEqual(['T late value'])
    expect(view.header('from')).toEqual(['a@example.org'])
  })
})

describe('applyEdits on messages without a usual header block', () => {
  const edits: HeaderEdit[] = [
    { op: 'remove', name: 'X-Spam-Flag' },
    { op: 'prepend', name: 'X-A', value: '1' },
  ]

  it('a message that starts with an empty line keeps it: the header is empty, the body intact', () => {
    const raw = Buffer.from('\r\nbody only\r\nsecond: line\r\n')
    expect(headerEnd(raw)).toBe(2)
    expect(apply(raw, edits).toString()).toBe('X-A: 1\r\n\r\nbody only\r\nsecond: line\r\n')
  })

  it('the same with a bare LF', () => {
    const raw = Buffer.from('\nbody\n')
    expect(headerEnd(raw)).toBe(1)
    expect(apply(raw, edits).toString()).toBe('X-A: 1\n\nbody\n')
  })

  it('a subject tag on a message with an empty header goes into the header, not the body', () => {
    const raw = Buffer.from('\r\nbody\r\n')
    const out = apply(raw, [{ op: 'tagSubject', tag: '{Spam?}' }])
    expect(out.toString()).toBe('Subject: {Spam?}\r\n\r\nbody\r\n')
  })

  it('a header with no empty line and no final line break gets no empty line added', () => {
    const raw = Buffer.from('X-Only: one line')
    expect(apply(raw, edits).toString()).toBe('X-A: 1\r\nX-Only: one line\r\n')
  })
})

describe('applyEdits where the empty line or the first line are unusual', () => {
  for (const eol of ['\r\n', '\n']) {
    it(`tags a message with an empty body and no Subject in its header, not its body (${JSON.stringify(eol)})`, async () => {
      const raw = Buffer.from(`From: a@example.org${eol}To: b@example.net${eol}${eol}`)
      const out = apply(raw, [{ op: 'tagSubject', tag: '{Spam?}' }])
      expect(out.toString()).toBe(
        `From: a@example.org${eol}To: b@example.net${eol}Subject: {Spam?}${eol}${eol}`,
      )
      expect((await simpleParser(out)).subject).toBe('{Spam?}')
    })
  }

  it('finds the empty line as it is when the first line ends in CRLF and the rest in LF', async () => {
    const raw = Buffer.from('Received: from x by y\r\nFrom: a@example.org\nTo: b@example.net\n\nbody\n')
    const out = apply(raw, [{ op: 'tagSubject', tag: '{Spam?}' }])
    expect((await simpleParser(out)).subject).toBe('{Spam?}')
    expect(bodyOf(out).toString()).toBe('body\n')
  })

  it('a header that ends in LF without an empty line gets no empty line before the new Subject', async () => {
    const raw = Buffer.from('From: a@example.org\r\nTo: b@example.net\n')
    const out = apply(raw, [{ op: 'tagSubject', tag: '{Spam?}' }])
    expect(out.toString()).toBe('From: a@example.org\r\nTo: b@example.net\nSubject: {Spam?}\r\n')
  })

  it('makes an indented first field a field of its own, so no prepended field takes it in', async () => {
    const raw = Buffer.from(' From: alice@example.org\r\nSubject: hi\r\n\r\nbody\r\n')
    const out = apply(raw, [{ op: 'prepend', name: 'X-Spam', value: 'yes' }])
    expect(out.toString()).toBe('X-Spam: yes\r\nFrom: alice@example.org\r\nSubject: hi\r\n\r\nbody\r\n')
    const parsed = await simpleParser(out)
    expect(parsed.headers.get('x-spam')).toBe('yes')
    expect(parsed.from?.text).toBe('alice@example.org')
  })

  it('drops indented first lines that are no field at all, with their continuations', () => {
    const raw = Buffer.from('  just words\r\n\tmore\r\nSubject: hi\r\n\r\nbody\r\n')
    const out = apply(raw, [{ op: 'prepend', name: 'X-Spam', value: 'yes' }])
    expect(out.toString()).toBe('X-Spam: yes\r\nSubject: hi\r\n\r\nbody\r\n')
  })

  it('writes a tag that is not ASCII as RFC 2047 encoded words, on a Subject or a new one', async () => {
    const tagged = apply(Buffer.from('Subject: hello\r\n\r\nbody\r\n'), [{ op: 'tagSubject', tag: '[СПАМ]' }])
    expect(isAscii(tagged)).toBe(true)
    expect((await simpleParser(tagged)).subject).toBe('[СПАМ] hello')
    const long = '{Spám} '.repeat(12).trim()
    const added = apply(Buffer.from('From: a@example.org\r\n\r\nbody\r\n'), [{ op: 'tagSubject', tag: long }])
    expect(Math.max(...headerLines(added).map((l) => l.length))).toBeLessThanOrEqual(78)
    expect((await simpleParser(added)).subject).toBe(long)
    // Tagged once only, as with an ASCII tag.
    expect(apply(tagged, [{ op: 'tagSubject', tag: '[СПАМ]' }]).equals(tagged)).toBe(true)
  })
})

describe('applyEdits tagSubject with a tag that is not ASCII beside encoded words', () => {
  const subjectOf = (raw: Buffer) => {
    const line = /^Subject:(.*(?:\r\n[ \t].*)*)/m.exec(raw.toString('latin1'))?.[1] ?? ''
    return libmime.decodeWords(line.replace(/\r\n[ \t]/g, ' ').trim())
  }
  const encoded = Buffer.from('Subject: =?UTF-8?B?SGVsbG8=?=\r\n\r\nbody\r\n')

  it('takes a plain subject that happens to end in ?= for plain text', () => {
    const raw = Buffer.from('Subject: Is it 1+1?=\r\n\r\nbody\r\n')
    const out = apply(raw, [{ op: 'tagSubject', tag: '[SPÄM]', position: 'end' }])
    expect(subjectOf(out)).toBe('Is it 1+1?= [SPÄM]')
  })

  it('keeps the space between the tag and an encoded subject, at the start and at the end', () => {
    const start = apply(encoded, [{ op: 'tagSubject', tag: '[SPÄM]', position: 'start' }])
    expect(subjectOf(start)).toBe('[SPÄM] Hello')
    const end = apply(encoded, [{ op: 'tagSubject', tag: '[SPÄM]', position: 'end' }])
    expect(subjectOf(end)).toBe('Hello [SPÄM]')
    // Tagged once, whichever form the tag took.
    expect(apply(start, [{ op: 'tagSubject', tag: '[SPÄM]', position: 'start' }]).equals(start)).toBe(true)
    expect(apply(end, [{ op: 'tagSubject', tag: '[SPÄM]', position: 'end' }]).equals(end)).toBe(true)
  })
})

describe('foldHeader on a long list without spaces', () => {
  it('folds after commas, so that no line passes 998 characters', () => {
    const tests = Array.from({ length: 200 }, (_, i) => `SYMBOL_${i}`).join(',')
    const folded = foldHeader('X-Spam-Status', `Yes, score=9.0 required=5.0 tests=${tests}`, '\r\n')
    const lines = folded.split('\r\n').slice(0, -1)
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(78)
    expect(folded.replace(/\r\n\t/g, '')).toBe(
      `X-Spam-Status: Yes, score=9.0 required=5.0 tests=${tests}\r\n`,
    )
  })

  it('folds a list that is the whole value too', () => {
    const list = Array.from({ length: 200 }, (_, i) => `SYMBOL_${i}`).join(',')
    const folded = foldHeader('X-Tests', list, '\r\n')
    expect(Math.max(...folded.split('\r\n').map((l) => l.length))).toBeLessThanOrEqual(78)
    expect(folded.replace(/\r\n\t/g, '')).toBe(`X-Tests: ${list}\r\n`)
  })
})

describe('applyEdits prepend of a value that is not ASCII', () => {
  it('writes it as RFC 2047 encoded words, which any message may carry', () => {
    const out = apply(Buffer.from('Subject: hi\r\n\r\nbody\r\n'), [
      { op: 'prepend', name: 'X-Note', value: 'geprüft von der Poststelle' },
    ])
    expect(isAscii(out)).toBe(true)
    const [, value] = headerLines(out)[0]?.split(': ') ?? []
    expect(libmime.decodeWords(value ?? '')).toBe('geprüft von der Poststelle')
  })
})
