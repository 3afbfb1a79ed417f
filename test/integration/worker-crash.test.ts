import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { BenchClient } from '../../src/bench/client.js'
import { type Sink, startSink } from '../../src/bench/sink.js'
import { packageRoot } from '../../src/package-root.js'
import { type MailscreenProcess, startMailscreen, stopAll } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'

function message(subject: string): Buffer {
  return Buffer.from(
    `From: a@example.org\r\nTo: b@example.net\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@example.org>\r\n\r\nhello\r\n`,
  )
}

async function send(port: number, subject: string): Promise<string> {
  const client = await BenchClient.open('127.0.0.1', port)
  const reply = await client.send('a@example.org', ['b@example.net'], message(subject))
  await client.close()
  return reply.slice(reply.lastIndexOf(' ') + 1)
}

/** A sink, and a mailscreen relaying to it with one scan thread, maxAttempts 1, a 2 s task timeout and the `spins` plugin. */
async function startOneSpinThread(): Promise<{ sink: Sink; ms: MailscreenProcess }> {
  const sink = await startSink()
  const ms = await startMailscreen(await freePort(), {
    delivery: { relay: `127.0.0.1:${sink.port}` },
    pool: { workers: 1, maxAttempts: 1, taskTimeout: '2s' },
    plugins: [{ use: join(packageRoot, 'test/fixtures/plugins/spins') }],
  })
  return { sink, ms }
}

describe('a message that crashes or hangs a worker', () => {
  let ms: MailscreenProcess | undefined
  let sink: Sink | undefined
  afterEach(() => stopAll(ms, sink))

  for (const [plugin, subject] of [
    ['kills-worker', 'please crash me'],
    ['spins', 'please spin me'],
  ] as const) {
    it(`${plugin}: retried a bounded number of times, then moved to failed/ with an error log; the queue keeps moving`, async () => {
      sink = await startSink()
      ms = await startMailscreen(await freePort(), {
        delivery: { relay: `127.0.0.1:${sink.port}` },
        pool: { maxAttempts: 2, taskTimeout: '2s' },
        plugins: [{ use: join(packageRoot, 'test/fixtures/plugins', plugin) }],
      })
      const bad = await send(ms.port, subject)
      const good = await send(ms.port, 'an ordinary message')
      const failed = await ms.waitForLog(
        (l) => l.msg === 'scan failed: moved to failed' && l.qid === bad,
        60_000,
      )
      expect(failed.level).toBe(50)
      expect(failed.attempts).toBe(2)
      expect(ms.logs.some((l) => l.msg === 'scan crashed: retrying' && l.qid === bad)).toBe(true)
      expect(await readdir(join(ms.spoolDir, 'failed'))).toEqual([bad])
      // The other message was delivered and the filter still takes mail.
      await sink.waitFor(1, 30_000)
      expect(sink.messages[0]?.data.toString()).toContain(`(id ${good})`)
      const after = await send(ms.port, 'after the trouble')
      await sink.waitFor(2, 30_000)
      expect(sink.messages[1]?.data.toString()).toContain(`(id ${after})`)
      expect(ms.child.exitCode).toBeNull()
      const listed = JSON.parse((await ms.cli(['queue', 'list', '--json'])).stdout) as Array<{
        id: string
        state: string
      }>
      expect(listed).toEqual([expect.objectContaining({ id: bad, state: 'failed' })])
    })
  }
  it('the messages that shared a worker with a hanging scan are delivered, even with maxAttempts 1', async () => {
    ;({ sink, ms } = await startOneSpinThread())
    // One thread: every ordinary message is sent while the spinning scan blocks it.
    const bad = await send(ms.port, 'please spin me')
    const good = await Promise.all(
      Array.from({ length: 5 }, (_, i) => send(ms?.port as number, `ordinary ${i}`)),
    )
    await ms.waitForLog((l) => l.msg === 'scan failed: moved to failed' && l.qid === bad, 60_000)
    await sink.waitFor(5, 60_000)
    const delivered = sink.messages.map((m) => /\(id (\w+)\)/.exec(m.data.toString())?.[1])
    expect(delivered.sort()).toEqual([...good].sort())
    expect(await readdir(join(ms.spoolDir, 'failed'))).toEqual([bad])
  })
  it('a thread a plugin blocks outside any scan is replaced, and the mail sent to it is delivered', async () => {
    ;({ sink, ms } = await startOneSpinThread())
    // Scanned and delivered; 200 ms later a timer of the plugin blocks the only shared thread.
    const first = await send(ms.port, 'spin later')
    await sink.waitFor(1, 30_000)
    await new Promise((r) => setTimeout(r, 500))
    const after = await Promise.all(
      Array.from({ length: 3 }, (_, i) => send(ms?.port as number, `ordinary ${i}`)),
    )
    const stuck = await ms.waitForLog(
      (l) => l.msg === 'worker thread terminated: stuck outside any scan for longer than pool.taskTimeout',
      30_000,
    )
    expect(stuck.level).toBe(40)
    await sink.waitFor(4, 60_000)
    const delivered = sink.messages.map((m) => /\(id (\w+)\)/.exec(m.data.toString())?.[1])
    expect(delivered.sort()).toEqual([first, ...after].sort())
    // Not the messages' fault: none is counted against them.
    expect(await readdir(join(ms.spoolDir, 'failed'))).toEqual([])
  })
})
