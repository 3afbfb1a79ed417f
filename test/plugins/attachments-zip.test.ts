import { readdirSync, readFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { deflateRawSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { contentHead } from '../../plugins/attachments/head.js'
import { detectType, extensionOf, HEAD_BYTES, mismatch } from '../../plugins/attachments/magic.js'
import {
  decodeCp437,
  hasEndRecord,
  listZip,
  RATIO_FLOOR,
  readCentralDirectory,
  type ZipLimits,
} from '../../plugins/attachments/zip.js'
import { mimeParts } from '../../src/mail/mime-parts.js'
import { CORPUS_DIR } from '../support/corpus.js'
import { pe } from '../support/magic.js'
import { buildZip } from '../support/zip.js'

const LIMITS: ZipLimits = {
  maxDepth: 3,
  maxEntries: 1000,
  maxUncompressedBytes: 100 * 1024 ** 2,
  maxRatio: 100,
}
const CORPUS = pathToFileURL(`${CORPUS_DIR}/`)

describe('detectType (magic numbers)', () => {
  it('recognises the executable formats explicitly', () => {
    expect(detectType(pe(0x100))?.id).toBe('pe')
    expect(detectType(Buffer.from('\x7fELF\x02\x01\x01', 'latin1'))?.id).toBe('elf')
    for (const magic of ['feedface', 'feedfacf', 'cefaedfe', 'cffaedfe'])
      expect(detectType(Buffer.from(`${magic}00000000`, 'hex'))?.id).toBe('macho')
    expect(detectType(Buffer.from('#!/bin/sh\necho hi\n'))?.family).toBe('script')
  })

  it('tells a fat Mach-O from a Java class file (both start CAFEBABE)', () => {
    expect(detectType(Buffer.from('cafebabe00000002', 'hex'))?.id).toBe('macho')
    expect(detectType(Buffer.from('cafebabe00000034', 'hex'))?.id).toBe('java-class')
    expect(detectType(Buffer.from('cafebabe00000034', 'hex'))?.family).toBe('executable')
  })

  it('does not take text that starts with MZ for a program', () => {
    expect(detectType(Buffer.from('MZ,Mozambique,Maputo\n'.repeat(10)))).toBeUndefined()
    // A DOS header whose PE offset is not where "PE\0\0" is.
    const broken = pe(0x100)
    broken.write('XX', 0x80, 'latin1')
    expect(detectType(broken)).toBeUndefined()
  })

  it('finds %PDF- within the first kilobyte, as PDF readers do', () => {
    expect(detectType(Buffer.from('%PDF-1.7\n'))?.id).toBe('pdf')
    expect(detectType(Buffer.concat([Buffer.alloc(500, 0x20), Buffer.from('%PDF-1.4')]))?.id).toBe('pdf')
    expect(
      detectType(Buffer.concat([Buffer.alloc(HEAD_BYTES, 0x20), Buffer.from('%PDF-1.4')])),
    ).toBeUndefined()
  })

  it('recognises archives, documents and images', () => {
    const cases: Array<[string, string]> = [
      ['504b0304', 'zip'],
      ['526172211a0700', 'rar'],
      ['377abcaf271c', '7z'],
      ['1f8b08', 'gzip'],
      ['fd377a585a00', 'xz'],
      ['d0cf11e0a1b11ae1', 'ole'],
      ['89504e470d0a1a0a', 'png'],
      ['ffd8ffe0', 'jpeg'],
      ['474946383961', 'gif'],
    ]
    for (const [hex, id] of cases) expect(detectType(Buffer.from(hex, 'hex'))?.id, id).toBe(id)
    expect(detectType(Buffer.from('{\\rtf1\\ansi'))?.id).toBe('rtf')
    expect(detectType(Buffer.from('BZh91AY&SY'))?.id).toBe('bzip2')
    expect(detectType(Buffer.from('BM is my initials'))).toBeUndefined()
    expect(detectType(Buffer.from('plain text'))).toBeUndefined()
    expect(detectType(Buffer.alloc(0))).toBeUndefined()
  })

  it('states a mismatch only when the name or type promised something else', () => {
    const exe = detectType(pe(0x100))
    const png = detectType(Buffer.from('89504e470d0a1a0a', 'hex'))
    const zip = detectType(Buffer.from('504b0304', 'hex'))
    if (!exe || !png || !zip) throw new Error('detection failed')
    expect(mismatch(exe, 'invoice.pdf', 'application/octet-stream')).toBe(
      'named .pdf but the content is a Windows program (MZ/PE)',
    )
    expect(mismatch(zip, 'scan', 'application/pdf')).toBe(
      'declared application/pdf but the content is a zip archive',
    )
    // Variants real mailers produce are not mismatches.
    expect(mismatch(png, 'photo.jpg', 'image/jpeg')).toBeUndefined()
    expect(mismatch(zip, 'report.doc', 'application/msword')).toBeUndefined()
    expect(
      mismatch(zip, 'book.xlsx', 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'),
    ).toBeUndefined()
    // Unknown extensions and generic types promise nothing.
    expect(mismatch(exe, 'data.bin', 'application/octet-stream')).toBeUndefined()
    expect(mismatch(exe, undefined, undefined)).toBeUndefined()
  })

  it('takes the last extension of the last path segment', () => {
    expect(extensionOf('a/b.c/report.PDF')).toBe('pdf')
    expect(extensionOf('dir.d/noext')).toBe('')
    expect(extensionOf('.hidden')).toBe('')
  })
})

describe('contentHead', () => {
  it('equals the start of content() for every part of the corpus', () => {
    let checked = 0
    for (const dir of readdirSync(CORPUS, { withFileTypes: true })) {
      if (!dir.isDirectory() || dir.name === 'huge') continue
      for (const file of readdirSync(new URL(`${dir.name}/`, CORPUS))) {
        const raw = readFileSync(new URL(`${dir.name}/${file}`, CORPUS))
        for (const part of mimeParts(raw)) {
          for (const n of [1, 64, HEAD_BYTES])
            expect(
              contentHead(raw, part, n).equals(part.content().subarray(0, n)),
              `${file} ${part.id}`,
            ).toBe(true)
          checked++
        }
      }
    }
    expect(checked).toBeGreaterThan(500)
  })

  it('decodes base64 with junk between groups like the full decode', () => {
    const raw = Buffer.from(
      'Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\nTVq!!QAA\r\n*AAAE=AAAA\r\n--b--\r\n',
    )
    const [part] = mimeParts(raw)
    if (!part) throw new Error('no part')
    expect(contentHead(raw, part, 1024)).toEqual(part.content())
    expect(contentHead(raw, part, 2)).toEqual(Buffer.from('MZ'))
  })
})

describe('readCentralDirectory / listZip', () => {
  it('lists stored and deflated entries without their directories', () => {
    const zip = buildZip([
      { name: 'docs/', method: 'store' },
      { name: 'docs/readme.txt', data: 'hello', method: 'store' },
      { name: 'docs/setup.exe', data: pe(0x100) },
    ])
    const listing = listZip(zip, LIMITS)
    expect(listing.names.map((n) => n.name)).toEqual(['docs/readme.txt', 'docs/setup.exe'])
    expect(listing.problems).toEqual([])
    const directory = readCentralDirectory(zip, 10)
    expect(directory.entries.map((e) => [e.name, e.method, e.directory])).toEqual([
      ['docs/', 0, true],
      ['docs/readme.txt', 0, false],
      ['docs/setup.exe', 8, false],
    ])
  })

  it('decodes names by the UTF-8 flag, CP437 otherwise, and prefers a matching Unicode Path field', () => {
    const cp437 = Buffer.from([0x72, 0x82, 0x73, 0x75, 0x6d, 0x82, 0x2e, 0x74, 0x78, 0x74]) // "résumé.txt" in CP437
    const zip = buildZip([
      { name: 'naïve.txt', data: 'a' },
      { name: cp437, data: 'b' },
      { name: Buffer.from('legacy.txt'), data: 'c', unicodePath: 'ünïcode.exe' },
    ])
    expect(listZip(zip, LIMITS).names.map((n) => n.name)).toEqual(['naïve.txt', 'résumé.txt', 'ünïcode.exe'])
    expect(decodeCp437(Buffer.from([0x80, 0xe1, 0xff]))).toBe('Çß\u00a0')
  })

  it('ignores a Unicode Path field written for another name (CRC mismatch)', () => {
    const zip = buildZip([{ name: Buffer.from('a.txt'), data: 'x', unicodePath: 'b.exe' }])
    // Corrupt the stored name after the field was computed: its CRC no longer matches.
    const at = zip.indexOf(Buffer.from('a.txt'), zip.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02])))
    zip.write('c', at, 'latin1')
    expect(listZip(zip, LIMITS).names.map((n) => n.name)).toEqual(['c.txt'])
  })

  it('flags entries with general purpose bit 0 as encrypted', () => {
    const listing = listZip(
      buildZip([{ name: 'secret.doc', data: 'x', encrypted: true }, { name: 'open.txt' }]),
      LIMITS,
    )
    expect(listing.names.map((n) => [n.name, n.encrypted])).toEqual([
      ['secret.doc', true],
      ['open.txt', false],
    ])
  })

  it('opens a nested zip and names the chain', () => {
    const inner = buildZip([{ name: 'payload.exe', data: pe(0x100) }])
    const middle = buildZip([{ name: 'inner.zip', data: inner }])
    const outer = buildZip([
      { name: 'readme.txt', data: 'x' },
      { name: 'middle.zip', data: middle, method: 'store' },
    ])
    const listing = listZip(outer, LIMITS)
    expect(listing.problems).toEqual([])
    expect(listing.names.map((n) => [n.name, n.within])).toEqual([
      ['readme.txt', []],
      ['middle.zip', []],
      ['inner.zip', ['middle.zip']],
      ['payload.exe', ['middle.zip', 'inner.zip']],
    ])
  })

  it('opens a nested zip whose name ends in dots or spaces, as Windows would', () => {
    for (const innerName of ['inner.zip.', 'inner.zip ', 'inner.ZIP. ']) {
      const inner = buildZip([{ name: 'payload.exe', data: pe(0x100) }])
      const outer = buildZip([{ name: innerName, data: inner, method: 'store' }])
      const listing = listZip(outer, LIMITS)
      expect(
        listing.names.map((n) => n.name),
        innerName,
      ).toEqual([innerName, 'payload.exe'])
    }
  })

  it('does not open zips nested deeper than maxDepth', () => {
    const inner = buildZip([{ name: 'payload.exe', data: pe(0x100) }])
    const middle = buildZip([{ name: 'inner.zip', data: inner }])
    const outer = buildZip([{ name: 'middle.zip', data: middle }])
    const listing = listZip(outer, { ...LIMITS, maxDepth: 2 })
    expect(listing.names.map((n) => n.name)).toEqual(['middle.zip', 'inner.zip'])
    expect(listing.problems).toEqual([
      { kind: 'limit', detail: 'middle.zip > inner.zip: archive nested deeper than 2 levels, not opened' },
    ])
  })

  it('stops at maxEntries over all levels and says so', () => {
    const many = buildZip(Array.from({ length: 30 }, (_, i) => ({ name: `f${i}.txt`, data: 'x' })))
    const listing = listZip(many, { ...LIMITS, maxEntries: 10 })
    expect(listing.names).toHaveLength(10)
    expect(listing.problems).toEqual([
      { kind: 'limit', detail: 'more than 10 entries; the rest were not listed' },
    ])
    const nested = buildZip([{ name: 'a.txt' }, { name: 'many.zip', data: many }])
    const deep = listZip(nested, { ...LIMITS, maxEntries: 10 })
    expect(deep.names).toHaveLength(10)
    expect(deep.problems).toEqual([
      { kind: 'limit', detail: 'many.zip: more than 10 entries; the rest were not listed' },
    ])
  })

  it('flags a bomb by its declared sizes without inflating it, fast and in bounded memory', () => {
    // The directory claims 4 GiB - 1 for a 1 KiB entry, and a nested zip claims 50 GiB via ZIP64.
    const liar = buildZip([{ name: 'bomb.bin', data: Buffer.alloc(1024), declaredSize: 0xfffffffe }])
    const zip64 = buildZip([{ name: 'bomb.zip', data: liar, declaredSize: 50 * 1024 ** 3 }], { zip64: true })
    const before = process.memoryUsage()
    const started = performance.now()
    const listing = listZip(zip64, LIMITS)
    const first = listZip(liar, LIMITS)
    const elapsed = performance.now() - started
    const grown = process.memoryUsage().arrayBuffers - before.arrayBuffers
    expect(elapsed).toBeLessThan(100)
    expect(grown).toBeLessThan(16 * 1024 ** 2)
    expect(first.problems.map((p) => p.kind)).toEqual(['limit', 'limit'])
    expect(first.problems[0]?.detail).toMatch(
      /^bomb\.bin: compression ratio \d+:1 is over 100:1 \(4 GiB declared\)$/,
    )
    expect(first.problems[1]?.detail).toBe('declared uncompressed size is over 100 MiB')
    // Nothing nested was opened: the only name is the outer entry.
    expect(listing.names.map((n) => n.name)).toEqual(['bomb.zip'])
    expect(listing.problems.map((p) => p.kind)).toEqual(['limit', 'limit'])
  })

  it('caps inflating a nested zip at its declared size when the data lies', () => {
    // Declares 1000 bytes; the deflate stream holds 20 MB of zeros (ratio ~1000:1 is hidden).
    const lying = buildZip([{ name: 'inner.zip', data: Buffer.alloc(20 * 1024 * 1024), declaredSize: 1000 }])
    const before = process.memoryUsage().arrayBuffers
    const listing = listZip(lying, LIMITS)
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(8 * 1024 ** 2)
    expect(listing.problems).toEqual([
      { kind: 'limit', detail: 'inner.zip: inflates beyond its declared 1000 bytes' },
    ])
  })

  it('does not count small entries with a high ratio (they cost nothing)', () => {
    const listing = listZip(buildZip([{ name: 'zeros.bin', data: Buffer.alloc(RATIO_FLOOR) }]), LIMITS)
    expect(listing.problems).toEqual([])
  })

  it('flags an entry over the ratio and stops opening nested zips past the size budget', () => {
    const zeros = Buffer.alloc(RATIO_FLOOR * 2)
    expect(listZip(buildZip([{ name: 'z.bin', data: zeros }]), LIMITS).problems[0]?.detail).toMatch(
      /^z\.bin: compression ratio \d+:1 is over 100:1/,
    )
    const inner = buildZip([{ name: 'evil.exe', data: 'x' }])
    const budget = buildZip([
      { name: 'big.bin', data: 'x', declaredSize: 50, declaredCompressedSize: 1 },
      { name: 'inner.zip', data: inner },
    ])
    const listing = listZip(budget, { ...LIMITS, maxUncompressedBytes: 60 })
    expect(listing.names.map((n) => n.name)).toEqual(['big.bin', 'inner.zip'])
    expect(listing.problems).toEqual([
      { kind: 'limit', detail: 'declared uncompressed size is over 60 bytes' },
    ])
  })

  it('reads ZIP64 end records and extra fields', () => {
    const zip = buildZip(
      [
        { name: 'a.txt', data: 'alpha' },
        { name: 'b.exe', data: pe(0x100), method: 'store' },
      ],
      { zip64: true },
    )
    const directory = readCentralDirectory(zip, 10)
    expect(directory.zip64).toBe(true)
    expect(directory.entries.map((e) => [e.name, e.uncompressedSize])).toEqual([
      ['a.txt', 5],
      ['b.exe', 0x100],
    ])
    const nested = buildZip([{ name: 'inner.zip', data: zip }])
    expect(listZip(nested, LIMITS).names.map((n) => n.name)).toEqual(['inner.zip', 'a.txt', 'b.exe'])
  })

  it('finds the zip behind a self-extractor stub and after a comment', () => {
    const inner = buildZip([{ name: 'x.exe', data: 'x' }])
    const zip = buildZip(
      [
        { name: 'a.txt', data: 'a' },
        { name: 'inner.zip', data: inner },
      ],
      {
        prefix: Buffer.alloc(5000, 0x90),
        comment: 'PK\x05\x06 looks like a record but is comment text',
      },
    )
    const listing = listZip(zip, LIMITS)
    expect(listing.problems).toEqual([])
    expect(listing.names.map((n) => n.name)).toEqual(['a.txt', 'inner.zip', 'x.exe'])
  })

  it('reports damaged archives as unreadable instead of throwing', () => {
    const good = buildZip([
      { name: 'a.txt', data: 'a' },
      { name: 'b.txt', data: 'b' },
    ])
    const noEnd = buildZip([{ name: 'a.txt', data: 'a' }], { noEnd: true })
    expect(hasEndRecord(noEnd)).toBe(false)
    expect(hasEndRecord(good)).toBe(true)
    expect(listZip(noEnd, LIMITS).problems).toEqual([
      { kind: 'unreadable', detail: 'no end-of-central-directory record (not a zip, or truncated)' },
    ])
    expect(listZip(buildZip([{ name: 'a.txt' }], { announcedEntries: 3 }), LIMITS).problems[0]?.detail).toBe(
      'the end record announces 3 entries, the directory has 1',
    )
    // Every truncation of a valid zip: never throws, always a problem or a (shorter) listing.
    for (let length = 0; length < good.length; length++) {
      const listing = listZip(good.subarray(0, length), LIMITS)
      expect(listing.problems.length + listing.names.length).toBeGreaterThan(0)
    }
    // Random bytes in the central directory.
    const scrambled = Buffer.from(good)
    const cd = scrambled.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]))
    for (let i = cd + 4; i < cd + 46; i++) scrambled[i] = (i * 37) & 0xff
    expect(listZip(scrambled, LIMITS).problems[0]?.kind).toBe('unreadable')
  })

  it('reports nested zips it cannot open: bad data, unsupported method', () => {
    const broken = buildZip([{ name: 'inner.zip', data: deflateRawSync(Buffer.from('not a zip at all')) }])
    expect(listZip(broken, LIMITS).problems).toEqual([
      {
        kind: 'unreadable',
        detail: 'inner.zip: no end-of-central-directory record (not a zip, or truncated)',
      },
    ])
    const bzip = buildZip([{ name: 'inner.zip', data: 'x', method: 'store' }])
    // Rewrite the method to 12 (bzip2) in the central directory.
    const cd = bzip.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]))
    bzip.writeUInt16LE(12, cd + 10)
    expect(listZip(bzip, LIMITS).problems).toEqual([
      { kind: 'unreadable', detail: 'inner.zip: compression method 12 is not supported' },
    ])
  })
})
