/**
 * A small zip writer for tests (APPNOTE.TXT layout): local headers and data, the central
 * directory, the end record, optionally ZIP64 records. It can also lie, which real writers
 * never do: declare sizes in the central directory that the data does not have, set the
 * encryption flag on plain data, prepend bytes, or drop the end record.
 */
import { crc32, deflateRawSync } from 'node:zlib'

export interface ZipInput {
  /** A string (written UTF-8, with the UTF-8 flag when not ASCII) or raw name bytes (no flag). */
  readonly name: string | Buffer
  readonly data?: Buffer | string
  /** Default `deflate`. */
  readonly method?: 'store' | 'deflate'
  /** Sets general purpose bit 0 (the data itself stays plain). */
  readonly encrypted?: boolean
  /** Force the UTF-8 name flag on or off. */
  readonly utf8?: boolean
  /** Declare this uncompressed size in the central directory instead of the real one. */
  readonly declaredSize?: number
  /** Declare this compressed size in the central directory instead of the real one. */
  readonly declaredCompressedSize?: number
  /** Add an Info-ZIP Unicode Path extra field (0x7075) with this name. */
  readonly unicodePath?: string
}

export interface ZipOptions {
  /** Write ZIP64 end records and ZIP64 extra fields for every entry. */
  readonly zip64?: boolean
  /** Bytes before the zip (a self-extractor stub). */
  readonly prefix?: Buffer
  /** Leave out the end-of-central-directory record. */
  readonly noEnd?: boolean
  /** Announce this many entries in the end record instead of the real count. */
  readonly announcedEntries?: number
  readonly comment?: string
}

function u16(value: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16LE(value)
  return b
}

function u32(value: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(value >>> 0)
  return b
}

function u64(value: number): Buffer {
  const b = Buffer.alloc(8)
  b.writeBigUInt64LE(BigInt(value))
  return b
}

/** Build a zip file from entries. */
export function buildZip(inputs: readonly ZipInput[], options: ZipOptions = {}): Buffer {
  const prefix = options.prefix ?? Buffer.alloc(0)
  const locals: Buffer[] = []
  const centrals: Buffer[] = []
  let offset = 0
  for (const input of inputs) {
    const data = typeof input.data === 'string' ? Buffer.from(input.data) : (input.data ?? Buffer.alloc(0))
    const method = input.method === 'store' ? 0 : 8
    const packed = method === 0 ? data : deflateRawSync(data)
    const nameBytes = typeof input.name === 'string' ? Buffer.from(input.name, 'utf8') : input.name
    const utf8 = input.utf8 ?? (typeof input.name === 'string' && /[^\x20-\x7e]/.test(input.name))
    const flags = (input.encrypted ? 0x0001 : 0) | (utf8 ? 0x0800 : 0)
    const crc = crc32(data)
    const local = Buffer.concat([
      u32(0x04034b50),
      u16(20),
      u16(flags),
      u16(method),
      u16(0),
      u16(0x21),
      u32(crc),
      u32(packed.length),
      u32(data.length),
      u16(nameBytes.length),
      u16(0),
      nameBytes,
      packed,
    ])
    const size = input.declaredSize ?? data.length
    const compressed = input.declaredCompressedSize ?? packed.length
    const extras: Buffer[] = []
    if (options.zip64) {
      const body = Buffer.concat([u64(size), u64(compressed), u64(offset)])
      extras.push(Buffer.concat([u16(0x0001), u16(body.length), body]))
    }
    if (input.unicodePath !== undefined) {
      const body = Buffer.concat([
        Buffer.from([1]),
        u32(crc32(nameBytes)),
        Buffer.from(input.unicodePath, 'utf8'),
      ])
      extras.push(Buffer.concat([u16(0x7075), u16(body.length), body]))
    }
    const extra = Buffer.concat(extras)
    const saturated = options.zip64 ? 0xffffffff : undefined
    centrals.push(
      Buffer.concat([
        u32(0x02014b50),
        u16(options.zip64 ? 45 : 20),
        u16(options.zip64 ? 45 : 20),
        u16(flags),
        u16(method),
        u16(0),
        u16(0x21),
        u32(crc),
        u32(saturated ?? compressed),
        u32(saturated ?? size),
        u16(nameBytes.length),
        u16(extra.length),
        u16(0),
        u16(0),
        u16(0),
        u32(0),
        u32(saturated ?? offset),
        nameBytes,
        extra,
      ]),
    )
    locals.push(local)
    offset += local.length
  }
  const central = Buffer.concat(centrals)
  const count = options.announcedEntries ?? inputs.length
  const comment = Buffer.from(options.comment ?? '', 'latin1')
  const tail: Buffer[] = []
  if (options.zip64) {
    const recordAt = offset + central.length
    tail.push(
      u32(0x06064b50),
      u64(44),
      u16(45),
      u16(45),
      u32(0),
      u32(0),
      u64(count),
      u64(count),
      u64(central.length),
      u64(offset),
      u32(0x07064b50),
      u32(0),
      u64(recordAt),
      u32(1),
    )
  }
  if (!options.noEnd)
    tail.push(
      u32(0x06054b50),
      u16(0),
      u16(0),
      u16(options.zip64 ? 0xffff : count),
      u16(options.zip64 ? 0xffff : count),
      u32(options.zip64 ? 0xffffffff : central.length),
      u32(options.zip64 ? 0xffffffff : offset),
      u16(comment.length),
      comment,
    )
  return Buffer.concat([prefix, ...locals, central, ...tail])
}
