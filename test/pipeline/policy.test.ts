import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { configSchema, type PolicyConfig } from '../../src/config/schema.js'
import { compilePolicy } from '../../src/pipeline/actions.js'
import { loadPolicy } from '../../src/pipeline/policy.js'
import { useTempDir } from '../support/hooks.js'
import { envelope, failure } from '../support/pipeline.js'

const defaults: PolicyConfig = configSchema.parse({}).policy

function policyWith(
  over: Partial<PolicyConfig>,
  actions: Partial<PolicyConfig['actions']> = {},
): PolicyConfig {
  return { ...defaults, ...over, actions: { ...defaults.actions, ...actions } }
}

const dir = useTempDir('msc-policy-')

beforeAll(async () => {
  await mkdir(join(dir(), 'rules'))
})

async function rulesFile(name: string, text: string): Promise<string> {
  const file = join(dir(), 'rules', name)
  await writeFile(file, text)
  return file
}

describe('loadPolicy with the defaults', () => {
  it('turns each inline action list into a one-rule ruleset named after its key', () => {
    const settings = loadPolicy(defaults, dir(), 'mx.example.org')
    expect(settings.actions.clean).toEqual({
      source: 'policy.actions.clean',
      rules: [
        {
          line: 0,
          conditions: [{ direction: 'fromorto', pattern: 'default' }],
          value: [{ kind: 'deliver' }],
        },
      ],
    })
    const values = Object.fromEntries(
      Object.entries(settings.actions).map(([category, ruleset]) => [category, ruleset.rules[0]?.value]),
    )
    expect(values).toEqual({
      clean: [{ kind: 'deliver' }],
      spam: [{ kind: 'tag' }, { kind: 'deliver' }],
      highspam: [{ kind: 'quarantine' }],
      virus: [{ kind: 'quarantine' }, { kind: 'strip' }],
      banned: [{ kind: 'strip' }],
      unscannable: [{ kind: 'quarantine' }],
    })
  })

  it('copies thresholds, tags, tag position, host name and scanned header', () => {
    const settings = loadPolicy(defaults, dir(), 'mx.example.org')
    expect(settings.verdict).toEqual({
      spamThreshold: 5,
      highSpamThreshold: 10,
      definiteSpamIsHighScoring: false,
    })
    expect(settings.tags).toEqual({
      spam: '{Spam?}',
      highspam: '{Spam?}',
      virus: '{Virus?}',
      banned: '{Blocked}',
      unscannable: '{Unscanned}',
      clean: '{Scanned}',
    })
    expect(Object.hasOwn(settings.tags, 'position')).toBe(false)
    expect(settings.tagPosition).toBe('start')
    expect(settings.hostname).toBe('mx.example.org')
    expect(settings.scannedHeader).toBe('mailscreen')
  })

  it('makes empty administrator lists', () => {
    const settings = loadPolicy(defaults, dir(), 'h')
    expect(settings.definitelyNotSpam).toEqual({ source: 'policy.definitelyNotSpam', rules: [] })
    expect(settings.definitelySpam).toEqual({ source: 'policy.definitelySpam', rules: [] })
  })

  it('returns plain data that survives structured clone (it crosses into workers)', () => {
    const settings = loadPolicy(defaults, dir(), 'h')
    expect(structuredClone(settings)).toEqual(settings)
  })
})

describe('loadPolicy: inline settings', () => {
  it('names the key of a bad inline action list', () => {
    expect(failure(() => loadPolicy(policyWith({}, { spam: 'tag' }), dir(), 'h'))).toEqual({
      code: 'MSC_RULES_INVALID',
      message:
        'policy.actions.spam: no destination: add one of deliver, strip, forward, quarantine, drop, bounce, reject (drop, to discard on purpose)',
    })
    expect(failure(() => loadPolicy(policyWith({}, { spam: 'tag delivr' }), dir(), 'h')).message).toMatch(
      /^policy\.actions\.spam: unknown action "delivr"/,
    )
    expect(failure(() => loadPolicy(policyWith({}, { virus: 'drop deliver' }), dir(), 'h')).message).toBe(
      'policy.actions.virus: drop cannot be combined with deliver, strip, forward or reject',
    )
  })

  it('takes tag positions and thresholds from the config', () => {
    const settings = loadPolicy(
      policyWith({ spamThreshold: 3, highSpamThreshold: 3, tags: { ...defaults.tags, position: 'end' } }),
      dir(),
      'h',
    )
    expect(settings.verdict.spamThreshold).toBe(3)
    expect(settings.verdict.highSpamThreshold).toBe(3)
    expect(settings.tagPosition).toBe('end')
  })

  it('refuses a high-spam threshold below the spam threshold', () => {
    expect(
      failure(() => loadPolicy(policyWith({ spamThreshold: 6, highSpamThreshold: 5.5 }), dir(), 'h')),
    ).toEqual({
      code: 'MSC_CONFIG_INVALID',
      message: 'policy.highSpamThreshold (5.5) is below policy.spamThreshold (6)',
    })
  })

  it('turns inline list patterns into From: rules, one line per pattern', () => {
    const settings = loadPolicy(
      policyWith({ definitelyNotSpam: ['*@partner.example', 'boss@example.com', '192.0.2.0/24'] }),
      dir(),
      'h',
    )
    expect(settings.definitelyNotSpam.source).toBe('policy.definitelyNotSpam')
    expect(settings.definitelyNotSpam.rules).toEqual([
      { line: 1, conditions: [{ direction: 'from', pattern: '*@partner.example' }], value: true },
      { line: 2, conditions: [{ direction: 'from', pattern: 'boss@example.com' }], value: true },
      { line: 3, conditions: [{ direction: 'from', pattern: '192.0.2.0/24' }], value: true },
    ])
  })

  it('names the entry of a bad inline pattern', () => {
    expect(
      failure(() =>
        loadPolicy(policyWith({ definitelySpam: ['*@spam.example', '/^unterminated'] }), dir(), 'h'),
      ),
    ).toEqual({
      code: 'MSC_RULES_INVALID',
      message: 'policy.definitelySpam:2: unterminated regex /^unterminated',
    })
  })

  it('refuses an inline pattern with a blank in it', () => {
    expect(
      failure(() => loadPolicy(policyWith({ definitelyNotSpam: ['a@example.org b'] }), dir(), 'h')).message,
    ).toBe('policy.definitelyNotSpam:1: expected yes or no, not "b yes"')
  })

  it('matches inline lists against the sender or the client, with not-spam winning', () => {
    const compiled = compilePolicy(
      loadPolicy(
        policyWith({
          definitelyNotSpam: ['*@partner.example', '2001:db8::/32'],
          definitelySpam: ['partner.example', '/^promo-/', '<>'],
        }),
        dir(),
        'h',
      ),
    )
    expect(compiled.listed(envelope({ mailFrom: 'x@partner.example' }))).toEqual({
      list: 'definitelyNotSpam',
      rule: 'policy.definitelyNotSpam:1',
    })
    expect(compiled.listed(envelope({ client: { address: '2001:db8::25' } }))).toEqual({
      list: 'definitelyNotSpam',
      rule: 'policy.definitelyNotSpam:2',
    })
    expect(compiled.listed(envelope({ mailFrom: 'PROMO-1@shop.example' }))).toEqual({
      list: 'definitelySpam',
      rule: 'policy.definitelySpam:2',
    })
    expect(compiled.listed(envelope({ mailFrom: '' }))).toEqual({
      list: 'definitelySpam',
      rule: 'policy.definitelySpam:3',
    })
    // Inline lists look at the sender only, never at recipients.
    expect(compiled.listed(envelope({ rcptTo: ['x@partner.example'] }))).toBeUndefined()
  })
})

describe('loadPolicy: ruleset files', () => {
  it('reads an action ruleset relative to the base directory', async () => {
    const file = await rulesFile(
      'spam.rules',
      '# spam\nTo: *@sales.example.com deliver header "X-Spam: yes"\nFromOrTo: default tag "[SPAM]" deliver\n',
    )
    const settings = loadPolicy(policyWith({}, { spam: { ruleset: 'rules/spam.rules' } }), dir(), 'h')
    expect(settings.actions.spam.source).toBe(file)
    expect(settings.actions.spam.rules.map((r) => [r.line, r.value])).toEqual([
      [2, [{ kind: 'deliver' }, { kind: 'header', name: 'X-Spam', value: 'yes' }]],
      [3, [{ kind: 'tag', text: '[SPAM]' }, { kind: 'deliver' }]],
    ])
  })

  it('reads an action ruleset by absolute path, whatever the base directory', async () => {
    const file = await rulesFile('abs.rules', 'FromOrTo: default quarantine\n')
    const settings = loadPolicy(policyWith({}, { virus: { ruleset: file } }), '/nonexistent', 'h')
    expect(settings.actions.virus.rules[0]?.value).toEqual([{ kind: 'quarantine' }])
  })

  it('refuses an action ruleset without a default rule, naming file and key', async () => {
    const file = await rulesFile(
      'nodefault.rules',
      'To: *@example.com deliver\nFrom: default and To: x@y deliver\n',
    )
    expect(
      failure(() =>
        loadPolicy(policyWith({}, { highspam: { ruleset: 'rules/nodefault.rules' } }), dir(), 'h'),
      ),
    ).toEqual({
      code: 'MSC_RULES_INVALID',
      message: `${file}: no default rule; end it with e.g. "FromOrTo: default deliver" (policy.actions.highspam)`,
    })
  })

  it('names file:line of a bad line in an action ruleset', async () => {
    const file = await rulesFile(
      'bad-actions.rules',
      '# c\nTo: *@example.com forward not-an-address\nFromOrTo: default deliver\n',
    )
    expect(
      failure(() => loadPolicy(policyWith({}, { spam: { ruleset: 'rules/bad-actions.rules' } }), dir(), 'h')),
    ).toEqual({ code: 'MSC_RULES_INVALID', message: `${file}:2: forward needs an address (user@domain)` })
  })

  it('names file:line of a drop+deliver line', async () => {
    const file = await rulesFile(
      'drop.rules',
      'FromOrTo: default deliver\n\n\nTo: *@x.example drop deliver\n',
    )
    expect(failure(() => loadPolicy(policyWith({}, { banned: { ruleset: file } }), dir(), 'h')).message).toBe(
      `${file}:4: drop cannot be combined with deliver, strip, forward or reject`,
    )
  })

  it('refuses a missing ruleset file with its resolved path', () => {
    const { code, message } = failure(() =>
      loadPolicy(policyWith({}, { clean: { ruleset: 'rules/missing.rules' } }), dir(), 'h'),
    )
    expect(code).toBe('MSC_RULES_INVALID')
    expect(message.startsWith(`${join(dir(), 'rules', 'missing.rules')}: ENOENT`)).toBe(true)
  })

  it('reads yes/no list rulesets (no default needed) and matches them first-rule-wins', async () => {
    const file = await rulesFile(
      'whitelist.rules',
      '# not spam\nFrom: *@partner.example and Client: 192.0.2.0/24 yes\nFrom: *@partner.example NO\nTo: postmaster@example.net Yes\n',
    )
    const settings = loadPolicy(
      policyWith({ definitelyNotSpam: { ruleset: 'rules/whitelist.rules' } }),
      dir(),
      'h',
    )
    expect(settings.definitelyNotSpam.rules.map((r) => r.value)).toEqual([true, false, true])
    const compiled = compilePolicy(settings)
    expect(
      compiled.listed(envelope({ mailFrom: 'a@partner.example', client: { address: '192.0.2.1' } })),
    ).toEqual({ list: 'definitelyNotSpam', rule: `${file}:2` })
    // A `no` line that matches first means "not on the list".
    expect(compiled.listed(envelope({ mailFrom: 'a@partner.example' }))).toBeUndefined()
    expect(compiled.listed(envelope({ rcptTo: ['x@example.net', 'postmaster@example.net'] }))).toEqual({
      list: 'definitelyNotSpam',
      rule: `${file}:4`,
    })
  })

  it('refuses a list ruleset value other than yes or no, naming file:line', async () => {
    const file = await rulesFile('maybe.rules', 'From: *@example.org yes\nFrom: *@example.net maybe\n')
    expect(failure(() => loadPolicy(policyWith({ definitelySpam: { ruleset: file } }), dir(), 'h'))).toEqual({
      code: 'MSC_RULES_INVALID',
      message: `${file}:2: expected yes or no, not "maybe"`,
    })
  })
})
