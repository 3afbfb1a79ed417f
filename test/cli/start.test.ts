import { spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { BenchClient } from '../../src/bench/client.js'
import { packageRoot } from '../../src/package-root.js'
import { SCAN_THREAD_NAME } from '../../src/pipeline/thread-name.js'
import { SCHED_BATCH, SCHED_OTHER, threadPolicy } from '../../src/thread-scheduling.js'
import {
  CLI,
  cleanup,
  type LogLine,
  type MailscreenProcess,
  startMailscreen,
  stopAll,
} from '../support/mailscreen.js'
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

describe('mailscreen start: thread scheduling', () => {
  let ms: MailscreenProcess | undefined
  afterEach(() => stopAll(ms, undefined))

  /** Each thread of the daemon: its name and scheduling policy. */
  function threads(pid: number): Array<{ tid: number; name: string; policy: number }> {
    const found = []
    for (const entry of readdirSync(`/proc/${pid}/task`)) {
      const tid = Number(entry)
      try {
        const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim()
        found.push({ tid, name, policy: threadPolicy(tid, pid) })
      } catch {
        // The thread exited between the listing and the read.
      }
    }
    return found
  }

  async function eventually(check: () => void, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      try {
        check()
        return
      } catch (err) {
        if (Date.now() > deadline) throw err
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
  }

  it('runs every thread but the main one under SCHED_BATCH, replaced scan workers too; a reload to normal undoes it', async () => {
    ms = await startMailscreen(await freePort(), {
      plugins: [{ use: join(packageRoot, 'test/fixtures/plugins/kills-worker') }],
    })
    await ms.waitForLog((l) => l.msg === 'started')
    const pid = ms.child.pid as number
    const batched = () => {
      const all = threads(pid)
      expect(all.filter((t) => t.tid === pid).map((t) => t.policy)).toEqual([SCHED_OTHER])
      expect(new Set(all.filter((t) => t.tid !== pid).map((t) => t.policy))).toEqual(new Set([SCHED_BATCH]))
      return all.filter((t) => t.name === SCAN_THREAD_NAME).map((t) => t.tid)
    }
    await eventually(() => expect(batched().length).toBeGreaterThanOrEqual(2))
    const first = new Set(batched())

    // A scan that ends its thread: piscina starts another, created (and so scheduled) as the
    // main thread is, until mailscreen hears it started.
    const client = await BenchClient.open('127.0.0.1', ms.port)
    await client.send(
      'a@example.org',
      ['b@example.net'],
      Buffer.from('Subject: please crash me\r\n\r\nhi\r\n'),
    )
    await client.close()
    await eventually(() =>
      expect(batched().filter((tid) => !first.has(tid)).length).toBeGreaterThanOrEqual(1),
    )

    await writeFile(
      ms.configFile,
      `${await readFile(ms.configFile, 'utf8')}pool:\n  helperScheduling: normal\n`,
    )
    ms.child.kill('SIGHUP')
    await ms.waitForLog((l) => l.msg === 'reloaded')
    await eventually(() => expect(new Set(threads(pid).map((t) => t.policy))).toEqual(new Set([SCHED_OTHER])))
    expect(ms.logs.filter((l) => l.msg === 'helper threads: scheduling policy not changed')).toEqual([])
  })
})
