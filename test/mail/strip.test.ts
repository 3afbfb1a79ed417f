import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { simpleParser } from 'mailparser'
import { describe, expect, it } from 'vitest'
import { lineEnding } from '../../src/mail/edits.js'
import { headerEnd, parseHeaderBlock } from '../../src/mail/message.js'
import { type MimePart, mimeParts } from '../../src/mail/mime-parts.js'
import { stripParts } from '../../src/mail/strip.js'
import { CORPUS_DIR } from '../support/corpus.js'

const CORPUS = join(CORPUS_DIR, 'attachments')

function corpus(name: string): Buffer {
  return readFileSync(join(CORPUS, name))
}

const NOTICE = [
  'mailscreen on mx.example.org removed content from this message (id 0AbC):',
  '',
  '  - Eicar-Signature in “évil.exe” (CLAMAV)   ',
  `  - ${'a-very-long-evidence-line-'.repeat(6)}end`,
  '',
  'The original is kept in quarantine. = signs and tabs\tsurvive.',
  '',
].join('\n')

/** The notice as it reads after decoding, in the message's line ending. */
function decodedNotice(eol: string): string {
  return NOTICE.replace(/\n/g, eol)
}

function headerNames(raw: Buffer): string[] {
  return parseHeaderBlock(raw.subarray(0, headerEnd(raw)).toString('latin1')).map(([n]) => n.toLowerCase())
}

const CONTENT = new Set(['mime-version', 'content-type', 'content-transfer-encoding', 'content-disposition'])

/** A line break that is not part of CRLF. */
function hasBareLf(buf: Buffer): boolean {
  return /(?<!\r)\n/.test(buf.toString('latin1'))
}

/** Every kept part of `raw` reappears, in order, with the same header and body bytes. */
function expectKept(raw: Buffer, out: Buffer, keptIds: readonly string[], outIds: readonly string[]): void {
  const before = new Map(mimeParts(raw).map((p) => [p.id, p]))
  const after = new Map(mimeParts(out).map((p) => [p.id, p]))
  expect(keptIds.length).toBe(outIds.length)
  keptIds.forEach((id, i) => {
    const p = before.get(id) as MimePart
    const q = after.get(outIds[i] as string) as MimePart
    expect(q, `${id} -> ${outIds[i]}`).toBeDefined()
    expect(out.subarray(q.bodyStart, q.end).equals(raw.subarray(p.bodyStart, p.end)), id).toBe(true)
    expect(out.subarray(q.start, q.bodyStart).equals(raw.subarray(p.start, p.bodyStart)), id).toBe(true)
    expect(q.content().equals(p.content()), id).toBe(true)
    expect(q.headers).toEqual(p.headers)
  })
}

/** Checks that hold for every stripped message. */
function expectNoticeFirst(out: Buffer, eol: string): MimePart[] {
  const parts = mimeParts(out)
  const notice = parts[0] as MimePart
  expect(notice.id).toBe('1')
  expect(notice.contentType).toBe('text/plain')
  expect(notice.disposition).toBe('inline')
  expect(notice.headers).toEqual([
    ['Content-Type', 'text/plain; charset=utf-8'],
    ['Content-Transfer-Encoding', 'quoted-printable'],
    ['Content-Disposition', 'inline'],
  ])
  expect(notice.content().toString('utf8')).toBe(decodedNotice(eol))
  // Quoted-printable lines stay within 76 characters and 7 bits.
  const body = out.subarray(notice.bodyStart, notice.end).toString('latin1')
  for (const line of body.split(eol)) expect(line.length).toBeLessThanOrEqual(76)
  expect([...body].every((c) => c.charCodeAt(0) < 0x80)).toBe(true)
  const top = out.subarray(0, headerEnd(out)).toString('latin1')
  expect(top).toMatch(/\nContent-Type: multipart\/mixed; boundary="=_mailscreen_[0-9a-f]{24}"\r?\n/)
  expect(headerNames(out).filter((n) => n === 'mime-version')).toHaveLength(1)
  expect(headerNames(out).filter((n) => n === 'content-type')).toHaveLength(1)
  if (eol === '\r\n') expect(hasBareLf(out)).toBe(false)
  else expect(out.includes('\r')).toBe(false)
  return parts
}

describe('stripParts on a CRLF message (cpython msg_26)', () => {
  const raw = corpus('cpython__msg_26.eml')

  it('has the shape these tests expect', () => {
    expect(mimeParts(raw).map((p) => [p.id, p.filename])).toEqual([
      ['1', undefined],
      ['2', 'clock.bmp'],
    ])
    expect(hasBareLf(raw)).toBe(false)
  })

  it('removes the attachment, keeps the text part byte for byte, and puts the notice first', async () => {
    const copy = Buffer.from(raw)
    const out = stripParts(raw, new Set(['2']), NOTICE)
    expect(raw.equals(copy)).toBe(true)
    const parts = expectNoticeFirst(out, '\r\n')
    expect(parts.map((p) => p.id)).toEqual(['1', '2.1'])
    expectKept(raw, out, ['1'], ['2.1'])
    expect(out.includes('Qk12AgAAAAAAAHYAAAAo')).toBe(false)

    const mail = await simpleParser(out)
    expect(mail.attachments).toEqual([])
    expect(mail.subject).toBe('IMAP file test')
    expect(mail.messageId).toBe('<6df65d354b.father.time@rpc.wooster.local>')
    expect(mail.from?.value).toEqual([{ address: 'father.time@xcar.wooster.local', name: 'Father Time' }])
    expect(mail.text).toContain('Eicar-Signature in “évil.exe” (CLAMAV)')
    expect(mail.text).toContain(`${'a-very-long-evidence-line-'.repeat(6)}end`)
    expect(mail.text).toContain('Simple email with attachment.')
    expect(mail.text?.indexOf('removed content')).toBeLessThan(mail.text?.indexOf('Simple email') ?? -1)
  })

  it('keeps the other top-level fields in order and moves the content fields into the original', () => {
    const out = stripParts(raw, new Set(['2']), NOTICE)
    const kept = headerNames(raw).filter((n) => !CONTENT.has(n))
    expect(headerNames(out)).toEqual([...kept, 'mime-version', 'content-type'])
    // The folded Received field survives with its continuation line.
    expect(out.toString('latin1')).toContain(
      'Received: from xcar [192.168.0.2] by jeeves.wooster.local\r\n  (SMTPD32-7.07 EVAL) id AFF92F0214;',
    )
    // The original multipart keeps its own boundary and preamble inside the new one.
    const text = out.toString('latin1')
    expect(text).toContain(
      '\r\nContent-Type: multipart/mixed; boundary="1618492860--2051301190--113853680"\r\n\r\nThis message is in MIME format',
    )
  })

  it('keeps the attachment byte for byte when the text part is removed instead', async () => {
    const out = stripParts(raw, new Set(['1']), NOTICE)
    expectNoticeFirst(out, '\r\n')
    expectKept(raw, out, ['2'], ['2.1'])
    const mail = await simpleParser(out)
    const original = mimeParts(raw)[1] as MimePart
    expect(mail.attachments.map((a) => a.filename)).toEqual(['clock.bmp'])
    expect(mail.attachments[0]?.content.equals(original.content())).toBe(true)
    expect(mail.text).not.toContain('Simple email with attachment.')
  })

  it('uses a new boundary each time, absent from the original', () => {
    const a = stripParts(raw, new Set(['2']), NOTICE)
    const b = stripParts(raw, new Set(['2']), NOTICE)
    const boundary = (buf: Buffer) => /boundary="(=_mailscreen_[0-9a-f]+)"/.exec(buf.toString('latin1'))?.[1]
    expect(boundary(a)).toBeDefined()
    expect(boundary(a)).not.toBe(boundary(b))
    expect(raw.includes(boundary(a) as string)).toBe(false)
  })

  it('wraps the whole original when no named part exists', async () => {
    const out = stripParts(raw, new Set(['9', '1.1']), NOTICE)
    expectNoticeFirst(out, '\r\n')
    expectKept(raw, out, ['1', '2'], ['2.1', '2.2'])
    expect((await simpleParser(out)).attachments.map((a) => a.filename)).toEqual(['clock.bmp'])
  })

  it('leaves only the notice when every part is named', async () => {
    const out = stripParts(raw, new Set(['1', '2']), NOTICE)
    expect(expectNoticeFirst(out, '\r\n').map((p) => p.id)).toEqual(['1'])
    expect(out.includes('1618492860--2051301190--113853680')).toBe(false)
    const mail = await simpleParser(out)
    expect(mail.text).toBe(decodedNotice('\n'))
  })
})

describe('stripParts on an LF-only message (rspamd exe_attm)', () => {
  const raw = corpus('rspamd__exe_attm.eml')

  it('removes the .exe, writes LF only, and keeps the text part byte for byte', async () => {
    expect(raw.includes('\r')).toBe(false)
    const out = stripParts(raw, new Set(['2']), NOTICE)
    expect(expectNoticeFirst(out, '\n').map((p) => p.id)).toEqual(['1', '2.1'])
    expectKept(raw, out, ['1'], ['2.1'])
    expect(out.includes('hello_world.exe')).toBe(false)
    const mail = await simpleParser(out)
    expect(mail.attachments).toEqual([])
    expect(mail.subject).toBe('test Sat, 26 Jan 2019 12:04:58 +0100')
    expect(mail.text).toContain('This is a test mailing')
    expect(mail.text).toContain('Eicar-Signature in “évil.exe” (CLAMAV)')
  })
})

describe('stripParts on single-part messages', () => {
  it('replaces the body of a single-part CRLF attachment message with the notice for all', async () => {
    const raw = corpus('enmime__mail__attachment-only-text-attachment.eml')
    expect(mimeParts(raw).map((p) => [p.id, p.filename])).toEqual([['1', 'test.csv']])
    const out = stripParts(raw, 'all', NOTICE)
    expect(expectNoticeFirst(out, '\r\n').map((p) => p.id)).toEqual(['1'])
    expect(out.includes('VGVzdDtUZXN0Cg==')).toBe(false)
    expect(out.toString('latin1')).not.toMatch(/^Content-Disposition: attachment/m)
    const mail = await simpleParser(out)
    expect(mail.attachments).toEqual([])
    expect(mail.subject).toBe('Test')
    expect(mail.to && !Array.isArray(mail.to) ? mail.to.text : '').toBe('bob@test.com')
    expect(mail.text).toBe(decodedNotice('\n'))
  })

  it('treats naming the only part like all', () => {
    const raw = corpus('enmime__mail__attachment-only-text-attachment.eml')
    const out = stripParts(raw, new Set(['1']), NOTICE)
    expect(mimeParts(out).map((p) => p.id)).toEqual(['1'])
  })

  it('strips a plain message without any MIME fields', async () => {
    const raw = Buffer.from('From: a@example.org\nSubject: plain\n\nJust text.\n')
    const out = stripParts(raw, 'all', NOTICE)
    expect(
      out
        .toString()
        .startsWith('From: a@example.org\nSubject: plain\nMIME-Version: 1.0\nContent-Type: multipart/mixed;'),
    ).toBe(true)
    expectNoticeFirst(out, '\n')
    expect(out.includes('Just text.')).toBe(false)
    expect((await simpleParser(out)).subject).toBe('plain')
  })

  it('keeps a plain message without MIME fields as an untyped (text/plain) part when nothing matches', async () => {
    const raw = Buffer.from('From: a@example.org\r\nSubject: plain\r\n\r\nJust text.\r\n')
    const out = stripParts(raw, new Set(['2']), NOTICE)
    const parts = expectNoticeFirst(out, '\r\n')
    expect(parts.map((p) => [p.id, p.contentType])).toEqual([
      ['1', 'text/plain'],
      ['2', 'text/plain'],
    ])
    expect(parts[1]?.headers).toEqual([])
    expect(parts[1]?.content().toString()).toBe('Just text.\r\n')
    expect((await simpleParser(out)).text).toContain('Just text.')
  })
})

describe('stripParts on a message with no header field but Content-Type (rspamd rar4)', () => {
  const raw = corpus('rspamd__rar4.eml')

  it('starts the result with our MIME fields and nothing else', async () => {
    expect(headerNames(raw)).toEqual(['content-type'])
    const out = stripParts(raw, 'all', NOTICE)
    expect(
      out.toString().startsWith('MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="=_mailscreen_'),
    ).toBe(true)
    expect(headerNames(out)).toEqual(['mime-version', 'content-type'])
    expect(expectNoticeFirst(out, '\n').map((p) => p.id)).toEqual(['1'])
    expect(out.includes('f.rar')).toBe(false)
    const mail = await simpleParser(out)
    expect(mail.attachments).toEqual([])
    expect(mail.text).toBe(decodedNotice('\n'))
  })

  it('does the same for a CRLF message with only Content-Type, keeping a part', async () => {
    const raw = Buffer.from(
      [
        'Content-Type: multipart/mixed; boundary="b1"',
        '',
        '--b1',
        'Content-Type: text/plain; charset=us-ascii',
        '',
        'keep me',
        '--b1',
        'Content-Type: application/octet-stream; name="x.exe"',
        'Content-Transfer-Encoding: base64',
        '',
        'TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA=',
        '--b1--',
        '',
      ].join('\r\n'),
    )
    const out = stripParts(raw, new Set(['2']), NOTICE)
    expect(headerNames(out)).toEqual(['mime-version', 'content-type'])
    expect(expectNoticeFirst(out, '\r\n').map((p) => p.id)).toEqual(['1', '2.1'])
    expectKept(raw, out, ['1'], ['2.1'])
    const mail = await simpleParser(out)
    expect(mail.attachments).toEqual([])
    expect(mail.text).toContain('keep me')
  })

  it('removes the first part of a body that has no preamble', async () => {
    const raw = Buffer.from(
      'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: application/x-msdownload\r\n\r\nMZ\r\n--b1\r\nContent-Type: text/plain\r\n\r\nkeep me\r\n--b1--\r\n',
    )
    const out = stripParts(raw, new Set(['1']), NOTICE)
    expect(expectNoticeFirst(out, '\r\n').map((p) => p.id)).toEqual(['1', '2.1'])
    expectKept(raw, out, ['2'], ['2.1'])
    expect(out.includes('MZ')).toBe(false)
    const mail = await simpleParser(out)
    expect(mail.attachments).toEqual([])
    expect(mail.text).toContain('keep me')
  })
})

describe('stripParts on nested multiparts', () => {
  const raw = Buffer.from(
    [
      'From: a@example.org',
      'To: b@example.net',
      'Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed;',
      ' boundary="outer"',
      '',
      '--outer',
      'Content-Type: multipart/alternative; boundary="inner"',
      '',
      '--inner',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: 8bit',
      '',
      'Grüße',
      '--inner',
      'Content-Type: text/html; charset=utf-8',
      '',
      '<p>Grüße</p>',
      '--inner--',
      '',
      '--outer',
      'Content-Type: application/zip; name="a.zip"',
      'Content-Disposition: attachment; filename="a.zip"',
      'Content-Transfer-Encoding: base64',
      '',
      'UEsDBAoAAAAAAA==',
      '',
      '--outer',
      'Content-Type: image/png; name="b.png"',
      'Content-Disposition: attachment; filename="b.png"',
      'Content-Transfer-Encoding: base64',
      '',
      'iVBORw0KGgo=',
      '--outer--',
      'epilogue',
      '',
    ].join('\r\n'),
  )

  it('has the shape these tests expect', () => {
    expect(mimeParts(raw).map((p) => p.id)).toEqual(['1.1', '1.2', '2', '3'])
  })

  it('removes a leaf inside the nested part and one at the top, keeping the rest byte for byte', async () => {
    const out = stripParts(raw, new Set(['1.2', '2']), NOTICE)
    expect(expectNoticeFirst(out, '\r\n').map((p) => p.id)).toEqual(['1', '2.1.1', '2.2'])
    expectKept(raw, out, ['1.1', '3'], ['2.1.1', '2.2'])
    const mail = await simpleParser(out)
    expect(mail.subject).toBe('Grüße')
    expect(mail.attachments.map((a) => a.filename)).toEqual(['b.png'])
    expect(mail.html).toBe(false)
    expect(mail.text).toContain('Grüße')
    expect(out.includes('a.zip')).toBe(false)
    expect(out.includes('<p>')).toBe(false)
  })

  it('removes the first part of a nested body that has no preamble', async () => {
    const out = stripParts(raw, new Set(['1.1']), NOTICE)
    expect(expectNoticeFirst(out, '\r\n').map((p) => p.id)).toEqual(['1', '2.1.1', '2.2', '2.3'])
    expectKept(raw, out, ['1.2', '2', '3'], ['2.1.1', '2.2', '2.3'])
    expect(out.toString('latin1')).toContain('boundary="inner"\r\n\r\n\r\n--inner\r\nContent-Type: text/html')
    const mail = await simpleParser(out)
    expect(mail.attachments.map((a) => a.filename)).toEqual(['a.zip', 'b.png'])
    expect(mail.html).toContain('<p>Grüße</p>')
  })

  // When every leaf of a nested multipart is named, the container goes too: a multipart
  // without any body part is not allowed (RFC 2046 §5.1.1).
  it('cuts out a nested multipart whose every leaf is removed', () => {
    const out = stripParts(raw, new Set(['1.1', '1.2']), NOTICE)
    expect(out.toString('latin1')).not.toContain('multipart/alternative')
    expect(mimeParts(out).map((p) => p.id)).toEqual(['1', '2.1', '2.2'])
  })

  it('still gives parsers the kept parts when a nested multipart is emptied', async () => {
    const out = stripParts(raw, new Set(['1.1', '1.2']), NOTICE)
    expect(mimeParts(out).map((p) => p.contentType)).toEqual(['text/plain', 'application/zip', 'image/png'])
    expectKept(raw, out, ['2', '3'], ['2.1', '2.2'])
    const mail = await simpleParser(out)
    expect(mail.attachments.map((a) => a.filename)).toEqual(['a.zip', 'b.png'])
    expect(mail.text).not.toContain('Grüße')
  })

  it('removes the last part and keeps the epilogue where it was', async () => {
    const out = stripParts(raw, new Set(['3']), NOTICE)
    expect(expectNoticeFirst(out, '\r\n').map((p) => p.id)).toEqual(['1', '2.1.1', '2.1.2', '2.2'])
    expectKept(raw, out, ['1.1', '1.2', '2'], ['2.1.1', '2.1.2', '2.2'])
    expect(out.toString('latin1')).toContain('\r\n--outer--\r\nepilogue\r\n')
    expect((await simpleParser(out)).attachments.map((a) => a.filename)).toEqual(['a.zip'])
  })

  it('keeps a folded Content-Type of the original in the wrapped part', () => {
    const out = stripParts(raw, new Set(['2']), NOTICE).toString('latin1')
    expect(out).toMatch(
      /\r\n--=_mailscreen_[0-9a-f]+\r\nContent-Type: multipart\/mixed;\r\n boundary="outer"\r\n\r\n--outer\r\n/,
    )
  })
})

describe('stripParts keeps header bytes', () => {
  it('keeps raw 8-bit header bytes as they were', () => {
    const subject = Buffer.from('Subject: Grüße – 日本語\r\n', 'utf8')
    const raw = Buffer.concat([
      Buffer.from('From: a@example.org\r\n'),
      subject,
      Buffer.from('Content-Type: text/plain\r\n\r\nbody \xff\r\n', 'latin1'),
    ])
    const out = stripParts(raw, 'all', NOTICE)
    expect(out.subarray(0, 21 + subject.length).equals(raw.subarray(0, 21 + subject.length))).toBe(true)
    expect(out.includes(Buffer.from('body \xff', 'latin1'))).toBe(false)
  })
})

describe('stripParts over the attachments corpus', () => {
  const files = readdirSync(CORPUS).filter((f) => f.endsWith('.eml'))

  it('finds the corpus', () => {
    expect(files.length).toBeGreaterThanOrEqual(10)
  })

  for (const file of files)
    it(`removes each part of ${file} in turn and keeps the others intact`, async () => {
      const raw = corpus(file)
      const ids = mimeParts(raw).map((p) => p.id)
      const eol = lineEnding(raw)
      for (const id of ids) {
        const out = stripParts(raw, new Set([id]), NOTICE)
        const keptIds = ids.filter((k) => k !== id)
        const parts = mimeParts(out)
        expect(parts[0]?.content().toString('utf8'), `${file} ${id}`).toBe(decodedNotice(eol))
        expect(parts.length, `${file} ${id}`).toBe(1 + keptIds.length)
        if (keptIds.length > 0)
          expectKept(
            raw,
            out,
            keptIds,
            parts.slice(1).map((p) => p.id),
          )
        const mail = await simpleParser(out)
        expect(mail.text, `${file} ${id}`).toContain('removed content from this message')
        expect(mail.headers.get('content-type'), `${file} ${id}`).toMatchObject({ value: 'multipart/mixed' })
      }
    })
})

describe('stripParts and 8-bit content', () => {
  const message = (topEncoding: string) =>
    Buffer.from(
      [
        'From: a@example.org',
        'MIME-Version: 1.0',
        'Content-Type: multipart/mixed; boundary="b"',
        ...(topEncoding ? [`Content-Transfer-Encoding: ${topEncoding}`] : []),
        '',
        '--b',
        'Content-Type: text/plain; charset=utf-8',
        'Content-Transfer-Encoding: 8bit',
        '',
        'Grüße',
        '--b',
        'Content-Type: application/octet-stream',
        'Content-Disposition: attachment; filename="x.exe"',
        '',
        'MZ',
        '--b--',
        '',
      ].join('\r\n'),
    )
  const encodingOf = (raw: Buffer) =>
    parseHeaderBlock(raw.subarray(0, headerEnd(raw)).toString('latin1')).find(
      ([name]) => name.toLowerCase() === 'content-transfer-encoding',
    )?.[1]

  it('declares the new top level 8bit when what it keeps has 8-bit octets (RFC 2045 §6.4)', () => {
    for (const declared of ['8bit', '']) {
      const out = stripParts(message(declared), new Set(['2']), 'removed x.exe')
      expect(out.includes(Buffer.from('Grüße')), declared).toBe(true)
      expect(encodingOf(out), declared).toBe('8bit')
    }
  })

  it('declares nothing (7bit) when only 7-bit content is left', () => {
    const out = stripParts(message(''), new Set(['1']), 'removed the text')
    expect(encodingOf(out)).toBeUndefined()
  })
})
