import { cpSync, existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Command, CommanderError } from 'commander'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { EXIT_REFUSED, registerRoute, routingDir } from '../../src/cli/route.js'
import type { LoadedConfig } from '../../src/config/load.js'
import { packageRoot } from '../../src/package-root.js'
import { runCli } from '../support/mailscreen.js'

let dir: string
let config: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailscreen-cli-route-'))
  // The organisation site's maps in ./rules next to the config file (the default folder).
  cpSync(join(packageRoot, 'test', 'fixtures', 'sites', 'organisation', 'rules'), join(dir, 'rules'), {
    recursive: true,
  })
  config = join(dir, 'mailscreen.yaml')
  await writeFile(config, 'delivery:\n  relay: "127.0.0.1:2626"\n')
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

interface Run {
  readonly stdout: string
  readonly stderr: string
  readonly exitCode: number | undefined
  readonly error?: unknown
}

/** Run `mailscreen route ...` in-process through registerRoute on a fresh program. */
async function route(args: readonly string[]): Promise<Run> {
  const program = new Command('mailscreen').exitOverride()
  registerRoute(program)
  const out: string[] = []
  const err: string[] = []
  const stdout = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out.push(String(chunk))
    return true
  })
  const stderr = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    err.push(String(chunk))
    return true
  })
  const before = process.exitCode
  process.exitCode = undefined
  let error: unknown
  try {
    await program.parseAsync(['route', ...args], { from: 'user' })
  } catch (e) {
    error = e
  } finally {
    stdout.mockRestore()
    stderr.mockRestore()
  }
  const exitCode = typeof process.exitCode === 'number' ? process.exitCode : undefined
  process.exitCode = before
  return { stdout: out.join(''), stderr: err.join(''), exitCode, ...(error ? { error } : {}) }
}

describe('mailscreen route', () => {
  it('prints each map consulted, each expansion, the recipients with next hop and why', async () => {
    const run = await route(['all@c.corp.example', '--config', config])
    expect(run.error).toBeUndefined()
    expect(run.exitCode).toBeUndefined()
    expect(run.stdout).toContain('route all@c.corp.example (from <>)')
    expect(run.stdout).toContain(`maps  ${join(dir, 'rules')}: local-host-names, aliases, mailertable, users`)
    expect(run.stdout).toMatch(
      /^ {2}local-host-names +hit +c\.corp\.example is ours {2}\[local-host-names:5\]$/m,
    )
    expect(run.stdout).toMatch(/^ {2}aliases +miss +no alias all$/m)
    expect(run.stdout).toMatch(/^ {2}users +hit +all@c\.corp\.example: 2 users$/m)
    expect(run.stdout).toMatch(
      /^ {4}users +hit +member dave@corp\.example, home c\.corp\.example {2}\[users:5\]$/m,
    )
    expect(run.stdout).toMatch(/^ {4}mailertable +hit +c\.corp\.example {2}\[mailertable:3\]$/m)
    expect(run.stdout).toContain('recipients (2):')
    expect(run.stdout).toMatch(/^ {2}dave@c\.corp\.example {2}smtp:\[127\.0\.30\.3\]:2525$/m)
    expect(run.stdout).toMatch(/^ {2}erin@c\.corp\.example {2}smtp:\[127\.0\.30\.3\]:2525$/m)
    expect(run.stdout).toMatch(/why: mailertable entry c\.corp\.example {2}\[mailertable:3\]/)
    expect(run.stdout.trimEnd().endsWith('accepted')).toBe(true)
  })

  it('--json prints the same decision as an object with the final recipients and their nextHops', async () => {
    const run = await route([
      'sales@corp.example',
      '--json',
      '--config',
      config,
      '--from',
      'boss@partner.example',
    ])
    const json = JSON.parse(run.stdout)
    expect(json).toMatchObject({
      address: 'sales@corp.example',
      from: 'boss@partner.example',
      accepted: true,
      refusal: null,
      recipients: [
        {
          address: 'bob@a.corp.example',
          nextHop: { kind: 'smtp', host: '127.0.30.1', port: 2525, mx: false },
          via: ['sales@corp.example', 'bob@corp.example'],
        },
        {
          address: 'carol@b.corp.example',
          nextHop: { kind: 'smtp', host: '127.0.30.2', port: 2525, mx: false },
        },
      ],
      maps: { dir: join(dir, 'rules'), problems: [] },
    })
    expect(json.steps.map((s: { map: string }) => s.map)).toContain('aliases')
    expect(run.stderr).toBe('')
  })

  it('uses delivery.relay from the config for domains that are neither ours nor in the mailertable', async () => {
    const run = await route(['--json', '--config', config, 'someone@partner.example'])
    expect(JSON.parse(run.stdout).recipients).toEqual([
      expect.objectContaining({
        address: 'someone@partner.example',
        nextHop: { kind: 'relay', host: '127.0.0.1', port: 2626 },
      }),
    ])
  })

  it('a refused address prints the reply and exits with status 2', async () => {
    const run = await route(['nobody@b.corp.example', '--config', config])
    expect(run.stdout).toContain('refused: 550 5.1.1 <nobody@b.corp.example>: user unknown')
    expect(run.exitCode).toBe(EXIT_REFUSED)
    const json = await route(['nobody@b.corp.example', '--config', config, '--json'])
    expect(JSON.parse(json.stdout).refusal).toEqual({
      code: 550,
      status: '5.1.1',
      text: '<nobody@b.corp.example>: user unknown',
    })
    expect(json.exitCode).toBe(EXIT_REFUSED)
  })

  it('refuses a --from that is not an address', async () => {
    const run = await route(['ann@corp.example', '--config', config, '--from', 'not an address'])
    expect(run.error).toBeInstanceOf(CommanderError)
    expect(run.stderr).toContain('--from "not an address" is not an address')
    expect(run.stdout).toBe('')
  })

  it('prints map problems on stderr as file:line: reason and still routes with the rest', async () => {
    const broken = await mkdtemp(join(tmpdir(), 'mailscreen-cli-route-broken-'))
    try {
      cpSync(join(dir, 'rules'), join(broken, 'rules'), { recursive: true })
      const users = join(broken, 'rules', 'users')
      await writeFile(users, `${readFileSync(users, 'utf8')}this line is broken\n`)
      const file = join(broken, 'mailscreen.yaml')
      await writeFile(file, '{}\n')
      const run = await route(['ann@corp.example', '--config', file])
      expect(run.stderr).toBe('mailscreen: users:7: expected "user@domain  home.subdomain"\n')
      expect(run.stdout).toContain('1 problem(s), see stderr')
      expect(run.stdout).toMatch(/^ {2}ann@a\.corp\.example {2}smtp:\[127\.0\.30\.1\]:2525$/m)
    } finally {
      await rm(broken, { recursive: true, force: true })
    }
  })
})

describe('routingDir', () => {
  const loaded = (config: Record<string, unknown>): LoadedConfig =>
    ({
      config,
      file: '/etc/mailscreen/mailscreen.yaml',
      baseDir: '/etc/mailscreen',
    }) as unknown as LoadedConfig

  it('is routing.dir relative to the config file directory, else ./rules there', () => {
    expect(routingDir(loaded({}))).toBe('/etc/mailscreen/rules')
    expect(routingDir(loaded({ routing: { dir: 'maps' } }))).toBe('/etc/mailscreen/maps')
    expect(routingDir(loaded({ routing: { dir: '/srv/maps' } }))).toBe('/srv/maps')
  })
})

// The built CLI, once src/cli/main.ts registers the command (the owner adds that line).
const registered = readFileSync(join(packageRoot, 'src', 'cli', 'main.ts'), 'utf8').includes('registerRoute')
const built = existsSync(join(packageRoot, 'dist', 'src', 'cli', 'route.js'))

describe.skipIf(!registered || !built)('the built CLI: node dist/src/cli/main.js route', () => {
  it('prints the decision as JSON and exits 0', async () => {
    const out = await runCli(['route', 'ann@b.corp.example', '--json', '--config', config], dir)
    expect(out.code, out.stderr).toBe(0)
    expect(JSON.parse(out.stdout).recipients).toEqual([
      expect.objectContaining({
        address: 'ann@a.corp.example',
        nextHop: { kind: 'smtp', host: '127.0.30.1', port: 2525, mx: false },
      }),
    ])
  })

  it('exits 2 for a refused address', async () => {
    const out = await runCli(['route', 'nobody@corp.example', '--config', config], dir)
    expect(out.code).toBe(EXIT_REFUSED)
    expect(out.stdout).toContain('refused: 550 5.1.1')
  })
})
