import { readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { parse, stringify } from 'yaml'
import { BenchClient } from '../../src/bench/client.js'
import { type Sink, startSink } from '../../src/bench/sink.js'
import { packageRoot } from '../../src/package-root.js'
import { type MailscreenProcess, runCli, startMailscreen, stopAll } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'

function message(subject: string): Buffer {
  return Buffer.from(
    `From: a@example.org\r\nTo: b@example.net\r\nSubject: ${subject}\r\nDate: Mon, 23 Nov 2026 20:00:00 +0000\r\nMessage-ID: <${subject.replace(/\W/g, '')}@example.org>\r\n\r\nhello\r\n`,
  )
}

async function send(port: number, data: Buffer): Promise<void> {
  const client = await BenchClient.open('127.0.0.1', port)
  await client.send('a@example.org', ['b@example.net'], data)
  await client.close()
}

async function rewriteConfig(
  ms: MailscreenProcess,
  change: (config: Record<string, unknown>) => void,
): Promise<void> {
  const config = parse(await readFile(ms.configFile, 'utf8')) as Record<string, unknown>
  change(config)
  await writeFile(ms.configFile, stringify(config))
}

/**
 * SIGHUP, refused with `reason` in the log line; the running config goes on: the next message
 * (the `nth` to reach the sink) still gets the example plugin's subject-word symbol.
 */
async function expectRefused(ms: MailscreenProcess, sink: Sink, reason: string, nth: number): Promise<void> {
  ms.child.kill('SIGHUP')
  const refused = await ms.waitForLog((l) => l.msg.startsWith('SIGHUP: configuration invalid'))
  expect(JSON.stringify(refused)).toContain(reason)
  await send(ms.port, message(`cheap watches ${nth}`))
  await sink.waitFor(nth)
  expect(sink.messages[nth - 1]?.data.toString()).toContain('EXAMPLE_SUBJECT_WORD')
}

describe('SIGHUP', () => {
  let ms: MailscreenProcess | undefined
  let sink: Sink | undefined
  afterEach(() => stopAll(ms, sink))

  it('applies new plugin options, and keeps the running config when the new file is invalid', async () => {
    sink = await startSink()
    ms = await startMailscreen(await freePort(), {
      delivery: { relay: `127.0.0.1:${sink.port}` },
      plugins: [{ use: 'example', options: { subjectWords: [] } }],
    })
    await send(ms.port, message('cheap watches one'))
    await sink.waitFor(1)
    expect(sink.messages[0]?.data.toString()).not.toContain('EXAMPLE_SUBJECT_WORD')

    await rewriteConfig(ms, (c) => {
      c.plugins = [{ use: 'example', options: { subjectWords: ['watches'] } }]
    })
    ms.child.kill('SIGHUP')
    await ms.waitForLog((l) => l.msg === 'reloaded')
    await send(ms.port, message('cheap watches two'))
    await sink.waitFor(2)
    expect(sink.messages[1]?.data.toString()).toContain('EXAMPLE_SUBJECT_WORD')

    await rewriteConfig(ms, (c) => {
      c.pool = { workerz: 3 }
    })
    // Still the reloaded options: the broken file changed nothing.
    await expectRefused(ms, sink, 'workerz', 3)
    expect(ms.child.exitCode).toBeNull()
  })

  it('refuses a reload while the file it started from is gone, also when it was found without --config', async () => {
    sink = await startSink()
    ms = await startMailscreen(
      await freePort(),
      {
        delivery: { relay: `127.0.0.1:${sink.port}` },
        plugins: [{ use: 'example', options: { subjectWords: ['watches'] } }],
      },
      undefined,
      { implicitConfig: true },
    )
    await rename(ms.configFile, `${ms.configFile}.moved`)
    // Not the built-in defaults: the running plugins and options go on.
    await expectRefused(ms, sink, 'ENOENT', 1)
    await rename(`${ms.configFile}.moved`, ms.configFile)
    ms.child.kill('SIGHUP')
    await ms.waitForLog((l) => l.msg === 'reloaded')
  })

  it('applies a new log.level at once, and names the changed keys that need a restart', async () => {
    sink = await startSink()
    ms = await startMailscreen(await freePort(), { delivery: { relay: `127.0.0.1:${sink.port}` } })
    await rewriteConfig(ms, (c) => {
      c.log = { level: 'warn' }
      c.hostname = 'renamed.test'
      c.pool = { maxInFlight: 8 }
    })
    ms.child.kill('SIGHUP')
    const warned = async (key: string) =>
      ms?.waitForLog((l) => l.msg === 'reload: this section changed; restart to apply it' && l.key === key)
    await warned('hostname')
    await warned('pool.maxInFlight')
    const before = ms.logs.length
    await send(ms.port, message('after the reload'))
    await sink.waitFor(1)
    await new Promise((resolve) => setTimeout(resolve, 300))
    // received, verdict, delivered: all info, so none of them at warn.
    expect(ms.logs.slice(before).filter((l) => l.level < 40)).toEqual([])
    // Restart-only means all of it: the workers still write the running name.
    expect(sink.messages[0]?.data.toString()).toContain('by mailscreen.test')
    expect(sink.messages[0]?.data.toString()).not.toContain('renamed.test')
  })

  it('does not reload once it is stopping', async () => {
    // A plugin that takes a second to load keeps the stop, and any reload, going a while.
    ms = await startMailscreen(await freePort(), {
      plugins: [{ use: join(packageRoot, 'test/fixtures/plugins/slow-to-load') }],
    })
    const exited = new Promise((resolve) => ms?.child.once('exit', resolve))
    ms.child.kill('SIGTERM')
    await ms.waitForLog((l) => l.msg === 'stopping')
    ms.child.kill('SIGHUP')
    await exited
    const msgs = ms.logs.map((l) => l.msg)
    expect(msgs.slice(msgs.indexOf('stopping'))).not.toContain('reloaded')
    expect(msgs).toContain('stopped')
  })

  it('takes SIGHUPs in quick succession one reload at a time, and lives on', async () => {
    sink = await startSink()
    ms = await startMailscreen(await freePort(), {
      delivery: { relay: `127.0.0.1:${sink.port}` },
      plugins: [{ use: 'example', options: { subjectWords: [] } }],
    })
    for (let i = 0; i < 10; i++) {
      // The last file has the word: whatever reloads are merged, that one must apply.
      if (i === 9)
        await rewriteConfig(
          ms,
          (c) => (c.plugins = [{ use: 'example', options: { subjectWords: ['watches'] } }]),
        )
      ms.child.kill('SIGHUP')
      await new Promise((resolve) => setTimeout(resolve, 30))
    }
    await ms.waitForLog((l) => l.msg === 'reloaded')
    // Settled: no reload logged for a while.
    let seen = -1
    while (seen !== ms.logs.length) {
      seen = ms.logs.length
      await new Promise((resolve) => setTimeout(resolve, 1_500))
    }
    const reloads = ms.logs.filter((l) => l.msg === 'reloaded').length
    expect(reloads).toBeGreaterThanOrEqual(2)
    expect(reloads).toBeLessThan(10)
    expect(ms.child.exitCode).toBeNull()
    await send(ms.port, message('cheap watches two'))
    await sink.waitFor(1)
    expect(sink.messages[0]?.data.toString()).toContain('EXAMPLE_SUBJECT_WORD')
  })
})

describe('one spool, one process', () => {
  let ms: MailscreenProcess | undefined
  afterEach(() => stopAll(ms, undefined))

  it('refuses to start a second mailscreen on a spool in use, and leaves the first one running', async () => {
    ms = await startMailscreen(await freePort(), {})
    const second = await runCli(['start', '--config', ms.configFile])
    expect(second.code).not.toBe(0)
    expect(second.stderr).toContain('MSC_SPOOL_IN_USE')
    expect(ms.child.exitCode).toBeNull()
    // The first one's PID file is intact, so queue flush still reaches it.
    expect((await ms.cli(['queue', 'flush'])).code).toBe(0)
  })
})
