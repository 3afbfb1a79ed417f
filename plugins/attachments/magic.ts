/**
 * File types by their first bytes ("magic numbers"), for `type:` and `mismatch` rules.
 *
 * Why our own table and not the `file-type` npm package: file-type 22 (the current major)
 * requires Node >= 22, so on Node 20 we would pin the previous major (21.x) and depend on
 * backports for its fixes; it runs parsers for well over a hundred container formats (some
 * with a history of infinite-loop DoS advisories on malformed input, and it inflates parts
 * of zips to tell OOXML from zip) over every hostile attachment; and its API is async over
 * a tokenizer. The rules only need to know: is this a program, an archive, a document or an
 * image, and which one. A synchronous table over the first {@link HEAD_BYTES} bytes does that
 * with no parsing at all and keeps the executable signatures explicit and reviewable.
 */

/** How many leading bytes detection looks at (PDF readers accept `%PDF-` within the first KiB; tar's `ustar` sits at 257). */
export const HEAD_BYTES = 1024

/** Families a `type:` rule may name besides a single type. */
export const FAMILIES = ['executable', 'script', 'archive', 'document', 'image'] as const
export type Family = (typeof FAMILIES)[number]

/** One detectable type. */
export interface FileType {
  /** Short name used in rules: `type:pe`. */
  readonly id: string
  /** Words for evidence and notices, with the article: `a PDF document`. */
  readonly label: string
  readonly family: Family
}

const TYPES = {
  pe: { label: 'a Windows program (MZ/PE)', family: 'executable' },
  elf: { label: 'a Linux/Unix program (ELF)', family: 'executable' },
  macho: { label: 'a macOS program (Mach-O)', family: 'executable' },
  'java-class': { label: 'a Java class file', family: 'executable' },
  script: { label: 'a script (#! interpreter line)', family: 'script' },
  zip: { label: 'a zip archive', family: 'archive' },
  rar: { label: 'a RAR archive', family: 'archive' },
  '7z': { label: 'a 7-Zip archive', family: 'archive' },
  gzip: { label: 'gzip-compressed data', family: 'archive' },
  bzip2: { label: 'bzip2-compressed data', family: 'archive' },
  xz: { label: 'xz-compressed data', family: 'archive' },
  cab: { label: 'a Microsoft cabinet archive', family: 'archive' },
  tar: { label: 'a tar archive', family: 'archive' },
  pdf: { label: 'a PDF document', family: 'document' },
  ole: { label: 'a Microsoft Office 97-2003 (OLE2) file', family: 'document' },
  rtf: { label: 'an RTF document', family: 'document' },
  png: { label: 'a PNG image', family: 'image' },
  jpeg: { label: 'a JPEG image', family: 'image' },
  gif: { label: 'a GIF image', family: 'image' },
  bmp: { label: 'a BMP image', family: 'image' },
  tiff: { label: 'a TIFF image', family: 'image' },
  webp: { label: 'a WebP image', family: 'image' },
} as const satisfies Record<string, { label: string; family: Family }>

export type TypeId = keyof typeof TYPES

/** Every type id a `type:` rule may name. */
export const TYPE_IDS = Object.keys(TYPES) as TypeId[]

function type(id: TypeId): FileType {
  return { id, ...TYPES[id] }
}

function startsWith(head: Uint8Array, bytes: readonly number[], at = 0): boolean {
  if (head.length < at + bytes.length) return false
  for (let i = 0; i < bytes.length; i++) if (head[at + i] !== bytes[i]) return false
  return true
}

function ascii(text: string): number[] {
  return [...text].map((c) => c.charCodeAt(0))
}

const PDF = Buffer.from('%PDF-', 'latin1')

/**
 * `MZ` alone also starts plain text ("MZ,Mozambique"), so the DOS header must point
 * (e_lfanew, at 0x3c) to a plausible offset, and to `PE\0\0` when that offset lies inside
 * the bytes we have. Text puts printable bytes there: an offset of hundreds of megabytes.
 */
function isPe(head: Buffer): boolean {
  if (head.length < 0x40) return false
  const offset = head.readUInt32LE(0x3c)
  if (offset < 4 || offset > 0x10000) return false
  // Beyond the bytes we have: plausible only if we were given a truncated head, not the whole file.
  if (offset + 4 > head.length) return head.length >= HEAD_BYTES
  return startsWith(head, [0x50, 0x45, 0, 0], offset)
}

/**
 * The executable signatures, kept apart and explicit: `MZ` + `PE\0\0` (Windows: every
 * .exe, .dll, .scr, .cpl), `\x7fELF`, the four Mach-O magics (32/64 bit, both byte orders) and
 * the fat/universal Mach-O header `CAFEBABE` (which Java class files share: a fat header's
 * next word is its small architecture count, a class file's is its version, >= 45).
 */
function executable(head: Buffer): FileType | undefined {
  if (startsWith(head, [0x4d, 0x5a]) && isPe(head)) return type('pe')
  if (startsWith(head, [0x7f, 0x45, 0x4c, 0x46])) return type('elf')
  for (const magic of [
    [0xfe, 0xed, 0xfa, 0xce],
    [0xfe, 0xed, 0xfa, 0xcf],
    [0xce, 0xfa, 0xed, 0xfe],
    [0xcf, 0xfa, 0xed, 0xfe],
  ])
    if (startsWith(head, magic)) return type('macho')
  if (startsWith(head, [0xca, 0xfe, 0xba, 0xbe]) && head.length >= 8) {
    const next =
      ((head[4] as number) << 24) |
      ((head[5] as number) << 16) |
      ((head[6] as number) << 8) |
      (head[7] as number)
    return next > 0 && next < 45 ? type('macho') : type('java-class')
  }
  return undefined
}

/**
 * The type of content starting with `head` (its first {@link HEAD_BYTES} bytes, or all of it
 * when shorter), or undefined when no signature matches.
 */
export function detectType(head: Buffer): FileType | undefined {
  const program = executable(head)
  if (program) return program
  if (startsWith(head, [0x23, 0x21])) return type('script')
  if (
    startsWith(head, [0x50, 0x4b]) &&
    [0x0304, 0x0506, 0x0708].includes(((head[2] ?? 0) << 8) | (head[3] ?? 0))
  )
    return type('zip')
  if (startsWith(head, ascii('Rar!\x1a\x07'))) return type('rar')
  if (startsWith(head, [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c])) return type('7z')
  if (startsWith(head, [0x1f, 0x8b])) return type('gzip')
  if (startsWith(head, ascii('BZh')) && (head[3] ?? 0) >= 0x31 && (head[3] ?? 0) <= 0x39) return type('bzip2')
  if (startsWith(head, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return type('xz')
  if (startsWith(head, ascii('MSCF\0\0\0\0'))) return type('cab')
  if (startsWith(head, ascii('ustar'), 257)) return type('tar')
  if (head.subarray(0, HEAD_BYTES).indexOf(PDF) !== -1) return type('pdf')
  if (startsWith(head, [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1])) return type('ole')
  if (startsWith(head, ascii('{\\rtf'))) return type('rtf')
  if (startsWith(head, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return type('png')
  if (startsWith(head, [0xff, 0xd8, 0xff])) return type('jpeg')
  if (startsWith(head, ascii('GIF87a')) || startsWith(head, ascii('GIF89a'))) return type('gif')
  // "BM" alone is too common at the start of text; the header's reserved words are zero.
  if (startsWith(head, ascii('BM')) && startsWith(head, [0, 0, 0, 0], 6)) return type('bmp')
  if (startsWith(head, [0x49, 0x49, 0x2a, 0x00]) || startsWith(head, [0x4d, 0x4d, 0x00, 0x2a]))
    return type('tiff')
  if (startsWith(head, ascii('RIFF')) && startsWith(head, ascii('WEBP'), 8)) return type('webp')
  return undefined
}

/** True when `name` (a `type:` rule's argument) is a type id or a family. */
export function isTypeName(name: string): boolean {
  return (TYPE_IDS as string[]).includes(name) || (FAMILIES as readonly string[]).includes(name)
}

/** Does `detected` satisfy `type:<name>` (a type id or a family)? */
export function typeMatches(detected: FileType, name: string): boolean {
  return detected.id === name || detected.family === name
}

/**
 * What content a name or declared type promises, for `mismatch` rules: type ids and
 * families the content may be. `text` promises content with no binary signature (a script
 * line is fine). Only names and types listed here are ever a mismatch; the lists include
 * the variants real mailers produce (a `.doc` that is RTF, an `.xls` that is really an
 * `.xlsx`, a `.jpg` that is a PNG), so a mismatch means something else entirely.
 */
type Expectation = readonly (TypeId | Family | 'text')[]

const OFFICE_OLD: Expectation = ['ole', 'zip', 'rtf']
const ZIP_BASED: Expectation = ['zip']
const TEXT: Expectation = ['text']

const BY_EXTENSION: Readonly<Record<string, Expectation>> = {
  pdf: ['pdf'],
  doc: OFFICE_OLD,
  dot: OFFICE_OLD,
  xls: OFFICE_OLD,
  xlt: OFFICE_OLD,
  ppt: OFFICE_OLD,
  pps: OFFICE_OLD,
  msg: ['ole'],
  rtf: ['rtf'],
  docx: ZIP_BASED,
  docm: ZIP_BASED,
  dotx: ZIP_BASED,
  xlsx: ZIP_BASED,
  xlsm: ZIP_BASED,
  pptx: ZIP_BASED,
  pptm: ZIP_BASED,
  ppsx: ZIP_BASED,
  odt: ZIP_BASED,
  ods: ZIP_BASED,
  odp: ZIP_BASED,
  epub: ZIP_BASED,
  zip: ZIP_BASED,
  rar: ['rar'],
  '7z': ['7z'],
  gz: ['gzip'],
  tgz: ['gzip'],
  bz2: ['bzip2'],
  xz: ['xz'],
  cab: ['cab'],
  tar: ['tar'],
  jpg: ['image'],
  jpeg: ['image'],
  png: ['image'],
  gif: ['image'],
  bmp: ['image'],
  tif: ['image'],
  tiff: ['image'],
  webp: ['image'],
  txt: TEXT,
  csv: TEXT,
  log: TEXT,
  htm: TEXT,
  html: TEXT,
  xml: TEXT,
  json: TEXT,
  ics: TEXT,
  vcf: TEXT,
  eml: TEXT,
}

const BY_CONTENT_TYPE: Readonly<Record<string, Expectation>> = {
  'application/pdf': ['pdf'],
  'application/msword': OFFICE_OLD,
  'application/vnd.ms-excel': OFFICE_OLD,
  'application/vnd.ms-powerpoint': OFFICE_OLD,
  'application/rtf': ['rtf'],
  'text/rtf': ['rtf'],
  'application/zip': ZIP_BASED,
  'application/x-zip-compressed': ZIP_BASED,
  'application/x-zip': ZIP_BASED,
  'application/x-rar-compressed': ['rar'],
  'application/vnd.rar': ['rar'],
  'application/x-rar': ['rar'],
  'application/x-7z-compressed': ['7z'],
  'application/gzip': ['gzip'],
  'application/x-gzip': ['gzip'],
  'application/x-bzip2': ['bzip2'],
  'application/x-xz': ['xz'],
  'application/x-tar': ['tar'],
  'image/jpeg': ['image'],
  'image/pjpeg': ['image'],
  'image/png': ['image'],
  'image/gif': ['image'],
  'image/bmp': ['image'],
  'image/tiff': ['image'],
  'image/webp': ['image'],
  'text/plain': TEXT,
  'text/csv': TEXT,
  'text/html': TEXT,
  'text/calendar': TEXT,
}

/** The expectation of a declared Content-Type; OOXML and OpenDocument types are zips. */
function contentTypeExpectation(contentType: string): Expectation | undefined {
  if (
    contentType.startsWith('application/vnd.openxmlformats-officedocument.') ||
    contentType.startsWith('application/vnd.oasis.opendocument.')
  )
    return ZIP_BASED
  return BY_CONTENT_TYPE[contentType]
}

function keeps(expected: Expectation, detected: FileType): boolean {
  return expected.some((p) =>
    p === 'text' ? detected.family === 'script' : p === detected.id || p === detected.family,
  )
}

/** The last extension of a file name, lower case, without the dot; '' when none. */
export function extensionOf(name: string): string {
  const base = name.slice(name.lastIndexOf('/') + 1)
  const dot = base.lastIndexOf('.')
  return dot <= 0 ? '' : base.slice(dot + 1).toLowerCase()
}

/**
 * Why `detected` content contradicts its name's extension or its declared Content-Type, in
 * words; undefined when neither promises anything or the content keeps the promise.
 */
export function mismatch(
  detected: FileType,
  name: string | undefined,
  contentType: string | undefined,
): string | undefined {
  const ext = name === undefined ? '' : extensionOf(name)
  const byName = BY_EXTENSION[ext]
  if (byName && !keeps(byName, detected)) return `named .${ext} but the content is ${detected.label}`
  const byType = contentType === undefined ? undefined : contentTypeExpectation(contentType)
  if (byType && !keeps(byType, detected))
    return `declared ${contentType} but the content is ${detected.label}`
  return undefined
}
