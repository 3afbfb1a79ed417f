import { existsSync } from 'node:fs'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cleanup, runCli } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'

let dir: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailscreen-cli-config-'))
})

afterAll(async () => {
  await cleanup(dir)
})

/** Write a YAML config (as text, so a test can misspell things) and return its path. */
async function configFile(name: string, yaml: string): Promise<string> {
  const file = join(dir, name)
  await writeFile(file, yaml)
  return file
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

describe('mailscreen check-config', () => {
  it('accepts a valid file and prints listeners, relay, plugins and the symbols table', async () => {
    const file = await configFile(
      'valid.yaml',
      [
        'smtp:',
        '  listen: ["127.0.0.1:2525"]',
        'pool:',
        '  workers: 3',
        'delivery:',
        '  relay: "127.0.0.1:2626"',
        'plugins:',
        '  - use: example',
        '    options:',
        '      subjectWords: [lottery]',
        '',
      ].join('\n'),
    )
    const out = await runCli(['check-config', '--config', file], dir)
    expect(out.code, out.stderr).toBe(0)
    expect(out.stdout).toContain(`${file}: OK`)
    expect(out.stdout).toMatch(/^listen +127\.0\.0\.1:2525$/m)
    expect(out.stdout).toMatch(/^workers +3$/m)
    expect(out.stdout).toMatch(/^metrics +off$/m)
    // Postfix's rule for the default: 1.5 × smtp.maxSize (50 MiB).
    expect(out.stdout).toMatch(/^spool +\S+ \(new mail refused below 75 MiB free\)$/m)
    expect(out.stdout).toMatch(/^relay +127\.0\.0\.1:2626$/m)
    expect(out.stdout).toMatch(/^tls +STARTTLS may to MX and mailertable hosts, none to the relay$/m)
    expect(out.stdout).toMatch(/^plugins +example \(timeout 1000 ms, on error continue\)$/m)
    const table = out.stdout.slice(out.stdout.indexOf('symbols:\n'))
    expect(table).toMatch(/^ {2}EXAMPLE_NO_MESSAGE_ID +1$/m)
    expect(table).toMatch(/^ {2}EXAMPLE_NO_DATE +1$/m)
    expect(table).toMatch(/^ {2}EXAMPLE_SUBJECT_WORD +3$/m)
    expect(table).toMatch(/^ {2}EXAMPLE_FAIL +0$/m)
    expect(out.stderr).toBe('')
  })

  it('--json prints the effective configuration and score table', async () => {
    const file = await configFile('json.yaml', 'pool:\n  workers: 4\n')
    const out = await runCli(['check-config', '--json', '--config', file], dir)
    expect(out.code, out.stderr).toBe(0)
    const parsed = JSON.parse(out.stdout)
    expect(parsed.file).toBe(file)
    expect(parsed.config.pool.workers).toBe(4)
    // Defaults filled in, relative spool resolved against the config's folder.
    expect(parsed.config.smtp.listen).toEqual([{ host: '127.0.0.1', port: 10025 }])
    expect(parsed.config.spool.dir).toBe(join(dir, 'var', 'spool'))
    expect(parsed.scores).toMatchObject({ EXAMPLE_SUBJECT_WORD: 3, EXAMPLE_FAIL: 0 })
  })

  it('a misspelled key exits non-zero naming the file, the section and the key', async () => {
    const file = await configFile('misspelled.yaml', 'smtp:\n  lisen: ["127.0.0.1:2525"]\n')
    const out = await runCli(['check-config', '--config', file], dir)
    expect(out.code).not.toBe(0)
    expect(out.code).not.toBeNull()
    expect(out.stderr).toContain('MSC_CONFIG_INVALID')
    const line = out.stderr.split('\n').find((l) => l.includes('lisen'))
    expect(line).toBeDefined()
    expect(line).toContain(file)
    expect(line).toMatch(/\bsmtp\b/)
    expect(out.stdout).not.toContain('OK')
  })

  it('a value of the wrong type exits non-zero naming its key path', async () => {
    const file = await configFile('wrong-type.yaml', 'pool:\n  workers: two\n')
    const out = await runCli(['check-config', '--config', file], dir)
    expect(out.code).not.toBe(0)
    expect(out.code).not.toBeNull()
    expect(out.stderr).toContain('MSC_CONFIG_INVALID')
    expect(out.stderr).toContain(`${file}: pool.workers:`)
  })

  it('lists every problem of a file, one per line', async () => {
    const file = await configFile('two-problems.yaml', 'pool:\n  workers: two\nsmtp:\n  lisen: []\n')
    const out = await runCli(['check-config', '--config', file], dir)
    expect(out.code).not.toBe(0)
    expect(out.stderr).toContain('pool.workers')
    expect(out.stderr).toContain('lisen')
  })

  it('a policy that does not hold together exits non-zero naming the file and the key', async () => {
    const thresholds = await configFile(
      'thresholds.yaml',
      'policy:\n  spamThreshold: 10\n  highSpamThreshold: 5\n',
    )
    const a = await runCli(['check-config', '--config', thresholds], dir)
    expect(a.code).toBe(1)
    expect(a.stderr).toContain(`${thresholds}: policy.highSpamThreshold`)
    const action = await configFile('action.yaml', 'policy:\n  actions:\n    spam: frobnicate\n')
    const b = await runCli(['check-config', '--config', action], dir)
    expect(b.code).toBe(1)
    expect(b.stderr).toContain(`${action}: policy.actions.spam: unknown action "frobnicate"`)
  })

  it('a zero or endless timeout exits non-zero naming its key', async () => {
    const file = await configFile(
      'timeouts.yaml',
      'pool:\n  taskTimeout: 0\nplugins:\n  - use: example\n    timeout: 30d\n',
    )
    const out = await runCli(['check-config', '--config', file], dir)
    expect(out.code).toBe(1)
    expect(out.stderr).toContain(`${file}: pool.taskTimeout: at least 1s`)
    expect(out.stderr).toContain('plugins.0.timeout: at most 24d')
  })

  it('an unknown plugin exits non-zero with MSC_PLUGIN_NOT_FOUND', async () => {
    const file = await configFile('unknown-plugin.yaml', 'plugins:\n  - use: no-such-plugin-anywhere\n')
    const out = await runCli(['check-config', '--config', file], dir)
    expect(out.code).not.toBe(0)
    expect(out.code).not.toBeNull()
    expect(out.stderr).toContain('MSC_PLUGIN_NOT_FOUND')
    expect(out.stderr).toContain('no-such-plugin-anywhere')
  })

  it('a missing plugin path exits non-zero with MSC_PLUGIN_NOT_FOUND', async () => {
    const file = await configFile('missing-path.yaml', 'plugins:\n  - use: ./plugins/not-here\n')
    const out = await runCli(['check-config', '--config', file], dir)
    expect(out.code).not.toBe(0)
    expect(out.stderr).toContain('MSC_PLUGIN_NOT_FOUND')
  })

  it('a bad plugin option exits non-zero naming the file, the entry and options.subjectWords', async () => {
    const file = await configFile(
      'bad-option.yaml',
      'plugins:\n  - use: example\n    options:\n      subjectWords: lottery\n',
    )
    const out = await runCli(['check-config', '--config', file], dir)
    expect(out.code).not.toBe(0)
    expect(out.code).not.toBeNull()
    expect(out.stderr).toContain('MSC_PLUGIN_OPTIONS_INVALID')
    expect(out.stderr).toContain(`${file}: plugins.0 (use: example): plugin example: options.subjectWords:`)
  })

  it('shows where each scanning daemon is, with relative socket paths resolved', async () => {
    const file = await configFile(
      'daemons.yaml',
      'plugins:\n  - use: clamav\n    options: { socket: run/clamd.ctl }\n  - use: spamassassin\n    options: { port: 1783 }\n  - use: example\n',
    )
    const out = await runCli(['check-config', '--config', file], '/')
    expect(out.code, out.stderr).toBe(0)
    expect(out.stdout).toMatch(
      new RegExp(
        `^plugins +clamav at unix:${join(dir, 'run', 'clamd.ctl')} \\(timeout 30000 ms, on error tempfail\\), spamassassin at 127\\.0\\.0\\.1:1783 \\(timeout 30000 ms, on error continue\\), example \\(`,
        'm',
      ),
    )
  })

  it('an option error of the whole options object says `options`, and a plugin configured twice names its entry', async () => {
    const conflict = await configFile(
      'conflict.yaml',
      'plugins:\n  - use: clamav\n    options: { socket: /run/clamd.ctl, port: 3310 }\n',
    )
    const out = await runCli(['check-config', '--config', conflict], dir)
    expect(out.code).toBe(1)
    expect(out.stderr).toContain(
      `${conflict}: plugins.0 (use: clamav): plugin clamav: options: \`socket\` cannot be combined with \`host\`/\`port\``,
    )
    const twice = await configFile('twice.yaml', 'plugins:\n  - use: example\n  - use: example\n')
    const again = await runCli(['check-config', '--config', twice], dir)
    expect(again.code).toBe(1)
    expect(again.stderr).toContain(`${twice}: plugins.1 (use: example): plugin example is configured twice`)
  })

  it("finds a plugin's rules file next to the config file, whatever the working directory", async () => {
    await writeFile(join(dir, 'local.rules'), 'deny *.scr screensaver\n')
    const file = await configFile(
      'rules.yaml',
      'plugins:\n  - use: attachments\n    options: { rules: local.rules }\n',
    )
    const elsewhere = await mkdtemp(join(tmpdir(), 'mailscreen-cwd-'))
    const ok = await runCli(['check-config', '--config', file], elsewhere)
    expect(ok.stderr).toBe('')
    expect(ok.code).toBe(0)
    await writeFile(join(dir, 'local.rules'), 'deny type:nope x\n')
    const bad = await runCli(['check-config', '--config', file], elsewhere)
    expect(bad.code).not.toBe(0)
    expect(bad.stderr).toContain(`${join(dir, 'local.rules')}:1: unknown file type "nope"`)
    await cleanup(elsewhere)
  })

  it('a config file named but missing exits non-zero with MSC_CONFIG_UNREADABLE', async () => {
    const out = await runCli(['check-config', '--config', join(dir, 'nope.yaml')], dir)
    expect(out.code).not.toBe(0)
    expect(out.stderr).toContain('MSC_CONFIG_UNREADABLE')
    expect(out.stderr).toContain('nope.yaml')
  })
})

describe('mailscreen start with a bad config', () => {
  it('exits non-zero on an invalid file without listening or touching the spool', async () => {
    const port = await freePort()
    const spool = join(dir, 'spool-invalid')
    const file = await configFile(
      'start-invalid.yaml',
      `smtp:\n  listen: ["127.0.0.1:${port}"]\nspool:\n  dir: ${JSON.stringify(spool)}\npool:\n  workers: two\n`,
    )
    const out = await runCli(['start', '--config', file], dir)
    expect(out.code).not.toBe(0)
    expect(out.code).not.toBeNull()
    expect(out.stderr).toContain('MSC_CONFIG_INVALID')
    expect(out.stderr).toContain('pool.workers')
    expect(out.stdout).not.toContain('"started"')
    expect(existsSync(spool)).toBe(false)
    expect(await listening(port)).toBe(false)
  })

  it('exits non-zero on an unknown plugin before it listens', async () => {
    const port = await freePort()
    const spool = join(dir, 'spool-plugin')
    const file = await configFile(
      'start-plugin.yaml',
      `smtp:\n  listen: ["127.0.0.1:${port}"]\nspool:\n  dir: ${JSON.stringify(spool)}\nplugins:\n  - use: no-such-plugin-anywhere\n`,
    )
    const out = await runCli(['start', '--config', file], dir)
    expect(out.code).not.toBe(0)
    expect(out.code).not.toBeNull()
    expect(out.stderr).toContain('MSC_PLUGIN_NOT_FOUND')
    const logs = out.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string })
    expect(logs.map((l) => l.msg)).toContain('start failed')
    expect(logs.map((l) => l.msg)).not.toContain('started')
    expect(existsSync(join(spool, 'mailscreen.pid'))).toBe(false)
    expect(await listening(port)).toBe(false)
  })
})

describe('--help', () => {
  const commands = [['start'], ['check-config'], ['queue', 'list'], ['queue', 'flush'], ['scan'], ['bench']]
  for (const command of commands) {
    it(`${command.join(' ')} --help prints usage and mentions --config`, async () => {
      const out = await runCli([...command, '--help'], dir)
      expect(out.code, out.stderr).toBe(0)
      expect(out.stdout).toContain(`Usage: mailscreen ${command.join(' ')} [options]`)
      expect(out.stdout).toContain('--config <file>')
    })
  }

  it('the top level and queue list every command', async () => {
    const top = await runCli(['--help'], dir)
    expect(top.code).toBe(0)
    for (const name of ['start', 'check-config', 'queue', 'scan', 'bench'])
      expect(top.stdout).toMatch(new RegExp(`^ {2}${name}\\b`, 'm'))
    const queue = await runCli(['queue', '--help'], dir)
    expect(queue.code).toBe(0)
    expect(queue.stdout).toMatch(/^ {2}list\b/m)
    expect(queue.stdout).toMatch(/^ {2}flush\b/m)
  })
})

describe('errors from the operating system', () => {
  it('are one line naming the call and the path, without a stack trace', async () => {
    const missing = join(dir, 'no-such-message.eml')
    const scan = await runCli(['scan', missing], dir)
    expect(scan.code).toBe(1)
    expect(scan.stderr).toBe(`mailscreen: ENOENT: no such file or directory, open '${missing}'\n`)
    const spool = join(dir, 'never-started')
    const file = await configFile('no-spool.yaml', `spool: { dir: ${spool} }\n`)
    const list = await runCli(['queue', 'list', '--config', file], dir)
    expect(list.code).toBe(1)
    expect(list.stderr).toMatch(new RegExp(`^mailscreen: ENOENT: [^\\n]*'${spool}/incoming'\\n$`))
  })
})
