import { describe, expect, it } from 'vitest'
import {
  formatReply,
  normalizeIp,
  parseAttributes,
  parseParams,
  parsePath,
} from '../../src/ingress/smtp-command.js'
import { reply } from '../../src/ingress/smtp-reply.js'

describe('formatReply', () => {
  it('puts the enhanced status code after the basic code', () => {
    expect(formatReply(reply(250, '2.1.0', 'Ok'))).toBe('250 2.1.0 Ok\r\n')
    expect(formatReply(reply(354, undefined, 'Go ahead'))).toBe('354 Go ahead\r\n')
  })

  it('writes multi-line replies with dash continuations, repeating the status on each line', () => {
    expect(formatReply(reply(550, '5.7.1', 'Rejected\nSee https://example.org'))).toBe(
      '550-5.7.1 Rejected\r\n550 5.7.1 See https://example.org\r\n',
    )
  })

  it('never lets a CR from the text into the reply', () => {
    expect(formatReply(reply(451, '4.3.0', 'a\r\nb\rc'))).toBe('451-4.3.0 a\r\n451 4.3.0 bc\r\n')
  })
})

describe('parsePath', () => {
  it('takes the path and the parameters', () => {
    expect(parsePath('FROM:<a@example.org> SIZE=10 BODY=8BITMIME', 'FROM')).toEqual({
      ok: true,
      value: { path: 'a@example.org', params: ' SIZE=10 BODY=8BITMIME' },
    })
    expect(parsePath('to: <b@example.net>', 'TO')).toMatchObject({
      ok: true,
      value: { path: 'b@example.net' },
    })
  })

  it('allows spaces and angle brackets inside a quoted local part', () => {
    expect(parsePath('TO:<"john >doe"@example.net>', 'TO')).toMatchObject({
      ok: true,
      value: { path: '"john >doe"@example.net', params: '' },
    })
  })

  it('drops a source route', () => {
    expect(parsePath('TO:<@a.example,@b.example:c@example.net>', 'TO')).toMatchObject({
      value: { path: 'c@example.net' },
    })
  })

  it('refuses missing brackets, junk after the path, and controls or spaces in it', () => {
    expect(parsePath('FROM:a@example.org', 'FROM')).toMatchObject({
      ok: false,
      reply: { code: 501, status: '5.5.4' },
    })
    expect(parsePath('FROM:<a@example.org>x', 'FROM')).toMatchObject({ ok: false, reply: { code: 501 } })
    expect(parsePath('TO:<a b@example.net>', 'TO')).toMatchObject({ ok: false, reply: { status: '5.1.3' } })
    expect(parsePath('FROM:<a\u0000@example.org>', 'FROM')).toMatchObject({
      ok: false,
      reply: { status: '5.1.7' },
    })
    expect(parsePath('FROM:<a@example.org>', 'TO')).toMatchObject({ ok: false })
  })
})

describe('parseParams', () => {
  it('splits KEY=VALUE and bare keywords, upper-casing keys', () => {
    expect(parseParams(' size=10  SMTPUTF8 body=8bitmime')).toEqual([
      { key: 'SIZE', value: '10' },
      { key: 'SMTPUTF8', value: undefined },
      { key: 'BODY', value: '8bitmime' },
    ])
  })
})

describe('parseAttributes', () => {
  const allowed = new Set(['NAME', 'ADDR', 'HELO'])

  it('decodes xtext, unsets [UNAVAILABLE] and normalises ADDR', () => {
    const parsed = parseAttributes('name=[UNAVAILABLE] HELO=a+2Bb ADDR=IPv6:2001:DB8::5', allowed, 'XFORWARD')
    expect(parsed.ok && [...parsed.value]).toEqual([
      ['NAME', undefined],
      ['HELO', 'a+b'],
      ['ADDR', '2001:db8::5'],
    ])
  })

  it('refuses unknown names, bad xtext and bad addresses', () => {
    expect(parseAttributes('PORT=25', allowed, 'XCLIENT')).toMatchObject({ ok: false, reply: { code: 501 } })
    expect(parseAttributes('HELO=a+zz', allowed, 'XCLIENT')).toMatchObject({ ok: false })
    expect(parseAttributes('ADDR=999.1.1.1', allowed, 'XCLIENT')).toMatchObject({ ok: false })
    expect(parseAttributes('', allowed, 'XCLIENT')).toMatchObject({ ok: false })
  })
})

describe('normalizeIp', () => {
  it('turns IPv4-mapped IPv6 into IPv4', () => {
    expect(normalizeIp('::ffff:127.0.0.1')).toBe('127.0.0.1')
    expect(normalizeIp('2001:DB8::1')).toBe('2001:db8::1')
  })
})
