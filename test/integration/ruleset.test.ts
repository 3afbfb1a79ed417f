/**
 * Policy through the running filter: a ruleset file picks the spam actions per envelope
 * (deliver with a header, quarantine, bounce, forward, drop), the administrator's lists
 * override the score (definitelyNotSpam by sender, definitelySpam by the client address that
 * XFORWARD names), high-scoring spam is quarantined by default, a scores file changes weights
 * and so categories; a bad scores file or ruleset line stops `start` and `check-config` with
 * MSC_RULES_INVALID naming file:line.
 *
 * The spam comes from the built-in example plugin: EXAMPLE_SUBJECT_WORD (subject contains
 * "lottery") and EXAMPLE_NO_DATE, weighted 6 and 5 by the scores file (defaults 3 and 1), so
 * with the thresholds 5 and 10: a subject word is spam (6), a missing Date alone is spam (5),
 * both are high-scoring spam (11).
 */
import { mkdtemp, readdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { type Sink, startSink } from '../../src/bench/sink.js'
import {
  byTag,
  cliJson,
  field,
  fields,
  quarantineHolding,
  send,
  sleep,
  textMessage,
} from '../support/mail.js'
import {
  cleanup,
  type LogLine,
  type MailscreenProcess,
  runCli,
  startMailscreen,
  stopAll,
} from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'

const SPAM_RULES = [
  '# spam routing: first match wins',
  'To: *@sales.example.com        deliver header "X-Spam: yes"',
  'To: bounce@other.example.org   bounce',
  'To: fwd@other.example.org      tag deliver forward admin@example.net',
  'To: drop@other.example.org     drop',
  'FromOrTo: default              quarantine',
  '',
].join('\n')

const SCORES = ['# weights for this site', 'EXAMPLE_SUBJECT_WORD 6', 'EXAMPLE_NO_DATE   5', ''].join('\n')

const EXAMPLE = { use: 'example', options: { subjectWords: ['lottery'] } }

interface MessageSpec {
  readonly tag: string
  readonly subject: string
  /** Leave out the Date header (EXAMPLE_NO_DATE). */
  readonly noDate?: boolean
  readonly from?: string
}

/** A test message to someone@example.net saying hello. */
function message({ tag, subject, noDate, from }: MessageSpec): Buffer {
  return textMessage({ tag, subject, from, to: 'someone@example.net', date: !noDate, body: `hello (${tag})` })
}

/** XFORWARD attributes naming a remote client at `addr`, as Postfix forwards them. */
function forwarded(addr: string): Record<string, string> {
  return { ADDR: addr, NAME: '[UNAVAILABLE]', HELO: 'far.example.test' }
}

describe('policy through the running filter: ruleset, lists, scores, actions', () => {
  let ms: MailscreenProcess
  let sink: Sink
  let rulesFile: string
  /** Queue IDs that must never reach the sink. */
  const undelivered: string[] = []
  const verdictOf = (id: string): Promise<LogLine> =>
    ms.waitForLog((l) => l.msg === 'verdict' && l.qid === id, 15_000)
  const deliveredTo = (id: string, to: string): Promise<LogLine> =>
    ms.waitForLog((l) => l.msg === 'delivered' && l.qid === id && l.to === to, 15_000)

  beforeAll(async () => {
    sink = await startSink()
    const dir = await mkdtemp(join(tmpdir(), 'mailscreen-it-'))
    rulesFile = join(dir, 'spam.rules')
    await writeFile(rulesFile, SPAM_RULES)
    await writeFile(join(dir, 'site.scores'), SCORES)
    // Relative paths: resolved against the config file's directory.
    ms = await startMailscreen(
      await freePort(),
      {
        delivery: { relay: `127.0.0.1:${sink.port}` },
        policy: {
          scores: 'site.scores',
          actions: { spam: { ruleset: 'spam.rules' } },
          definitelyNotSpam: ['*@partner.example'],
          definitelySpam: ['192.0.2.0/24'],
        },
        plugins: [EXAMPLE],
      },
      dir,
    )
  })

  afterAll(async () => {
    await stopAll(ms, sink)
  })

  it('the spam ruleset: to *@sales.example.com delivered untagged with X-Spam: yes; elsewhere quarantined', async () => {
    const spam = { tag: 'sales', subject: 'You won the lottery' }
    const sales = await send(ms.port, message(spam), {
      from: 'a@example.org',
      to: ['user@sales.example.com'],
    })
    const other = await send(ms.port, message({ ...spam, tag: 'other' }), {
      from: 'a@example.org',
      to: ['user@other.example.org'],
    })

    expect(await verdictOf(sales)).toMatchObject({
      verdict: 'spam',
      score: 6,
      symbols: ['EXAMPLE_SUBJECT_WORD'],
      actions: 'deliver header "X-Spam: yes"',
      rule: `${rulesFile}:2`,
      to: ['user@sales.example.com'],
    })
    await deliveredTo(sales, 'user@sales.example.com')
    const [delivered, ...more] = byTag(sink, 'sales')
    expect(more).toEqual([])
    expect(delivered?.rcptTo).toEqual(['user@sales.example.com'])
    expect(fields(delivered, 'X-Spam')).toEqual(['yes'])
    expect(field(delivered, 'Subject')).toBe('You won the lottery')
    expect(field(delivered, 'X-Spam-Flag')).toBe('YES')
    expect(field(delivered, 'X-mailscreen-Verdict')).toBe(
      'spam, score=6 required=5 symbols=EXAMPLE_SUBJECT_WORD=6',
    )

    const quarantined = await verdictOf(other)
    expect(quarantined).toMatchObject({ verdict: 'spam', actions: 'quarantine', rule: `${rulesFile}:6` })
    expect(quarantined.to).toBeUndefined()
    undelivered.push(other)
    expect(await quarantineHolding(ms, [other])).toEqual([other])
    const rows = await cliJson(ms, ['quarantine', 'list'])
    expect(rows).toEqual([
      expect.objectContaining({
        id: other,
        verdict: 'spam',
        to: ['user@other.example.org'],
        messageId: '<other@example.org>',
        actions: 'quarantine',
      }),
    ])
  })

  it('definitelyNotSpam (*@partner.example): spam from that sender is clean and delivered untagged', async () => {
    const id = await send(
      ms.port,
      message({ tag: 'partner', subject: 'Partner lottery results', from: 'news@partner.example' }),
      { from: 'news@partner.example', to: ['user@other.example.org'] },
    )
    const verdict = await verdictOf(id)
    expect(verdict).toMatchObject({
      verdict: 'clean',
      score: 6,
      symbols: ['EXAMPLE_SUBJECT_WORD'],
      actions: 'deliver',
      rule: 'policy.actions.clean',
    })
    expect(String(verdict.reason)).toContain('definitely not spam (policy.definitelyNotSpam:1)')
    await deliveredTo(id, 'user@other.example.org')
    const delivered = byTag(sink, 'partner')[0]
    expect(field(delivered, 'Subject')).toBe('Partner lottery results')
    expect(field(delivered, 'X-Spam-Flag')).toBe('NO')
    expect(field(delivered, 'X-mailscreen-SpamCheck')).toMatch(/^not spam, definitelyNotSpam, score=6 /)
    expect(fields(delivered, 'X-Spam')).toEqual([])
  })

  it('definitelySpam (192.0.2.0/24) matches the client XFORWARD names: a clean message becomes spam', async () => {
    const listed = await send(ms.port, message({ tag: 'listed-client', subject: 'Meeting notes' }), {
      from: 'a@example.org',
      to: ['user@sales.example.com'],
      xforward: forwarded('192.0.2.77'),
    })
    const unlisted = await send(ms.port, message({ tag: 'unlisted-client', subject: 'Meeting notes' }), {
      from: 'a@example.org',
      to: ['user@sales.example.com'],
      xforward: forwarded('198.51.100.77'),
    })
    const verdict = await verdictOf(listed)
    expect(verdict).toMatchObject({ verdict: 'spam', score: 0, symbols: [], rule: `${rulesFile}:2` })
    expect(String(verdict.reason)).toContain('definitely spam (policy.definitelySpam:1)')
    expect(await verdictOf(unlisted)).toMatchObject({
      verdict: 'clean',
      score: 0,
      rule: 'policy.actions.clean',
    })
    await deliveredTo(listed, 'user@sales.example.com')
    await deliveredTo(unlisted, 'user@sales.example.com')

    const spam = byTag(sink, 'listed-client')[0]
    expect(fields(spam, 'X-Spam')).toEqual(['yes'])
    expect(field(spam, 'X-Spam-Flag')).toBe('YES')
    expect(field(spam, 'X-mailscreen-SpamCheck')).toMatch(/^spam, definitelySpam, score=0 /)
    // Our Received names the forwarded client, not the loopback peer.
    expect(field(spam, 'Received')).toContain('[192.0.2.77]')
    const clean = byTag(sink, 'unlisted-client')[0]
    expect(fields(clean, 'X-Spam')).toEqual([])
    expect(field(clean, 'X-Spam-Flag')).toBe('NO')
  })

  it('high-scoring spam (score 11 >= 10) is quarantined by default, whatever the spam ruleset says', async () => {
    const id = await send(ms.port, message({ tag: 'highspam', subject: 'LOTTERY winner', noDate: true }), {
      from: 'a@example.org',
      to: ['user@sales.example.com'],
    })
    const verdict = await verdictOf(id)
    expect(verdict).toMatchObject({
      verdict: 'highspam',
      score: 11,
      symbols: ['EXAMPLE_SUBJECT_WORD', 'EXAMPLE_NO_DATE'],
      actions: 'quarantine',
      rule: 'policy.actions.highspam',
    })
    expect(verdict.to).toBeUndefined()
    undelivered.push(id)
    expect(await quarantineHolding(ms, [id])).toContain(id)
    const shown = await cliJson(ms, ['quarantine', 'show', id])
    expect(shown).toMatchObject({ id, verdict: 'highspam', score: 11, reason: 'score 11 >= 10' })
  })

  it('bounce: the sender gets a DSN from <> saying 5.7.1; the recipient gets nothing', async () => {
    const id = await send(
      ms.port,
      message({ tag: 'bounce', subject: 'lottery claim form', from: 'victim@example.org' }),
      { from: 'victim@example.org', to: ['bounce@other.example.org'] },
    )
    expect(await verdictOf(id)).toMatchObject({ verdict: 'spam', actions: 'bounce', rule: `${rulesFile}:3` })
    undelivered.push(id)
    const bounced = await ms.waitForLog((l) => l.msg === 'bounced' && l.qid === id)
    expect(bounced.to).toBe('bounce@other.example.org')
    const dsnDelivered = await ms.waitForLog((l) => l.msg === 'delivered' && l.to === 'victim@example.org')
    expect(dsnDelivered.qid).not.toBe(id)
    const dsn = sink.messages.find((m) => m.rcptTo.includes('victim@example.org'))
    expect(dsn?.mailFrom).toBe('')
    expect(dsn?.rcptTo).toEqual(['victim@example.org'])
    const text = dsn?.data.toString('latin1') ?? ''
    expect(field(dsn, 'Content-Type')).toMatch(/^multipart\/report; report-type=delivery-status/)
    expect(text).toMatch(/^Status: 5\.7\.1$/m)
    expect(text).toMatch(/^Final-Recipient: rfc822; ?bounce@other\.example\.org$/m)
    expect(text).toContain('550 5.7.1 Message refused by content filter: spam')
    // The returned headers identify the original.
    expect(text).toContain('Message-ID: <bounce@example.org>')
    expect(sink.messages.some((m) => m.rcptTo.includes('bounce@other.example.org'))).toBe(false)
  })

  it('forward admin@example.net: the tagged copy goes to the recipient and to admin in one transaction', async () => {
    const id = await send(ms.port, message({ tag: 'forward', subject: 'lottery' }), {
      from: 'a@example.org',
      to: ['fwd@other.example.org'],
    })
    expect(await verdictOf(id)).toMatchObject({
      verdict: 'spam',
      actions: 'tag deliver forward admin@example.net',
      rule: `${rulesFile}:4`,
      to: ['fwd@other.example.org', 'admin@example.net'],
    })
    await deliveredTo(id, 'fwd@other.example.org')
    await deliveredTo(id, 'admin@example.net')
    const copies = byTag(sink, 'forward')
    expect(copies).toHaveLength(1)
    expect(copies[0]?.rcptTo).toEqual(['fwd@other.example.org', 'admin@example.net'])
    expect(field(copies[0], 'Subject')).toBe('{Spam?} lottery')
  })

  it('drop: nothing is delivered, quarantined or bounced, and the log says "dropped by policy"', async () => {
    const id = await send(ms.port, message({ tag: 'drop', subject: 'lottery again' }), {
      from: 'a@example.org',
      to: ['drop@other.example.org'],
    })
    expect(await verdictOf(id)).toMatchObject({ verdict: 'spam', actions: 'drop', rule: `${rulesFile}:5` })
    const dropped = await ms.waitForLog((l) => l.msg === 'dropped by policy' && l.qid === id)
    expect(dropped.level).toBe(40)
    undelivered.push(id)
    expect(await readdir(join(ms.spoolDir, 'quarantine'))).not.toContain(id)
    const queue = await cliJson<Array<{ id: string }>>(ms, ['queue', 'list'])
    expect(queue.map((r) => r.id)).not.toContain(id)
  })

  it('the scores file changes the category: a missing Date (weight 5 instead of 1) is spam; without the file, clean', async () => {
    const raw = message({ tag: 'no-date', subject: 'Status report', noDate: true })
    const id = await send(ms.port, raw, { from: 'a@example.org', to: ['user@sales.example.com'] })
    expect(await verdictOf(id)).toMatchObject({
      verdict: 'spam',
      score: 5,
      symbols: ['EXAMPLE_NO_DATE'],
      rule: `${rulesFile}:2`,
    })
    await deliveredTo(id, 'user@sales.example.com')
    expect(field(byTag(sink, 'no-date')[0], 'X-mailscreen-Verdict')).toBe(
      'spam, score=5 required=5 symbols=EXAMPLE_NO_DATE=5',
    )

    // The same message and plugin without the scores file: the default weight 1, clean.
    const eml = join(ms.dir, 'no-date.eml')
    await writeFile(eml, raw)
    const plain = join(ms.dir, 'plain.yaml')
    await writeFile(plain, stringify({ hostname: 'mailscreen.test', plugins: [EXAMPLE] }))
    const out = await runCli(['scan', eml, '--config', plain, '--json'], ms.dir)
    expect(out.code, out.stderr).toBe(0)
    expect(JSON.parse(out.stdout).verdict).toMatchObject({ category: 'clean', score: 1 })
    // And check-config shows the effective weights of the running configuration.
    const check = await cliJson<{ scores: Record<string, number> }>(ms, ['check-config'])
    expect(check.scores).toMatchObject({
      EXAMPLE_SUBJECT_WORD: 6,
      EXAMPLE_NO_DATE: 5,
      EXAMPLE_NO_MESSAGE_ID: 1,
    })
  })

  it('nothing that should not be delivered was, and everything else was delivered once', async () => {
    await sleep(1_000)
    for (const id of undelivered)
      expect(
        ms.logs.filter((l) => l.msg === 'delivered' && l.qid === id),
        id,
      ).toEqual([])
    for (const tag of ['other', 'highspam', 'bounce', 'drop']) expect(byTag(sink, tag), tag).toEqual([])
    // sales, partner, listed-client, unlisted-client, DSN, forward, no-date
    expect(sink.received).toBe(7)
    const quarantined = (await readdir(join(ms.spoolDir, 'quarantine'))).sort()
    expect(quarantined).toEqual([undelivered[0], undelivered[1]].sort())
    expect(ms.child.exitCode).toBeNull()
  })
})

describe('bad policy files stop start and check-config with MSC_RULES_INVALID and file:line', () => {
  /** Start with `files` beside the config; expect a refusal naming `expected`. */
  async function refused(
    files: Record<string, string>,
    policy: Record<string, unknown>,
    expected: readonly (string | RegExp)[],
  ): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'mailscreen-it-'))
    try {
      for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text)
      let started: MailscreenProcess | undefined
      let error: Error | undefined
      try {
        started = await startMailscreen(await freePort(), { policy, plugins: [EXAMPLE] }, dir)
      } catch (err) {
        error = err as Error
      }
      if (started) await started.stop()
      expect(started, 'mailscreen started with a bad policy file').toBeUndefined()
      expect(error?.message).toMatch(/exited with 1 before starting/)
      expect(error?.message).toContain('MSC_RULES_INVALID')
      for (const e of expected) expect(error?.message).toMatch(e)

      const check = await runCli(['check-config', '--config', join(dir, 'mailscreen.yaml')], dir)
      expect(check.code).toBe(1)
      expect(check.stdout).toBe('')
      expect(check.stderr).toContain('MSC_RULES_INVALID')
      for (const e of expected) expect(check.stderr).toMatch(e)
    } finally {
      await cleanup(dir)
    }
  }

  it('a scores file naming a symbol no plugin declares', async () => {
    await refused(
      { 'site.scores': '# weights\nEXAMPLE_NO_DATE 2\nEXAMPLE_TYPO 4\n' },
      { scores: 'site.scores' },
      [/site\.scores:3: unknown symbol EXAMPLE_TYPO/],
    )
  })

  it('a ruleset line with an unknown action', async () => {
    await refused(
      {
        'spam.rules':
          'To: *@sales.example.com deliver\nTo: *@x.example.com deliver frobnicate\nFromOrTo: default quarantine\n',
      },
      { actions: { spam: { ruleset: 'spam.rules' } } },
      [/spam\.rules:2: unknown action "frobnicate"/],
    )
  })

  it('a ruleset line with an unknown direction', async () => {
    await refused(
      { 'spam.rules': '# c\n\nCc: *@sales.example.com deliver\nFromOrTo: default quarantine\n' },
      { actions: { spam: { ruleset: 'spam.rules' } } },
      [/spam\.rules:3: expected "From:", "To:", "FromOrTo:" or "Client:"/],
    )
  })

  it('an action ruleset without a default rule', async () => {
    await refused(
      { 'virus.rules': 'To: *@sales.example.com quarantine\n' },
      { actions: { virus: { ruleset: 'virus.rules' } } },
      [/virus\.rules: no default rule/, /policy\.actions\.virus/],
    )
  })
})
