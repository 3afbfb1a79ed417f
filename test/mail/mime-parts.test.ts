import { readFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'
import { type MimePart, mimeParts, mimeStructure } from '../../src/mail/mime-parts.js'
import { CORPUS_DIR } from '../support/corpus.js'

const CORPUS = pathToFileURL(`${CORPUS_DIR}/`)

/** Join lines with CRLF (or LF), the way messages arrive. */
function msg(lines: readonly string[], eol = '\r\n'): Buffer {
  return Buffer.from(lines.join(eol), 'utf8')
}

function summary(parts: readonly MimePart[]): Array<[string, string, string | undefined]> {
  return parts.map((p) => [p.id, p.contentType, p.filename])
}

/** Remove the byte range a part occupies, as the strip action does. */
function cut(raw: Buffer, part: MimePart): Buffer {
  return Buffer.concat([raw.subarray(0, part.cutStart), raw.subarray(part.end)])
}

const NESTED = msg([
  'From: a@example.org',
  'Content-Type: multipart/mixed; boundary="outer"',
  '',
  'This is the preamble; MIME readers ignore it.',
  '--outer',
  'Content-Type: text/plain; charset=utf-8',
  '',
  'Hello',
  '--outer',
  'Content-Type: multipart/alternative; boundary="inner"',
  '',
  '--inner',
  'Content-Type: text/plain',
  '',
  'plain',
  '--inner',
  'Content-Type: text/html',
  '',
  '<p>html</p>',
  '--inner--',
  '',
  '--outer',
  'Content-Type: application/pdf; name="report.pdf"',
  'Content-Disposition: attachment; filename="report.pdf"',
  'Content-Transfer-Encoding: base64',
  '',
  Buffer.from('%PDF-1.4 fake').toString('base64'),
  '--outer--',
  'This is the epilogue.',
  '',
])

/** NESTED with LF line ends. */
const NESTED_LF = Buffer.from(NESTED.toString('latin1').replaceAll('\r\n', '\n'), 'latin1')
/** What NESTED's parts hold, decoded, in order. */
const NESTED_CONTENTS = ['Hello', 'plain', '<p>html</p>', '%PDF-1.4 fake']

/** The decoded content of each part, as text. */
function contents(parts: readonly MimePart[]): string[] {
  return parts.map((p) => p.content().toString())
}

describe('mimeParts: structure', () => {
  it('gives a single-part message one part "1" covering the whole message', () => {
    const raw = msg(['Subject: hi', 'Content-Type: text/plain', '', 'body', ''])
    const parts = mimeParts(raw)
    expect(summary(parts)).toEqual([['1', 'text/plain', undefined]])
    const [part] = parts as [MimePart]
    expect([part.cutStart, part.start, part.end]).toEqual([0, 0, raw.length])
    expect(part.content().toString()).toBe('body\r\n')
  })

  it('numbers nested parts IMAP-style: 1, 2.1, 2.2, 3', () => {
    expect(summary(mimeParts(NESTED))).toEqual([
      ['1', 'text/plain', undefined],
      ['2.1', 'text/plain', undefined],
      ['2.2', 'text/html', undefined],
      ['3', 'application/pdf', 'report.pdf'],
    ])
  })

  it('keeps the preamble and the epilogue out of every part', () => {
    const parts = mimeParts(NESTED)
    for (const part of parts) {
      const text = part.content().toString('latin1')
      expect(text).not.toContain('preamble')
      expect(text).not.toContain('epilogue')
    }
    expect(contents(parts)).toEqual(NESTED_CONTENTS)
  })

  it('puts each part between its header and the CRLF before the next delimiter', () => {
    const [first] = mimeParts(NESTED) as [MimePart]
    expect(NESTED.subarray(first.start, first.bodyStart).toString()).toBe(
      'Content-Type: text/plain; charset=utf-8\r\n\r\n',
    )
    expect(NESTED.subarray(first.bodyStart, first.end).toString()).toBe('Hello')
    expect(NESTED.subarray(first.cutStart, first.start).toString()).toBe('\r\n--outer\r\n')
    expect(first.headers).toEqual([['Content-Type', 'text/plain; charset=utf-8']])
  })

  it('reads LF-only messages the same way as CRLF ones', () => {
    expect(summary(mimeParts(NESTED_LF))).toEqual(summary(mimeParts(NESTED)))
    expect(contents(mimeParts(NESTED_LF))).toEqual(NESTED_CONTENTS)
  })

  it('runs the last part to the end when the closing delimiter is missing', () => {
    const raw = msg([
      'Content-Type: multipart/mixed; boundary=b',
      '',
      '--b',
      '',
      'one',
      '--b',
      'Content-Type: text/html',
      '',
      '<b>two</b>',
      '',
    ])
    const parts = mimeParts(raw)
    expect(summary(parts)).toEqual([
      ['1', 'text/plain', undefined],
      ['2', 'text/html', undefined],
    ])
    expect(parts[1]?.end).toBe(raw.length)
    expect(parts[1]?.content().toString()).toBe('<b>two</b>\r\n')
  })

  it('reads a part without header fields (blank line first) as text/plain with all of its body', () => {
    const raw = msg([
      'Content-Type: multipart/mixed; boundary=b',
      '',
      '--b',
      '',
      'Note: not a header',
      '',
      'more',
      '--b--',
    ])
    const [part] = mimeParts(raw) as [MimePart]
    expect(part.headers).toEqual([])
    expect(part.contentType).toBe('text/plain')
    expect(part.content().toString()).toBe('Note: not a header\r\n\r\nmore')
  })

  it('ignores delimiter lines after the closing delimiter (epilogue)', () => {
    const raw = msg([
      'Content-Type: multipart/mixed; boundary=b',
      '',
      '--b',
      '',
      'one',
      '--b--',
      '--b',
      '',
      'ghost',
      '--b--',
    ])
    expect(contents(mimeParts(raw))).toEqual(['one'])
  })

  const summaries: Array<{ name: string; lines: string[]; parts: ReturnType<typeof summary> }> = [
    {
      name: 'defaults the type to text/plain when Content-Type is absent',
      lines: ['Subject: hi', '', 'body'],
      parts: [['1', 'text/plain', undefined]],
    },
    {
      name: 'does not take a longer boundary that starts with this one for a delimiter',
      lines: [
        'Content-Type: multipart/mixed; boundary=x',
        '',
        '--x',
        'Content-Type: multipart/mixed; boundary=xy',
        '',
        '--xy',
        'Content-Type: text/plain',
        '',
        'inner',
        '--xy--',
        '--x',
        'Content-Type: text/html',
        '',
        'outer',
        '--x--',
      ],
      parts: [
        ['1.1', 'text/plain', undefined],
        ['2', 'text/html', undefined],
      ],
    },
    {
      name: 'types header-less parts of a multipart/digest as message/rfc822 (RFC 2046 5.1.5)',
      lines: [
        'Content-Type: multipart/digest; boundary=d',
        '',
        '--d',
        '',
        'Subject: first',
        '',
        'one',
        '--d',
        'Content-Type: text/plain',
        '',
        'two',
        '--d--',
      ],
      parts: [
        ['1', 'message/rfc822', undefined],
        ['2', 'text/plain', undefined],
      ],
    },
    {
      name: 'treats message/rfc822 as a leaf',
      lines: [
        'Content-Type: multipart/mixed; boundary=b',
        '',
        '--b',
        'Content-Type: message/rfc822',
        '',
        'Content-Type: multipart/mixed; boundary=c',
        '',
        '--c',
        '',
        'inner',
        '--c--',
        '--b--',
      ],
      parts: [['1', 'message/rfc822', undefined]],
    },
  ]
  for (const { name, lines, parts } of summaries)
    it(name, () => {
      expect(summary(mimeParts(msg(lines)))).toEqual(parts)
    })
})

describe('mimeParts: names and decoding', () => {
  function attachment(disposition: string, extra: readonly string[] = [], body = 'x'): MimePart {
    const raw = msg([
      'Content-Type: multipart/mixed; boundary=b',
      '',
      '--b',
      ...extra,
      `Content-Disposition: ${disposition}`,
      '',
      body,
      '--b--',
    ])
    return mimeParts(raw)[0] as MimePart
  }

  it('decodes RFC 2231 names with charset and continuations', () => {
    expect(attachment("attachment; filename*=iso-8859-1''caf%E9.txt").filename).toBe('café.txt')
    expect(attachment("attachment; filename*0*=utf-8''%E2%82%AC%20rates; filename*1=.pdf").filename).toBe(
      '€ rates.pdf',
    )
  })

  it('decodes RFC 2047 encoded words in a quoted name', () => {
    expect(attachment('attachment; filename="=?UTF-8?B?w6lsw6h2ZS5wZGY=?="').filename).toBe('élève.pdf')
    expect(attachment('attachment; filename="=?ISO-8859-1?Q?r=E9sum=E9.doc?="').filename).toBe('résumé.doc')
  })

  it('reads a raw UTF-8 name as UTF-8, not as latin1 mojibake', () => {
    expect(attachment('attachment; filename="élève.pdf"').filename).toBe('élève.pdf')
  })

  it('falls back to the Content-Type name parameter and lowercases disposition and type', () => {
    const part = attachment('ATTACHMENT', ['Content-Type: Application/PDF; name="r.pdf"'])
    expect(part.filename).toBe('r.pdf')
    expect(part.disposition).toBe('attachment')
    expect(part.contentType).toBe('application/pdf')
  })

  it('decodes base64, skipping line breaks and junk between groups', () => {
    const body = ['SGVs', 'bG8g!!', 'd29y*bGQ='].join('\r\n')
    const part = attachment('attachment; filename=a.txt', ['Content-Transfer-Encoding: BASE64'], body)
    expect(part.content().toString()).toBe('Hello world')
  })

  it('decodes quoted-printable, including soft line breaks', () => {
    const part = attachment(
      'inline',
      ['Content-Transfer-Encoding: quoted-printable'],
      'caf=C3=A9 au=\r\n lait=3D',
    )
    expect(part.content().toString()).toBe('café au lait=')
  })

  it('returns the same decoded buffer on every call', () => {
    const part = attachment('inline', ['Content-Transfer-Encoding: base64'], 'aGk=')
    expect(part.content()).toBe(part.content())
  })
})

describe('mimeParts: removing a part', () => {
  it('removing [cutStart, end) of any part leaves a message whose walk lacks exactly that part', () => {
    const before = mimeParts(NESTED)
    for (const [index, part] of before.entries()) {
      expect(contents(mimeParts(cut(NESTED, part)))).toEqual(contents(before.filter((_, i) => i !== index)))
    }
  })

  it('keeps the rest of the multipart well formed (ids renumber, closing delimiter intact)', () => {
    const pdf = mimeParts(NESTED).find((p) => p.filename === 'report.pdf') as MimePart
    const stripped = cut(NESTED, pdf)
    expect(stripped.toString()).toContain('--outer--')
    expect(summary(mimeParts(stripped))).toEqual([
      ['1', 'text/plain', undefined],
      ['2.1', 'text/plain', undefined],
      ['2.2', 'text/html', undefined],
    ])
  })

  it('works for the first part and in LF-only messages', () => {
    const [first] = mimeParts(NESTED_LF) as [MimePart]
    expect(contents(mimeParts(cut(NESTED_LF, first)))).toEqual(NESTED_CONTENTS.slice(1))
  })
})

describe('mimeParts: limits', () => {
  it('stops at 2000 parts for a message with 5000', () => {
    const lines = ['Content-Type: multipart/mixed; boundary=b', '']
    for (let i = 0; i < 5000; i++) lines.push('--b', 'Content-Type: text/plain', '', `part ${i}`)
    lines.push('--b--')
    const started = performance.now()
    const parts = mimeParts(msg(lines))
    expect(performance.now() - started).toBeLessThan(2000)
    expect(parts).toHaveLength(2000)
    expect(parts[1999]?.content().toString()).toBe('part 1999')
    expect(mimeStructure(msg(lines)).incomplete).toBe('more than 2000 MIME parts')
  })

  it('stops descending after 20 levels of nesting', () => {
    const lines: string[] = []
    for (let i = 0; i < 50; i++) lines.push(`Content-Type: multipart/mixed; boundary=b${i}`, '', `--b${i}`)
    lines.push('Content-Type: text/plain', '', 'deep')
    const parts = mimeParts(msg(lines))
    expect(parts).toHaveLength(1)
    expect(parts[0]?.id.split('.')).toHaveLength(20)
    expect(parts[0]?.contentType).toBe('multipart/mixed')
    expect(mimeStructure(msg(lines)).incomplete).toBe('multiparts nested more than 20 deep')
  })

  it('says nothing is left out when the walk reached no limit', () => {
    const lines = ['Content-Type: multipart/mixed; boundary=b', '', '--b', '', 'one', '--b--']
    expect(mimeStructure(msg(lines)).incomplete).toBeUndefined()
  })

  it("takes Content-Type's name= when filename= is empty", () => {
    const lines = [
      'Content-Type: multipart/mixed; boundary=b',
      '',
      '--b',
      'Content-Type: application/octet-stream; name="evil.js"',
      'Content-Disposition: attachment; filename=""',
      '',
      'x',
      '--b--',
    ]
    expect(mimeParts(msg(lines))[0]?.filename).toBe('evil.js')
  })

  it('walks the corpus 20000-part message quickly and keeps 2000 parts', () => {
    const raw = readFileSync(new URL('huge/gen__huge-many-parts-20000.eml', CORPUS))
    const started = performance.now()
    const parts = mimeParts(raw)
    expect(performance.now() - started).toBeLessThan(3000)
    expect(parts).toHaveLength(2000)
    expect(new Set(parts.map((p) => p.id)).size).toBe(2000)
  })
})
