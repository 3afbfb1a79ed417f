/**
 * The corpus' virus-test messages through the running filter (clamav plugin, real clamd with
 * the corpus signatures, `policy.actions.virus: quarantine`), checked against clamdscan:
 * every message clamd flags when scanned directly is quarantined as a virus and never
 * delivered, and every message sent is either delivered or quarantined. Plus hand-made EICAR
 * carriers (plain attachment, inside a zip, deep in a nested multipart) and a clean 5 MB
 * attachment that must pass untouched.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Sink, startSink } from '../../src/bench/sink.js'
import { EICAR, EICAR_NAME, startClamd } from '../support/clamd.js'
import { useDaemon, useTempDir } from '../support/hooks.js'
import {
  base64Lines,
  CORPUS_DIR,
  cliJson,
  crlfMessage,
  headers,
  quarantineHolding,
  scannedId,
  sendAll,
  sleep,
} from '../support/mail.js'
import { type LogLine, type MailscreenProcess, startMailscreen, stopAll } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'
import { buildZip } from '../support/zip.js'

const VIRUS_DIR = join(CORPUS_DIR, 'virus-test')
const MB = 1024 * 1024
/** Largest message the filter takes here; the clean attachment test sends ~7 MB. */
const MAX_SIZE = 16 * MB

/** clamdscan against the test clamd: the signature name, or undefined when clean. */
async function clamdscan(config: string, file: string): Promise<string | undefined> {
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>(
    (resolve, reject) => {
      execFile(
        'clamdscan',
        ['--no-summary', '--stream', `--config-file=${config}`, file],
        { encoding: 'utf8' },
        (err, stdout, stderr) => {
          const code = err ? (err as { code?: unknown }).code : 0
          if (typeof code !== 'number') reject(err)
          else resolve({ code, stdout, stderr })
        },
      )
    },
  )
  if (code === 0 && stdout.trim() === `${file}: OK`) return undefined
  const found = new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: (\\S+) FOUND$`).exec(
    stdout.trim(),
  )
  if (code === 1 && found) return found[1]
  throw new Error(`clamdscan ${file}: exit ${code}\n${stdout}\n${stderr}`)
}

const ENVELOPE = { from: 'sender@example.org', to: ['rcpt@example.net'] }

interface CorpusMessage {
  readonly file: string
  readonly content: Buffer
  /** What clamdscan says about the corpus file itself. */
  readonly direct: string | undefined
  /** What clamdscan says about the exact bytes sent (CRLF line ends). */
  readonly sent: string | undefined
}

const clamd = useDaemon(startClamd)
const scratch = useTempDir('mailscreen-virus-corpus-')
let sink: Sink
let ms: MailscreenProcess
let corpus: CorpusMessage[]

const verdictOf = (id: string): Promise<LogLine> =>
  ms.waitForLog((l) => l.msg === 'verdict' && l.qid === id, 60_000)

beforeAll(async () => {
  const config = join(scratch(), 'clamdscan.conf')
  await writeFile(config, `TCPSocket ${clamd().port}\nTCPAddr 127.0.0.1\n`)
  const files = (await readdir(VIRUS_DIR)).filter((f) => f.endsWith('.eml')).sort()
  corpus = []
  for (const file of files) {
    const path = join(VIRUS_DIR, file)
    const content = crlfMessage(await readFile(path))
    const copy = join(scratch(), file)
    await writeFile(copy, content)
    corpus.push({ file, content, direct: await clamdscan(config, path), sent: await clamdscan(config, copy) })
  }
  sink = await startSink()
  ms = await startMailscreen(await freePort(), {
    smtp: { maxSize: MAX_SIZE },
    delivery: { relay: `127.0.0.1:${sink.port}` },
    policy: { actions: { virus: 'quarantine' } },
    plugins: [{ use: 'clamav', options: { host: '127.0.0.1', port: clamd().port }, timeout: '60s' }],
  })
}, 120_000)

afterAll(async () => {
  await stopAll(ms, sink)
})

describe('virus corpus through the running filter, against clamdscan', () => {
  it('clamd has the corpus signatures and flags most of the corpus when scanned directly', async () => {
    expect(existsSync(join(clamd().dir, 'db', 'clamav-test-sigs.hdb'))).toBe(true)
    expect(corpus.length).toBeGreaterThanOrEqual(20)
    const flagged = corpus.filter((c) => c.direct !== undefined)
    // Every signature comes from our databases (hash signatures are UNOFFICIAL to clamd).
    for (const c of flagged) expect(c.direct, c.file).toMatch(/^(Corpus\.Test\.|Eicar-Test-Signature)/)
    expect(flagged.length).toBeGreaterThanOrEqual(15)
    expect(corpus.find((c) => c.file === 'gen__eicar-crlf.eml')?.direct).toMatch(/^Eicar-Test-Signature/)
  })

  it('every message clamdscan flags is quarantined as a virus and never delivered; nothing is lost', async () => {
    const ids = await sendAll(
      ms.port,
      corpus.map((c) => c.content),
      ENVELOPE,
    )
    const verdicts = new Map<string, LogLine>()
    for (const id of ids) verdicts.set(id, await verdictOf(id))

    const viruses = ids.filter((id) => verdicts.get(id)?.verdict === 'virus')
    const quarantined = new Set(await quarantineHolding(ms, viruses))
    for (const [i, c] of corpus.entries()) {
      const id = ids[i] as string
      const verdict = verdicts.get(id) as LogLine
      if (c.direct !== undefined || c.sent !== undefined) {
        expect(verdict, c.file).toMatchObject({
          verdict: 'virus',
          actions: 'quarantine',
          symbols: ['CLAMAV_VIRUS'],
        })
        expect(quarantined.has(id), c.file).toBe(true)
      }
      // The same clamd saw the same bytes: the same finding, named the same.
      if (c.sent !== undefined) expect(String(verdict.reason), c.file).toContain(c.sent)
      if (verdict.verdict === 'virus')
        expect(c.sent, `${c.file}: mailscreen found more than clamdscan`).toBeDefined()
    }

    // Everything not quarantined is delivered, exactly once; nothing quarantined is delivered.
    const expectedDeliveries = ids.filter((id) => !quarantined.has(id))
    const deadline = Date.now() + 30_000
    while (Date.now() < deadline) {
      const delivered = new Set(sink.messages.map(scannedId))
      if (expectedDeliveries.every((id) => delivered.has(id))) break
      await sleep(100)
    }
    await sleep(500)
    const deliveredIds = sink.messages.map(scannedId).filter((id) => id !== undefined && ids.includes(id))
    expect([...deliveredIds].sort()).toEqual([...expectedDeliveries].sort())
    for (const id of ids) expect(quarantined.has(id) !== deliveredIds.includes(id), id).toBe(true)
    for (const m of sink.messages) expect(headers(m)).not.toMatch(/^X-mailscreen-Virus:/m)

    // Nothing left behind in any queue, nothing failed.
    expect(await cliJson(ms, ['queue', 'list'])).toEqual([])
    expect(await readdir(join(ms.spoolDir, 'failed'))).toEqual([])
    // The quarantine lists them all with the clamd signature as the reason.
    const rows = await cliJson<Array<{ id: string; verdict: string; reason: string }>>(ms, [
      'quarantine',
      'list',
    ])
    for (const [i, c] of corpus.entries()) {
      if (c.sent === undefined) continue
      const row = rows.find((r) => r.id === ids[i])
      expect(row, c.file).toMatchObject({ verdict: 'virus' })
      expect(row?.reason, c.file).toContain(c.sent)
    }
  })

  it('EICAR as a plain attachment, in a stored zip, and deep in multipart/mixed > multipart/alternative is caught', async () => {
    const eicar = Buffer.from(EICAR, 'latin1')
    const head = (tag: string) =>
      [
        'From: sender@example.org',
        'To: rcpt@example.net',
        `Subject: ${tag}`,
        'Date: Mon, 23 Nov 2026 20:00:00 +0000',
        `Message-ID: <${tag}@example.org>`,
        'MIME-Version: 1.0',
      ].join('\r\n')
    const plain = Buffer.from(
      [
        head('eicar-plain'),
        'Content-Type: multipart/mixed; boundary="p1"',
        '',
        '--p1',
        'Content-Type: text/plain',
        '',
        'the tool you asked for',
        '--p1',
        'Content-Type: application/octet-stream; name="eicar.com"',
        'Content-Disposition: attachment; filename="eicar.com"',
        'Content-Transfer-Encoding: base64',
        '',
        base64Lines(eicar),
        '--p1--',
        '',
      ].join('\r\n'),
    )
    // Stored entries (method 0) with their CRC-32; the EICAR one second, under a directory.
    const zip = buildZip([
      { name: 'readme.txt', data: 'nothing to see here\n', method: 'store' },
      { name: 'docs/eicar.com', data: eicar, method: 'store' },
    ])
    const zipped = Buffer.from(
      [
        head('eicar-zip'),
        'Content-Type: multipart/mixed; boundary="z1"',
        '',
        '--z1',
        'Content-Type: text/plain',
        '',
        'the archive',
        '--z1',
        'Content-Type: application/zip; name="docs.zip"',
        'Content-Disposition: attachment; filename="docs.zip"',
        'Content-Transfer-Encoding: base64',
        '',
        base64Lines(zip),
        '--z1--',
        '',
      ].join('\r\n'),
    )
    const nested = Buffer.from(
      [
        head('eicar-nested'),
        'Content-Type: multipart/mixed; boundary="outer"',
        '',
        '--outer',
        'Content-Type: multipart/alternative; boundary="inner"',
        '',
        '--inner',
        'Content-Type: text/plain; charset=us-ascii',
        '',
        'plain version',
        '--inner',
        'Content-Type: text/html; charset=us-ascii',
        '',
        '<p>html version</p>',
        '--inner',
        'Content-Type: application/x-msdownload; name="setup.exe"',
        'Content-Disposition: attachment; filename="setup.exe"',
        'Content-Transfer-Encoding: base64',
        '',
        base64Lines(eicar),
        '--inner--',
        '--outer',
        'Content-Type: text/plain',
        '',
        'signature',
        '--outer--',
        '',
      ].join('\r\n'),
    )
    // Only clamd's unpacking can find it: the message holds the zip in base64, not EICAR's base64.
    expect(zipped.includes(eicar)).toBe(false)
    expect(zipped.toString('latin1')).not.toContain(eicar.toString('base64'))

    const before = sink.received
    const ids = await sendAll(ms.port, [plain, zipped, nested], ENVELOPE)
    for (const [i, id] of ids.entries()) {
      const verdict = await verdictOf(id)
      expect(verdict, `message ${i}`).toMatchObject({
        verdict: 'virus',
        actions: 'quarantine',
        symbols: ['CLAMAV_VIRUS'],
      })
      expect(String(verdict.reason), `message ${i}`).toMatch(
        new RegExp(`^(${EICAR_NAME}|Corpus\\.Test\\.EICAR)(\\.UNOFFICIAL)?$`),
      )
    }
    const quarantined = await quarantineHolding(ms, ids)
    for (const id of ids) expect(quarantined).toContain(id)
    await sleep(500)
    expect(sink.received).toBe(before)
  })

  it('a clean 5 MB attachment is delivered intact', async () => {
    const payload = randomBytes(5 * MB)
    const big = Buffer.from(
      [
        'From: sender@example.org',
        'To: rcpt@example.net',
        'Subject: the big file',
        'Date: Mon, 23 Nov 2026 20:00:00 +0000',
        'Message-ID: <big-clean@example.org>',
        'MIME-Version: 1.0',
        'Content-Type: multipart/mixed; boundary="big"',
        '',
        '--big',
        'Content-Type: text/plain',
        '',
        'five megabytes of nothing in particular',
        '--big',
        'Content-Type: application/octet-stream; name="data.bin"',
        'Content-Disposition: attachment; filename="data.bin"',
        'Content-Transfer-Encoding: base64',
        '',
        base64Lines(payload),
        '--big--',
        '',
      ].join('\r\n'),
    )
    expect(big.length).toBeGreaterThan(6.5 * MB)
    expect(big.length).toBeLessThan(MAX_SIZE)
    const [id] = await sendAll(ms.port, [big], ENVELOPE)
    const verdict = await verdictOf(id as string)
    expect(verdict).toMatchObject({ verdict: 'clean', symbols: [], actions: 'deliver' })
    await ms.waitForLog((l) => l.msg === 'delivered' && l.qid === id, 30_000)
    const delivered = sink.messages.find((m) => scannedId(m) === id)
    expect(delivered).toBeDefined()
    const data = delivered?.data as Buffer
    // Our fields prepended, the message itself unchanged.
    expect(data.subarray(data.length - big.length).equals(big)).toBe(true)
    const b64 = data
      .toString('latin1')
      .split('Content-Transfer-Encoding: base64\r\n\r\n')[1]
      ?.split('\r\n--big--')[0]
    expect(Buffer.from(b64 ?? '', 'base64').equals(payload)).toBe(true)
  })
})
