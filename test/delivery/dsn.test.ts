import { type Attachment, type ParsedMail, simpleParser } from 'mailparser'
import { describe, expect, it } from 'vitest'
import { buildDsn, type DsnInput, dsnStatus } from '../../src/delivery/dsn.js'
import type { RecipientResult } from '../../src/delivery/transport.js'
import type { Envelope } from '../../src/ingress/envelope.js'
import type { QueueId } from '../../src/queue/ids.js'

const QID = '0Abc123XYZ456def' as QueueId
const ORIGINAL_HEADERS = Buffer.from(
  'Received: from client.example.net (client.example.net [192.0.2.10])\r\n' +
    '\tby mx.example.org; Mon, 1 Jun 2026 10:00:00 +0000\r\n' +
    'From: Alice <alice@example.net>\r\n' +
    'To: bob@example.org, carol@example.org\r\n' +
    'Subject: Quarterly report\r\n' +
    'Message-ID: <orig-1@example.net>\r\n' +
    '\r\n',
)

const envelope = (over: Partial<Envelope> = {}): Envelope => ({
  mailFrom: 'alice@example.net',
  rcptTo: ['bob@example.org', 'carol@example.org'],
  client: { address: '192.0.2.10' },
  peer: { address: '127.0.0.1' },
  receivedAt: Date.parse('2026-06-01T10:00:00Z'),
  ...over,
})

const bob: RecipientResult = {
  recipient: 'bob@example.org',
  status: 'failed',
  code: 550,
  reply: '550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown',
  remoteMta: 'mx.example.org',
}

const input = (over: Partial<DsnInput> = {}): DsnInput => ({
  reportingMta: 'filter.example.org',
  queueId: QID,
  envelope: envelope(),
  failed: [bob],
  reason: 'failed',
  originalHeaders: ORIGINAL_HEADERS,
  arrivalDate: new Date('2026-06-01T10:00:00Z'),
  now: new Date('2026-06-01T10:05:00Z'),
  ...over,
})

function build(over: Partial<DsnInput> = {}) {
  const dsn = buildDsn(input(over))
  if (!dsn) throw new Error('expected a DSN')
  return dsn
}

// Without keepDeliveryStatus, mailparser folds the delivery-status part into `text`.
const parse = (message: Buffer): Promise<ParsedMail> => simpleParser(message, { keepDeliveryStatus: true })

function part(attachments: Attachment[], contentType: string): string {
  const found = attachments.find((a) => a.contentType === contentType)
  if (!found)
    throw new Error(`no ${contentType} part among ${attachments.map((a) => a.contentType).join(', ')}`)
  return found.content.toString('utf8')
}

describe('buildDsn', () => {
  it('addresses the DSN from <> to the original envelope sender', () => {
    const dsn = build()
    expect(dsn.mailFrom).toBe('')
    expect(dsn.rcptTo).toEqual(['alice@example.net'])
  })

  it('writes the RFC 3464 headers a mail client and an auto-responder expect', async () => {
    const parsed = await parse(build().message)
    expect(parsed.from?.value[0]).toEqual({
      address: 'MAILER-DAEMON@filter.example.org',
      name: 'Mail Delivery System',
    })
    expect(parsed.to && !Array.isArray(parsed.to) ? parsed.to.value[0]?.address : undefined).toBe(
      'alice@example.net',
    )
    expect(parsed.subject).toBe('Undelivered Mail Returned to Sender')
    expect(parsed.date?.toISOString()).toBe('2026-06-01T10:05:00.000Z')
    expect(parsed.messageId).toBe(`<${QID}.${Date.parse('2026-06-01T10:05:00Z')}@filter.example.org>`)
    expect(parsed.headers.get('auto-submitted')).toBe('auto-replied')
    expect(parsed.headers.get('mime-version')).toBe('1.0')
    const contentType = parsed.headers.get('content-type') as {
      value: string
      params: Record<string, string>
    }
    expect(contentType.value).toBe('multipart/report')
    expect(contentType.params['report-type']).toBe('delivery-status')
  })

  it('carries a human explanation, a delivery-status part and the original headers, in that order', async () => {
    const parsed = await parse(build().message)
    expect(parsed.text).toContain('filter.example.org')
    expect(parsed.text?.replace(/\s+/g, ' ')).toContain(
      '<bob@example.org>: host mx.example.org said: 550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown',
    )
    expect(parsed.attachments.map((a) => a.contentType)).toEqual([
      'message/delivery-status',
      'text/rfc822-headers',
    ])
    const headers = part(parsed.attachments, 'text/rfc822-headers')
    expect(headers).toContain('Subject: Quarterly report\r\n')
    expect(headers).toContain('\tby mx.example.org; Mon, 1 Jun 2026 10:00:00 +0000\r\n')
  })

  it('reports per-message and per-recipient fields', async () => {
    const parsed = await parse(build().message)
    const status = part(parsed.attachments, 'message/delivery-status')
    expect(status).toContain('Reporting-MTA: dns; filter.example.org\r\n')
    expect(status).toContain(`X-Mailscreen-Queue-ID: ${QID}\r\n`)
    expect(status).toContain('Arrival-Date: Mon, 1 Jun 2026 10:00:00 +0000\r\n')
    expect(status).toContain(
      'Final-Recipient: rfc822; bob@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.example.org\r\n',
    )
    const diagnostic = /Diagnostic-Code:(.*(?:\r\n[ \t].*)*)/.exec(status)?.[1]?.replace(/\r\n/g, '')
    expect(diagnostic).toBe(' smtp; 550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown')
  })

  it('uses CRLF line endings throughout', () => {
    const text = build().message.toString('latin1')
    expect(text).not.toMatch(/[^\r]\n/)
    expect(text.endsWith('--\r\n')).toBe(true)
  })

  it('returns undefined for an original from the null sender', () => {
    expect(buildDsn(input({ envelope: envelope({ mailFrom: '' }) }))).toBeUndefined()
  })

  it('returns undefined when the original is itself a DSN, even with a folded Content-Type', () => {
    const headers = Buffer.from(
      'From: MAILER-DAEMON@elsewhere.example\r\nContent-Type: multipart/report;\r\n\treport-type="delivery-status";\r\n boundary="x"\r\n\r\n',
    )
    expect(buildDsn(input({ originalHeaders: headers }))).toBeUndefined()
  })

  it('still reports on a multipart/report that is not a delivery status (e.g. a read receipt)', () => {
    const headers = Buffer.from(
      'Content-Type: multipart/report; report-type=disposition-notification; boundary="x"\r\n\r\n',
    )
    expect(buildDsn(input({ originalHeaders: headers }))).toBeDefined()
  })

  it('folds a multi-line reply into short lines and keeps all of its text', async () => {
    const reply = [
      '550-5.7.1 The message you sent was rejected because it looks like unsolicited',
      '550-5.7.1 mail. Please visit https://postmaster.example.org/policy for more',
      '550 5.7.1 information. x1sm12345',
    ].join('\n')
    const dsn = build({ failed: [{ ...bob, reply }] })
    for (const line of dsn.message.toString('latin1').split('\r\n'))
      expect(line.length).toBeLessThanOrEqual(78)
    const parsed = await parse(dsn.message)
    const status = part(parsed.attachments, 'message/delivery-status')
    expect(status).toContain('Status: 5.7.1\r\n')
    const diagnostic = /Diagnostic-Code:(.*(?:\r\n[ \t].*)*)/.exec(status)?.[1]?.replace(/\r\n/g, '')
    expect(diagnostic).toBe(` smtp; ${reply.replace(/\n/g, ' ')}`)
    expect(parsed.text?.replace(/\s+/g, ' ')).toContain(reply.replace(/\n/g, ' '))
  })

  it('keeps every line under 998 characters even for a huge unbroken reply or header', () => {
    const dsn = build({
      failed: [{ ...bob, reply: `550 5.0.0 ${'x'.repeat(3000)}` }],
      originalHeaders: Buffer.from(`X-Long: ${'y'.repeat(2500)}\r\n\r\n`),
    })
    for (const line of dsn.message.toString('latin1').split('\r\n')) expect(line.length).toBeLessThan(998)
  })

  it('lists every failed recipient with its own status', async () => {
    const carol: RecipientResult = {
      recipient: 'carol@example.org',
      status: 'failed',
      code: 552,
      reply: '552 5.2.2 <carol@example.org>: mailbox full',
      remoteMta: 'mx.example.org',
    }
    const parsed = await parse(build({ failed: [bob, carol] }).message)
    const status = part(parsed.attachments, 'message/delivery-status')
    expect(status.match(/^Final-Recipient: /gm)).toHaveLength(2)
    expect(status).toMatch(
      /Final-Recipient: rfc822; carol@example.org\r\nAction: failed\r\nStatus: 5.2.2\r\n/,
    )
    expect(parsed.text).toContain('<carol@example.org>: host mx.example.org said: 552 5.2.2')
  })

  it('explains an expired message and reports a reply-less deferral as 4.4.7 without an smtp diagnostic', async () => {
    const refused: RecipientResult = {
      recipient: 'bob@example.org',
      status: 'deferred',
      code: 0,
      reply: 'connect to mx.example.org:25: ECONNREFUSED',
    }
    const parsed = await parse(
      build({ reason: 'expired', failed: [refused], now: new Date('2026-06-06T10:00:00Z') }).message,
    )
    expect(parsed.text).toContain('5 days')
    expect(parsed.text).toContain('<bob@example.org>: connect to mx.example.org:25: ECONNREFUSED')
    const status = part(parsed.attachments, 'message/delivery-status')
    expect(status).toContain('Action: failed\r\nStatus: 4.4.7\r\n')
    expect(status).not.toContain('Remote-MTA:')
    expect(status).toContain('Diagnostic-Code: X-Mailscreen; connect to mx.example.org:25: ECONNREFUSED')
  })

  it('blames no remote host for a refusal decided here (the bounce action, routing, a loop)', async () => {
    const refused: RecipientResult = {
      recipient: 'bob@example.org',
      status: 'failed',
      code: 550,
      reply: '550 5.7.1 Message refused by content filter: virus (Eicar-Signature)',
    }
    const parsed = await parse(build({ failed: [refused] }).message)
    expect(parsed.text).not.toMatch(/remote|said:/)
    expect(parsed.text).toContain('<bob@example.org>: 550 5.7.1 Message refused by content filter')
    const status = part(parsed.attachments, 'message/delivery-status')
    expect(status).not.toContain('Remote-MTA:')
    expect(status).toContain('Status: 5.7.1\r\nDiagnostic-Code: X-Mailscreen; 550 5.7.1 Message refused')
  })

  it('writes a UTF-8 address in RFC 6533 xtext: +, = and backslash escaped like non-ASCII', async () => {
    const failed: RecipientResult = { ...bob, recipient: 'ü+1=2\\x@example.net' }
    const parsed = await parse(build({ failed: [failed] }).message)
    const status = part(parsed.attachments, 'message/delivery-status')
    expect(status).toContain('Final-Recipient: utf-8; \\x{FC}\\x{2B}1\\x{3D}2\\x{5C}x@example.net')
  })

  it('keeps its own headers ASCII while passing 8-bit original headers through unchanged', async () => {
    const original = Buffer.from('Subject: Grüße aus Köln\r\nFrom: jörg@example.net\r\n\r\n', 'utf8')
    const dsn = build({ originalHeaders: original, envelope: envelope({ mailFrom: 'jörg@example.net' }) })
    const raw = dsn.message
    const headerEnd = raw.indexOf('\r\n\r\n')
    expect(/^\p{ASCII}*$/u.test(raw.subarray(0, headerEnd).toString('latin1'))).toBe(true)
    expect(raw.includes(original.subarray(0, original.indexOf('\r\n\r\n')))).toBe(true)
    expect(dsn.rcptTo).toEqual(['jörg@example.net'])
    // Its body is 8-bit: it must go out as BODY=8BITMIME; an ASCII one needs nothing.
    expect(dsn.body).toBe('8BITMIME')
    expect(build().body).toBeUndefined()
    const status = part((await parse(raw)).attachments, 'message/delivery-status')
    expect(status).toContain('X-Mailscreen-Sender: utf-8; j\\x{F6}rg@example.net')
  })

  it('picks a boundary that does not occur in the content', () => {
    const boundary = `=_dsn_${QID}_${Date.parse('2026-06-01T10:05:00Z')}`
    const dsn = build({ originalHeaders: Buffer.from(`X-Trap: --${boundary}\r\n\r\n`) })
    expect(dsn.message.toString('latin1')).toContain(`boundary="${boundary}.1"`)
  })
})

describe('dsnStatus', () => {
  const result = (
    reply: string,
    code: number,
    status: RecipientResult['status'] = 'failed',
  ): RecipientResult => ({
    recipient: 'bob@x',
    status,
    code,
    reply,
  })

  it('extracts the enhanced code from the reply', () => {
    expect(dsnStatus(result('550 5.1.1 <bob@x>: Recipient address rejected', 550))).toBe('5.1.1')
    expect(dsnStatus(result('451-4.7.1 greylisted\n451 4.7.1 try later', 451, 'deferred'))).toBe('4.7.1')
  })

  it('ignores an enhanced code whose class contradicts the reply code', () => {
    expect(dsnStatus(result('550 4.2.2 mailbox full', 550))).toBe('5.0.0')
    expect(dsnStatus(result('552 2.0.0 whatever', 552))).toBe('5.0.0')
    expect(dsnStatus(result('452 5.2.2 mailbox full', 452, 'deferred'))).toBe('4.4.7')
  })

  it('falls back to 5.0.0 for a failure and 4.4.7 for an expired deferral', () => {
    expect(dsnStatus(result('550 no such user here', 550))).toBe('5.0.0')
    expect(dsnStatus(result('lost connection with mx:25 while sending DATA', 0, 'deferred'))).toBe('4.4.7')
  })
})
