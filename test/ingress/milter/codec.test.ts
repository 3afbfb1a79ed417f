import { describe, expect, it } from 'vitest'
import {
  ACCEPT,
  CONTINUE,
  checkHeader,
  DEFAULT_MAX_PACKET,
  DISCARD,
  decodeCommand,
  decodeResponse,
  encodeAddHeader,
  encodeChangeHeader,
  encodeCommand,
  encodeInsertHeader,
  encodeOptneg,
  encodePacket,
  encodeQuarantine,
  encodeReplaceBody,
  encodeReplyCode,
  FrameDecoder,
  formatReplyCode,
  headerCommand,
  MAX_BODY_CHUNK,
  type MilterCommand,
  MilterProtocolError,
  negotiate,
  PROGRESS,
  REJECT,
  SMFIC,
  SMFIF,
  SMFIM,
  SMFIP,
  TEMPFAIL,
  WANTED_MACROS,
} from '../../../src/ingress/milter/codec.js'

/** A packet written out by hand: 4-byte length, command byte, data. */
function raw(command: string, ...parts: (string | number[] | Buffer)[]): Buffer {
  const data = Buffer.concat(
    parts.map((p) =>
      typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.isBuffer(p) ? p : Buffer.from(p),
    ),
  )
  const out = Buffer.alloc(5 + data.length)
  out.writeUInt32BE(data.length + 1, 0)
  out.write(command, 4, 'latin1')
  data.copy(out, 5)
  return out
}

function u32(n: number): number[] {
  return [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]
}

function decodeAll(...packets: Buffer[]): MilterCommand[] {
  return new FrameDecoder().push(Buffer.concat(packets)).map(decodeCommand)
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(MilterProtocolError)
    return (err as MilterProtocolError).code
  }
  return undefined
}

/** Postfix 3.x's offer with milter_protocol = 6: every v6 action and event flag. */
const POSTFIX_OFFER = { version: 6, actions: 0x1ff, protocol: 0x1fffff }

describe('FrameDecoder', () => {
  const stream = Buffer.concat([
    raw('O', u32(6), u32(0x1ff), u32(0x1fffff)),
    raw('D', 'C', '{client_addr}\x00192.0.2.1\0j\0mx.example\0'),
    raw('C', 'client.example\0', '4', [0x30, 0x39], '192.0.2.1\0'),
    raw('B', 'x'.repeat(300)),
    raw('E'),
  ])
  const whole = new FrameDecoder().push(stream)

  it('cuts one chunk holding several packets into those packets', () => {
    expect(whole.map((p) => String.fromCharCode(p.code))).toEqual(['O', 'D', 'C', 'B', 'E'])
    expect(whole[3]?.data.length).toBe(300)
    expect(whole[4]?.data.length).toBe(0)
  })

  it('gives the same packets however the stream is split in two, at every byte boundary', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const decoder = new FrameDecoder()
      const packets = [...decoder.push(stream.subarray(0, cut)), ...decoder.push(stream.subarray(cut))]
      expect(packets, `split at ${cut}`).toEqual(whole)
      expect(decoder.pending).toBe(0)
    }
  })

  it('gives the same packets when fed one byte at a time', () => {
    const decoder = new FrameDecoder()
    const packets = []
    for (let i = 0; i < stream.length; i++) packets.push(...decoder.push(stream.subarray(i, i + 1)))
    expect(packets).toEqual(whole)
  })

  it('holds an incomplete packet until the rest arrives', () => {
    const decoder = new FrameDecoder()
    expect(decoder.push(stream.subarray(0, 10))).toEqual([])
    expect(decoder.pending).toBe(10)
  })

  it('refuses a packet longer than the maximum as soon as its length is read', () => {
    const decoder = new FrameDecoder(1000)
    const header = Buffer.from(u32(1001))
    expect(codeOf(() => decoder.push(header))).toBe('MSC_MILTER_PACKET_TOO_LONG')
    expect(codeOf(() => new FrameDecoder().push(Buffer.from(u32(0x7fffffff))))).toBe(
      'MSC_MILTER_PACKET_TOO_LONG',
    )
  })

  it('accepts a packet of exactly the maximum length', () => {
    const packet = encodePacket(SMFIC.BODY, Buffer.alloc(999))
    expect(new FrameDecoder(1000).push(packet)).toHaveLength(1)
  })

  it('has a default maximum that holds a full 64 KiB body chunk and a 100 kB header', () => {
    expect(DEFAULT_MAX_PACKET).toBeGreaterThanOrEqual(MAX_BODY_CHUNK + 1)
    expect(DEFAULT_MAX_PACKET).toBeGreaterThan(102_400 + 100)
    const big = encodePacket(SMFIC.BODY, Buffer.alloc(MAX_BODY_CHUNK))
    expect(new FrameDecoder().push(big)[0]?.data.length).toBe(MAX_BODY_CHUNK)
  })

  it('refuses a zero length (no command byte)', () => {
    expect(codeOf(() => new FrameDecoder().push(Buffer.from(u32(0))))).toBe('MSC_MILTER_MALFORMED')
  })
})

describe('decodeCommand', () => {
  it('decodes SMFIC_OPTNEG', () => {
    expect(decodeAll(raw('O', u32(6), u32(0x1ff), u32(0x1fffff)))).toEqual([
      { type: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff },
    ])
  })

  it('decodes SMFIC_MACRO with the command it is for', () => {
    const [cmd] = decodeAll(raw('D', 'M', 'i\0ABC123\0{auth_authen}\0bob\0'))
    expect(cmd).toEqual({
      type: 'macro',
      forCommand: SMFIC.MAIL,
      macros: new Map([
        ['i', 'ABC123'],
        ['{auth_authen}', 'bob'],
      ]),
    })
    expect(decodeAll(raw('D', 'C'))).toEqual([
      { type: 'macro', forCommand: SMFIC.CONNECT, macros: new Map() },
    ])
  })

  it('decodes SMFIC_CONNECT for IPv4, IPv6, unix and unknown families', () => {
    expect(decodeAll(raw('C', 'mail.example\0', '4', [0x30, 0x39], '192.0.2.1\0'))).toEqual([
      { type: 'connect', hostname: 'mail.example', family: 'inet4', port: 12345, address: '192.0.2.1' },
    ])
    expect(decodeAll(raw('C', '[2001:db8::1]\0', '6', [0x00, 0x19], '2001:db8::1\0'))).toEqual([
      { type: 'connect', hostname: '[2001:db8::1]', family: 'inet6', port: 25, address: '2001:db8::1' },
    ])
    expect(decodeAll(raw('C', 'localhost\0', 'L', [0, 0], '/var/run/sock\0'))).toEqual([
      { type: 'connect', hostname: 'localhost', family: 'unix', port: 0, address: '/var/run/sock' },
    ])
    expect(decodeAll(raw('C', 'unknown\0', 'U'))).toEqual([
      { type: 'connect', hostname: 'unknown', family: 'unknown' },
    ])
  })

  it('decodes HELO, MAIL and RCPT (with ESMTP arguments)', () => {
    expect(decodeAll(raw('H', 'client.example\0'))).toEqual([{ type: 'helo', name: 'client.example' }])
    expect(decodeAll(raw('M', '<a@example.com>\0SIZE=1234\0BODY=8BITMIME\0'))).toEqual([
      { type: 'mail', sender: '<a@example.com>', args: ['SIZE=1234', 'BODY=8BITMIME'] },
    ])
    expect(decodeAll(raw('M', '<>\0'))).toEqual([{ type: 'mail', sender: '<>', args: [] }])
    expect(decodeAll(raw('R', '<b@example.net>\0NOTIFY=NEVER\0'))).toEqual([
      { type: 'rcpt', recipient: '<b@example.net>', args: ['NOTIFY=NEVER'] },
    ])
  })

  it('decodes a header field, keeping the raw value bytes', () => {
    const latin1 = Buffer.from([0x43, 0x61, 0x66, 0xe9]) // "Café" in Latin-1: not UTF-8
    const [cmd] = decodeAll(raw('L', 'Subject\0', latin1, [0]))
    expect(cmd).toMatchObject({ type: 'header', name: 'Subject' })
    expect((cmd as { raw: Buffer }).raw).toEqual(latin1)
    expect(decodeAll(raw('L', 'X-Empty\0\0'))).toEqual([
      { type: 'header', name: 'X-Empty', value: '', raw: Buffer.alloc(0) },
    ])
  })

  it('decodes the data-less commands: DATA, EOH, ABORT, QUIT, QUIT_NC', () => {
    expect(decodeAll(raw('T'), raw('N'), raw('A'), raw('Q'), raw('K'))).toEqual([
      { type: 'data' },
      { type: 'eoh' },
      { type: 'abort' },
      { type: 'quit' },
      { type: 'quitNc' },
    ])
  })

  it('decodes body chunks and end of body (with or without trailing data)', () => {
    expect(decodeAll(raw('B', 'line\r\n'), raw('E'), raw('E', 'tail'))).toEqual([
      { type: 'body', chunk: Buffer.from('line\r\n') },
      { type: 'eob', chunk: Buffer.alloc(0) },
      { type: 'eob', chunk: Buffer.from('tail') },
    ])
  })

  it('decodes SMFIC_UNKNOWN', () => {
    expect(decodeAll(raw('U', 'XYZZY foo\0'))).toEqual([{ type: 'unknown', command: 'XYZZY foo' }])
  })

  it('refuses an unknown command byte', () => {
    expect(codeOf(() => decodeAll(raw('Z', 'x')))).toBe('MSC_MILTER_UNKNOWN_COMMAND')
    expect(codeOf(() => decodeAll(raw('c')))).toBe('MSC_MILTER_UNKNOWN_COMMAND')
  })

  it('refuses malformed data', () => {
    expect(codeOf(() => decodeAll(raw('O', u32(6), u32(1))))).toBe('MSC_MILTER_MALFORMED')
    expect(codeOf(() => decodeAll(raw('H', 'no-nul')))).toBe('MSC_MILTER_MALFORMED')
    expect(codeOf(() => decodeAll(raw('C', 'host\0', 'X', [0, 25], '1.2.3.4\0')))).toBe(
      'MSC_MILTER_MALFORMED',
    )
    expect(codeOf(() => decodeAll(raw('C', 'host\0', '4', [0])))).toBe('MSC_MILTER_MALFORMED')
    expect(codeOf(() => decodeAll(raw('D', 'C', 'name-only\0')))).toBe('MSC_MILTER_MALFORMED')
    expect(codeOf(() => decodeAll(raw('D')))).toBe('MSC_MILTER_MALFORMED')
    expect(codeOf(() => decodeAll(raw('L', '\0value\0')))).toBe('MSC_MILTER_MALFORMED')
    expect(codeOf(() => decodeAll(raw('L', 'Subject\0a\0junk')))).toBe('MSC_MILTER_MALFORMED')
    expect(codeOf(() => decodeAll(raw('M')))).toBe('MSC_MILTER_MALFORMED')
  })
})

describe('encodeCommand', () => {
  it('writes what decodeCommand reads, for every command', () => {
    const commands: MilterCommand[] = [
      { type: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff },
      { type: 'macro', forCommand: SMFIC.RCPT, macros: new Map([['{rcpt_addr}', 'b@example.net']]) },
      { type: 'connect', hostname: 'h.example', family: 'inet4', port: 25, address: '192.0.2.9' },
      { type: 'connect', hostname: 'h6', family: 'inet6', port: 587, address: '2001:db8::9' },
      { type: 'connect', hostname: 'local', family: 'unix', port: 0, address: '/tmp/s' },
      { type: 'connect', hostname: 'unknown', family: 'unknown' },
      { type: 'helo', name: 'h.example' },
      { type: 'mail', sender: '<a@b>', args: ['SIZE=1'] },
      { type: 'rcpt', recipient: '<c@d>', args: [] },
      { type: 'data' },
      headerCommand('Subject', 'hi there'),
      { type: 'eoh' },
      { type: 'body', chunk: Buffer.from('body\r\n') },
      { type: 'eob', chunk: Buffer.alloc(0) },
      { type: 'abort' },
      { type: 'quit' },
      { type: 'quitNc' },
      { type: 'unknown', command: 'FOO' },
    ]
    expect(decodeAll(...commands.map(encodeCommand))).toEqual(commands)
  })

  it('matches the wire layout of SMFIC_CONNECT', () => {
    expect(
      encodeCommand({ type: 'connect', hostname: 'h', family: 'inet4', port: 0x1234, address: '1.2.3.4' }),
    ).toEqual(raw('C', 'h\0', '4', [0x12, 0x34], '1.2.3.4\0'))
  })
})

describe('simple responses', () => {
  it('are five bytes: length 1 and the response letter', () => {
    const letters: [Buffer, string][] = [
      [CONTINUE, 'c'],
      [ACCEPT, 'a'],
      [REJECT, 'r'],
      [TEMPFAIL, 't'],
      [DISCARD, 'd'],
      [PROGRESS, 'p'],
    ]
    for (const [packet, letter] of letters) expect(packet).toEqual(raw(letter))
  })
})

describe('encodeReplyCode', () => {
  it('sends the reply as one NUL-terminated line', () => {
    expect(encodeReplyCode({ code: 550, status: '5.7.1', text: 'Message rejected as spam' })).toEqual(
      raw('y', '550 5.7.1 Message rejected as spam\0'),
    )
    expect(encodeReplyCode({ code: 451, status: '4.7.1', text: 'Try again later' }, 4)).toEqual(
      raw('y', '451 4.7.1 Try again later\0'),
    )
  })

  it('doubles % so the MTA does not read it as a format directive', () => {
    expect(formatReplyCode({ code: 550, status: '5.7.1', text: 'Spam score 100% (%s)' })).toBe(
      '550 5.7.1 Spam score 100%% (%%s)',
    )
  })

  it('refuses codes that are not 4xx/5xx, or not the class asked for', () => {
    expect(codeOf(() => formatReplyCode({ code: 250, status: '2.0.0', text: 'ok' }))).toBe(
      'MSC_MILTER_INVALID_RESPONSE',
    )
    expect(codeOf(() => formatReplyCode({ code: 600, status: '5.0.0', text: 'x' }))).toBe(
      'MSC_MILTER_INVALID_RESPONSE',
    )
    expect(codeOf(() => formatReplyCode({ code: 55.5, status: '5.0.0', text: 'x' }))).toBe(
      'MSC_MILTER_INVALID_RESPONSE',
    )
    expect(codeOf(() => formatReplyCode({ code: 451, status: '4.7.1', text: 'x' }, 5))).toBe(
      'MSC_MILTER_INVALID_RESPONSE',
    )
    expect(codeOf(() => formatReplyCode({ code: 550, status: '5.7.1', text: 'x' }, 4))).toBe(
      'MSC_MILTER_INVALID_RESPONSE',
    )
  })

  it('requires an enhanced status code of the same class (Postfix refuses others)', () => {
    expect(codeOf(() => formatReplyCode({ code: 550, text: 'no status' }))).toBe(
      'MSC_MILTER_INVALID_RESPONSE',
    )
    expect(codeOf(() => formatReplyCode({ code: 550, status: '4.7.1', text: 'x' }))).toBe(
      'MSC_MILTER_INVALID_RESPONSE',
    )
    expect(codeOf(() => formatReplyCode({ code: 550, status: '5.7', text: 'x' }))).toBe(
      'MSC_MILTER_INVALID_RESPONSE',
    )
    expect(codeOf(() => formatReplyCode({ code: 550, status: '5.7.1000', text: 'x' }))).toBe(
      'MSC_MILTER_INVALID_RESPONSE',
    )
  })

  it('refuses CR, LF, NUL and non-ASCII in the text (no reply-line injection)', () => {
    for (const text of ['a\r\n250 2.0.0 ok', 'a\nb', 'a\rb', 'a\0b', 'caf\u00e9']) {
      expect(
        codeOf(() => formatReplyCode({ code: 550, status: '5.7.1', text })),
        JSON.stringify(text),
      ).toBe('MSC_MILTER_INVALID_RESPONSE')
    }
  })

  it('refuses a reply longer than an SMTP reply line', () => {
    expect(codeOf(() => formatReplyCode({ code: 550, status: '5.7.1', text: 'x'.repeat(600) }))).toBe(
      'MSC_MILTER_INVALID_RESPONSE',
    )
    expect(formatReplyCode({ code: 550, status: '5.7.1', text: 'x'.repeat(500) })).toHaveLength(510)
  })
})

describe('modification responses', () => {
  it('encodes SMFIR_QUARANTINE with its reason', () => {
    expect(encodeQuarantine('virus found')).toEqual(raw('q', 'virus found\0'))
    expect(codeOf(() => encodeQuarantine(''))).toBe('MSC_MILTER_INVALID_RESPONSE')
    expect(codeOf(() => encodeQuarantine('a\nb'))).toBe('MSC_MILTER_INVALID_RESPONSE')
  })

  it('encodes SMFIR_ADDHEADER as name and value', () => {
    expect(encodeAddHeader('X-Spam-Flag', 'YES')).toEqual(raw('h', 'X-Spam-Flag\0YES\0'))
  })

  it('sends folded values with LF line breaks, the way libmilter does', () => {
    expect(encodeAddHeader('X-Long', 'part one\r\n\tpart two')).toEqual(
      raw('h', 'X-Long\0part one\n\tpart two\0'),
    )
    expect(checkHeader('X-Long', 'a\n b')).toBe('a\n b')
  })

  it('refuses header names with colons or spaces, and values with unfolded line breaks or NUL', () => {
    for (const name of ['X:Y', 'X Y', '', 'X\u00e9']) {
      expect(
        codeOf(() => encodeAddHeader(name, 'v')),
        name,
      ).toBe('MSC_MILTER_INVALID_RESPONSE')
    }
    for (const value of ['a\r\nBcc: x@y', 'a\nb', 'a\rb', 'a\0b', 'a\n']) {
      expect(
        codeOf(() => encodeAddHeader('X-Test', value)),
        JSON.stringify(value),
      ).toBe('MSC_MILTER_INVALID_RESPONSE')
    }
  })

  it('encodes SMFIR_CHGHEADER with a 1-based index; an empty value deletes', () => {
    expect(encodeChangeHeader(1, 'Subject', '{Spam?} hello')).toEqual(
      raw('m', u32(1), 'Subject\0{Spam?} hello\0'),
    )
    expect(encodeChangeHeader(2, 'X-Spam-Flag', '')).toEqual(raw('m', u32(2), 'X-Spam-Flag\0\0'))
    expect(codeOf(() => encodeChangeHeader(0, 'Subject', 'x'))).toBe('MSC_MILTER_INVALID_RESPONSE')
  })

  it('encodes SMFIR_INSHEADER with a 0-based position', () => {
    expect(encodeInsertHeader(0, 'X-First', 'top')).toEqual(raw('i', u32(0), 'X-First\0top\0'))
    expect(codeOf(() => encodeInsertHeader(-1, 'X-First', 'top'))).toBe('MSC_MILTER_INVALID_RESPONSE')
  })

  it('cuts SMFIR_REPLBODY into chunks of at most 65535 bytes that add up to the body', () => {
    const body = Buffer.alloc(150_000, 0x61)
    const packets = encodeReplaceBody(body)
    const decoded = new FrameDecoder().push(Buffer.concat(packets))
    expect(decoded.map((p) => p.data.length)).toEqual([65_535, 65_535, 18_930])
    expect(decoded.every((p) => p.code === 0x62)).toBe(true)
    expect(Buffer.concat(decoded.map((p) => p.data))).toEqual(body)
    expect(encodeReplaceBody(Buffer.from('abcdefg'), 3).map((p) => p.subarray(5).toString())).toEqual([
      'abc',
      'def',
      'g',
    ])
  })

  it('sends an empty replacement body as one empty chunk', () => {
    expect(encodeReplaceBody(Buffer.alloc(0))).toEqual([raw('b')])
  })

  it('refuses a chunk size beyond what the MTA takes', () => {
    expect(codeOf(() => encodeReplaceBody(Buffer.from('x'), 70_000))).toBe('MSC_MILTER_INVALID_RESPONSE')
  })
})

describe('encodeOptneg', () => {
  it('writes version, actions, protocol, then each stage with its macro names', () => {
    const packet = encodeOptneg({
      version: 6,
      actions: 0x33,
      protocol: 0x1000,
      macros: new Map([
        [SMFIM.CONNECT, ['j', '{client_addr}']],
        [SMFIM.EOM, ['i']],
      ]),
    })
    expect(packet).toEqual(
      raw('O', u32(6), u32(0x33), u32(0x1000), u32(0), 'j {client_addr}\0', u32(5), 'i\0'),
    )
  })

  it('writes only the three words without macros', () => {
    expect(encodeOptneg({ version: 6, actions: 1, protocol: 2 })).toEqual(raw('O', u32(6), u32(1), u32(2)))
  })

  it('refuses macro names that would break the list', () => {
    expect(
      codeOf(() => encodeOptneg({ version: 6, actions: 0, protocol: 0, macros: new Map([[0, ['{a b}']]]) })),
    ).toBe('MSC_MILTER_INVALID_RESPONSE')
  })
})

describe('decodeResponse', () => {
  it('reads back every response we send', () => {
    const packets = [
      CONTINUE,
      ACCEPT,
      REJECT,
      TEMPFAIL,
      DISCARD,
      PROGRESS,
      encodeReplyCode({ code: 550, status: '5.7.1', text: 'no' }),
      encodeQuarantine('held'),
      encodeAddHeader('X-A', 'a'),
      encodeChangeHeader(1, 'Subject', 's'),
      encodeInsertHeader(0, 'X-B', 'b'),
      ...encodeReplaceBody(Buffer.from('new body\r\n')),
      encodeOptneg({ version: 6, actions: 1, protocol: 2, macros: new Map([[SMFIM.HELO, ['{cipher}']]]) }),
    ]
    expect(new FrameDecoder().push(Buffer.concat(packets)).map(decodeResponse)).toEqual([
      { type: 'continue' },
      { type: 'accept' },
      { type: 'reject' },
      { type: 'tempfail' },
      { type: 'discard' },
      { type: 'progress' },
      { type: 'replycode', text: '550 5.7.1 no' },
      { type: 'quarantine', reason: 'held' },
      { type: 'addheader', name: 'X-A', value: 'a' },
      { type: 'chgheader', index: 1, name: 'Subject', value: 's' },
      { type: 'insheader', index: 0, name: 'X-B', value: 'b' },
      { type: 'replbody', chunk: Buffer.from('new body\r\n') },
      { type: 'optneg', version: 6, actions: 1, protocol: 2, macros: new Map([[SMFIM.HELO, ['{cipher}']]]) },
    ])
  })
})

describe('negotiate', () => {
  it("answers Postfix's v6 offer with only the actions and steps we need", () => {
    const answer = negotiate(POSTFIX_OFFER)
    expect(answer.version).toBe(6)
    expect(answer.actions).toBe(
      SMFIF.ADDHDRS | SMFIF.CHGHDRS | SMFIF.CHGBODY | SMFIF.QUARANTINE | SMFIF.SETSYMLIST,
    )
    // Never recipients or the sender.
    expect(answer.actions & (SMFIF.ADDRCPT | SMFIF.DELRCPT | SMFIF.CHGFROM | SMFIF.ADDRCPT_PAR)).toBe(0)
    // Skipped steps: unknown commands, end of headers.
    expect(answer.protocol & SMFIP.NOUNKNOWN).toBeTruthy()
    // DATA is kept, with a reply: our CONTINUE acknowledges the MTA's DATA-stage macros at once.
    expect(answer.protocol & (SMFIP.NODATA | SMFIP.NR_DATA)).toBe(0)
    expect(answer.protocol & SMFIP.NOEOH).toBeTruthy()
    // Kept steps: connect, helo, mail, rcpt, headers, body.
    for (const step of [
      SMFIP.NOCONNECT,
      SMFIP.NOHELO,
      SMFIP.NOMAIL,
      SMFIP.NORCPT,
      SMFIP.NOHDRS,
      SMFIP.NOBODY,
    ]) {
      expect(answer.protocol & step).toBe(0)
    }
    // No replies to steps that only collect data.
    for (const nr of [
      SMFIP.NR_CONN,
      SMFIP.NR_HELO,
      SMFIP.NR_MAIL,
      SMFIP.NR_RCPT,
      SMFIP.NR_HDR,
      SMFIP.NR_BODY,
    ]) {
      expect(answer.protocol & nr).toBeTruthy()
    }
    // Nothing that changes what the MTA sends us.
    expect(answer.protocol & (SMFIP.SKIP | SMFIP.RCPT_REJ | SMFIP.HDR_LEADSPC)).toBe(0)
    expect(answer.macros).toBe(WANTED_MACROS)
  })

  it('asks for the macros a scan needs, per stage', () => {
    const macros = negotiate(POSTFIX_OFFER).macros
    expect(macros.get(SMFIM.CONNECT)).toEqual(expect.arrayContaining(['j', '{client_addr}', '{client_name}']))
    expect(macros.get(SMFIM.ENVFROM)).toEqual(expect.arrayContaining(['i', '{auth_authen}', '{mail_addr}']))
    expect(macros.get(SMFIM.ENVRCPT)).toEqual(expect.arrayContaining(['i', '{rcpt_addr}']))
    expect(macros.get(SMFIM.EOM)).toEqual(['i'])
  })

  it('wants a reply to RCPT when a recipient check may refuse one', () => {
    expect(negotiate(POSTFIX_OFFER, { recipientReplies: true }).protocol & SMFIP.NR_RCPT).toBe(0)
  })

  it('never asks for more than the MTA offered', () => {
    const offer = { version: 2, actions: SMFIF.ADDHDRS | SMFIF.CHGBODY, protocol: 0x7f }
    const answer = negotiate(offer)
    expect(answer.version).toBe(2)
    expect(answer.actions).toBe(SMFIF.ADDHDRS | SMFIF.CHGBODY)
    expect(answer.protocol).toBe(SMFIP.NOEOH)
    expect(answer.macros.size).toBe(0)
  })

  it('answers a newer MTA with version 6 and refuses version 1', () => {
    expect(negotiate({ ...POSTFIX_OFFER, version: 7 }).version).toBe(6)
    expect(codeOf(() => negotiate({ ...POSTFIX_OFFER, version: 1 }))).toBe('MSC_MILTER_MALFORMED')
  })
})
