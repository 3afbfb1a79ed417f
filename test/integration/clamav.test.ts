/**
 * The clamav plugin against a real clamd (test/support/clamd.ts): EICAR as a base64
 * attachment and inside a zip is caught, a clean message is not, a hung or stopped clamd
 * makes the check throw.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import { beforeAll, describe, expect, it } from 'vitest'
import clamav from '../../plugins/clamav/index.js'
import type { Check, Hit } from '../../src/pipeline/plugin.js'
import { parseOptions } from '../../src/pipeline/plugin.js'
import { silentLog as log, runCheck as runWith } from '../support/check.js'
import { EICAR, EICAR_NAME, startClamd } from '../support/clamd.js'
import { useDaemon } from '../support/hooks.js'
import { base64Lines, CORPUS_DIR } from '../support/mail.js'

const EICAR_NAMES = new RegExp(`^(${EICAR_NAME}|Corpus\\.Test\\.EICAR)(\\.UNOFFICIAL)?$`)

/** A minimal zip archive with one stored (uncompressed) file. */
function storedZip(name: string, data: Buffer): Buffer {
  const fileName = Buffer.from(name, 'utf8')
  const crc = crc32(data)
  const local = Buffer.alloc(30)
  local.writeUInt32LE(0x04034b50, 0)
  local.writeUInt16LE(10, 4) // version needed
  local.writeUInt16LE(0, 6) // flags
  local.writeUInt16LE(0, 8) // method: stored
  local.writeUInt16LE(0, 10) // time
  local.writeUInt16LE(0x21, 12) // date 1980-01-01
  local.writeUInt32LE(crc, 14)
  local.writeUInt32LE(data.length, 18)
  local.writeUInt32LE(data.length, 22)
  local.writeUInt16LE(fileName.length, 26)
  local.writeUInt16LE(0, 28)
  const central = Buffer.alloc(46)
  central.writeUInt32LE(0x02014b50, 0)
  central.writeUInt16LE(20, 4) // version made by
  central.writeUInt16LE(10, 6)
  central.writeUInt16LE(0, 8)
  central.writeUInt16LE(0, 10)
  central.writeUInt16LE(0, 12)
  central.writeUInt16LE(0x21, 14)
  central.writeUInt32LE(crc, 16)
  central.writeUInt32LE(data.length, 20)
  central.writeUInt32LE(data.length, 24)
  central.writeUInt16LE(fileName.length, 28)
  // extra, comment, disk, internal attrs, external attrs: 0; local header offset 0
  const centralOffset = local.length + fileName.length + data.length
  const centralSize = central.length + fileName.length
  const end = Buffer.alloc(22)
  end.writeUInt32LE(0x06054b50, 0)
  end.writeUInt16LE(1, 8)
  end.writeUInt16LE(1, 10)
  end.writeUInt32LE(centralSize, 12)
  end.writeUInt32LE(centralOffset, 16)
  return Buffer.concat([local, fileName, data, central, fileName, end])
}

function multipart(attachment: { name: string; type: string; data: Buffer }): Buffer {
  return Buffer.from(
    [
      'From: a@example.org',
      'To: b@example.net',
      'Subject: the file',
      'Message-ID: <clamav-it@example.org>',
      'Date: Mon, 1 Jan 2024 00:00:00 +0000',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="b1"',
      '',
      '--b1',
      'Content-Type: text/plain; charset=utf-8',
      '',
      'See the attachment.',
      '--b1',
      `Content-Type: ${attachment.type}; name="${attachment.name}"`,
      `Content-Disposition: attachment; filename="${attachment.name}"`,
      'Content-Transfer-Encoding: base64',
      '',
      base64Lines(attachment.data),
      '--b1--',
      '',
    ].join('\r\n'),
  )
}

const CLEAN = Buffer.from(
  'From: a@example.org\r\nTo: b@example.net\r\nSubject: hello\r\nMessage-ID: <c@example.org>\r\n' +
    'Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nNothing to see here.\r\n',
)

const clamd = useDaemon(() => startClamd({ extraConfig: { StreamMaxLength: '2M' } }))
let check: Check

async function run(raw: Buffer, signal = AbortSignal.timeout(20_000)): Promise<readonly Hit[]> {
  return runWith(check, raw, signal)
}

beforeAll(async () => {
  check = await clamav.setup(parseOptions(clamav, { host: clamd().host, port: clamd().port }), { log })
})

describe('clamav plugin against a real clamd', () => {
  it('finds EICAR in a base64 attachment, naming it', async () => {
    const raw = multipart({ name: 'eicar.com', type: 'application/octet-stream', data: Buffer.from(EICAR) })
    const hits = await run(raw)
    expect(hits).toHaveLength(1)
    expect(hits[0]?.symbol).toBe('CLAMAV_VIRUS')
    // clamd appends .UNOFFICIAL to names from non-official databases; the corpus DB has the same hash.
    expect(hits[0]?.evidence).toEqual([expect.stringMatching(EICAR_NAMES)])
    // Each part scanned again on its own: only the attachment (part 2) carries it.
    expect(hits[0]?.parts).toEqual(['2'])
  })

  it('names no part when the message without the flagged part is still infected (a uuencoded copy in the text)', async () => {
    // clamd unpacks uuencode when it scans a whole mail, not in a text part scanned alone: only
    // the remainder scan shows that stripping part 1 would deliver the virus still.
    const eicar = Buffer.from(EICAR)
    const uu = ['begin 644 invoice.com']
    for (let i = 0; i < eicar.length; i += 45) {
      const chunk = eicar.subarray(i, i + 45)
      let line = String.fromCharCode(32 + chunk.length)
      for (let j = 0; j < chunk.length; j += 3) {
        const n = ((chunk[j] ?? 0) << 16) | ((chunk[j + 1] ?? 0) << 8) | (chunk[j + 2] ?? 0)
        for (const shift of [18, 12, 6, 0]) {
          const v = (n >> shift) & 63
          line += String.fromCharCode(v === 0 ? 96 : 32 + v)
        }
      }
      uu.push(line)
    }
    uu.push('`', 'end')
    const raw = Buffer.from(
      [
        'From: a@example.org',
        'To: b@example.net',
        'Subject: two copies',
        'MIME-Version: 1.0',
        'Content-Type: multipart/mixed; boundary="XYZ"',
        '',
        '--XYZ',
        'Content-Type: application/octet-stream; name="a.bin"',
        'Content-Transfer-Encoding: base64',
        '',
        eicar.toString('base64'),
        '--XYZ',
        'Content-Type: text/plain',
        '',
        'Hello, see below.',
        '',
        ...uu,
        '',
        '--XYZ--',
        '',
      ].join('\r\n'),
    )
    const hits = await run(raw)
    expect(hits.map((h) => h.symbol)).toEqual(['CLAMAV_VIRUS'])
    expect(hits[0]?.parts).toBeUndefined()
  })

  it('does not flag a clean message', async () => {
    expect(await run(CLEAN)).toEqual([])
    const withAttachment = multipart({ name: 'notes.txt', type: 'text/plain', data: Buffer.from('hello\n') })
    expect(await run(withAttachment)).toEqual([])
  })

  it('finds EICAR inside a zip attachment', async () => {
    const zip = storedZip('eicar.com', Buffer.from(EICAR))
    const raw = multipart({ name: 'eicar.zip', type: 'application/zip', data: zip })
    const hits = await run(raw)
    expect(hits).toHaveLength(1)
    expect(hits[0]?.symbol).toBe('CLAMAV_VIRUS')
    expect(hits[0]?.evidence).toEqual([expect.stringMatching(EICAR_NAMES)])
    expect(hits[0]?.parts).toEqual(['2'])
  })

  it('finds a corpus virus-test message with the corpus signatures', async () => {
    const raw = await readFile(join(CORPUS_DIR, 'virus-test', 'clamav__wrap-zipzip__clam.exe.eml'))
    const hits = await run(raw)
    expect(hits.map((h) => h.symbol)).toEqual(['CLAMAV_VIRUS'])
    expect(hits[0]?.evidence?.join(' ')).toMatch(/Corpus\.Test\.|Eicar/)
  })

  it("throws on clamd's own StreamMaxLength error", async () => {
    const raw = Buffer.concat([CLEAN, Buffer.alloc(3 * 1024 * 1024, 'a')])
    // clamd answers "INSTREAM size limit exceeded" and closes; when the close wins the race
    // with its reply, the failure says the request was cut off. Either way: a failure, not clean.
    await expect(run(raw)).rejects.toThrow(/size limit exceeded|closed the connection while the request/)
  })

  it('throws when clamd hangs (abort) and when it has been stopped', async () => {
    // A hung clamd: SIGSTOP it, the check's signal fires, the check rejects.
    process.kill(clamd().pid, 'SIGSTOP')
    try {
      await expect(run(CLEAN, AbortSignal.timeout(500))).rejects.toThrow(/clamd 127\.0\.0\.1:\d+: aborted/)
    } finally {
      process.kill(clamd().pid, 'SIGCONT')
    }
    // A scan in flight when clamd goes away, then one against a stopped clamd.
    const big = Buffer.alloc(1536 * 1024, 'a')
    const inFlight = run(Buffer.concat([CLEAN, big])).then(
      (hits) => ({ hits }),
      (err: unknown) => ({ err }),
    )
    await clamd().stop(true)
    const outcome = await inFlight
    // Finished before the stop landed: a real verdict is fine; otherwise it must be a clamd error.
    if ('hits' in outcome) expect(outcome.hits).toEqual([])
    else expect(String(outcome.err)).toMatch(/clamd 127\.0\.0\.1/)
    await expect(run(CLEAN)).rejects.toThrow(/clamd 127\.0\.0\.1:\d+: cannot connect/)
  })
})
