import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { packageRoot } from '../../src/package-root.js'
import { CLI, cleanup, type LogLine } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'

const dirs: string[] = []

afterEach(async () => {
  await Promise.all(dirs.splice(0).map(cleanup))
})

/**
 * Resolves once `ready()` holds, checking every few milliseconds; rejects once `gone()` says
 * the process it waits on has ended, or after `timeoutMs`.
 */
async function until(
  ready: () => boolean,
  gone: () => string | undefined,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!ready()) {
    const ended = gone()
    if (ended) throw new Error(`mailscreen ended (${ended}) while waiting for ${what}`)
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
}

describe('mailscreen start', () => {
  it('acts on SIGUSR1, SIGUSR2 and SIGHUP sent while it starts, instead of dying of them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mailscreen-start-'))
    dirs.push(dir)
    const spoolDir = join(dir, 'spool')
    const configFile = join(dir, 'mailscreen.yaml')
    await writeFile(
      configFile,
      stringify({
        smtp: { listen: [`127.0.0.1:${await freePort()}`] },
        spool: { dir: spoolDir },
        // Holds start-up for a second after the PID file is written: the CLI's window.
        plugins: [{ use: join(packageRoot, 'test/fixtures/plugins/slow-to-load') }],
      }),
    )
    const child = spawn(process.execPath, [CLI, 'start', '--config', configFile], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
    const logs: LogLine[] = []
    let pending = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk
      for (let eol = pending.indexOf('\n'); eol !== -1; eol = pending.indexOf('\n')) {
        logs.push(JSON.parse(pending.slice(0, eol)) as LogLine)
        pending = pending.slice(eol + 1)
      }
    })
    const logged = (msg: string) => logs.some((line) => line.msg === msg)
    const gone = () => (child.exitCode ?? child.signalCode ?? undefined)?.toString()
    try {
      // What `queue flush`, `queue delete` and a reload do: signal the PID the spool names.
      await until(() => existsSync(join(spoolDir, 'mailscreen.pid')), gone, 'the PID file')
      for (const signal of ['SIGUSR2', 'SIGHUP', 'SIGUSR1'] as const) child.kill(signal)
      expect(logged('started')).toBe(false)
      await until(
        () => logged('started') && logged('reloaded') && logged('flush: retrying deferred mail now'),
        gone,
        'the signals to be acted on',
      )
      expect(child.exitCode).toBeNull()
    } finally {
      child.kill('SIGTERM')
    }
    expect(await exited).toBe(0)
  })
})
