import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { isAbsolute, join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { parseCidr, parseHostPort } from '../../src/config/address.js'
import { parseDuration } from '../../src/config/duration.js'
import { DEFAULT_CONFIG_FILE, deepFreeze, loadConfig, validateConfig } from '../../src/config/load.js'
import { configSchema } from '../../src/config/schema.js'
import { MailscreenError } from '../../src/errors.js'

let dir: string

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailscreen-config-'))
})

afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** Run `fn` and return what it threw; fails the test when it does not throw. */
function thrown(fn: () => unknown): MailscreenError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(MailscreenError)
    return err as MailscreenError
  }
  throw new Error('expected a throw')
}

async function writeConfig(text: string, name = DEFAULT_CONFIG_FILE): Promise<string> {
  const file = join(dir, name)
  await writeFile(file, text)
  return file
}

describe('loadConfig defaults', () => {
  it('runs on defaults when no mailscreen.yaml exists and no --config was given', () => {
    const loaded = loadConfig(undefined, dir)
    expect(loaded.file).toBeUndefined()
    expect(loaded.baseDir).toBe(dir)
    expect(loaded.config.smtp.listen).toEqual([{ host: '127.0.0.1', port: 10025 }])
    expect(loaded.config.pool.workers).toBe(2)
    expect(loaded.config.delivery.relay).toEqual({ host: '127.0.0.1', port: 10026 })
  })

  it('resolves the default spool directory to an absolute path under the working directory', () => {
    const { config } = loadConfig(undefined, dir)
    expect(isAbsolute(config.spool.dir)).toBe(true)
    expect(config.spool.dir).toBe(join(dir, 'var', 'spool'))
  })

  it('fills in the documented defaults for durations, trusted networks and the plugin list', () => {
    const { config } = loadConfig(undefined, dir)
    expect(config.smtp.trusted).toEqual(['127.0.0.0/8', '::1/128'])
    expect(config.smtp.idleTimeout).toBe(300_000)
    expect(config.delivery.retry).toEqual([60_000, 300_000, 900_000, 3_600_000])
    expect(config.delivery.queueLifetime).toBe(5 * 86_400_000)
    expect(config.delivery.queueRunInterval).toBe(10_000)
    expect(config.plugins).toEqual([{ use: 'example', options: {} }])
    expect(config.policy.spamThreshold).toBe(5)
  })

  it('reads mailscreen.yaml from the working directory when it exists', async () => {
    const file = await writeConfig('pool:\n  workers: 4\n')
    const loaded = loadConfig(undefined, dir)
    expect(loaded.file).toBe(file)
    expect(loaded.config.pool.workers).toBe(4)
    expect(loaded.config.pool.maxAttempts).toBe(3)
  })

  it('resolves relative spool, routing and milter paths against the config file, not the working directory', async () => {
    await mkdir(join(dir, 'etc'))
    const file = await writeConfig(
      [
        'spool: { dir: spool }',
        'routing: { dir: ../maps }',
        'milter:',
        '  listen: [unix:run/milter.sock, "inet:127.0.0.1:8891", unix:/run/abs.sock]',
        '  tmpDir: tmp',
      ].join('\n'),
      'etc/mailscreen.yaml',
    )
    const { config } = loadConfig(file, '/')
    expect(config.spool.dir).toBe(join(dir, 'etc', 'spool'))
    expect(config.routing.dir).toBe(join(dir, 'maps'))
    expect(config.milter?.listen).toEqual([
      { kind: 'unix', path: join(dir, 'etc', 'run', 'milter.sock') },
      { kind: 'inet', host: '127.0.0.1', port: 8891 },
      { kind: 'unix', path: '/run/abs.sock' },
    ])
    expect(config.milter?.tmpDir).toBe(join(dir, 'etc', 'tmp'))
  })

  it('treats an empty file as all defaults', async () => {
    await writeConfig('')
    expect(loadConfig(undefined, dir).config.pool.workers).toBe(2)
  })
})

describe('loadConfig validation errors', () => {
  it('rejects a misspelled key with MSC_CONFIG_INVALID naming the file, the key path and the unknown key', async () => {
    const file = await writeConfig('smtp:\n  lisen:\n    - 127.0.0.1:2525\n')
    const err = thrown(() => loadConfig(undefined, dir))
    expect(err.code).toBe('MSC_CONFIG_INVALID')
    expect(err.message).toContain(`${file}: smtp: `)
    expect(err.message).toContain('lisen')
  })

  it('rejects a misspelled top-level key naming it', async () => {
    await writeConfig('pools:\n  workers: 3\n')
    const err = thrown(() => loadConfig(undefined, dir))
    expect(err.code).toBe('MSC_CONFIG_INVALID')
    expect(err.message).toContain('(top level)')
    expect(err.message).toContain('pools')
  })

  it('rejects a value of the wrong type naming its dotted key path', async () => {
    const file = await writeConfig('pool:\n  workers: two\n')
    const err = thrown(() => loadConfig(undefined, dir))
    expect(err.code).toBe('MSC_CONFIG_INVALID')
    expect(err.message).toContain(`${file}: pool.workers: `)
  })

  it('lists every problem, one line each', async () => {
    await writeConfig('pool:\n  workers: 0\npolicy:\n  spamThreshold: high\n')
    const err = thrown(() => loadConfig(undefined, dir))
    const lines = err.message.split('\n')
    expect(lines).toHaveLength(2)
    expect(lines.some((l) => l.includes('pool.workers'))).toBe(true)
    expect(lines.some((l) => l.includes('policy.spamThreshold'))).toBe(true)
  })

  it('names a bad duration by its key path and value', async () => {
    await writeConfig('delivery:\n  queueLifetime: soon\n')
    const err = thrown(() => loadConfig(undefined, dir))
    expect(err.code).toBe('MSC_CONFIG_INVALID')
    expect(err.message).toContain('delivery.queueLifetime')
    expect(err.message).toContain('"soon"')
  })

  it('takes STARTTLS levels per kind of next hop, defaulting to may for MX hosts and none for the relay', async () => {
    expect(loadConfig(undefined, dir).config.delivery.tls).toEqual({ mx: 'may', relay: 'none' })
    await writeConfig('delivery:\n  tls: { relay: encrypt }\n')
    expect(loadConfig(undefined, dir).config.delivery.tls).toEqual({ mx: 'may', relay: 'encrypt' })
    await writeConfig('delivery:\n  tls: { mx: required }\n')
    const err = thrown(() => loadConfig(undefined, dir))
    expect(err.code).toBe('MSC_CONFIG_INVALID')
    expect(err.message).toContain('delivery.tls.mx')
  })

  it('names a bad listen address by its index', async () => {
    await writeConfig('smtp:\n  listen:\n    - 127.0.0.1:10025\n    - localhost\n')
    const err = thrown(() => loadConfig(undefined, dir))
    expect(err.code).toBe('MSC_CONFIG_INVALID')
    expect(err.message).toContain('smtp.listen.1')
  })

  it('rejects a trusted entry that is not a network', async () => {
    await writeConfig('smtp:\n  trusted:\n    - 10.0.0.0/33\n')
    const err = thrown(() => loadConfig(undefined, dir))
    expect(err.code).toBe('MSC_CONFIG_INVALID')
    expect(err.message).toContain('smtp.trusted.0')
  })

  it('rejects an empty listen list', async () => {
    await writeConfig('smtp:\n  listen: []\n')
    expect(thrown(() => loadConfig(undefined, dir)).message).toContain('smtp.listen')
  })

  it('defaults and bounds of the keys for full disks, backlogs and metrics', () => {
    const config = validateConfig({}, '(defaults)')
    expect(config.spool.minFree).toBeUndefined()
    expect(config.smtp.maxBacklog).toBe(1000)
    expect(config.smtp.inFlowDelay).toBe(1000)
    expect(config.metrics).toBeUndefined()
    expect(validateConfig({ metrics: { listen: '127.0.0.1:9925' } }, 'x').metrics?.listen).toEqual({
      host: '127.0.0.1',
      port: 9925,
    })
    const bad = (raw: unknown, key: string) =>
      expect(thrown(() => validateConfig(raw, 'x')).message).toContain(`x: ${key}:`)
    bad({ smtp: { inFlowDelay: '11s' } }, 'smtp.inFlowDelay')
    bad({ smtp: { maxBacklog: 0 } }, 'smtp.maxBacklog')
    bad({ spool: { minFree: -1 } }, 'spool.minFree')
    bad({ metrics: { listen: 'nowhere' } }, 'metrics.listen')
    bad({ metrics: { listen: '127.0.0.1:9925', path: '/m' } }, 'metrics')
  })

  it('refuses durations that a timer cannot wait, and zero where zero means "at once, always"', () => {
    const bad = (raw: unknown, key: string, reason: string) =>
      expect(thrown(() => validateConfig(raw, 'x')).message).toContain(`x: ${key}: ${reason}`)
    // Longer than a Node timer's 2^31-1 ms: it would fire at once, timing every check out.
    bad({ plugins: [{ use: 'example', timeout: '30d' }] }, 'plugins.0.timeout', 'at most 24d')
    bad({ delivery: { retry: ['1m', '25d'] } }, 'delivery.retry.1', 'at most 24d')
    bad({ pool: { taskTimeout: 0 } }, 'pool.taskTimeout', 'at least 1s')
    bad({ delivery: { queueRunInterval: 0 } }, 'delivery.queueRunInterval', 'must be more than 0')
    bad({ smtp: { idleTimeout: '0s' } }, 'smtp.idleTimeout', 'must be more than 0')
    bad({ milter: { progressInterval: '30d' } }, 'milter.progressInterval', 'at most 24d')
    // Compared with clocks only: a long queue lifetime is fine, and 0 where 0 has a meaning.
    expect(validateConfig({ delivery: { queueLifetime: '60d' } }, 'x').delivery.queueLifetime).toBe(
      60 * 86_400_000,
    )
    expect(validateConfig({ smtp: { inFlowDelay: 0 } }, 'x').smtp.inFlowDelay).toBe(0)
  })

  it('labels errors from validateConfig with the name it is given', () => {
    const err = thrown(() => validateConfig({ pool: { workers: 'two' } }, '(defaults)'))
    expect(err.code).toBe('MSC_CONFIG_INVALID')
    expect(err.message).toContain('(defaults): pool.workers: ')
  })
})

describe('loadConfig read errors', () => {
  it('fails with MSC_CONFIG_UNREADABLE when an explicitly named file is missing', () => {
    const err = thrown(() => loadConfig('missing.yaml', dir))
    expect(err.code).toBe('MSC_CONFIG_UNREADABLE')
    expect(err.message).toContain(join(dir, 'missing.yaml'))
  })

  it('fails with MSC_CONFIG_UNREADABLE when an explicitly named mailscreen.yaml is missing', () => {
    expect(thrown(() => loadConfig(DEFAULT_CONFIG_FILE, dir)).code).toBe('MSC_CONFIG_UNREADABLE')
  })

  it('fails with MSC_CONFIG_UNREADABLE on a YAML syntax error', async () => {
    const file = await writeConfig('smtp:\n  listen: [127.0.0.1:10025\npool: {\n')
    const err = thrown(() => loadConfig(undefined, dir))
    expect(err.code).toBe('MSC_CONFIG_UNREADABLE')
    expect(err.message).toContain(file)
  })

  it('fails with MSC_CONFIG_UNREADABLE when the path is a directory', async () => {
    await mkdir(join(dir, 'conf.d'))
    expect(thrown(() => loadConfig('conf.d', dir)).code).toBe('MSC_CONFIG_UNREADABLE')
  })
})

describe('loadConfig path resolution', () => {
  it('resolves a relative spool.dir against the directory of the config file', async () => {
    await mkdir(join(dir, 'etc'))
    await writeConfig('spool:\n  dir: ./queue\n', join('etc', 'mail.yaml'))
    const loaded = loadConfig('etc/mail.yaml', dir)
    expect(loaded.file).toBe(join(dir, 'etc', 'mail.yaml'))
    expect(loaded.baseDir).toBe(join(dir, 'etc'))
    expect(loaded.config.spool.dir).toBe(join(dir, 'etc', 'queue'))
  })

  it('keeps an absolute spool.dir as written', async () => {
    await writeConfig('spool:\n  dir: /srv/mailscreen/spool\n')
    expect(loadConfig(undefined, dir).config.spool.dir).toBe('/srv/mailscreen/spool')
  })

  it('accepts an absolute --config path regardless of the working directory', async () => {
    const file = await writeConfig('pool:\n  workers: 3\n', 'abs.yaml')
    const loaded = loadConfig(file, '/')
    expect(loaded.config.pool.workers).toBe(3)
    expect(loaded.baseDir).toBe(dir)
  })
})

describe('loadConfig freezing', () => {
  it('returns a deep-frozen result', async () => {
    await writeConfig('plugins:\n  - use: example\n    options:\n      subjectWords: [lottery]\n')
    const loaded = loadConfig(undefined, dir)
    expect(Object.isFrozen(loaded)).toBe(true)
    expect(Object.isFrozen(loaded.config)).toBe(true)
    expect(Object.isFrozen(loaded.config.smtp.listen)).toBe(true)
    expect(Object.isFrozen(loaded.config.smtp.listen[0])).toBe(true)
    expect(Object.isFrozen(loaded.config.delivery.retry)).toBe(true)
    expect(Object.isFrozen(loaded.config.plugins[0]?.options)).toBe(true)
    expect(Object.isFrozen(loaded.config.plugins[0]?.options.subjectWords)).toBe(true)
  })

  it('throws when code tries to change a frozen value', () => {
    const { config } = loadConfig(undefined, dir)
    expect(() => {
      ;(config.pool as { workers: number }).workers = 8
    }).toThrow(TypeError)
    expect(config.pool.workers).toBe(2)
  })

  it('leaves the defaults of a later load unaffected by an earlier load', async () => {
    loadConfig(undefined, dir)
    await writeConfig('smtp:\n  trusted: [10.0.0.0/8]\n')
    expect(loadConfig(undefined, dir).config.smtp.trusted).toEqual(['10.0.0.0/8'])
    await rm(join(dir, DEFAULT_CONFIG_FILE))
    expect(loadConfig(undefined, dir).config.smtp.trusted).toEqual(['127.0.0.0/8', '::1/128'])
  })
})

describe('deepFreeze', () => {
  it('freezes nested objects and arrays and returns its argument', () => {
    const value = { a: { b: [{ c: 1 }] } }
    expect(deepFreeze(value)).toBe(value)
    expect(Object.isFrozen(value.a.b[0])).toBe(true)
  })

  it('passes primitives and null through', () => {
    expect(deepFreeze(null)).toBeNull()
    expect(deepFreeze(3)).toBe(3)
  })
})

describe('parseDuration', () => {
  it('parses unit suffixes to milliseconds', () => {
    expect(parseDuration('5m')).toBe(300_000)
    expect(parseDuration('5d')).toBe(432_000_000)
    expect(parseDuration('30s')).toBe(30_000)
    expect(parseDuration('1h')).toBe(3_600_000)
    expect(parseDuration('2w')).toBe(1_209_600_000)
    expect(parseDuration('250ms')).toBe(250)
  })

  it('reads a bare number, as a number or a string, as seconds', () => {
    expect(parseDuration(30)).toBe(30_000)
    expect(parseDuration('30')).toBe(30_000)
    expect(parseDuration(0)).toBe(0)
  })

  it('accepts fractions and surrounding spaces', () => {
    expect(parseDuration('1.5s')).toBe(1500)
    expect(parseDuration(' 2 m ')).toBe(120_000)
  })

  it('rejects text that is not a duration', () => {
    for (const bad of ['', 'soon', '5 minutes', '-5s', '5x', 'm5', '1e3'])
      expect(parseDuration(bad)).toBeUndefined()
  })

  it('rejects negative and non-finite numbers', () => {
    expect(parseDuration(-1)).toBeUndefined()
    expect(parseDuration(Number.NaN)).toBeUndefined()
    expect(parseDuration(Number.POSITIVE_INFINITY)).toBeUndefined()
  })
})

describe('durations in the config schema', () => {
  it('turns "5m", "5d" and 30 into milliseconds', () => {
    const config = configSchema.parse({
      smtp: { idleTimeout: '5m' },
      delivery: { queueLifetime: '5d', connectTimeout: 30, retry: ['30s', 60] },
    })
    expect(config.smtp.idleTimeout).toBe(300_000)
    expect(config.delivery.queueLifetime).toBe(432_000_000)
    expect(config.delivery.connectTimeout).toBe(30_000)
    expect(config.delivery.retry).toEqual([30_000, 60_000])
  })
})

describe('parseHostPort', () => {
  it('parses a name or IPv4 address with a port', () => {
    expect(parseHostPort('127.0.0.1:10025')).toEqual({ host: '127.0.0.1', port: 10025 })
    expect(parseHostPort('mx.example.org:25')).toEqual({ host: 'mx.example.org', port: 25 })
  })

  it('parses a bracketed IPv6 address and drops the brackets', () => {
    expect(parseHostPort('[::1]:25')).toEqual({ host: '::1', port: 25 })
    expect(parseHostPort('[2001:db8::10]:10026')).toEqual({ host: '2001:db8::10', port: 10026 })
  })

  it('accepts port 0 and 65535 and trims spaces', () => {
    expect(parseHostPort('127.0.0.1:0')).toEqual({ host: '127.0.0.1', port: 0 })
    expect(parseHostPort(' localhost:65535 ')).toEqual({ host: 'localhost', port: 65535 })
  })

  it('rejects endpoints without a host, without a port, with a port out of range or with an unbracketed IPv6 address', () => {
    for (const bad of [
      'localhost',
      ':25',
      'localhost:',
      'localhost:65536',
      'localhost:123456',
      '::1:25',
      '[::1]',
      'a b:25',
      'host:2x',
      '[nothex]:25',
    ]) {
      expect(parseHostPort(bad), bad).toBeUndefined()
    }
  })
})

describe('hostPort in the config schema', () => {
  it('turns listen entries into host/port objects', () => {
    const config = configSchema.parse({ smtp: { listen: ['[::1]:10025', '0.0.0.0:2525'] } })
    expect(config.smtp.listen).toEqual([
      { host: '::1', port: 10025 },
      { host: '0.0.0.0', port: 2525 },
    ])
  })
})

describe('parseCidr', () => {
  it('parses IPv4 and IPv6 networks', () => {
    expect(parseCidr('127.0.0.0/8')).toEqual({ address: '127.0.0.0', prefix: 8, family: 'ipv4' })
    expect(parseCidr('::1/128')).toEqual({ address: '::1', prefix: 128, family: 'ipv6' })
    expect(parseCidr('0.0.0.0/0')).toEqual({ address: '0.0.0.0', prefix: 0, family: 'ipv4' })
  })

  it('reads a bare address as a single-host network', () => {
    expect(parseCidr('192.0.2.7')).toEqual({ address: '192.0.2.7', prefix: 32, family: 'ipv4' })
    expect(parseCidr('2001:db8::1')).toEqual({ address: '2001:db8::1', prefix: 128, family: 'ipv6' })
  })

  it('rejects prefixes out of range or not written as digits', () => {
    for (const bad of [
      '10.0.0.0/33',
      '::/129',
      '10.0.0.0/',
      '10.0.0.0/-1',
      '10.0.0.0/8.0',
      '10.0.0.0/ 8',
      '10.0.0.0/0x8',
    ]) {
      expect(parseCidr(bad), bad).toBeUndefined()
    }
  })

  it('rejects things that are not IP addresses', () => {
    for (const bad of ['', 'localhost/8', '10.0.0/8', '256.0.0.0/8', '[::1]/128'])
      expect(parseCidr(bad), bad).toBeUndefined()
  })

  it('rejects a network with more than one slash', () => {
    expect(parseCidr('10.0.0.0/8/9')).toBeUndefined()
  })
})

describe('the milter: section', () => {
  it('is absent unless configured: no milter listener by default', () => {
    expect(loadConfig(undefined, dir).config.milter).toBeUndefined()
  })

  it('an empty section listens on inet:127.0.0.1:8891 and refuses high-scoring spam, viruses and banned attachments', async () => {
    await writeConfig('milter: {}\n')
    const { milter } = loadConfig(undefined, dir).config
    expect(milter?.listen).toEqual([{ kind: 'inet', host: '127.0.0.1', port: 8891 }])
    expect(milter?.defaultAction).toBe('tempfail')
    expect(milter?.actions).toEqual({ highspam: 'reject', virus: 'reject', banned: 'reject' })
  })

  it('takes Postfix and Sendmail spellings of the socket, and per-category action lists', async () => {
    await writeConfig(
      'milter:\n  listen: ["inet:8891@127.0.0.1", "unix:/run/ms.sock"]\n  actions:\n    virus: quarantine\n    spam: { ruleset: spam.rules }\n',
    )
    const { milter } = loadConfig(undefined, dir).config
    expect(milter?.listen).toEqual([
      { kind: 'inet', host: '127.0.0.1', port: 8891 },
      { kind: 'unix', path: '/run/ms.sock' },
    ])
    expect(milter?.actions).toMatchObject({ virus: 'quarantine', spam: { ruleset: 'spam.rules' } })
  })

  it('names a bad socket, a misspelled key and an unknown category by key path', async () => {
    await writeConfig('milter:\n  listen: tcp:8891\n')
    expect(thrown(() => loadConfig(undefined, dir)).message).toMatch(/milter\.listen.*not a milter address/)
    await writeConfig('milter:\n  timout: 5s\n')
    expect(thrown(() => loadConfig(undefined, dir)).message).toMatch(/milter.*timout/)
    await writeConfig('milter:\n  actions:\n    viruses: reject\n')
    expect(thrown(() => loadConfig(undefined, dir)).message).toMatch(/milter\.actions.*viruses/)
  })
})
