/**
 * The clamav plugin inside the running filter, against a real clamd: a virus is never
 * delivered (it lands in quarantine/), clean mail is, and with clamd down nothing is
 * delivered unscanned (the scan tempfails and the message waits in deferred/).
 */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type ClamdInstance, EICAR, startClamd } from '../support/clamd.js'
import { cliJson, send, startFilter } from '../support/mail.js'

function withAttachment(subject: string, content: string): Buffer {
  const b64 = Buffer.from(content).toString('base64')
  return Buffer.from(
    `From: a@example.org\r\nTo: b@example.net\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@example.org>\r\n` +
      'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n' +
      '--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n' +
      `--b1\r\nContent-Type: application/octet-stream; name="f.com"\r\nContent-Transfer-Encoding: base64\r\n\r\n${b64}\r\n--b1--\r\n`,
  )
}

describe('clamav in the running filter', () => {
  let clamd: ClamdInstance | undefined
  afterEach(async () => {
    await clamd?.stop()
  })

  it('quarantines a virus and delivers a notice instead, delivers clean mail, and holds mail unscanned while clamd is down', async () => {
    clamd = await startClamd()
    const { ms, sink } = await startFilter({
      delivery: { retry: ['1h'] },
      plugins: [{ use: 'clamav', options: { host: '127.0.0.1', port: clamd.port } }],
    })
    const virus = await send(ms.port, withAttachment('virus', EICAR))
    await sink.waitFor(1)
    const clean = await send(ms.port, withAttachment('clean', 'just a text file'))
    const verdict = await ms.waitForLog((l) => l.msg === 'verdict' && l.qid === virus)
    expect(verdict.verdict).toBe('virus')
    expect(verdict.symbols).toContain('CLAMAV_VIRUS')
    // The default virus actions: keep the original in quarantine, deliver what is left with a notice.
    expect(verdict.actions).toBe('quarantine strip')
    await sink.waitFor(2)
    const [notice, delivered] = sink.messages.map((m) => m.data.toString())
    expect(notice).toContain(`(id ${virus})`)
    expect(notice).toContain('X-mailscreen-Virus: Eicar')
    expect(notice).toContain('The original is kept in quarantine')
    // Only the infected attachment went; the text part stays.
    expect(notice).toContain('see attached')
    expect(notice).not.toContain('EICAR-STANDARD-ANTIVIRUS-TEST-FILE')
    expect(delivered).toContain(`(id ${clean})`)
    expect(await readdir(join(ms.spoolDir, 'quarantine'))).toEqual([virus])
    const original = await readFile(join(ms.spoolDir, 'quarantine', virus), 'utf8')
    expect(original).toContain(Buffer.from(EICAR).toString('base64'))

    await clamd.stop()
    clamd = undefined
    const unscanned = await send(ms.port, withAttachment('while down', 'text'))
    const deferred = await ms.waitForLog((l) => l.msg === 'scan deferred' && l.qid === unscanned)
    expect(String(deferred.reason)).toContain('clamav')
    const listed = await cliJson(ms, ['queue', 'list'])
    expect(listed).toEqual([expect.objectContaining({ id: unscanned, state: 'deferred', phase: 'scan' })])
    // Still only the notice and the clean message at the next hop: nothing went out unscanned.
    expect(sink.received).toBe(2)
  })
})
