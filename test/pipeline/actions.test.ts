import { describe, expect, it } from 'vitest'
import { configSchema, type PolicyConfig } from '../../src/config/schema.js'
import type { Envelope } from '../../src/ingress/envelope.js'
import { applyEdits, type HeaderEdit } from '../../src/mail/edits.js'
import { createMessageView } from '../../src/mail/message.js'
import { parseActionList } from '../../src/pipeline/action-list.js'
import {
  compilePolicy,
  type PolicySettings,
  plan,
  receivedHeader,
  scanHeaders,
  stripNotice,
  verdictSummary,
} from '../../src/pipeline/actions.js'
import { loadPolicy } from '../../src/pipeline/policy.js'
import { parseRuleset } from '../../src/pipeline/ruleset.js'
import type { ScoredHit, Verdict, VerdictCategory } from '../../src/pipeline/verdict.js'
import type { QueueId } from '../../src/queue/ids.js'

const QID = '0AbCdEf123456789' as QueueId
const HOST = 'mx.example.org'
const defaults: PolicyConfig = configSchema.parse({}).policy

function settingsWith(
  actions: Partial<PolicyConfig['actions']> = {},
  over: Partial<PolicyConfig> = {},
): PolicySettings {
  return loadPolicy(
    { ...defaults, ...over, actions: { ...defaults.actions, ...actions } },
    '/nonexistent',
    HOST,
  )
}

function compiled(actions: Partial<PolicyConfig['actions']> = {}, over: Partial<PolicyConfig> = {}) {
  return compilePolicy(settingsWith(actions, over))
}

function envelope(over: Partial<Envelope> = {}): Envelope {
  return {
    mailFrom: 'alice@example.org',
    rcptTo: ['bob@example.net', 'carol@example.net'],
    client: { address: '203.0.113.7', name: 'mail.example.org', helo: 'mail.example.org' },
    peer: { address: '127.0.0.1' },
    receivedAt: Date.UTC(2026, 10, 23, 20, 0, 36),
    ...over,
  }
}

/** What plan() decides for the verdict `over` describes, on envelope(), under compiled(`actions`, `policy`). */
function planned(
  over: Partial<Verdict> = {},
  actions: Partial<PolicyConfig['actions']> = {},
  policy: Partial<PolicyConfig> = {},
) {
  return plan(verdict(over), envelope(), QID, compiled(actions, policy))
}

function verdict(over: Partial<Verdict> = {}): Verdict {
  return {
    category: 'clean',
    final: true,
    score: 0,
    required: 5,
    hits: [],
    tempfail: [],
    reasons: [],
    ...over,
  }
}

function hit(symbol: string, score: number, over: Partial<ScoredHit> = {}): ScoredHit {
  return { symbol, plugin: 'p', score, evidence: [], ...over }
}

function prepended(edits: readonly HeaderEdit[], name: string): string[] {
  return edits.flatMap((e) => (e.op === 'prepend' && e.name === name ? [e.value] : []))
}

const OWN = [
  'X-mailscreen-Scanned',
  'X-mailscreen-Verdict',
  'X-mailscreen-SpamCheck',
  'X-mailscreen-SpamScore',
  'X-mailscreen-Virus',
  'X-Spam-Flag',
  'X-Spam-Status',
  'X-mailscreen-Released',
]

describe('plan: where the message goes', () => {
  it('delivers a clean message to every envelope recipient, in order', () => {
    const d = planned()
    expect(d.actions).toBe('deliver')
    expect(d.rule).toBe('policy.actions.clean')
    expect(d.deliverTo).toEqual(['bob@example.net', 'carol@example.net'])
    expect(d.quarantine).toBe(false)
    expect(d.bounce).toBe(false)
    expect(Object.hasOwn(d, 'strip')).toBe(false)
  })

  it('quarantines high-scoring spam and delivers nothing (default)', () => {
    const d = planned({ category: 'highspam', score: 12 })
    expect(d).toMatchObject({ actions: 'quarantine', deliverTo: [], quarantine: true, bounce: false })
  })

  it('adds forward addresses to the recipients and does not repeat an address', () => {
    const d = planned(
      { category: 'spam', score: 6 },
      {
        spam: 'deliver forward trap@example.org forward carol@example.net forward trap@example.org',
      },
    )
    expect(d.deliverTo).toEqual(['bob@example.net', 'carol@example.net', 'trap@example.org'])
  })

  it('sends only to the forward address when there is no deliver', () => {
    const d = planned({ category: 'spam' }, { spam: 'quarantine forward a@b.example' })
    expect(d.deliverTo).toEqual(['a@b.example'])
    expect(d.quarantine).toBe(true)
  })

  it('delivers nothing for drop, and says neither quarantine nor bounce', () => {
    const d = planned({ category: 'spam' }, { spam: 'drop' })
    expect(d).toMatchObject({ actions: 'drop', deliverTo: [], quarantine: false, bounce: false })
  })

  it('says bounce for bounce, and delivers nothing', () => {
    const d = planned({ category: 'banned' }, { banned: 'quarantine bounce' })
    expect(d).toMatchObject({ deliverTo: [], quarantine: true, bounce: true })
  })

  it('writes the applied list back as text', () => {
    const d = planned({ category: 'spam' }, { spam: 'TAG "{Spam ?}" header "X-Note: a \\"b\\"" Deliver' })
    expect(d.actions).toBe('tag "{Spam ?}" header "X-Note: a \\"b\\"" deliver')
    expect(parseActionList(d.actions)).toEqual(
      parseActionList('tag "{Spam ?}" header "X-Note: a \\"b\\"" deliver'),
    )
  })

  it('picks the list by ruleset for the whole message when one of several recipients matches To:', () => {
    const settings = settingsWith()
    const spamRules = parseRuleset(
      '# spam\nTo: vip@example.net quarantine forward boss@example.net\nFromOrTo: default tag deliver',
      'rules/spam.rules',
      parseActionList,
    )
    const policy = compilePolicy({ ...settings, actions: { ...settings.actions, spam: spamRules } })
    const several = plan(
      verdict({ category: 'spam' }),
      envelope({ rcptTo: ['a@example.net', 'vip@example.net'] }),
      QID,
      policy,
    )
    expect(several.rule).toBe('rules/spam.rules:2')
    expect(several.deliverTo).toEqual(['boss@example.net'])
    expect(several.quarantine).toBe(true)
    const others = plan(verdict({ category: 'spam' }), envelope(), QID, policy)
    expect(others.rule).toBe('rules/spam.rules:3')
    expect(others.deliverTo).toEqual(['bob@example.net', 'carol@example.net'])
  })

  it('chooses by the null sender', () => {
    const settings = settingsWith()
    const rules = parseRuleset('From: <> drop\nFromOrTo: default deliver', 'r', parseActionList)
    const policy = compilePolicy({ ...settings, actions: { ...settings.actions, clean: rules } })
    expect(plan(verdict(), envelope({ mailFrom: '' }), QID, policy)).toMatchObject({
      rule: 'r:1',
      deliverTo: [],
    })
    expect(plan(verdict(), envelope(), QID, policy).rule).toBe('r:2')
  })
})

describe('plan: header edits', () => {
  it('removes forged scan fields first, then adds Received and the scan headers', () => {
    const d = planned()
    expect(d.edits.slice(0, OWN.length)).toEqual(OWN.map((name) => ({ op: 'remove', name })))
    expect(d.edits[OWN.length]).toMatchObject({ op: 'prepend', name: 'Received' })
    expect(d.edits.slice(OWN.length + 1).map((e) => (e.op === 'prepend' ? e.name : e.op))).toEqual([
      'X-mailscreen-Scanned',
      'X-mailscreen-Verdict',
      'X-mailscreen-SpamCheck',
      'X-Spam-Flag',
      'X-Spam-Status',
    ])
  })

  it('tags with the category’s configured tag at the configured position', () => {
    const start = planned({ category: 'spam' })
    expect(start.edits.filter((e) => e.op === 'tagSubject')).toEqual([
      { op: 'tagSubject', tag: '{Spam?}', position: 'start' },
    ])
    const end = planned(
      { category: 'virus' },
      { virus: 'tag deliver' },
      { tags: { ...defaults.tags, virus: '[VIRUS]', position: 'end' } },
    )
    expect(end.edits.filter((e) => e.op === 'tagSubject')).toEqual([
      { op: 'tagSubject', tag: '[VIRUS]', position: 'end' },
    ])
  })

  it('tags with the list’s own text when given', () => {
    const d = planned({ category: 'spam' }, { spam: 'tag "***SPAM***" deliver' })
    expect(d.edits.filter((e) => e.op === 'tagSubject')).toEqual([
      { op: 'tagSubject', tag: '***SPAM***', position: 'start' },
    ])
  })

  it('adds no tag without a tag action', () => {
    const d = planned({ category: 'spam' }, { spam: 'deliver' })
    expect(d.edits.some((e) => e.op === 'tagSubject')).toBe(false)
  })

  it('adds header actions as fields, after the scan headers, quotes and all', () => {
    const d = planned(
      { category: 'spam' },
      { spam: 'header "X-Spam: yes" header "X-Note: he said \\"buy\\"" deliver' },
    )
    const names = d.edits.flatMap((e) => (e.op === 'prepend' ? [e.name] : []))
    expect(names.slice(-2)).toEqual(['X-Spam', 'X-Note'])
    expect(prepended(d.edits, 'X-Note')).toEqual(['he said "buy"'])
  })

  it('produces a delivered copy with our scan fields only, whatever the sender forged', () => {
    const raw = Buffer.from(
      [
        'X-Spam-Flag: NO',
        'From: alice@example.org',
        'x-spam-status: No, score=-100',
        '\tforged=yes',
        'X-mailscreen-Verdict: clean',
        'X-MAILSCREEN-SCANNED: by the sender',
        'X-Spam-Level: *',
        'Subject: buy now',
        '',
        'X-Spam-Flag: NO (in the body, stays)',
        '',
      ].join('\r\n'),
    )
    const d = planned(
      { category: 'spam', score: 7.5, hits: [hit('RBL', 7.5)] },
      { spam: 'tag header "X-Spam-Flag: custom" deliver' },
    )
    const out = Buffer.concat(applyEdits(raw, d.edits))
    const view = createMessageView(out)
    expect(view.header('x-spam-flag')).toEqual(['YES', 'custom'])
    expect(view.header('x-spam-status')).toEqual(['Yes, score=7.5 required=5.0 tests=RBL'])
    expect(view.header('x-mailscreen-verdict')).toEqual(['spam, score=7.5 required=5 symbols=RBL=7.5'])
    expect(view.header('x-mailscreen-scanned')).toEqual([`mailscreen on ${HOST} (id ${QID})`])
    expect(view.header('x-spam-level')).toEqual(['*'])
    expect(view.header('subject')).toEqual(['{Spam?} buy now'])
    expect(out.toString()).toContain('\r\n\r\nX-Spam-Flag: NO (in the body, stays)\r\n')
    expect(out.toString()).not.toContain('forged=yes')
  })
})

describe('plan: strip', () => {
  const virusHit = hit('CLAMAV', 0, { category: 'virus', evidence: ['Eicar-Signature'], parts: ['2'] })

  it('strips the parts of the hits that made the category, and says where the original is', () => {
    const v = verdict({
      category: 'virus',
      hits: [virusHit, hit('CLAMAV', 0, { category: 'virus', evidence: ['Win.Test'], parts: ['3.1', '2'] })],
    })
    const d = planned(v)
    expect(d.actions).toBe('quarantine strip')
    expect(d.deliverTo).toEqual(['bob@example.net', 'carol@example.net'])
    expect(d.quarantine).toBe(true)
    expect(d.strip).toEqual({ parts: ['2', '3.1'], notice: stripNotice(v, QID, HOST, true) })
    expect(d.strip?.notice).toContain(`quoting id ${QID}`)
  })

  it('strips everything when a hit concerns the message as a whole', () => {
    const v = verdict({
      category: 'banned',
      hits: [
        hit('BANNED', 0, { category: 'banned', parts: ['2'] }),
        hit('BANNED_WHOLE', 0, { category: 'banned' }),
      ],
    })
    const d = planned(v)
    expect(d.strip?.parts).toBe('all')
    expect(d.strip?.notice).toContain('The removed content was not kept.')
  })

  it('does not strip without a strip action', () => {
    const d = planned({ category: 'virus', hits: [virusHit] }, { virus: 'quarantine' })
    expect(Object.hasOwn(d, 'strip')).toBe(false)
    expect(d.deliverTo).toEqual([])
  })

  // A virus message's default list is `quarantine strip`: its banned .exe must go too, as it
  // would have had the message been only banned.
  it('also strips banned and unscannable parts of a virus message', () => {
    const v = verdict({
      category: 'virus',
      hits: [virusHit, hit('BANNED_EXE', 0, { category: 'banned', evidence: ['x.exe'], parts: ['3'] })],
    })
    const d = planned(v)
    expect(d.deliverTo.length).toBeGreaterThan(0)
    expect(d.strip?.parts).toEqual(['2', '3'])
  })

  // An unscannable verdict made by a tempfail on the last chance has no hits at all: nothing
  // of it was checked, so nothing of it goes out.
  it('strips everything of an unscannable message that has no hits but a strip action', () => {
    const v = verdict({ category: 'unscannable', reasons: ['clamd: down'], tempfail: ['clamd: down'] })
    const d = planned(v, { unscannable: 'strip' })
    expect(d.deliverTo).toEqual(['bob@example.net', 'carol@example.net'])
    expect(d.strip?.parts).toBe('all')
  })

  it('strips everything when a check failed, also beside findings that name their parts', () => {
    const banned = hit('BANNED_EXE', 0, { category: 'banned', evidence: ['x.exe'], parts: ['3'] })
    // Unscannable at the end of the queue lifetime, clamd having failed throughout.
    const unscannable = verdict({ category: 'unscannable', hits: [banned], tempfail: ['clamav: down'] })
    expect(planned(unscannable, { unscannable: 'strip' }).strip?.parts).toBe('all')
    // A virus is final at once, while the attachments check that would have named the .exe failed.
    const virus = verdict({ category: 'virus', hits: [virusHit], tempfail: ['attachments: timed out'] })
    const d = planned(virus)
    expect(d.deliverTo.length).toBeGreaterThan(0)
    expect(d.strip?.parts).toBe('all')
  })
})

describe('scanHeaders', () => {
  const settings = settingsWith({}, { scannedHeader: 'mailscreen 0.1' })

  function headers(v: Verdict): Record<string, string[]> {
    const out: Record<string, string[]> = {}
    for (const e of scanHeaders(v, QID, settings)) {
      expect(e.op).toBe('prepend')
      if (e.op === 'prepend') out[e.name] = [...(out[e.name] ?? []), e.value]
    }
    return out
  }

  it('writes every field for spam', () => {
    const v = verdict({
      category: 'spam',
      score: 7.5,
      hits: [hit('RBL_A', 5), hit('BAYES', 2.5), hit('INFO', 0)],
    })
    expect(headers(v)).toEqual({
      'X-mailscreen-Scanned': [`mailscreen 0.1 on ${HOST} (id ${QID})`],
      'X-mailscreen-Verdict': ['spam, score=7.5 required=5 symbols=RBL_A=5 BAYES=2.5 INFO'],
      'X-mailscreen-SpamCheck': ['spam, score=7.5 required=5 (RBL_A 5, BAYES 2.5)'],
      'X-Spam-Flag': ['YES'],
      'X-Spam-Status': ['Yes, score=7.5 required=5.0 tests=RBL_A,BAYES,INFO'],
      'X-mailscreen-SpamScore': ['sssssss'],
    })
  })

  it('writes a clean message without hits', () => {
    expect(headers(verdict())).toEqual({
      'X-mailscreen-Scanned': [`mailscreen 0.1 on ${HOST} (id ${QID})`],
      'X-mailscreen-Verdict': ['clean, score=0 required=5'],
      'X-mailscreen-SpamCheck': ['not spam, score=0 required=5'],
      'X-Spam-Flag': ['NO'],
      'X-Spam-Status': ['No, score=0.0 required=5.0 tests=none'],
    })
  })

  it('labels each category and flags only spam and high-scoring spam', () => {
    const labels: Record<VerdictCategory, [string, string]> = {
      clean: ['not spam', 'NO'],
      spam: ['spam', 'YES'],
      highspam: ['spam, high scoring', 'YES'],
      virus: ['virus', 'NO'],
      banned: ['banned attachment', 'NO'],
      unscannable: ['unscannable', 'NO'],
    }
    for (const [category, [label, flag]] of Object.entries(labels) as Array<
      [VerdictCategory, [string, string]]
    >) {
      const h = headers(verdict({ category }))
      expect(h['X-mailscreen-SpamCheck'], category).toEqual([`${label}, score=0 required=5`])
      expect(h['X-Spam-Flag'], category).toEqual([flag])
    }
  })

  it('names the administrator list in SpamCheck', () => {
    const h = headers(verdict({ listed: { list: 'definitelyNotSpam', rule: 'r:1' }, score: 12 }))
    expect(h['X-mailscreen-SpamCheck']).toEqual(['not spam, definitelyNotSpam, score=12 required=5'])
  })

  it('puts one s per whole point in SpamScore, none below 1, at most 50', () => {
    const spamScore = (score: number) => headers(verdict({ score }))['X-mailscreen-SpamScore']
    expect(spamScore(0)).toBeUndefined()
    expect(spamScore(0.99)).toBeUndefined()
    expect(spamScore(-3)).toBeUndefined()
    expect(spamScore(1)).toEqual(['s'])
    expect(spamScore(4.99)).toEqual(['ssss'])
    expect(spamScore(50)).toEqual(['s'.repeat(50)])
    expect(spamScore(50.5)).toEqual(['s'.repeat(50)])
    expect(spamScore(1234)).toEqual(['s'.repeat(50)])
  })

  it('shows at most ten non-zero symbols in SpamCheck but all in X-Spam-Status', () => {
    const hits = Array.from({ length: 12 }, (_, i) => hit(`S${String(i).padStart(2, '0')}`, 12 - i))
    const h = headers(verdict({ category: 'highspam', score: 78, hits }))
    const check = h['X-mailscreen-SpamCheck']?.[0] ?? ''
    expect(check).toContain('(S00 12, S01 11,')
    expect(check).toContain('S09 3)')
    expect(check).not.toContain('S10')
    expect(h['X-Spam-Status']?.[0]).toContain(`tests=${hits.map((x) => x.symbol).join(',')}`)
  })

  it('rounds scores to one decimal in X-Spam-Status', () => {
    const h = headers(verdict({ category: 'spam', score: 5.25, required: 4.5 }))
    expect(h['X-Spam-Status']?.[0]).toMatch(/^Yes, score=5\.3 required=4\.5 /)
  })

  it('names the viruses found', () => {
    const h = headers(
      verdict({
        category: 'virus',
        hits: [
          hit('CLAM', 0, { category: 'virus', evidence: ['Eicar-Signature', 'Win.Trojan'] }),
          hit('BANNED', 0, { category: 'banned', evidence: ['x.exe'] }),
          hit('OTHER', 0, { category: 'virus', evidence: ['Second'] }),
        ],
      }),
    )
    expect(h['X-mailscreen-Virus']).toEqual(['Eicar-Signature, Win.Trojan, Second'])
  })
})

describe('scanHeaders with many hits of one symbol', () => {
  it('names each symbol once in X-Spam-Status, and folds it within the line limits', () => {
    const hits = Array.from({ length: 60 }, (_, i) =>
      hit('ATTACHMENT_BANNED', 0, { category: 'banned', evidence: [`f${i}.exe`], parts: [`${i + 2}`] }),
    )
    const edits = scanHeaders(verdict({ category: 'banned', hits }), QID, settingsWith({}))
    expect(prepended(edits, 'X-Spam-Status')).toEqual(['No, score=0.0 required=5.0 tests=ATTACHMENT_BANNED'])
    const out = Buffer.concat(applyEdits(Buffer.from('Subject: x\r\n\r\nbody\r\n'), edits)).toString()
    expect(Math.max(...out.split('\r\n').map((l) => l.length))).toBeLessThanOrEqual(998)
  })
})

describe('receivedHeader', () => {
  it('names the client, our host, the queue id and the single recipient', () => {
    expect(receivedHeader(envelope({ rcptTo: ['bob@example.net'] }), QID, HOST)).toBe(
      `from mail.example.org (mail.example.org [203.0.113.7]) by ${HOST} (mailscreen) with ESMTP id ${QID} for <bob@example.net>; Mon, 23 Nov 2026 20:00:36 +0000`,
    )
  })

  it('writes an IPv6 client as an address literal with its tag (RFC 5321 §4.1.3)', () => {
    const client = { address: '2001:db8::1', helo: 'mail.example.org' }
    expect(receivedHeader(envelope({ client }), QID, HOST)).toMatch(
      /^from mail\.example\.org \(\[IPv6:2001:db8::1\]\) by /,
    )
  })

  it('leaves out the recipient when there are several, and uses the address without HELO or name', () => {
    expect(receivedHeader(envelope({ client: { address: '2001:db8::1' }, smtpUtf8: true }), QID, HOST)).toBe(
      `from [IPv6:2001:db8::1] ([IPv6:2001:db8::1]) by ${HOST} (mailscreen) with UTF8SMTP id ${QID}; Mon, 23 Nov 2026 20:00:36 +0000`,
    )
  })
})

describe('verdictSummary', () => {
  it('lists symbols with their scores, zero-score ones by name only', () => {
    expect(
      verdictSummary(
        verdict({ category: 'highspam', score: 11, hits: [hit('A', 11), hit('B', 0), hit('C', -0.5)] }),
      ),
    ).toBe('highspam, score=11 required=5 symbols=A=11 B C=-0.5')
  })
})

describe('stripNotice', () => {
  it('lists the evidence of the hits that made the category, and where the original is', () => {
    const v = verdict({
      category: 'virus',
      hits: [
        hit('CLAM', 0, { category: 'virus', evidence: ['Eicar-Signature', 'Win.Test'] }),
        hit('NOEVIDENCE', 0, { category: 'virus' }),
        hit('RBL', 3),
      ],
    })
    expect(stripNotice(v, QID, HOST, true)).toBe(
      [
        `mailscreen on ${HOST} removed content from this message (id ${QID}):`,
        '',
        '  - Eicar-Signature (CLAM)',
        '  - Win.Test (CLAM)',
        '  - NOEVIDENCE (NOEVIDENCE)',
        '',
        `The original is kept in quarantine. To receive it, ask your mail administrator, quoting id ${QID}.`,
        '',
      ].join('\n'),
    )
    expect(stripNotice(v, QID, HOST, false)).toContain('\nThe removed content was not kept.\n')
  })
})

describe('compilePolicy', () => {
  it('names an inline list by its key only and a ruleset list by file:line', () => {
    const settings = settingsWith()
    const policy = compilePolicy({
      ...settings,
      definitelySpam: {
        source: 'policy.definitelySpam',
        rules: [{ line: 0, conditions: [{ direction: 'from', pattern: '*@spam.example' }], value: true }],
      },
      definitelyNotSpam: parseRuleset('# x\nFrom: *@good.example yes', 'rules/ok.rules', (t) => t === 'yes'),
    })
    expect(policy.listed(envelope({ mailFrom: 'a@spam.example' }))).toEqual({
      list: 'definitelySpam',
      rule: 'policy.definitelySpam',
    })
    expect(policy.listed(envelope({ mailFrom: 'a@good.example' }))).toEqual({
      list: 'definitelyNotSpam',
      rule: 'rules/ok.rules:2',
    })
    expect(policy.listed(envelope())).toBeUndefined()
  })

  it('prefers not-spam when an envelope is on both lists', () => {
    const policy = compiled({}, { definitelyNotSpam: ['*@both.example'], definitelySpam: ['both.example'] })
    expect(policy.listed(envelope({ mailFrom: 'x@both.example' }))?.list).toBe('definitelyNotSpam')
  })
})
