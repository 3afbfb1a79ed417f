/**
 * The routing maps in the running filter: unknown users of our domains refused at RCPT time,
 * and SIGHUP reloading the maps, keeping the last good ones when the new files are broken.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type Sink, startSink } from '../../src/bench/sink.js'
import { sendMail, testMessage } from '../delivery/harness.js'
import { type MailscreenProcess, startMailscreen, stopAll } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'

describe('routing maps in the running filter', () => {
  let ms: MailscreenProcess | undefined
  let sink: Sink | undefined
  let rules: string | undefined
  afterEach(async () => {
    await stopAll(ms, sink)
    if (rules) await rm(rules, { recursive: true, force: true })
  })

  async function start(): Promise<MailscreenProcess> {
    sink = await startSink()
    rules = await mkdtemp(join(tmpdir(), 'mailscreen-reload-rules-'))
    await writeFile(join(rules, 'local-host-names'), 'example.org\n')
    await writeFile(join(rules, 'aliases'), 'sales: ann@out.example\n')
    ms = await startMailscreen(await freePort(), {
      routing: { dir: rules },
      delivery: { relay: `127.0.0.1:${sink.port}` },
    })
    return ms
  }

  /** Send to sales@example.org and return the recipients of the copy that reached the sink. */
  async function salesGoesTo(instance: MailscreenProcess, tag: string): Promise<readonly string[]> {
    const sent = await sendMail(
      instance.port,
      'tester@sender.example',
      ['sales@example.org'],
      testMessage(tag),
    )
    expect(sent.id, sent.replies[0]?.text).toBeDefined()
    const s = sink as Sink
    await s.waitFor(s.received + 1)
    const copy = s.messages.find((m) => m.data.toString('latin1').includes(`<${tag}@sender.example>`))
    return copy?.rcptTo ?? []
  }

  it('refuses an unknown user of a domain of ours at RCPT time with 550 5.1.1, and queues nothing', async () => {
    const instance = await start()
    const sent = await sendMail(
      instance.port,
      'tester@sender.example',
      ['nobody@example.org', 'sales@example.org'],
      testMessage('rcpt-time'),
    )
    expect(sent.replies[0]).toEqual({ code: 550, text: '550 5.1.1 <nobody@example.org>: user unknown' })
    expect(sent.replies[1]?.code).toBe(250)
    const refused = await instance.waitForLog((l) => l.msg === 'recipient refused')
    expect(refused).toMatchObject({ to: 'nobody@example.org', from: 'tester@sender.example' })
    const received = await instance.waitForLog((l) => l.msg === 'received' && l.qid === sent.id)
    expect(received.to).toEqual(['sales@example.org'])

    const none = await sendMail(
      instance.port,
      'tester@sender.example',
      ['ghost@example.org'],
      testMessage('none'),
    )
    expect(none.replies[0]?.code).toBe(550)
    expect(none.id).toBeUndefined()
    await (sink as Sink).waitFor(1)
    expect((sink as Sink).messages.map((m) => m.rcptTo)).toEqual([['ann@out.example']])
  })

  it('SIGHUP applies new maps; a broken map keeps the last good maps and logs why', async () => {
    const instance = await start()
    const dir = rules as string
    expect(await salesGoesTo(instance, 'before')).toEqual(['ann@out.example'])

    await writeFile(join(dir, 'aliases'), 'sales: bob@out.example\n')
    instance.child.kill('SIGHUP')
    const reloaded = await instance.waitForLog((l) => l.msg === 'routing maps reloaded')
    expect(reloaded.maps).toEqual(['local-host-names', 'aliases'])
    expect(await salesGoesTo(instance, 'after-good')).toEqual(['bob@out.example'])

    // Broken: a line without its colon, as a half-finished edit leaves it.
    await writeFile(join(dir, 'aliases'), 'sales: carol@out.example\nsupport dave@out.example\n')
    instance.child.kill('SIGHUP')
    const kept = await instance.waitForLog(
      (l) => l.msg === 'routing maps not reloaded: keeping the last good maps',
    )
    expect(kept.level).toBe(50)
    expect(kept.problems).toEqual([expect.stringMatching(new RegExp(`^${join(dir, 'aliases')}:2: `))])
    expect(await salesGoesTo(instance, 'after-broken')).toEqual(['bob@out.example'])
    // The plugins and policy reload went on as usual.
    await instance.waitForLog((l) => l.msg === 'reloaded')
    expect(instance.child.exitCode).toBeNull()

    // Fixed: the next SIGHUP applies it.
    await writeFile(join(dir, 'aliases'), 'sales: carol@out.example\nsupport: dave@out.example\n')
    instance.child.kill('SIGHUP')
    await instance.waitForLog(
      (l) =>
        l.msg === 'routing maps reloaded' &&
        instance.logs.filter((x) => x.msg === 'routing maps reloaded').length === 2,
    )
    expect(await salesGoesTo(instance, 'after-fix')).toEqual(['carol@out.example'])
  })
})
