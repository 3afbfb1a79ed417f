import { describe, expect, it } from 'vitest'
import { plainAddress, trustedNetworks } from '../../src/ingress/trusted.js'

describe('plainAddress', () => {
  it('turns an IPv4-mapped IPv6 address into plain IPv4 and leaves others alone', () => {
    expect(plainAddress('::ffff:127.0.0.1')).toBe('127.0.0.1')
    expect(plainAddress('::1')).toBe('::1')
    expect(plainAddress('192.0.2.1')).toBe('192.0.2.1')
  })
})

describe('trustedNetworks', () => {
  const isTrusted = trustedNetworks(['127.0.0.0/8', '::1/128', '192.0.2.0/24'])

  it('trusts addresses inside the networks, IPv4-mapped ones included, and no others', () => {
    expect(isTrusted('127.0.0.1')).toBe(true)
    expect(isTrusted('127.255.0.9')).toBe(true)
    expect(isTrusted('::ffff:127.0.0.1')).toBe(true)
    expect(isTrusted('::1')).toBe(true)
    expect(isTrusted('192.0.2.200')).toBe(true)
    expect(isTrusted('192.0.3.1')).toBe(false)
    expect(isTrusted('::2')).toBe(false)
    expect(isTrusted('10.0.0.1')).toBe(false)
  })

  it('gives the same answers when asked again, also past the number of addresses it remembers', () => {
    const addresses = Array.from({ length: 3000 }, (_, i) => `192.0.${2 + (i % 2)}.${i % 250}`)
    for (let round = 0; round < 2; round++) {
      for (const address of addresses) expect(isTrusted(address)).toBe(address.startsWith('192.0.2.'))
    }
  })

  it('trusts nobody with an empty list', () => {
    expect(trustedNetworks([])('127.0.0.1')).toBe(false)
  })
})
