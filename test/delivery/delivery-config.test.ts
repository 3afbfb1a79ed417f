import { describe, expect, it } from 'vitest'
import { validateConfig } from '../../src/config/load.js'

describe('delivery and routing configuration', () => {
  it('keeps the relay by default, so a content filter behind Postfix is unchanged', () => {
    const { delivery, routing } = validateConfig({}, 'test')
    expect(delivery.relay).toEqual({ host: '127.0.0.1', port: 10026 })
    expect(delivery.local).toBeUndefined()
    expect(delivery).toMatchObject({
      mxPort: 25,
      maxConnections: 100,
      maxConnectionsPerDestination: 20,
      destinationWait: 60_000,
      backoffAfter: 3,
      backoffMin: 30_000,
      backoffMax: 600_000,
    })
    expect(routing).toMatchObject({ hopLimit: 30, resolver: { servers: [] } })
  })

  it('turns the relay off with null (an empty YAML value is null) or with the word mx', () => {
    expect(validateConfig({ delivery: { relay: null } }, 'test').delivery.relay).toBeNull()
    expect(validateConfig({ delivery: { relay: 'mx' } }, 'test').delivery.relay).toBeNull()
    expect(validateConfig({ delivery: { relay: '[::1]:2525', local: null } }, 'test').delivery).toMatchObject(
      {
        relay: { host: '::1', port: 2525 },
        local: null,
      },
    )
  })

  it('rejects a bad relay, port or resolver server with the key path', () => {
    expect(() => validateConfig({ delivery: { relay: 'nowhere' } }, 'f.yaml')).toThrow(/delivery\.relay/)
    expect(() => validateConfig({ delivery: { mxPort: 0 } }, 'f.yaml')).toThrow(/delivery\.mxPort/)
    expect(() => validateConfig({ routing: { resolver: { servers: ['dns.example'] } } }, 'f.yaml')).toThrow(
      /routing\.resolver\.servers\.0/,
    )
  })
})
