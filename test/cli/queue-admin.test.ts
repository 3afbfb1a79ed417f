import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { parse, stringify } from 'yaml'
import { BenchClient } from '../../src/bench/client.js'
import { type Sink, startSink } from '../../src/bench/sink.js'
import { reply } from '../../src/ingress/smtp-reply.js'
import { packageRoot } from '../../src/package-root.js'
import { recordAdminAction } from '../../src/queue/admin-journal.js'
import { sleep } from '../support/mail.js'
import { type MailscreenProcess, startMailscreen, stopAll } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'

function message(subject: string): Buffer {
  return Buffer.from(
    `From: a@example.org\r\nTo: b@example.net\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@example.org>\r\n\r\nhello\r\n`,
  )
}

/** Send one message; its queue ID. */
async function send(port: number, subject: string, to = ['b@example.net']): Promise<string> {
  const client = await BenchClient.open('127.0.0.1', port)
  const line = await client.send('a@example.org', to, message(subject))
  await client.close()
  return line.slice(line.lastIndexOf(' ') + 1)
}

async function queued(ms: MailscreenProcess): Promise<Array<{ id: string; state: string }>> {
  const out = await ms.cli(['queue', 'list', '--json'])
  expect(out.code, out.stderr).toBe(0)
  return JSON.parse(out.stdout)
}

const subjects = (sink: Sink): string[] =>
  sink.messages.map((m) => /^Subject: (.*)$/m.exec(m.data.toString('latin1'))?.[1]?.trim() ?? '')

describe('mailscreen queue show|delete|requeue', () => {
  let ms: MailscreenProcess | undefined
  let sink: Sink | undefined
  afterEach(() => stopAll(ms, sink))

  it('shows a deferred message, deletes it for good while mailscreen runs, and refuses what is not queued', async () => {
    let down = true
    sink = await startSink({
      onMessageReply: () => (down ? reply(451, '4.3.0', 'come back later') : undefined),
    })
    // No retry before the flush below: what show prints stays put while the test reads it.
    ms = await startMailscreen(await freePort(), {
      delivery: { relay: `127.0.0.1:${sink.port}`, retry: ['1h'] },
    })
    const doomed = await send(ms.port, 'doomed', ['b@example.net', 'c@example.net'])
    const kept = await send(ms.port, 'kept')
    for (const id of [doomed, kept]) await ms.waitForLog((l) => l.qid === id && l.msg === 'deferred')

    const show = await ms.cli(['queue', 'show', doomed])
    expect(show.code, show.stderr).toBe(0)
    expect(show.stdout).toMatch(new RegExp(`^id +${doomed}$`, 'm'))
    expect(show.stdout).toMatch(/^state +deferred$/m)
    expect(show.stdout).toMatch(/^from +<a@example\.org>$/m)
    expect(show.stdout).toMatch(/^to +b@example\.net, c@example\.net$/m)
    expect(show.stdout).toMatch(
      /^retry +delivery attempt 1, next .*, last error: 451 4\.3\.0 come back later$/m,
    )
    expect(show.stdout).toMatch(/^scan +clean, score /m)
    expect(show.stdout).toContain('\nSubject: doomed\r\n')
    const json = JSON.parse((await ms.cli(['queue', 'show', doomed, '--json'])).stdout)
    expect(json).toMatchObject({ id: doomed, state: 'deferred', attempts: 1, scan: { verdict: 'clean' } })
    expect(json.client.address).toBe('127.0.0.1')
    const raw = (await ms.cli(['queue', 'show', doomed, '--raw'])).stdout
    expect(raw).toMatch(/^Received: from /)
    expect(raw.endsWith('\r\n\r\nhello\r\n')).toBe(true)

    const deleted = await ms.cli(['queue', 'delete', doomed])
    expect(deleted.code, deleted.stderr).toBe(0)
    expect(deleted.stdout).toBe(`${doomed} deleted (was deferred)\n`)
    expect((await queued(ms)).map((r) => r.id)).toEqual([kept])
    // The running mailscreen logs it, with the message's queue ID, like its own events.
    const audit = await ms.waitForLog((l) => l.qid === doomed && l.msg === 'deleted by administrator')
    expect(audit).toMatchObject({ component: 'admin', was: ['deferred'], user: userInfo().username })
    expect(audit.cliPid).toEqual(expect.any(Number))
    const again = await ms.cli(['queue', 'delete', doomed, 'not-an-id'])
    expect(again.code).toBe(1)
    expect(again.stderr).toContain(`MSC_NOT_FOUND: ${doomed} is not queued`)
    expect(again.stderr).toContain('MSC_NOT_FOUND: not a queue ID: "not-an-id"')
    expect((await ms.cli(['queue', 'show', doomed])).stderr).toContain('MSC_NOT_FOUND')

    // The next hop is back and the queue runs: only the message kept goes out, once.
    down = false
    expect((await ms.cli(['queue', 'flush'])).code).toBe(0)
    await ms.waitForLog((l) => l.qid === kept && l.msg === 'delivered', 15_000)
    await sleep(2_500)
    expect(subjects(sink)).toEqual(['kept'])
    expect(await queued(ms)).toEqual([])
    expect(ms.child.exitCode).toBeNull()
  })

  it('requeues a message of failed/ once the plugin that crashed on it is gone, and it is delivered', async () => {
    sink = await startSink()
    ms = await startMailscreen(await freePort(), {
      delivery: { relay: `127.0.0.1:${sink.port}` },
      pool: { maxAttempts: 1 },
      plugins: [{ use: join(packageRoot, 'test/fixtures/plugins/kills-worker') }],
    })
    const bad = await send(ms.port, 'please crash me')
    await ms.waitForLog((l) => l.qid === bad && l.msg === 'scan failed: moved to failed', 30_000)
    const show = await ms.cli(['queue', 'show', bad])
    expect(show.stdout).toMatch(/^state +failed$/m)

    // Not in failed/: refused, and nothing else happens.
    const wrong = await ms.cli(['queue', 'requeue', 'VcvgcMA0006FooIZ'])
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toContain('MSC_NOT_FOUND')
    const usage = await ms.cli(['queue', 'requeue'])
    expect(usage.code).toBe(1)
    expect(usage.stderr).toContain('name at least one queue ID, or --all')

    // The administrator drops the broken plugin and reloads, then requeues.
    const config = parse(await readFile(ms.configFile, 'utf8')) as Record<string, unknown>
    config.plugins = [{ use: 'example' }]
    await writeFile(ms.configFile, stringify(config))
    ms.child.kill('SIGHUP')
    await ms.waitForLog((l) => l.msg === 'reloaded')
    const requeue = await ms.cli(['queue', 'requeue', '--all'])
    expect(requeue.code, requeue.stderr).toBe(0)
    expect(requeue.stdout).toContain(`${bad} requeued for a new scan\n`)
    expect(requeue.stdout).toMatch(/scan requested from mailscreen \(pid \d+\)/)
    await ms.waitForLog(
      (l) => l.qid === bad && l.msg === 'requeued by administrator' && l.component === 'admin',
    )
    await sink.waitFor(1, 20_000)
    expect(subjects(sink)).toEqual(['please crash me'])
    expect(sink.messages[0]?.data.toString()).toContain(`(id ${bad})`)
    expect(await queued(ms)).toEqual([])
  })

  it('logs at start what the CLI did while mailscreen was stopped', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mailscreen-it-'))
    await recordAdminAction(join(dir, 'spool'), {
      action: 'deleted',
      qid: 'VcvgcMA0006FooIZ',
      was: ['failed'],
    })
    sink = await startSink()
    ms = await startMailscreen(await freePort(), { delivery: { relay: `127.0.0.1:${sink.port}` } }, dir)
    const audit = await ms.waitForLog((l) => l.msg === 'deleted by administrator')
    expect(audit).toMatchObject({ qid: 'VcvgcMA0006FooIZ', was: ['failed'], component: 'admin' })
    const started = ms.logs.findIndex((l) => l.msg === 'started')
    expect(ms.logs.indexOf(audit)).toBeLessThan(started)
    expect(await readdir(join(dir, 'spool', 'admin'))).toEqual([])
  })

  it('delete --all takes only deferred or failed', async () => {
    sink = await startSink()
    ms = await startMailscreen(await freePort(), { delivery: { relay: `127.0.0.1:${sink.port}` } })
    const out = await ms.cli(['queue', 'delete', '--all', 'incoming'])
    expect(out.code).toBe(1)
    expect(out.stderr).toContain('--all takes deferred or failed, not "incoming"')
    const none = await ms.cli(['queue', 'delete', '--all', 'failed'])
    expect(none.code, none.stderr).toBe(0)
    expect(none.stdout).toBe('')
  })
})
