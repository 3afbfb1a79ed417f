import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NextHopDns, orderMx } from '../../src/delivery/mx.js'
import { type FakeDns, type FakeReply, startFakeDns } from '../support/dns-server.js'

const ZONE: Record<string, Partial<Record<'MX' | 'A' | 'AAAA', FakeReply>>> = {
  'pref.example': {
    MX: {
      mx: [
        { preference: 20, exchange: 'backup.pref.example' },
        { preference: 10, exchange: 'Primary.Pref.Example.' },
        { preference: 30, exchange: 'last.pref.example' },
      ],
    },
  },
  'null.example': { MX: { mx: [{ preference: 0, exchange: '.' }] } },
  'mixed-null.example': {
    MX: {
      mx: [
        { preference: 0, exchange: '.' },
        { preference: 10, exchange: 'mx.mixed-null.example' },
      ],
    },
  },
  'no-mx.example': { MX: {}, A: { a: ['127.0.70.1'] } },
  'both.example': { A: { a: ['127.0.70.2'] }, AAAA: { aaaa: ['::1'] } },
  'v6.example': { AAAA: { aaaa: ['::1'] } },
  'broken.example': { MX: { rcode: 'SERVFAIL' }, A: { rcode: 'SERVFAIL' }, AAAA: { rcode: 'SERVFAIL' } },
}

describe('NextHopDns', () => {
  let dns: FakeDns
  let resolver: NextHopDns
  beforeAll(async () => {
    dns = await startFakeDns(({ name, type }) => {
      const zone = ZONE[name]
      if (!zone) return { rcode: 'NXDOMAIN' }
      return zone[type as 'MX' | 'A' | 'AAAA'] ?? {}
    })
    resolver = new NextHopDns({ servers: [dns.server], timeoutMs: 500, tries: 1 })
  })
  afterAll(() => dns.close())

  it('returns MX hosts lowest preference first, names in lower case without the trailing dot', async () => {
    expect(await resolver.mx('pref.example')).toEqual({
      kind: 'hosts',
      hosts: [
        { name: 'primary.pref.example', preference: 10 },
        { name: 'backup.pref.example', preference: 20 },
        { name: 'last.pref.example', preference: 30 },
      ],
    })
    // It asked the configured server, not the system's.
    expect(dns.queries).toContainEqual({ name: 'pref.example', type: 'MX' })
  })

  it('recognizes a null MX (RFC 7505), and ignores the root record when real MX records come with it', async () => {
    expect(await resolver.mx('null.example')).toEqual({ kind: 'null' })
    expect(await resolver.mx('mixed-null.example')).toEqual({
      kind: 'hosts',
      hosts: [{ name: 'mx.mixed-null.example', preference: 10 }],
    })
  })

  it('says implicit MX for a domain with no MX records, nxdomain for no domain, tempfail for SERVFAIL', async () => {
    expect(await resolver.mx('no-mx.example')).toEqual({ kind: 'implicit' })
    expect(await resolver.mx('nowhere.example')).toEqual({ kind: 'nxdomain' })
    expect(await resolver.mx('broken.example')).toMatchObject({ kind: 'tempfail' })
  })

  it('returns IPv4 then IPv6 addresses, and tells a missing host from a failing lookup', async () => {
    expect(await resolver.addresses('both.example')).toEqual({
      kind: 'addresses',
      addresses: ['127.0.70.2', '::1'],
    })
    expect(await resolver.addresses('v6.example')).toEqual({ kind: 'addresses', addresses: ['::1'] })
    expect(await resolver.addresses('127.0.70.9')).toEqual({ kind: 'addresses', addresses: ['127.0.70.9'] })
    expect(await resolver.addresses('nowhere.example')).toMatchObject({ kind: 'none' })
    expect(await resolver.addresses('pref.example')).toMatchObject({ kind: 'none' })
    expect(await resolver.addresses('broken.example')).toMatchObject({ kind: 'tempfail' })
  })

  it('a silent server is a temporary failure, not "no such domain"', async () => {
    const silent = await startFakeDns(() => 'silent')
    try {
      const quiet = new NextHopDns({ servers: [silent.server], timeoutMs: 100, tries: 1 })
      expect(await quiet.mx('pref.example')).toMatchObject({ kind: 'tempfail' })
    } finally {
      await silent.close()
    }
  })
})

describe('orderMx', () => {
  const hosts = [
    { name: 'c', preference: 20 },
    { name: 'a', preference: 10 },
    { name: 'b', preference: 10 },
    { name: 'd', preference: 20 },
    { name: 'e', preference: 5 },
  ]

  it('keeps preference order whatever the shuffle does', () => {
    for (const random of [() => 0, () => 0.999, Math.random]) {
      const prefs = orderMx(hosts, random).map((h) => h.preference)
      expect(prefs).toEqual([5, 10, 10, 20, 20])
    }
  })

  it('shuffles hosts of equal preference: each comes first about half of the time', () => {
    const first = new Map<string, number>()
    for (let i = 0; i < 2_000; i++) {
      const name = orderMx(hosts)[1]?.name as string
      first.set(name, (first.get(name) ?? 0) + 1)
    }
    expect([...first.keys()].sort()).toEqual(['a', 'b'])
    for (const count of first.values()) expect(count).toBeGreaterThan(800)
  })
})
