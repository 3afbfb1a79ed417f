import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { optionsEnv } from '../../src/pipeline/plugin.js'
import { serviceOptions, serviceTarget } from '../../src/pipeline/service-options.js'

const schema = serviceOptions(optionsEnv('/etc/mailscreen'), 1344, { service: z.string().default('avscan') })

describe('serviceOptions', () => {
  it('defaults to 127.0.0.1 on the given port and keeps the plugin’s own options', () => {
    expect(schema.parse({})).toEqual({ target: { host: '127.0.0.1', port: 1344 }, service: 'avscan' })
    expect(schema.parse({ host: '::1', port: 11344, service: 'x' })).toEqual({
      target: { host: '::1', port: 11344 },
      service: 'x',
    })
  })

  it('takes a unix socket, relative to the config file’s directory', () => {
    expect(schema.parse({ socket: 'run/d.sock' })).toEqual({
      target: { socket: '/etc/mailscreen/run/d.sock' },
      service: 'avscan',
    })
    expect(schema.parse({ socket: '/run/d.sock' }).target).toEqual({ socket: '/run/d.sock' })
  })

  it('refuses socket with host or port, unknown keys and bad ports', () => {
    const message = (input: unknown) =>
      schema
        .safeParse(input)
        .error?.issues.map((i) => i.message)
        .join('; ')
    expect(message({ socket: '/s', host: 'h' })).toMatch(/`socket` cannot be combined/)
    expect(message({ socket: '/s', port: 1 })).toMatch(/`socket` cannot be combined/)
    expect(schema.safeParse({ hots: 'h' }).success).toBe(false)
    expect(schema.safeParse({ port: 0 }).success).toBe(false)
    expect(schema.safeParse({ port: 65_536 }).success).toBe(false)
    expect(schema.safeParse({ service: 3 }).success).toBe(false)
  })

  it('serviceTarget finds the address in parsed options, and nothing in other options', () => {
    expect(serviceTarget(schema.parse({ port: 11344 }))).toEqual({ host: '127.0.0.1', port: 11344 })
    expect(serviceTarget(schema.parse({ socket: '/run/d.sock' }))).toEqual({ socket: '/run/d.sock' })
    expect(serviceTarget({ subjectWords: [] })).toBeUndefined()
    expect(serviceTarget({ target: { host: 'h' } })).toBeUndefined()
    expect(serviceTarget(undefined)).toBeUndefined()
  })
})
