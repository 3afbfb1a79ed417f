/**
 * Zip listing without extraction: entry names come from the central directory (APPNOTE.TXT
 * 4.3.12–4.3.16), found through the end-of-central-directory record at the end of the file,
 * with ZIP64 records and extra fields, the UTF-8 name flag, CP437 names otherwise, and the
 * Info-ZIP Unicode Path extra field. Nothing is inflated except a nested `.zip` entry, and
 * only within the limits, checked against the sizes the central directory declares before
 * any inflating; inflating is capped at the declared size, so a lying entry costs no more.
 */
import { crc32, inflateRawSync } from 'node:zlib'

/** The bounds of a listing; every one counts over the attachment and all zips nested in it. */
export interface ZipLimits {
  /** Levels of zips opened: 1 = the attachment only; 3 = a zip in a zip in the attachment. */
  readonly maxDepth: number
  /** Central directory entries read, all levels together. */
  readonly maxEntries: number
  /** Sum of declared uncompressed sizes, all levels together. */
  readonly maxUncompressedBytes: number
  /** Declared uncompressed / compressed size of one entry (for entries over {@link RATIO_FLOOR}). */
  readonly maxRatio: number
}

/** Entries smaller than this are never a ratio problem: inflating them costs nothing. */
export const RATIO_FLOOR = 1024 * 1024

/** One central directory record. */
export interface ZipEntry {
  /** The name as stored (a path with `/`), decoded; its Info-ZIP Unicode Path when it has one. */
  readonly name: string
  /**
   * The stored name, when a Unicode Path replaced it: tools that ignore that field (Python's
   * zipfile, Windows) save the file under it, and its CRC only proves which name it was written for.
   */
  readonly otherNames: readonly string[]
  readonly flags: number
  readonly method: number
  readonly crc: number
  readonly compressedSize: number
  readonly uncompressedSize: number
  /** Where its local header starts in the buffer (already corrected for data before the zip). */
  readonly localHeaderOffset: number
  /** General purpose bit 0: the data is encrypted (password-protected; WinZip AES sets it too). */
  readonly encrypted: boolean
  readonly directory: boolean
}

/** The structure is not a readable zip (or uses a feature this lister does not handle). */
export class ZipFormatError extends Error {
  override name = 'ZipFormatError'
}

const EOCD = 0x06054b50
const ZIP64_LOCATOR = 0x07064b50
const ZIP64_EOCD = 0x06064b50
const CENTRAL = 0x02014b50
const LOCAL = 0x04034b50
const FLAG_ENCRYPTED = 0x0001
const FLAG_UTF8 = 0x0800

/** Code page 437, bytes 0x80–0xFF: the default for names without the UTF-8 flag. */
const CP437_HIGH =
  'ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0'

/** Decode CP437 bytes (ASCII below 0x80). */
export function decodeCp437(bytes: Uint8Array): string {
  let out = ''
  for (const b of bytes) out += b < 0x80 ? String.fromCharCode(b) : (CP437_HIGH[b - 0x80] as string)
  return out
}

/** A 64-bit field as a number; beyond 2^53 it is Infinity (over every limit, never an offset). */
function u64(data: Buffer, at: number): number {
  const value = data.readBigUInt64LE(at)
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.POSITIVE_INFINITY : Number(value)
}

interface EndRecord {
  readonly total: number
  readonly cdSize: number
  readonly cdOffset: number
  /** Where the central directory must end: the (ZIP64) end record's position. */
  readonly cdEnd: number
  readonly zip64: boolean
}

/** Find the end-of-central-directory record, scanning back over at most a 64 KiB comment. */
function findEnd(data: Buffer): number {
  let loose = -1
  for (let at = data.length - 22; at >= 0 && at >= data.length - 22 - 0xffff; at--) {
    if (data[at] !== 0x50 || data.readUInt32LE(at) !== EOCD) continue
    const commentEnd = at + 22 + data.readUInt16LE(at + 20)
    if (commentEnd === data.length) return at
    // Tolerate bytes after the comment, but prefer a record whose comment ends the file.
    if (commentEnd < data.length && loose === -1) loose = at
  }
  if (loose === -1) throw new ZipFormatError('no end-of-central-directory record (not a zip, or truncated)')
  return loose
}

/** Whether `data` ends like a zip (has an end-of-central-directory record), as zip tools look for it. */
export function hasEndRecord(data: Buffer): boolean {
  try {
    findEnd(data)
    return true
  } catch {
    return false
  }
}

function readEnd(data: Buffer): EndRecord {
  const at = findEnd(data)
  const disk = data.readUInt16LE(at + 4)
  const cdDisk = data.readUInt16LE(at + 6)
  let total = data.readUInt16LE(at + 10)
  let cdSize = data.readUInt32LE(at + 12)
  let cdOffset = data.readUInt32LE(at + 16)
  const locator = at - 20
  if (locator >= 0 && data.readUInt32LE(locator) === ZIP64_LOCATOR) {
    if (data.readUInt32LE(locator + 4) !== 0 || data.readUInt32LE(locator + 16) > 1)
      throw new ZipFormatError('multi-volume (spanned) ZIP64 archive')
    // The record sits right before its locator; its stated offset is off when data precedes the zip.
    const stated = u64(data, locator + 8)
    const record =
      stated + 56 <= locator && data.readUInt32LE(stated) === ZIP64_EOCD
        ? stated
        : locator - 56 >= 0 && data.readUInt32LE(locator - 56) === ZIP64_EOCD
          ? locator - 56
          : -1
    if (record === -1) throw new ZipFormatError('ZIP64 locator without a ZIP64 end record')
    if (data.readUInt32LE(record + 16) !== 0 || data.readUInt32LE(record + 20) !== 0)
      throw new ZipFormatError('multi-volume (spanned) ZIP64 archive')
    total = u64(data, record + 32)
    cdSize = u64(data, record + 40)
    cdOffset = u64(data, record + 48)
    return { total, cdSize, cdOffset, cdEnd: record, zip64: true }
  }
  if (disk !== 0 || cdDisk !== 0) throw new ZipFormatError('multi-volume (spanned) archive')
  if (cdSize === 0xffffffff || cdOffset === 0xffffffff || total === 0xffff)
    throw new ZipFormatError('ZIP64 sizes without a ZIP64 end record')
  return { total, cdSize, cdOffset, cdEnd: at, zip64: false }
}

interface Extras {
  uncompressedSize: number
  compressedSize: number
  localHeaderOffset: number
  unicodeName?: string
}

/** Apply the ZIP64 (0x0001) and Info-ZIP Unicode Path (0x7075) extra fields. */
function readExtras(data: Buffer, from: number, to: number, nameBytes: Buffer, base: Extras): Extras {
  const out = { ...base }
  let at = from
  while (at + 4 <= to) {
    const id = data.readUInt16LE(at)
    const size = data.readUInt16LE(at + 2)
    const body = at + 4
    if (body + size > to) break
    if (id === 0x0001) {
      // Only the fields whose 32-bit value is saturated are present, in this order.
      let p = body
      const take = (): number => {
        if (p + 8 > body + size) throw new ZipFormatError('ZIP64 extra field too short')
        const value = u64(data, p)
        p += 8
        return value
      }
      if (base.uncompressedSize === 0xffffffff) out.uncompressedSize = take()
      if (base.compressedSize === 0xffffffff) out.compressedSize = take()
      if (base.localHeaderOffset === 0xffffffff) out.localHeaderOffset = take()
    } else if (id === 0x7075 && size >= 5 && data[body] === 1) {
      // Used only if it was written for this very name (its CRC-32 matches the stored name).
      if (data.readUInt32LE(body + 1) === crc32(nameBytes))
        out.unicodeName = data.subarray(body + 5, body + size).toString('utf8')
    }
    at = body + size
  }
  return out
}

/** The central directory of a zip: its entries, at most `maxEntries` of them. */
export interface CentralDirectory {
  readonly entries: readonly ZipEntry[]
  /** More entries follow than `maxEntries` allowed reading. */
  readonly truncated: boolean
  readonly zip64: boolean
}

/**
 * Read a zip's central directory. Throws {@link ZipFormatError} when the structure is not a
 * readable zip. Reads no entry data.
 */
export function readCentralDirectory(data: Buffer, maxEntries: number): CentralDirectory {
  const end = readEnd(data)
  // Data before the zip (a self-extractor stub, junk) shifts every offset by the same amount.
  const shift = end.cdEnd - (end.cdOffset + end.cdSize)
  if (!Number.isFinite(shift) || shift < 0)
    throw new ZipFormatError('the central directory does not fit before its end record')
  const start = end.cdOffset + shift
  const stop = end.cdEnd
  const entries: ZipEntry[] = []
  let at = start
  while (at < stop) {
    if (entries.length >= maxEntries) return { entries, truncated: true, zip64: end.zip64 }
    if (at + 46 > stop || data.readUInt32LE(at) !== CENTRAL)
      throw new ZipFormatError(`central directory entry ${entries.length + 1} is damaged`)
    const flags = data.readUInt16LE(at + 8)
    const nameLength = data.readUInt16LE(at + 28)
    const extraLength = data.readUInt16LE(at + 30)
    const commentLength = data.readUInt16LE(at + 32)
    const nameStart = at + 46
    const extraStart = nameStart + nameLength
    const next = extraStart + extraLength + commentLength
    if (next > stop) throw new ZipFormatError(`central directory entry ${entries.length + 1} is truncated`)
    const nameBytes = data.subarray(nameStart, extraStart)
    const extras = readExtras(data, extraStart, extraStart + extraLength, nameBytes, {
      compressedSize: data.readUInt32LE(at + 20),
      uncompressedSize: data.readUInt32LE(at + 24),
      localHeaderOffset: data.readUInt32LE(at + 42),
    })
    const stored = flags & FLAG_UTF8 ? nameBytes.toString('utf8') : decodeCp437(nameBytes)
    const name = extras.unicodeName ?? stored
    entries.push({
      name,
      otherNames: name === stored ? [] : [stored],
      flags,
      method: data.readUInt16LE(at + 10),
      crc: data.readUInt32LE(at + 16),
      compressedSize: extras.compressedSize,
      uncompressedSize: extras.uncompressedSize,
      localHeaderOffset: extras.localHeaderOffset + shift,
      encrypted: (flags & FLAG_ENCRYPTED) !== 0,
      directory: name.endsWith('/') || name.endsWith('\\'),
    })
    at = next
  }
  // Writers that overflow the 16-bit count without ZIP64 store it modulo 65536.
  const counted = end.zip64 ? entries.length : entries.length & 0xffff
  if (counted !== end.total)
    throw new ZipFormatError(
      `the end record announces ${end.total} entries, the directory has ${entries.length}`,
    )
  return { entries, truncated: false, zip64: end.zip64 }
}

/** Where an entry's compressed data lies, from its local header. */
function entryData(data: Buffer, entry: ZipEntry): Buffer {
  const at = entry.localHeaderOffset
  if (at < 0 || at + 30 > data.length || data.readUInt32LE(at) !== LOCAL)
    throw new ZipFormatError(`${entry.name}: local header not found`)
  const start = at + 30 + data.readUInt16LE(at + 26) + data.readUInt16LE(at + 28)
  const end = start + entry.compressedSize
  if (end > data.length) throw new ZipFormatError(`${entry.name}: data runs past the end of the archive`)
  return data.subarray(start, end)
}

/** A name listed from an archive. */
export interface ListedName {
  /** The path inside its archive. */
  readonly name: string
  /** Other names it goes by ({@link ZipEntry.otherNames}). */
  readonly otherNames: readonly string[]
  /** The nested archives it sits in, outermost first (empty: directly in the attachment). */
  readonly within: readonly string[]
  readonly encrypted: boolean
}

/** Why (part of) an archive was not listed: a limit, or a structure that cannot be read. */
export interface ZipProblem {
  readonly kind: 'limit' | 'unreadable'
  readonly detail: string
}

export interface ZipListing {
  readonly names: readonly ListedName[]
  readonly problems: readonly ZipProblem[]
}

/**
 * Bytes that inflating nested zips may still produce. Share one between the zips of a
 * message, so a message full of zip attachments inflates no more than one would.
 */
export interface InflateBudget {
  left: number
}

interface ListState {
  readonly limits: ZipLimits
  readonly budget: InflateBudget
  readonly names: ListedName[]
  readonly problems: ZipProblem[]
  entries: number
  bytes: number
  overBytes: boolean
}

/** Bytes in words: `1.5 GiB`, `300 KiB`. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return 'more than 9 PiB'
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${value} bytes` : `${Math.round(value * 10) / 10} ${units[unit]}`
}

function label(within: readonly string[], name: string): string {
  return [...within, name].join(' > ')
}

/** Named as a zip, as Windows reads a name: trailing dots and white space are dropped. */
export function isZipName(name: string): boolean {
  return /\.zip[.\s]*$/iu.test(name)
}

function openNested(
  data: Buffer,
  entry: ZipEntry,
  within: readonly string[],
  depth: number,
  state: ListState,
): void {
  const { limits, problems } = state
  const where = label(within, entry.name)
  if (depth >= limits.maxDepth) {
    problems.push({
      kind: 'limit',
      detail: `${where}: archive nested deeper than ${limits.maxDepth} levels, not opened`,
    })
    return
  }
  if (entry.uncompressedSize > state.budget.left) {
    problems.push({
      kind: 'limit',
      detail: `${where}: not opened, nested archives in this message already inflated to ${formatBytes(limits.maxUncompressedBytes)}`,
    })
    return
  }
  if (entry.method !== 0 && entry.method !== 8) {
    problems.push({
      kind: 'unreadable',
      detail: `${where}: compression method ${entry.method} is not supported`,
    })
    return
  }
  let inner: Buffer
  try {
    const packed = entryData(data, entry)
    inner =
      entry.method === 0
        ? packed
        : inflateRawSync(packed, { maxOutputLength: Math.max(1, entry.uncompressedSize) })
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError)
      problems.push({
        kind: 'limit',
        detail: `${where}: inflates beyond its declared ${formatBytes(entry.uncompressedSize)}`,
      })
    else problems.push({ kind: 'unreadable', detail: `${where}: ${(err as Error).message}` })
    return
  }
  state.budget.left -= inner.length
  if (inner.length !== entry.uncompressedSize || crc32(inner) !== entry.crc) {
    problems.push({ kind: 'unreadable', detail: `${where}: size or CRC does not match the directory` })
    return
  }
  listLevel(inner, [...within, entry.name], depth + 1, state)
}

function listLevel(data: Buffer, within: readonly string[], depth: number, state: ListState): void {
  const { limits, problems } = state
  let directory: CentralDirectory
  try {
    directory = readCentralDirectory(data, limits.maxEntries - state.entries)
  } catch (err) {
    const where = within.length > 0 ? `${within.join(' > ')}: ` : ''
    problems.push({ kind: 'unreadable', detail: `${where}${(err as Error).message}` })
    return
  }
  for (const entry of directory.entries) {
    state.entries++
    state.bytes += entry.uncompressedSize
    if (!entry.directory)
      state.names.push({ name: entry.name, otherNames: entry.otherNames, within, encrypted: entry.encrypted })
    const ratioOk =
      entry.uncompressedSize <= RATIO_FLOOR ||
      entry.uncompressedSize <= limits.maxRatio * Math.max(1, entry.compressedSize)
    if (!ratioOk) {
      const ratio = Math.round(entry.uncompressedSize / Math.max(1, entry.compressedSize))
      problems.push({
        kind: 'limit',
        detail: `${label(within, entry.name)}: compression ratio ${Number.isFinite(ratio) ? ratio : 'huge'}:1 is over ${limits.maxRatio}:1 (${formatBytes(entry.uncompressedSize)} declared)`,
      })
    }
    if (state.bytes > limits.maxUncompressedBytes && !state.overBytes) {
      state.overBytes = true
      problems.push({
        kind: 'limit',
        detail: `${within.length > 0 ? `${within.join(' > ')}: ` : ''}declared uncompressed size is over ${formatBytes(limits.maxUncompressedBytes)}`,
      })
    }
    // Nested zips are opened only while every declared size is within limits.
    const zipNamed = isZipName(entry.name) || entry.otherNames.some(isZipName)
    if (zipNamed && !entry.directory && !entry.encrypted && ratioOk && !state.overBytes)
      openNested(data, entry, within, depth, state)
  }
  if (directory.truncated)
    problems.push({
      kind: 'limit',
      detail: `${within.length > 0 ? `${within.join(' > ')}: ` : ''}more than ${limits.maxEntries} entries; the rest were not listed`,
    })
}

/**
 * List the names in a zip and in the zips nested in it, within `limits`. Never throws: what
 * could not be listed is a {@link ZipProblem}. Nested zips are inflated from `budget`
 * (default: `limits.maxUncompressedBytes` for this zip alone).
 */
export function listZip(
  data: Buffer,
  limits: ZipLimits,
  budget: InflateBudget = { left: limits.maxUncompressedBytes },
): ZipListing {
  const state: ListState = { limits, budget, names: [], problems: [], entries: 0, bytes: 0, overBytes: false }
  try {
    listLevel(data, [], 1, state)
  } catch (err) {
    // Every read is bounds-checked; this is a backstop so a listing never fails the check.
    state.problems.push({ kind: 'unreadable', detail: (err as Error).message })
  }
  return { names: state.names, problems: state.problems }
}
