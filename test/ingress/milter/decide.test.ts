import { describe, expect, it } from 'vitest'
import { configSchema } from '../../../src/config/schema.js'
import { milterHeaderEdits, SCAN_TEMPFAIL, toMilterDecision } from '../../../src/ingress/milter/decide.js'
import type { MilterHeader } from '../../../src/ingress/milter/session.js'
import { stripParts } from '../../../src/mail/strip.js'
import { compilePolicy, plan } from '../../../src/pipeline/actions.js'
import { loadPolicy } from '../../../src/pipeline/policy.js'
import type { ScanReport } from '../../../src/pipeline/scan.js'
import type { Verdict } from '../../../src/pipeline/verdict.js'
import type { QueueId } from '../../../src/queue/ids.js'
import { testEnvelope } from '../../support/check.js'

const QID = 'AAAAAAAAAAAAAAAA' as QueueId
const HEADERS: MilterHeader[] = [
  { name: 'From', value: 'a@example.org' },
  { name: 'Subject', value: 'Hello' },
  { name: 'X-Spam-Flag', value: 'NO' },
  { name: 'x-spam-flag', value: 'NO' },
  { name: 'Content-Type', value: 'multipart/mixed; boundary="b"' },
]

function verdict(category: Verdict['category'], extra: Partial<Verdict> = {}): Verdict {
  return { category, final: true, score: 0, required: 5, hits: [], tempfail: [], reasons: [], ...extra }
}

/** A report as the worker makes it, with the milter's default action lists. */
function report(v: Verdict, actions: Record<string, string> = {}): ScanReport {
  const milterActions = { highspam: 'reject', virus: 'reject', banned: 'reject', ...actions }
  const settings = loadPolicy(configSchema.parse({}).policy, '/', 'mx.test', {
    key: 'milter.actions',
    actions: milterActions,
  })
  const disposition = v.final ? plan(v, testEnvelope, QID, compilePolicy(settings)) : undefined
  return { queueId: QID, verdict: v, timings: {}, failedChecks: [], ...(disposition ? { disposition } : {}) }
}

describe('toMilterDecision', () => {
  it('tempfails with 451 4.7.1 while a check with policy tempfail cannot answer', () => {
    const decision = toMilterDecision(
      report(verdict('clean', { final: false, tempfail: ['clamav: down'] })),
      HEADERS,
    )
    expect(decision).toEqual({ action: 'tempfail', reply: SCAN_TEMPFAIL })
  })

  it('rejects a virus with 550 5.7.1 naming it', () => {
    const v = verdict('virus', {
      reasons: ['Eicar-Test-Signature'],
      hits: [
        {
          symbol: 'CLAMAV_VIRUS',
          plugin: 'clamav',
          score: 100,
          evidence: ['Eicar-Test-Signature'],
          category: 'virus',
        },
      ],
    })
    expect(toMilterDecision(report(v), HEADERS)).toEqual({
      action: 'reject',
      reply: { code: 550, status: '5.7.1', text: 'Message refused: virus (Eicar-Test-Signature)' },
    })
  })

  it('tags spam and accepts it with our headers, replacing forged ones', () => {
    const decision = toMilterDecision(report(verdict('spam', { score: 6 })), HEADERS)
    expect(decision.action).toBe('accept')
    const edits = decision.action === 'accept' ? (decision.headers ?? []) : []
    // Both forged X-Spam-Flag fields deleted, highest index first.
    expect(edits.slice(0, 2)).toEqual([
      { op: 'chgheader', name: 'X-Spam-Flag', index: 2, value: '' },
      { op: 'chgheader', name: 'X-Spam-Flag', index: 1, value: '' },
    ])
    expect(edits).toContainEqual({
      op: 'insheader',
      index: 1,
      name: 'X-mailscreen-Scanned',
      value: expect.stringContaining('mx.test'),
    })
    expect(edits).toContainEqual(
      expect.objectContaining({ op: 'insheader', name: 'X-Spam-Flag', value: 'YES' }),
    )
    expect(edits).toContainEqual({ op: 'chgheader', name: 'Subject', index: 1, value: '{Spam?} Hello' })
    expect(edits.some((e) => e.name === 'Received')).toBe(false)
  })

  it('puts a quarantine verdict in the MTA hold queue with the reason', () => {
    const decision = toMilterDecision(
      report(verdict('spam', { score: 6, reasons: ['score 6 >= 5'] }), { spam: 'quarantine' }),
      HEADERS,
    )
    expect(decision).toMatchObject({ action: 'quarantine', reason: 'mailscreen: spam: score 6 >= 5' })
  })

  it('discards on drop, and treats bounce as a reject (the sender is still on the line)', () => {
    expect(toMilterDecision(report(verdict('spam'), { spam: 'drop' }), HEADERS)).toEqual({
      action: 'discard',
    })
    expect(toMilterDecision(report(verdict('spam'), { spam: 'bounce' }), HEADERS).action).toBe('reject')
  })

  it('holds the original for "quarantine strip": no body replacement goes to the hold queue', () => {
    const raw = Buffer.from(
      'From: a@example.org\r\nSubject: Hello\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' +
        '--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/octet-stream; name="x.exe"\r\n\r\nMZ\r\n--b--\r\n',
    )
    const stripped = stripParts(raw, new Set(['2']), 'removed')
    const decision = toMilterDecision(
      report(verdict('spam'), { spam: 'quarantine strip' }),
      HEADERS,
      stripped,
    )
    expect(decision.action).toBe('quarantine')
    if (decision.action !== 'quarantine') return
    expect(decision.body).toBeUndefined()
    expect(decision.headers?.some((e) => e.name === 'Content-Type')).toBe(false)
  })

  it('holds a forward-only list instead of delivering to the recipients it meant to skip', () => {
    const decision = toMilterDecision(
      report(verdict('spam'), { spam: 'forward spamtrap@example.org' }),
      HEADERS,
    )
    expect(decision).toMatchObject({
      action: 'quarantine',
      reason: expect.stringContaining('forward is not possible in milter mode'),
    })
    // With deliver as well, the recipients get it; the forward is the part that cannot be done.
    expect(
      toMilterDecision(report(verdict('spam'), { spam: 'deliver forward spamtrap@example.org' }), HEADERS)
        .action,
    ).toBe('accept')
  })

  it('replaces the body and the content fields for strip', () => {
    const raw = Buffer.from(
      'From: a@example.org\r\nSubject: Hello\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' +
        '--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/octet-stream; name="x.exe"\r\n\r\nMZ\r\n--b--\r\n',
    )
    const v = verdict('banned', {
      reasons: ['x.exe: no programs'],
      hits: [
        {
          symbol: 'ATTACHMENT_BANNED',
          plugin: 'attachments',
          score: 0,
          evidence: ['x.exe: no programs'],
          category: 'banned',
          parts: ['2'],
        },
      ],
    })
    const r = report(v, { banned: 'strip' })
    const stripped = stripParts(raw, new Set(['2']), 'removed')
    const decision = toMilterDecision(r, HEADERS, stripped)
    expect(decision.action).toBe('accept')
    if (decision.action !== 'accept') return
    const body = decision.body as Buffer
    expect(body.toString()).toContain('removed')
    expect(body.toString()).not.toContain('x.exe')
    const type = decision.headers?.find((e) => e.op === 'chgheader' && e.name === 'Content-Type')
    expect(type).toMatchObject({
      index: 1,
      value: expect.stringMatching(/^multipart\/mixed; boundary="=_mailscreen_/),
    })
    // MIME-Version was not in the MTA's headers: it is added.
    expect(decision.headers).toContainEqual({ op: 'addheader', name: 'MIME-Version', value: '1.0' })
  })
})

describe('milterHeaderEdits', () => {
  it('adds a Subject when there is none to tag', () => {
    expect(milterHeaderEdits([{ op: 'tagSubject', tag: '{Spam?}' }], [])).toEqual([
      { op: 'addheader', name: 'Subject', value: '{Spam?}' },
    ])
  })

  it('leaves an already tagged subject alone and tags at the end when asked', () => {
    const headers = [{ name: 'Subject', value: '{Spam?} Hi' }]
    expect(milterHeaderEdits([{ op: 'tagSubject', tag: '{Spam?}' }], headers)).toEqual([])
    expect(milterHeaderEdits([{ op: 'tagSubject', tag: '[x]', position: 'end' }], headers)).toEqual([
      { op: 'chgheader', name: 'Subject', index: 1, value: '{Spam?} Hi [x]' },
    ])
  })

  it('writes tags and header values that are not ASCII as RFC 2047 encoded words, as the filter does', () => {
    const edits = milterHeaderEdits(
      [
        { op: 'prepend', name: 'X-Note', value: 'geprüft' },
        { op: 'tagSubject', tag: '[СПАМ]' },
      ],
      [{ name: 'Subject', value: 'hi' }],
    )
    expect(edits).toEqual([
      { op: 'insheader', index: 1, name: 'X-Note', value: '=?UTF-8?B?Z2VwcsO8ZnQ=?=' },
      { op: 'chgheader', name: 'Subject', index: 1, value: '=?UTF-8?B?W9Ch0J/QkNCcXQ==?= hi' },
    ])
    expect(milterHeaderEdits([{ op: 'tagSubject', tag: '[СПАМ]' }], [])).toEqual([
      { op: 'addheader', name: 'Subject', value: '=?UTF-8?B?W9Ch0J/QkNCcXQ==?=' },
    ])
  })
})
