import { execFileSync } from 'node:child_process'
import { mkdtemp, open, rm, statfs } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Sink, startSink } from '../../src/bench/sink.js'
import { reply } from '../../src/ingress/smtp-reply.js'
import { sleep } from '../support/mail.js'
import { type MailscreenProcess, startMailscreen, stopAll } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'
import { RawSmtpClient } from '../support/raw-smtp.js'

// A real full disk: the spool lives on a tmpfs of its own, which the test fills.
const MiB = 1024 * 1024
const NO_ROOM = '452 4.3.1 Insufficient system storage'

function message(tag: string, bodyBytes = 10_000): string {
  const line = `${tag} `.repeat(Math.ceil(76 / (tag.length + 1))).slice(0, 76)
  const body = Array.from({ length: Math.ceil(bodyBytes / 78) }, () => line).join('\r\n')
  return `From: <a@example.org>\r\nTo: <b@example.net>\r\nSubject: ${tag}\r\nMessage-ID: <${tag}@example.org>\r\n\r\n${body}\r\n`
}

/** Open a session and send MAIL FROM (with `params`); returns the client and MAIL's reply. */
async function mailFrom(port: number, params = ''): Promise<{ client: RawSmtpClient; answer: string }> {
  const client = await RawSmtpClient.open(port)
  await client.next()
  await client.command('EHLO mta.test')
  return { client, answer: await client.command(`MAIL FROM:<a@example.org>${params}`) }
}

/** One whole transaction; the reply to the final dot (or to MAIL FROM when that refused). */
async function send(port: number, tag: string): Promise<string> {
  const { client, answer } = await mailFrom(port)
  try {
    if (!answer.startsWith('250')) return answer
    expect(await client.command('RCPT TO:<b@example.net>')).toMatch(/^250/)
    expect(await client.command('DATA')).toMatch(/^354/)
    return await client.command(`${message(tag)}.`)
  } finally {
    client.socket.destroy()
  }
}

/** Poll until a MAIL FROM gets `expected` (the spool's free space is measured every second). */
async function mailAnswerBecomes(port: number, params: string, expected: RegExp): Promise<string> {
  let answer = ''
  for (let i = 0; i < 50; i++) {
    const attempt = await mailFrom(port, params)
    attempt.client.socket.destroy()
    answer = attempt.answer
    if (expected.test(answer)) return answer
    await sleep(100)
  }
  return answer
}

/** Write zeros into `file` until the filesystem keeps only `leave` bytes free (0: until ENOSPC). */
async function fill(dir: string, file: string, leave: number): Promise<void> {
  const stats = await statfs(dir)
  let left = stats.bavail * stats.bsize - leave
  const handle = await open(join(dir, file), 'a')
  const chunk = Buffer.alloc(64 * 1024)
  try {
    while (leave === 0 || left > 0) {
      const piece = leave === 0 ? chunk : chunk.subarray(0, Math.min(chunk.length, left))
      try {
        await handle.write(piece)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOSPC') return
        throw err
      }
      left -= piece.length
    }
  } finally {
    await handle.close()
  }
}

describe('a full spool disk', () => {
  let mount = ''
  let mounted = false
  let ms: MailscreenProcess | undefined
  let sink: Sink | undefined

  beforeAll(async () => {
    if (process.getuid?.() !== 0)
      throw new Error('this test mounts a small tmpfs for the spool and fills it: run it as root (CI does)')
    mount = await mkdtemp(join(tmpdir(), 'mailscreen-full-'))
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', mount])
    mounted = true
  })

  afterAll(async () => {
    await stopAll(ms, sink)
    if (mounted) execFileSync('umount', [mount])
    if (mount) await rm(mount, { recursive: true, force: true })
  })

  it('refuses new mail below spool.minFree, answers 451 when the disk fills mid-message, and loses nothing it accepted', async () => {
    let nextHopDown = true
    sink = await startSink({
      onMessageReply: () => (nextHopDown ? reply(451, '4.3.0', 'next hop busy') : undefined),
    })
    const spoolDir = join(mount, 'spool')
    ms = await startMailscreen(await freePort(), {
      smtp: { maxSize: 4 * MiB },
      spool: { dir: spoolDir, minFree: MiB },
      delivery: { relay: `127.0.0.1:${sink.port}` },
    })
    const { port } = ms

    // Accepted while there is room; deferred, so it waits on the disk about to fill.
    const first = await send(port, 'first')
    expect(first).toMatch(/^250 2\.0\.0 Ok: queued as /)

    // 1.5 MiB free against a 1 MiB reserve: a declared 600 KB no longer fits, a small message does.
    await fill(mount, 'filler-1', 1.5 * MiB)
    expect(await mailAnswerBecomes(port, ' SIZE=600000', /^452/)).toBe(NO_ROOM)
    const second = await send(port, 'second')
    expect(second).toMatch(/^250 2\.0\.0 Ok: queued as /)

    // A transaction let in while there was room meets a disk that fills during DATA.
    const { client, answer } = await mailFrom(port)
    expect(answer).toBe('250 2.1.0 Ok')
    expect(await client.command('RCPT TO:<b@example.net>')).toMatch(/^250/)
    await fill(mount, 'filler-2', 0)
    expect(await client.command('DATA')).toMatch(/^354/)
    expect(await client.command(`${message('third', 2 * MiB)}.`)).toBe(
      '451 4.3.0 Error: queue file write error, try again later',
    )
    client.socket.destroy()
    // The failed write made it look again: the next MAIL FROM is refused at once.
    expect((await mailFrom(port)).answer).toBe(NO_ROOM)
    await ms.waitForLog((l) => l.msg.startsWith('spool disk short of space'), 5_000)

    // Retries of the deferred mail run on the full disk for a while; the process stays up.
    await sleep(2_500)
    expect(ms.child.exitCode).toBeNull()

    // Room again, next hop back: both accepted messages arrive, the refused one never existed.
    await rm(join(mount, 'filler-1'))
    await rm(join(mount, 'filler-2'))
    nextHopDown = false
    await ms.waitForLog((l) => l.msg === 'spool disk has room again', 5_000)
    expect(await send(port, 'fourth')).toMatch(/^250 2\.0\.0 Ok: queued as /)
    await sink.waitFor(3, 20_000)
    await sleep(1_500)
    const subjects = sink.messages.map((m) => /^Subject: (.*)$/m.exec(m.data.toString('latin1'))?.[1]?.trim())
    expect(subjects.sort()).toEqual(['first', 'fourth', 'second'])
    const refusals = ms.logs.filter((l) => l.msg === 'mail refused: 452 4.3.1 spool disk short of space')
    expect(refusals.length).toBeGreaterThanOrEqual(2)
    expect(ms.logs.some((l) => l.msg === 'spool write failed')).toBe(true)
  })
})
