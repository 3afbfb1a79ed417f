/**
 * mailscreen as a pre-queue milter behind a real Postfix (own config, loopback): the same
 * plugin chain and policy as in content-filter mode, answered inside the SMTP session.
 * GTUBE (spamd) and EICAR (clamd) are refused at end of DATA; clean mail is accepted with
 * mailscreen's headers; spam under the reject threshold is tagged; a quarantine verdict lands
 * in Postfix's hold queue; a mailscreen killed mid-transaction makes Postfix apply its
 * milter_default_action, and mail flows again after a restart.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { BenchClient } from '../../src/bench/client.js'
import { type Sink, startSink } from '../../src/bench/sink.js'
import { packageRoot } from '../../src/package-root.js'
import { type ClamdInstance, EICAR, startClamd } from '../support/clamd.js'
import { byTag, field, fields, sleep, textMessage } from '../support/mail.js'
import { type MailscreenProcess, startMailscreen, stopAll } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'
import { type PostfixInstance, startPostfix } from '../support/postfix.js'
import { type SpamdInstance, startSpamd } from '../support/spamd.js'

const EXAMPLE = join(packageRoot, 'plugins', 'example')
const HANGS = join(packageRoot, 'test', 'fixtures', 'plugins', 'hangs')
const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'

/** Send through Postfix's smtpd; resolves with the final reply line, 2xx or not. */
async function submit(port: number, to: string, data: Buffer): Promise<string> {
  const client = await BenchClient.open('127.0.0.1', port)
  try {
    return await client.send('sender@example.org', [to], data)
  } catch (err) {
    return (err as Error).message.replace(/^unexpected reply: /, '')
  } finally {
    await client.close()
  }
}

function withAttachment(tag: string, content: string): Buffer {
  return Buffer.from(
    `From: sender@example.org\r\nTo: b@example.net\r\nSubject: ${tag}\r\nMessage-ID: <${tag}@example.org>\r\n` +
      'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n' +
      '--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n' +
      `--b1\r\nContent-Type: application/octet-stream; name="f.com"\r\nContent-Transfer-Encoding: base64\r\n\r\n${Buffer.from(content).toString('base64')}\r\n--b1--\r\n`,
  )
}

describe('mailscreen as a Postfix milter', () => {
  let clamd: ClamdInstance
  let spamd: SpamdInstance
  let sink: Sink
  let postfix: PostfixInstance
  let ms: MailscreenProcess | undefined
  let milterPort: number
  let dir: string

  const config = (plugins: unknown[]) => ({
    milter: { listen: `inet:127.0.0.1:${milterPort}`, timeout: '20s' },
    delivery: { relay: `127.0.0.1:${sink.port}` },
    policy: {
      spamThreshold: 3,
      actions: { spam: { ruleset: join(dir, 'spam.rules') } },
    },
    plugins,
  })
  const scanners = () => [
    { use: EXAMPLE, options: { subjectWords: ['lottery'] } },
    { use: 'clamav', options: { host: '127.0.0.1', port: clamd.port } },
    { use: 'spamassassin', options: { host: '127.0.0.1', port: spamd.port } },
  ]

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailscreen-milter-'))
    await writeFile(join(dir, 'spam.rules'), 'To: *@hold.example quarantine\nFromOrTo: default tag deliver\n')
    ;[clamd, spamd, sink] = await Promise.all([startClamd(), startSpamd(), startSink()])
    milterPort = await freePort()
    postfix = await startPostfix({
      smtpPort: await freePort(),
      relay: { host: '127.0.0.1', port: sink.port },
      milter: `inet:127.0.0.1:${milterPort}`,
      extraMain: { milter_default_action: 'tempfail', milter_content_timeout: '30s' },
    })
  }, 120_000)

  afterAll(async () => {
    await postfix?.stop()
    await Promise.all([clamd?.stop(), spamd?.stop(), sink?.close()])
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  afterEach(async () => {
    await stopAll(ms, undefined)
    ms = undefined
  })

  it('refuses GTUBE and EICAR at end of DATA, accepts clean mail with our headers, tags spam, holds a quarantine verdict', async () => {
    ms = await startMailscreen(await freePort(), config(scanners()))

    const gtube = await submit(postfix.smtpPort, 'b@example.net', textMessage({ tag: 'gtube', body: GTUBE }))
    expect(gtube).toMatch(/^550 5\.7\.1 Message refused: highspam/)

    const virus = await submit(postfix.smtpPort, 'b@example.net', withAttachment('eicar', EICAR))
    expect(virus).toMatch(/^550 5\.7\.1 Message refused: virus \(Eicar/)

    const clean = await submit(
      postfix.smtpPort,
      'b@example.net',
      textMessage({ tag: 'clean', subject: 'Minutes' }),
    )
    expect(clean).toMatch(/^250 /)
    const spam = await submit(
      postfix.smtpPort,
      'b@example.net',
      textMessage({ tag: 'lottery', subject: 'lottery results' }),
    )
    expect(spam).toMatch(/^250 /)
    await sink.waitFor(2, 30_000)
    const delivered = byTag(sink, 'clean')[0]
    expect(field(delivered, 'X-mailscreen-Verdict')).toMatch(/^clean, /)
    expect(field(delivered, 'X-Spam-Flag')).toBe('NO')
    expect(field(delivered, 'Subject')).toBe('Minutes')
    const tagged = byTag(sink, 'lottery')[0]
    expect(field(tagged, 'Subject')).toBe('{Spam?} lottery results')
    expect(field(tagged, 'X-Spam-Flag')).toBe('YES')
    // The MTA's own Received: stays on top; mailscreen adds none in milter mode.
    // Our fields go right under it.
    expect(tagged?.data.toString()).toMatch(
      /^Received: from [^\r]*(\r\n[ \t][^\r]*)*\(Postfix\)[^\r]*(\r\n[ \t][^\r]*)*\r\nX-mailscreen-/,
    )
    expect(fields(tagged, 'Received')).toHaveLength(1)

    const held = await submit(
      postfix.smtpPort,
      'ann@hold.example',
      textMessage({ tag: 'hold', subject: 'lottery win', to: 'ann@hold.example' }),
    )
    expect(held).toMatch(/^250 /)
    let queue = await postfix.mailq()
    for (let i = 0; i < 50 && !queue.some((q) => q.queue_name === 'hold'); i++) {
      await new Promise((r) => setTimeout(r, 100))
      queue = await postfix.mailq()
    }
    expect(queue).toContainEqual(
      expect.objectContaining({
        queue_name: 'hold',
        recipients: [expect.objectContaining({ address: 'ann@hold.example' })],
      }),
    )
    expect(ms.logs).toContainEqual(
      expect.objectContaining({
        msg: 'milter verdict',
        verdict: 'spam',
        answer: 'quarantine',
        actions: 'quarantine',
      }),
    )
    expect(byTag(sink, 'gtube')).toEqual([])
    expect(byTag(sink, 'eicar')).toEqual([])
  }, 120_000)

  it('refuses an unknown user of a domain of ours at RCPT time, before any data is sent', async () => {
    const rules = join(dir, 'rules')
    await mkdir(rules, { recursive: true })
    await writeFile(join(rules, 'local-host-names'), 'corp.example\n')
    await writeFile(join(rules, 'users'), 'ann@corp.example  a.corp.example\n')
    ms = await startMailscreen(await freePort(), {
      ...config([{ use: EXAMPLE, options: { subjectWords: [] } }]),
      routing: { dir: rules },
    })
    const unknown = await submit(
      postfix.smtpPort,
      'nobody@corp.example',
      textMessage({ tag: 'unknown-user', to: 'nobody@corp.example' }),
    )
    expect(unknown).toMatch(/^550 5\.1\.1 <nobody@corp\.example>: user unknown/)
    const known = await submit(
      postfix.smtpPort,
      'ann@corp.example',
      textMessage({ tag: 'known-user', to: 'ann@corp.example' }),
    )
    expect(known).toMatch(/^250 /)
    for (let i = 0; i < 300 && byTag(sink, 'known-user').length === 0; i++) await sleep(100)
    // The MTA keeps custody and its own routing: the envelope is not rewritten by the milter.
    expect(byTag(sink, 'known-user')[0]?.rcptTo).toEqual(['ann@corp.example'])
    expect(byTag(sink, 'unknown-user')).toEqual([])
  }, 60_000)

  it('a mailscreen killed mid-transaction makes Postfix tempfail; after a restart mail flows again', async () => {
    ms = await startMailscreen(
      await freePort(),
      config([{ use: HANGS, timeout: '15s', onError: 'continue' }]),
    )
    const pending = submit(postfix.smtpPort, 'b@example.net', textMessage({ tag: 'killed' }))
    // The check hangs for 15 s: well before that, the message is with mailscreen's workers.
    await new Promise((r) => setTimeout(r, 2000))
    await ms.kill()
    const reply = await pending
    expect(reply).toMatch(/^4\d\d /)
    const dirBefore = ms.dir
    ms = await startMailscreen(
      await freePort(),
      config([{ use: EXAMPLE, options: { subjectWords: [] } }]),
      dirBefore,
    )
    const again = await submit(postfix.smtpPort, 'b@example.net', textMessage({ tag: 'after-restart' }))
    expect(again).toMatch(/^250 /)
    for (let i = 0; i < 300 && byTag(sink, 'after-restart').length === 0; i++) await sleep(100)
    expect(byTag(sink, 'after-restart')).toHaveLength(1)
    expect(field(byTag(sink, 'after-restart')[0], 'X-mailscreen-Verdict')).toMatch(/^clean, /)
    // The one Postfix tempfailed was never accepted, so it is nowhere.
    expect(byTag(sink, 'killed')).toEqual([])
  }, 90_000)
})
