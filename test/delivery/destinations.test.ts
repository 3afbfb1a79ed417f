import { afterEach, describe, expect, it } from 'vitest'
import { Destinations } from '../../src/delivery/destinations.js'

describe('Destinations backoff', () => {
  let clock = 1_000_000
  const destinations = new Destinations({
    hostname: 'mailscreen.test',
    maxConnections: 20,
    maxPerDestination: 20,
    maxMessagesPerConnection: 100,
    connectTimeoutMs: 1_000,
    backoffAfter: 3,
    backoffMinMs: 30_000,
    backoffMaxMs: 600_000,
    now: () => clock,
  })
  afterEach(() => destinations.close())
  const KEY = Destinations.key('127.0.0.1', 10026)

  it('backs off after backoffAfter failures in a row, for backoffMin, doubling while it keeps failing', () => {
    expect(destinations.failed(KEY)).toBeUndefined()
    expect(destinations.failed(KEY)).toBeUndefined()
    expect(destinations.failed(KEY)).toBe(clock + 30_000)
    expect(destinations.backedOff(KEY)).toBe(clock + 30_000)
    clock += 30_001
    expect(destinations.backedOff(KEY)).toBeUndefined()
    expect(destinations.failed(KEY)).toBe(clock + 60_000)
    destinations.succeeded(KEY)
    expect(destinations.backedOff(KEY)).toBeUndefined()
  })

  it('twenty sessions that fail together (a relay restart) cost one backoffMin, not backoffMax', () => {
    const key = Destinations.key('127.0.0.2', 10026)
    const ends = Array.from({ length: 20 }, () => destinations.failed(key))
    expect(ends.filter((e) => e !== undefined)).toEqual([clock + 30_000])
    expect(destinations.backedOff(key)).toBe(clock + 30_000)
  })
})
