import { describe, expect, it } from 'vitest'
import { buildRoutingMaps, type MapTexts } from '../../src/routing/maps.js'
import { formatNextHop, type RouteDecision, type RouteOptions, route } from '../../src/routing/router.js'
import type { DirectoryUser, UserDirectory } from '../../src/routing/users.js'

type Files = Partial<Record<keyof MapTexts, string>>

/** Maps from file texts (file names are the map names). */
function maps(files: Files, readFile?: (path: string) => string) {
  const texts: MapTexts = Object.fromEntries(
    Object.entries(files).map(([name, text]) => [name, { file: name, text: `${text}\n` }]),
  )
  return buildRoutingMaps(texts, '', readFile ? { readFile } : {})
}

/** `address nexthop` for each final recipient. */
function finals(decision: RouteDecision): string[] {
  return decision.recipients.map((r) => `${r.address} ${formatNextHop(r.nextHop)}`)
}

async function routeOf(files: Files, address: string, options: RouteOptions = {}): Promise<RouteDecision> {
  return route(address, maps(files), options)
}

const relay = { host: '127.0.0.1', port: 10026 }

describe('route: domains that are not ours', () => {
  const files: Files = {
    'local-host-names': 'example.org',
    mailertable: [
      'partner.example   smtp:[127.0.0.2]:2525',
      '.partner.example  smtp:mx.partner.example',
      'bad.example       error:5.7.1:554 we do not send mail there',
      'lab.example       esmtp:',
      'local.example     local',
    ].join('\n'),
  }

  it('uses the mailertable by longest match', async () => {
    expect(finals(await routeOf(files, 'a@partner.example', { defaultRelay: relay }))).toEqual([
      'a@partner.example smtp:[127.0.0.2]:2525',
    ])
    expect(finals(await routeOf(files, 'a@eu.partner.example'))).toEqual([
      'a@eu.partner.example smtp:mx.partner.example:25',
    ])
    // An exact key does not cover subdomains.
    expect(finals(await routeOf(files, 'a@x.lab.example'))).toEqual(['a@x.lab.example mx:x.lab.example'])
    expect(finals(await routeOf(files, 'a@lab.example'))).toEqual(['a@lab.example mx:lab.example'])
    expect(finals(await routeOf(files, 'a@local.example'))).toEqual(['a@local.example local'])
  })

  it('goes to the default relay when given, else to the domain MX hosts', async () => {
    const viaRelay = await routeOf(files, 'Friend@Elsewhere.Example', { defaultRelay: relay })
    expect(finals(viaRelay)).toEqual(['Friend@elsewhere.example relay:[127.0.0.1]:10026'])
    expect(viaRelay.recipients[0]?.why).toContain('default relay')
    const viaMx = await routeOf(files, 'friend@elsewhere.example')
    expect(viaMx.recipients[0]).toMatchObject({
      nextHop: { kind: 'mx', domain: 'elsewhere.example' },
      why: expect.stringContaining('MX hosts of elsewhere.example'),
    })
  })

  it('a mailertable error refuses the address with that reply', async () => {
    const decision = await routeOf(files, 'x@bad.example', { defaultRelay: relay })
    expect(decision.accepted).toBe(false)
    expect(decision.refusal).toEqual({ code: 554, status: '5.7.1', text: 'we do not send mail there' })
  })

  it('an address literal goes to that address, or to the default relay when there is one', async () => {
    expect((await routeOf(files, 'root@[127.0.0.9]')).recipients[0]?.nextHop).toEqual({
      kind: 'smtp',
      host: '127.0.0.9',
      port: 25,
      mx: false,
    })
    expect(
      (await routeOf(files, 'root@[127.0.0.9]', { defaultRelay: relay })).recipients[0]?.nextHop,
    ).toEqual({ kind: 'relay', host: relay.host, port: relay.port })
  })

  it('takes only real addresses for literals: [dead.beef] is not one, and is never looked up', async () => {
    for (const bad of ['root@[dead.beef]', 'root@[cafe]', 'root@[999.1.1.1]', 'root@[IPv6:192.0.2.1]'])
      expect((await routeOf(files, bad)).refusal, bad).toMatchObject({ code: 501, status: '5.1.3' })
    expect((await routeOf(files, 'root@[IPv6:2001:DB8::1]')).recipients[0]?.nextHop).toEqual({
      kind: 'smtp',
      host: '2001:db8::1',
      port: 25,
      mx: false,
    })
  })

  it('sends a literal to its host under a mailertable route with no host (no MX lookup of a literal)', async () => {
    const hostless = { ...files, mailertable: '. esmtp:' }
    expect((await routeOf(hostless, 'root@[192.0.2.9]')).recipients[0]?.nextHop).toEqual({
      kind: 'smtp',
      host: '192.0.2.9',
      port: 25,
      mx: false,
    })
  })

  it('refuses what is not a fully-qualified address with 501 5.1.3', async () => {
    expect((await routeOf(files, 'root')).refusal).toMatchObject({ code: 501, status: '5.1.3' })
    expect((await routeOf(files, 'a b@example.org')).refusal).toMatchObject({ code: 501, status: '5.1.3' })
    expect((await routeOf(files, '<>')).refusal).toMatchObject({ code: 501, status: '5.1.3' })
  })
})

describe('route: our own domains', () => {
  const base: Files = {
    'local-host-names': 'example.org\nsub.example.org',
    aliases: [
      'postmaster: root',
      'root: \\root, ops@remote.example',
      'sales: ann, bob@example.org, ann',
      'both: jos',
      'all: boss@remote.example',
      'owner-sales: ann',
      'me: me, friend@remote.example',
    ].join('\n'),
    recipientmap: [
      'jos@example.org:jos@jos.example',
      'info@example.org:sales@example.org',
      '@example.org:@catch.example',
    ].join('\n'),
    users:
      'ann@example.org sub.example.org\nbob@example.org sub.example.org\njos@example.org sub.example.org',
    mailertable: 'sub.example.org smtp:[127.0.0.3]:2525\njos.example smtp:[127.0.0.4]:2525',
  }

  it('refuses an unknown local user with 550 5.1.1', async () => {
    const files = { ...base, recipientmap: 'jos@example.org:jos@jos.example' }
    const decision = await routeOf(files, 'nobody@example.org', { defaultRelay: relay })
    expect(decision.accepted).toBe(false)
    expect(decision.refusal).toEqual({
      code: 550,
      status: '5.1.1',
      text: '<nobody@example.org>: user unknown',
    })
    expect(decision.steps.map((s) => `${s.map} ${s.result}`)).toEqual([
      'recipientmap miss',
      'local-host-names hit',
      'aliases miss',
      'users miss',
      'route note',
    ])
  })

  it('consults the recipientmap before aliases, aliases before the directory', async () => {
    // jos is in the recipientmap, the aliases (via "both") and the directory: the recipientmap wins.
    expect(finals(await routeOf(base, 'jos@example.org'))).toEqual(['jos@jos.example smtp:[127.0.0.4]:2525'])
    // "all" is an alias here, so the alias wins over the directory's all@.
    expect(finals(await routeOf(base, 'all@example.org'))).toEqual(['boss@remote.example mx:remote.example'])
    // ann is only in the directory.
    expect(finals(await routeOf(base, 'ann@example.org'))).toEqual([
      'ann@sub.example.org smtp:[127.0.0.3]:2525',
    ])
  })

  it('uses the domain default of the recipientmap only when nothing else knows the name', async () => {
    expect(finals(await routeOf(base, 'stranger@example.org'))).toEqual([
      'stranger@catch.example mx:catch.example',
    ])
    expect(finals(await routeOf(base, 'bob@example.org'))).toEqual([
      'bob@sub.example.org smtp:[127.0.0.3]:2525',
    ])
  })

  it('routes a recipientmap result in our own domain again (here through an alias)', async () => {
    const decision = await routeOf(base, 'info@example.org')
    expect(finals(decision)).toEqual([
      'ann@sub.example.org smtp:[127.0.0.3]:2525',
      'bob@sub.example.org smtp:[127.0.0.3]:2525',
    ])
    expect(decision.recipients[0]?.via).toEqual(['info@example.org', 'sales@example.org', 'ann@example.org'])
  })

  it('delivers \\name and a self-reference to the local mailbox, not as a loop', async () => {
    expect(finals(await routeOf(base, 'root@example.org'))).toEqual([
      'root@example.org local',
      'ops@remote.example mx:remote.example',
    ])
    expect(finals(await routeOf(base, 'me@example.org'))).toEqual([
      'me@example.org local',
      'friend@remote.example mx:remote.example',
    ])
  })

  it('suppresses duplicates: each final recipient once', async () => {
    const decision = await routeOf(base, 'sales@example.org')
    expect(finals(decision)).toEqual([
      'ann@sub.example.org smtp:[127.0.0.3]:2525',
      'bob@sub.example.org smtp:[127.0.0.3]:2525',
    ])
    expect(decision.steps.some((s) => /not again|duplicate/.test(s.detail))).toBe(true)
  })

  it('owner-NAME becomes the envelope sender of the list copies; a null sender stays null', async () => {
    const withSender = await routeOf(base, 'sales@example.org', { from: '<someone@remote.example>' })
    expect(withSender.from).toBe('someone@remote.example')
    expect(withSender.recipients.map((r) => r.from)).toEqual([
      'owner-sales@example.org',
      'owner-sales@example.org',
    ])
    const bounce = await routeOf(base, 'sales@example.org', { from: '<>' })
    expect(bounce.recipients.map((r) => r.from)).toEqual(['', ''])
    const other = await routeOf(base, 'root@example.org', { from: 'someone@remote.example' })
    expect(other.recipients.map((r) => r.from)).toEqual(['someone@remote.example', 'someone@remote.example'])
  })

  it('quotes an owner- sender whose alias name needs quotes ("help desk")', async () => {
    const files: Files = {
      'local-host-names': 'example.org',
      aliases: ['"help desk": a@x.example', '"owner-help desk": o@x.example'].join('\n'),
    }
    const decision = await routeOf(files, '"help desk"@example.org', { from: 'someone@remote.example' })
    expect(decision.recipients.map((r) => r.from)).toEqual(['"owner-help desk"@example.org'])
  })

  it('postmaster with no map entry goes to the local MTA (RFC 5321), never refused', async () => {
    const files: Files = { 'local-host-names': 'example.org' }
    expect(finals(await routeOf(files, 'PostMaster@example.org'))).toEqual(['PostMaster@example.org local'])
  })

  it('+ext falls back to the alias without it', async () => {
    const decision = await routeOf(base, 'sales+q3@example.org')
    expect(finals(decision)).toHaveLength(2)
    expect(decision.steps.find((s) => s.map === 'aliases')?.detail).toContain('extension +q3 dropped')
  })
})

describe('route: alias loops and empty aliases', () => {
  const files: Files = {
    'local-host-names': 'example.org\nexample.net',
    aliases: [
      'a: b',
      'b: c@example.net',
      'c: a',
      'mixed: a, keep@remote.example',
      'deadlist: :include:/lists/gone',
      'emptylist: :include:/lists/empty',
      'progonly: |/bin/true',
    ].join('\n'),
  }
  const readFile = (path: string): string => {
    if (path === '/lists/empty') return '# nobody yet\n'
    throw Object.assign(new Error('gone'), { code: 'ENOENT' })
  }
  const loopMaps = maps(files, readFile)

  it('detects an alias loop, reports the chain and refuses with 5.4.6 instead of looping', async () => {
    const decision = await route('a@example.org', loopMaps)
    expect(decision.accepted).toBe(false)
    // "c: a" names a in the domain being expanded (example.net), so the loop closes there.
    expect(decision.refusal).toEqual({
      code: 554,
      status: '5.4.6',
      text: '<c@example.net>: mail loop in the routing maps (c@example.net → a@example.net → b@example.net → c@example.net)',
    })
    expect(decision.recipients.map((r) => r.via)).toEqual([
      ['a@example.org', 'b@example.org', 'c@example.net', 'a@example.net', 'b@example.net'],
    ])
    expect(decision.steps.filter((s) => s.detail.startsWith('loop:'))).toHaveLength(1)
    expect(loopMaps.problems.map((p) => p.reason)).toContain('alias loop: a → b → c → a')
  })

  it('a loop inside a list bounces that branch and delivers the rest', async () => {
    const decision = await route('mixed@example.org', loopMaps)
    expect(decision.accepted).toBe(true)
    expect(finals(decision)).toEqual([
      'c@example.net error:5.4.6:554',
      'keep@remote.example mx:remote.example',
    ])
  })

  it('delivers to an address that a loop reached first and a mailbox target reaches later, in either order', async () => {
    for (const root of ['root: ops, \\root', 'root: \\root, ops']) {
      const orderMaps = maps({
        'local-host-names': 'example.org',
        aliases: [root, 'ops: root, person@x.example'].join('\n'),
      })
      const decision = await route('root@example.org', orderMaps)
      expect(finals(decision), root).toEqual(['root@example.org local', 'person@x.example mx:x.example'])
    }
  })

  it('refuses an alias that expands to nothing: unreadable or empty list, or only unsupported targets', async () => {
    for (const name of ['deadlist', 'emptylist', 'progonly']) {
      const decision = await route(`${name}@example.org`, loopMaps)
      expect(decision.refusal, name).toEqual({
        code: 550,
        status: '5.1.1',
        text: `<${name}@example.org>: alias ${name} expands to no recipients`,
      })
    }
  })

  it('refuses nesting deeper than maxDepth', async () => {
    const chain = Array.from({ length: 30 }, (_, i) => `n${i}: n${i + 1}`).join('\n')
    const deep = maps({ 'local-host-names': 'example.org', aliases: `${chain}\nn30: out@remote.example` })
    expect((await route('n0@example.org', deep)).refusal).toMatchObject({ code: 554, status: '5.4.6' })
    expect(finals(await route('n0@example.org', deep, { maxDepth: 40 }))).toEqual([
      'out@remote.example mx:remote.example',
    ])
  })

  it('a recipientmap that maps an address to itself is a loop, not a hang', async () => {
    const self = maps({
      'local-host-names': 'example.org',
      recipientmap: 'x@example.org:y@example.org\ny@example.org:x@example.org',
    })
    expect((await route('x@example.org', self)).refusal).toMatchObject({ code: 554, status: '5.4.6' })
  })
})

describe('route: the user directory', () => {
  const files: Files = {
    'local-host-names': 'corp.example\na.corp.example\nb.corp.example',
    users:
      'ann@corp.example a.corp.example\nbob@corp.example b.corp.example\ncat@corp.example b.corp.example',
    mailertable: '.corp.example smtp:[127.0.0.5]:2525',
  }

  it('all@domain expands to every user, all@sub.domain to that subdomain', async () => {
    expect(finals(await routeOf(files, 'all@corp.example')).map((f) => f.split(' ')[0])).toEqual([
      'ann@a.corp.example',
      'bob@b.corp.example',
      'cat@b.corp.example',
    ])
    expect(finals(await routeOf(files, 'ALL@b.corp.example')).map((f) => f.split(' ')[0])).toEqual([
      'bob@b.corp.example',
      'cat@b.corp.example',
    ])
  })

  it('all@ a subdomain with no users is an unknown user', async () => {
    const more = { ...files, 'local-host-names': `${files['local-host-names']}\nc.corp.example` }
    expect((await routeOf(more, 'all@c.corp.example')).refusal).toMatchObject({ code: 550, status: '5.1.1' })
  })

  it('keeps +ext on the way to the home address', async () => {
    expect(finals(await routeOf(files, 'bob+x@a.corp.example'))).toEqual([
      'bob+x@b.corp.example smtp:[127.0.0.5]:2525',
    ])
  })

  it('works through any UserDirectory implementation (an async backend, as a database would be)', async () => {
    const rows: DirectoryUser[] = [
      { address: 'dan@corp.example', local: 'dan', domain: 'corp.example', home: 'b.corp.example' },
    ]
    const calls: string[] = []
    const remote: UserDirectory = {
      name: 'sql:users',
      async findUser(local, domain) {
        calls.push(`find ${local}@${domain}`)
        await new Promise((r) => setTimeout(r, 1))
        return rows.find((u) => u.local === local.toLowerCase() && domain.endsWith(u.domain))
      },
      async members(domain) {
        calls.push(`members ${domain}`)
        return rows.filter((u) => u.domain === domain || u.home === domain)
      },
      async count() {
        return rows.length
      },
    }
    const texts: MapTexts = { 'local-host-names': { file: 'lhn', text: 'corp.example\n' } }
    const m = buildRoutingMaps(texts, '', { users: remote })
    expect(finals(await route('dan@corp.example', m))).toEqual(['dan@b.corp.example mx:b.corp.example'])
    expect(finals(await route('all@corp.example', m))).toEqual(['dan@b.corp.example mx:b.corp.example'])
    expect(calls).toEqual(['find dan@corp.example', 'members corp.example'])
  })
})

describe('route: the decision as data', () => {
  const files: Files = {
    'local-host-names': 'example.org',
    aliases: 'team: ann@remote.example, bob@remote.example',
  }

  it('is deterministic and JSON-safe', async () => {
    const one = await routeOf(files, 'team@example.org', { from: 'x@y.example' })
    const two = await routeOf(files, 'team@example.org', { from: 'x@y.example' })
    expect(two).toEqual(one)
    expect(JSON.parse(JSON.stringify(one))).toEqual(one)
  })

  it('lists only the maps that exist, each expansion with its source line, then each final hop', async () => {
    const decision = await routeOf(files, 'team@example.org')
    expect(decision.steps.map((s) => [s.depth, s.address, s.map, s.result])).toEqual([
      [0, 'team@example.org', 'local-host-names', 'hit'],
      [0, 'team@example.org', 'aliases', 'hit'],
      [1, 'ann@remote.example', 'local-host-names', 'miss'],
      [1, 'ann@remote.example', 'route', 'note'],
      [1, 'bob@remote.example', 'local-host-names', 'miss'],
      [1, 'bob@remote.example', 'route', 'note'],
    ])
    expect(decision.steps[1]?.source).toEqual({ file: 'aliases', line: 1 })
    expect(decision.recipients.map((r) => r.via)).toEqual([['team@example.org'], ['team@example.org']])
  })
})
