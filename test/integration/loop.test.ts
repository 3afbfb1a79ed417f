/**
 * Mail loops end in a bounce, not a storm: a loop in the aliases (found when the maps load,
 * refused or bounced when mail is routed), and a two-hop loop between two mailscreen
 * instances whose mailertables point at each other, stopped by the `Received:` count
 * (`routing.hopLimit`, default 30).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type Sink, startSink } from '../../src/bench/sink.js'
import { sendMail, sleep, testMessage, until } from '../delivery/harness.js'
import { type LogLine, type MailscreenProcess, startMailscreen, stopAll } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'

async function rulesDir(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mailscreen-loop-rules-'))
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text)
  return dir
}

const tagged = (sink: Sink, tag: string) =>
  sink.messages.filter((m) => m.data.toString('latin1').includes(`<${tag}@sender.example>`))

describe('mail loops', () => {
  const instances: MailscreenProcess[] = []
  const dirs: string[] = []
  let sink: Sink | undefined
  afterEach(async () => {
    for (const ms of instances.splice(0)) await stopAll(ms, undefined)
    await sink?.close()
    sink = undefined
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true })
  })

  it('an alias loop: reported at load, refused at RCPT time when it is all there is, bounced within a list', async () => {
    sink = await startSink()
    const rules = await rulesDir({
      'local-host-names': 'example.org\n',
      aliases: 'loopa: loopb\nloopb: loopa\nteam: ann@out.example, loopa\n',
    })
    dirs.push(rules)
    const ms = await startMailscreen(await freePort(), {
      routing: { dir: rules },
      delivery: { relay: `127.0.0.1:${sink.port}` },
    })
    instances.push(ms)
    const problem = ms.logs.find((l) => l.msg === 'routing map problem')
    expect(String(problem?.problem)).toMatch(/aliases:1: alias loop: loopa → loopb → loopa/)

    const direct = await sendMail(
      ms.port,
      'tester@sender.example',
      ['loopa@example.org'],
      testMessage('loop-direct'),
    )
    expect(direct.replies[0]?.code).toBe(554)
    expect(direct.replies[0]?.text).toMatch(/^554 5\.4\.6 .*loop/)
    expect(direct.id).toBeUndefined()

    const sent = await sendMail(
      ms.port,
      'tester@sender.example',
      ['team@example.org'],
      testMessage('loop-list'),
    )
    expect(sent.id).toBeDefined()
    await sink.waitFor(2)
    const copies = tagged(sink, 'loop-list')
    const delivered = copies.filter((m) => m.mailFrom === 'tester@sender.example')
    expect(delivered.map((m) => m.rcptTo)).toEqual([['ann@out.example']])
    const dsn = copies.find((m) => m.mailFrom === '')
    expect(dsn?.rcptTo).toEqual(['tester@sender.example'])
    const text = dsn?.data.toString('latin1').replace(/\r\n[ \t]+/g, ' ') ?? ''
    expect(text).toContain('Original-Recipient: rfc822; team@example.org')
    expect(text).toMatch(/Final-Recipient: rfc822; loop[ab]@example\.org/)
    expect(text).toContain('Status: 5.4.6')
    expect(text).toMatch(/Diagnostic-Code: X-Mailscreen; 554 5\.4\.6 .*mail loop in the routing maps/)
    expect(text).not.toContain('Remote-MTA:')
    // One message in, one copy and one DSN out: nothing more comes.
    await sleep(1_000)
    expect(sink.received).toBe(2)
  })

  it('a two-hop loop between two instances ends in one bounce after routing.hopLimit hops, not a storm', async () => {
    sink = await startSink()
    const [portA, portB] = [await freePort(), await freePort()]
    const mailertable = (port: number) => `loop.example smtp:[127.0.0.1]:${port}\n`
    const rulesA = await rulesDir({ mailertable: mailertable(portB) })
    const rulesB = await rulesDir({ mailertable: mailertable(portA) })
    dirs.push(rulesA, rulesB)
    // Both send everything else (the DSN's way to the sender) to the sink.
    const relay = { relay: `127.0.0.1:${sink.port}` }
    const a = await startMailscreen(portA, {
      hostname: 'a.mailscreen.test',
      routing: { dir: rulesA },
      delivery: relay,
    })
    instances.push(a)
    const b = await startMailscreen(portB, {
      hostname: 'b.mailscreen.test',
      routing: { dir: rulesB },
      delivery: relay,
    })
    instances.push(b)

    const started = Date.now()
    const sent = await sendMail(a.port, 'tester@sender.example', ['u@loop.example'], testMessage('ping-pong'))
    expect(sent.id).toBeDefined()
    await sink.waitFor(1, 20_000)
    const elapsed = Date.now() - started
    const dsn = sink.messages[0]
    expect(dsn?.mailFrom).toBe('')
    expect(dsn?.rcptTo).toEqual(['tester@sender.example'])
    const text = dsn?.data.toString('latin1').replace(/\r\n[ \t]+/g, ' ') ?? ''
    expect(text).toContain('Final-Recipient: rfc822; u@loop.example')
    expect(text).toContain('Status: 5.4.6')
    expect(text).toMatch(/Too many hops \(31 Received: header fields, more than 30\): mail loop/)
    // The DSN carries the looping message's headers: 31 Received: fields, alternating hosts.
    expect(text.match(/^Received: .* by [ab]\.mailscreen\.test \(mailscreen\)/gm)).toHaveLength(31)

    const receptions = (ms: MailscreenProcess) =>
      ms.logs.filter(
        (l: LogLine) => l.msg === 'received' && Array.isArray(l.to) && l.to.includes('u@loop.example'),
      )
    await until(() => receptions(a).length + receptions(b).length === 31, '31 receptions')
    // Quiet afterwards: no further hop, no second bounce, no bounce of the bounce.
    await sleep(1_500)
    expect(receptions(a).length + receptions(b).length).toBe(31)
    expect(receptions(a)).toHaveLength(16)
    expect(sink.received).toBe(1)
    const bouncer = [...a.logs, ...b.logs].filter((l) => l.msg === 'bounced')
    expect(bouncer).toHaveLength(1)
    expect(bouncer[0]?.reason).toBe('failed')
    console.log(`two-hop loop: 31 hops and a bounce in ${elapsed} ms`)
  })
})
