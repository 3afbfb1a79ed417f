/**
 * The Sendmail milter protocol, version 6 as Postfix speaks it: framing, the commands the MTA
 * sends, the responses a filter sends back, and option negotiation. Pure functions and one
 * small stateful frame decoder; no I/O.
 *
 * Every packet is a 4-byte big-endian length (counting the command byte and the data), one
 * command byte, then the data. Strings inside are NUL-terminated. The constants below are the
 * protocol's (libmilter `mfdef.h` names), and nothing else is invented here.
 */
import type { SmtpReply } from '../smtp-reply.js'

/** The protocol version we speak and answer with. */
export const MILTER_VERSION = 6

/** Commands, MTA → filter (`SMFIC_*`). */
export const SMFIC = {
  ABORT: 0x41, // 'A'
  BODY: 0x42, // 'B'
  CONNECT: 0x43, // 'C'
  MACRO: 0x44, // 'D'
  BODYEOB: 0x45, // 'E'
  HELO: 0x48, // 'H'
  QUIT_NC: 0x4b, // 'K'
  HEADER: 0x4c, // 'L'
  MAIL: 0x4d, // 'M'
  EOH: 0x4e, // 'N'
  OPTNEG: 0x4f, // 'O'
  QUIT: 0x51, // 'Q'
  RCPT: 0x52, // 'R'
  DATA: 0x54, // 'T'
  UNKNOWN: 0x55, // 'U'
} as const

/** Responses, filter → MTA (`SMFIR_*`), the ones this project sends or reads back in tests. */
export const SMFIR = {
  ACCEPT: 0x61, // 'a'
  REPLBODY: 0x62, // 'b'
  CONTINUE: 0x63, // 'c'
  DISCARD: 0x64, // 'd'
  ADDHEADER: 0x68, // 'h'
  INSHEADER: 0x69, // 'i'
  CHGHEADER: 0x6d, // 'm'
  OPTNEG: 0x4f, // 'O'
  PROGRESS: 0x70, // 'p'
  QUARANTINE: 0x71, // 'q'
  REJECT: 0x72, // 'r'
  TEMPFAIL: 0x74, // 't'
  REPLYCODE: 0x79, // 'y'
} as const

/** Actions a filter may take at end of message (`SMFIF_*`), negotiated in OPTNEG. */
export const SMFIF = {
  ADDHDRS: 0x01,
  CHGBODY: 0x02,
  ADDRCPT: 0x04,
  DELRCPT: 0x08,
  CHGHDRS: 0x10,
  QUARANTINE: 0x20,
  CHGFROM: 0x40,
  ADDRCPT_PAR: 0x80,
  SETSYMLIST: 0x100,
} as const

/** Protocol steps the filter can skip, and steps it will not answer (`SMFIP_*`). */
export const SMFIP = {
  NOCONNECT: 0x01,
  NOHELO: 0x02,
  NOMAIL: 0x04,
  NORCPT: 0x08,
  NOBODY: 0x10,
  NOHDRS: 0x20,
  NOEOH: 0x40,
  NR_HDR: 0x80,
  NOUNKNOWN: 0x100,
  NODATA: 0x200,
  SKIP: 0x400,
  RCPT_REJ: 0x800,
  NR_CONN: 0x1000,
  NR_HELO: 0x2000,
  NR_MAIL: 0x4000,
  NR_RCPT: 0x8000,
  NR_DATA: 0x10000,
  NR_UNKN: 0x20000,
  NR_EOH: 0x40000,
  NR_BODY: 0x80000,
  HDR_LEADSPC: 0x100000,
} as const

/** The protocol stages a macro list can be requested for (`SMFIM_*`, SETSYMLIST). */
export const SMFIM = {
  CONNECT: 0,
  HELO: 1,
  ENVFROM: 2,
  ENVRCPT: 3,
  DATA: 4,
  EOM: 5,
  EOH: 6,
} as const

export type MacroStage = (typeof SMFIM)[keyof typeof SMFIM]

/** libmilter's largest body chunk (`MILTER_CHUNK_SIZE`); REPLBODY is cut into pieces this big. */
export const MAX_BODY_CHUNK = 65_535

/**
 * Default largest packet accepted: 128 KiB. Body chunks are at most 64 KiB (we never ask for
 * the 256K/1M chunk sizes), but Postfix sends a whole header field in one packet, and its
 * `header_size_limit` is 102 400 bytes; anything beyond this is not a milter talking.
 */
export const DEFAULT_MAX_PACKET = 131_072

/** Stable codes of {@link MilterProtocolError}. */
export type MilterErrorCode =
  /** A packet announced more bytes than the configured maximum. */
  | 'MSC_MILTER_PACKET_TOO_LONG'
  /** A command byte this protocol does not have. */
  | 'MSC_MILTER_UNKNOWN_COMMAND'
  /** A known command with data that does not parse (missing NUL, short fields, bad family). */
  | 'MSC_MILTER_MALFORMED'
  /** A command out of order (e.g. anything before option negotiation). */
  | 'MSC_MILTER_STATE'
  /** A response we were asked to encode is not valid (bad reply code, CR/LF in text, ...). */
  | 'MSC_MILTER_INVALID_RESPONSE'

/** A protocol violation by the peer, or an invalid response we refused to encode. */
export class MilterProtocolError extends Error {
  constructor(
    readonly code: MilterErrorCode,
    message: string,
  ) {
    super(message)
    this.name = 'MilterProtocolError'
  }
}

/** One raw packet: command (or response) byte and its data. */
export interface MilterPacket {
  readonly code: number
  readonly data: Buffer
}

/** How the client reached the MTA, as SMFIC_CONNECT says. */
export type ConnectFamily = 'inet4' | 'inet6' | 'unix' | 'unknown'

/** A decoded MTA → filter command. */
export type MilterCommand =
  | { readonly type: 'optneg'; readonly version: number; readonly actions: number; readonly protocol: number }
  /** Macros for the command `forCommand` (an SMFIC_* byte); names keep their braces as sent. */
  | { readonly type: 'macro'; readonly forCommand: number; readonly macros: ReadonlyMap<string, string> }
  | {
      readonly type: 'connect'
      /** The client's host name as the MTA knows it (may be `unknown` or `[addr]`). */
      readonly hostname: string
      readonly family: ConnectFamily
      /** TCP port (0 for unix sockets); absent for an unknown family. */
      readonly port?: number
      /** IP address, or the socket path for `unix`; absent for an unknown family. */
      readonly address?: string
    }
  | { readonly type: 'helo'; readonly name: string }
  /** MAIL FROM: the path as sent (usually `<a@b>`), then the ESMTP arguments (`SIZE=123`). */
  | { readonly type: 'mail'; readonly sender: string; readonly args: readonly string[] }
  | { readonly type: 'rcpt'; readonly recipient: string; readonly args: readonly string[] }
  | { readonly type: 'data' }
  /** One header field; `value` is UTF-8 for reading, `raw` the exact bytes of the value. */
  | { readonly type: 'header'; readonly name: string; readonly value: string; readonly raw: Buffer }
  | { readonly type: 'eoh' }
  | { readonly type: 'body'; readonly chunk: Buffer }
  /** End of message; an MTA may put the last body bytes in it. */
  | { readonly type: 'eob'; readonly chunk: Buffer }
  | { readonly type: 'abort' }
  | { readonly type: 'quit' }
  | { readonly type: 'quitNc' }
  | { readonly type: 'unknown'; readonly command: string }

/** A decoded filter → MTA response (what an MTA reads; used by tests and tools). */
export type MilterResponse =
  | {
      readonly type: 'optneg'
      readonly version: number
      readonly actions: number
      readonly protocol: number
      readonly macros: ReadonlyMap<number, readonly string[]>
    }
  | { readonly type: 'continue' | 'accept' | 'reject' | 'tempfail' | 'discard' | 'progress' }
  | { readonly type: 'replycode'; readonly text: string }
  | { readonly type: 'quarantine'; readonly reason: string }
  | { readonly type: 'addheader'; readonly name: string; readonly value: string }
  | {
      readonly type: 'chgheader' | 'insheader'
      readonly index: number
      readonly name: string
      readonly value: string
    }
  | { readonly type: 'replbody'; readonly chunk: Buffer }

// ---------------------------------------------------------------------------------------------
// Framing

/**
 * Cuts a byte stream into packets. Feed it TCP chunks as they come (a packet may be split
 * across chunks, several may share one); it returns every packet completed so far. A length
 * over `maxPacket` (or zero) throws at once, before any of that data is buffered.
 */
export class FrameDecoder {
  private chunks: Buffer[] = []
  private buffered = 0
  /** Length of the packet being assembled (after its 4-byte prefix), once known. */
  private need: number | undefined

  constructor(readonly maxPacket: number = DEFAULT_MAX_PACKET) {}

  /** Bytes received but not yet returned as a packet (length prefix included). */
  get pending(): number {
    return this.buffered + (this.need === undefined ? 0 : 4)
  }

  push(chunk: Buffer): MilterPacket[] {
    const out: MilterPacket[] = []
    if (chunk.length > 0) {
      this.chunks.push(chunk)
      this.buffered += chunk.length
    }
    for (;;) {
      if (this.need === undefined) {
        if (this.buffered < 4) break
        const length = this.take(4).readUInt32BE(0)
        if (length === 0) throw new MilterProtocolError('MSC_MILTER_MALFORMED', 'packet of length 0')
        if (length > this.maxPacket) {
          throw new MilterProtocolError(
            'MSC_MILTER_PACKET_TOO_LONG',
            `packet of ${length} bytes exceeds the maximum of ${this.maxPacket}`,
          )
        }
        this.need = length
      }
      if (this.buffered < this.need) break
      const packet = this.take(this.need)
      this.need = undefined
      out.push({ code: packet[0] as number, data: packet.subarray(1) })
    }
    return out
  }

  /** Remove `n` buffered bytes (n <= buffered), copying only when they span chunks. */
  private take(n: number): Buffer {
    const first = this.chunks[0] as Buffer
    let result: Buffer
    if (first.length >= n) {
      result = first.subarray(0, n)
      if (first.length === n) this.chunks.shift()
      else this.chunks[0] = first.subarray(n)
    } else {
      result = Buffer.allocUnsafe(n)
      let filled = 0
      while (filled < n) {
        const head = this.chunks[0] as Buffer
        const part = Math.min(head.length, n - filled)
        head.copy(result, filled, 0, part)
        filled += part
        if (part === head.length) this.chunks.shift()
        else this.chunks[0] = head.subarray(part)
      }
    }
    this.buffered -= n
    return result
  }
}

/** Frame one packet: length, code, data. */
export function encodePacket(code: number, data: Buffer | string = EMPTY): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
  const out = Buffer.allocUnsafe(5 + body.length)
  out.writeUInt32BE(body.length + 1, 0)
  out[4] = code
  body.copy(out, 5)
  return out
}

const EMPTY = Buffer.alloc(0)
const NUL = 0

// ---------------------------------------------------------------------------------------------
// Decoding commands (MTA → filter)

/** Reads NUL-terminated strings and fixed integers off a packet's data. */
class Reader {
  private at = 0

  constructor(
    private readonly data: Buffer,
    private readonly what: string,
  ) {}

  get done(): boolean {
    return this.at >= this.data.length
  }

  bytes(): Buffer {
    const end = this.data.indexOf(NUL, this.at)
    if (end === -1) throw malformed(`${this.what}: string not NUL-terminated`)
    const out = this.data.subarray(this.at, end)
    this.at = end + 1
    return out
  }

  string(): string {
    return this.bytes().toString('utf8')
  }

  byte(): number {
    if (this.at + 1 > this.data.length) throw malformed(`${this.what}: truncated`)
    return this.data[this.at++] as number
  }

  uint16(): number {
    if (this.at + 2 > this.data.length) throw malformed(`${this.what}: truncated`)
    const value = this.data.readUInt16BE(this.at)
    this.at += 2
    return value
  }

  uint32(): number {
    if (this.at + 4 > this.data.length) throw malformed(`${this.what}: truncated`)
    const value = this.data.readUInt32BE(this.at)
    this.at += 4
    return value
  }

  /** Every remaining NUL-terminated string. */
  strings(): string[] {
    const out: string[] = []
    while (!this.done) out.push(this.string())
    return out
  }

  end(): void {
    if (!this.done) throw malformed(`${this.what}: trailing data`)
  }
}

function malformed(message: string): MilterProtocolError {
  return new MilterProtocolError('MSC_MILTER_MALFORMED', message)
}

const FAMILIES: Record<number, ConnectFamily> = {
  52: 'inet4', // '4'
  54: 'inet6', // '6'
  76: 'unix', // 'L'
  85: 'unknown', // 'U'
}

/** Decode one MTA → filter packet. Unknown command bytes and malformed data throw. */
export function decodeCommand(packet: MilterPacket): MilterCommand {
  const { code, data } = packet
  switch (code) {
    case SMFIC.OPTNEG: {
      const r = new Reader(data, 'OPTNEG')
      // A v6 MTA sends exactly three words; anything after them is ignored, as libmilter does.
      return { type: 'optneg', version: r.uint32(), actions: r.uint32(), protocol: r.uint32() }
    }
    case SMFIC.MACRO: {
      const r = new Reader(data, 'MACRO')
      const forCommand = r.byte()
      const parts = r.strings()
      if (parts.length % 2 !== 0) throw malformed('MACRO: a name without a value')
      const macros = new Map<string, string>()
      for (let i = 0; i < parts.length; i += 2) macros.set(parts[i] as string, parts[i + 1] as string)
      return { type: 'macro', forCommand, macros }
    }
    case SMFIC.CONNECT: {
      const r = new Reader(data, 'CONNECT')
      const hostname = r.string()
      const familyByte = r.byte()
      const family = FAMILIES[familyByte]
      if (family === undefined)
        throw malformed(`CONNECT: unknown address family 0x${familyByte.toString(16)}`)
      if (family === 'unknown') return { type: 'connect', hostname, family }
      const port = r.uint16()
      const address = r.string()
      r.end()
      return { type: 'connect', hostname, family, port, address }
    }
    case SMFIC.HELO: {
      const r = new Reader(data, 'HELO')
      const name = r.string()
      return { type: 'helo', name }
    }
    case SMFIC.MAIL:
    case SMFIC.RCPT: {
      const what = code === SMFIC.MAIL ? 'MAIL' : 'RCPT'
      const [path, ...args] = new Reader(data, what).strings()
      if (path === undefined) throw malformed(`${what}: no address`)
      return code === SMFIC.MAIL
        ? { type: 'mail', sender: path, args }
        : { type: 'rcpt', recipient: path, args }
    }
    case SMFIC.DATA:
      return { type: 'data' }
    case SMFIC.HEADER: {
      const r = new Reader(data, 'HEADER')
      const name = r.string()
      const raw = r.bytes()
      r.end()
      if (name === '') throw malformed('HEADER: empty field name')
      return { type: 'header', name, value: raw.toString('utf8'), raw }
    }
    case SMFIC.EOH:
      return { type: 'eoh' }
    case SMFIC.BODY:
      return { type: 'body', chunk: data }
    case SMFIC.BODYEOB:
      return { type: 'eob', chunk: data }
    case SMFIC.ABORT:
      return { type: 'abort' }
    case SMFIC.QUIT:
      return { type: 'quit' }
    case SMFIC.QUIT_NC:
      return { type: 'quitNc' }
    case SMFIC.UNKNOWN: {
      const r = new Reader(data, 'UNKNOWN')
      // Postfix NUL-terminates the line; tolerate an MTA that does not.
      const command = data.includes(NUL) ? r.string() : data.toString('utf8')
      return { type: 'unknown', command }
    }
    default:
      throw new MilterProtocolError('MSC_MILTER_UNKNOWN_COMMAND', `unknown milter command 0x${hex(code)}`)
  }
}

function hex(code: number): string {
  return code.toString(16).padStart(2, '0')
}

// ---------------------------------------------------------------------------------------------
// Encoding commands (the MTA side: tests and tools)

/** Encode an MTA → filter command (the inverse of {@link decodeCommand}). */
export function encodeCommand(command: MilterCommand): Buffer {
  switch (command.type) {
    case 'optneg':
      return encodePacket(SMFIC.OPTNEG, words(command.version, command.actions, command.protocol))
    case 'macro': {
      const parts: Buffer[] = [Buffer.from([command.forCommand])]
      for (const [name, value] of command.macros) parts.push(cstring(name), cstring(value))
      return encodePacket(SMFIC.MACRO, Buffer.concat(parts))
    }
    case 'connect': {
      const family = Object.entries(FAMILIES).find(([, name]) => name === command.family)?.[0]
      const parts: Buffer[] = [cstring(command.hostname), Buffer.from([Number(family)])]
      if (command.family !== 'unknown') {
        const port = Buffer.alloc(2)
        port.writeUInt16BE(command.port ?? 0, 0)
        parts.push(port, cstring(command.address ?? ''))
      }
      return encodePacket(SMFIC.CONNECT, Buffer.concat(parts))
    }
    case 'helo':
      return encodePacket(SMFIC.HELO, cstring(command.name))
    case 'mail':
      return encodePacket(SMFIC.MAIL, Buffer.concat([command.sender, ...command.args].map(cstring)))
    case 'rcpt':
      return encodePacket(SMFIC.RCPT, Buffer.concat([command.recipient, ...command.args].map(cstring)))
    case 'data':
      return encodePacket(SMFIC.DATA)
    case 'header':
      return encodePacket(SMFIC.HEADER, Buffer.concat([cstring(command.name), command.raw, ZERO]))
    case 'eoh':
      return encodePacket(SMFIC.EOH)
    case 'body':
      return encodePacket(SMFIC.BODY, command.chunk)
    case 'eob':
      return encodePacket(SMFIC.BODYEOB, command.chunk)
    case 'abort':
      return encodePacket(SMFIC.ABORT)
    case 'quit':
      return encodePacket(SMFIC.QUIT)
    case 'quitNc':
      return encodePacket(SMFIC.QUIT_NC)
    case 'unknown':
      return encodePacket(SMFIC.UNKNOWN, cstring(command.command))
  }
}

/** Build a header command from text (the common case in tests). */
export function headerCommand(name: string, value: string): MilterCommand {
  const raw = Buffer.from(value, 'utf8')
  return { type: 'header', name, value, raw }
}

const ZERO = Buffer.from([NUL])

function cstring(text: string): Buffer {
  return Buffer.concat([Buffer.from(text, 'utf8'), ZERO])
}

function words(...values: number[]): Buffer {
  const out = Buffer.alloc(4 * values.length)
  for (let i = 0; i < values.length; i++) out.writeUInt32BE((values[i] as number) >>> 0, 4 * i)
  return out
}

// ---------------------------------------------------------------------------------------------
// Encoding responses (filter → MTA)

/** SMFIR_CONTINUE: go on with the next step. */
export const CONTINUE = encodePacket(SMFIR.CONTINUE)
/** SMFIR_ACCEPT: accept the message (or connection) without further filtering. */
export const ACCEPT = encodePacket(SMFIR.ACCEPT)
/** SMFIR_REJECT: reject with the MTA's own 5xx text. */
export const REJECT = encodePacket(SMFIR.REJECT)
/** SMFIR_TEMPFAIL: temporary failure with the MTA's own 4xx text. */
export const TEMPFAIL = encodePacket(SMFIR.TEMPFAIL)
/** SMFIR_DISCARD: accept, then silently drop the message. */
export const DISCARD = encodePacket(SMFIR.DISCARD)
/** SMFIR_PROGRESS: still working; the MTA restarts its timeout. */
export const PROGRESS = encodePacket(SMFIR.PROGRESS)

function invalid(message: string): MilterProtocolError {
  return new MilterProtocolError('MSC_MILTER_INVALID_RESPONSE', message)
}

/** The longest reply line SMTP allows, without CRLF (RFC 5321 4.5.3.1.5). */
const MAX_REPLY_LINE = 510

/**
 * Check an SMTP reply for SMFIR_REPLYCODE and render it as one line, `%` doubled (the MTA
 * treats the text as a format string and turns `%%` back into `%`). The code must be 4xx or
 * 5xx (`kind` pins which), the enhanced status (RFC 3463) present with the same class, and
 * the text printable ASCII: a CR or LF here would let a reason inject reply lines.
 */
export function formatReplyCode(reply: SmtpReply, kind?: 4 | 5): string {
  const { code, status, text } = reply
  if (!Number.isInteger(code) || code < 400 || code > 599) {
    throw invalid(`reply code ${code} is not 4xx or 5xx`)
  }
  const klass = Math.floor(code / 100)
  if (kind !== undefined && klass !== kind) throw invalid(`reply code ${code} is not ${kind}xx`)
  const enhanced = status === undefined ? undefined : /^([45])\.(\d{1,3})\.(\d{1,3})$/.exec(status)
  if (!enhanced) throw invalid(`enhanced status ${JSON.stringify(status)} is not ${klass}.x.y`)
  if (Number(enhanced[1]) !== klass) throw invalid(`enhanced status ${status} does not match ${code}`)
  if (!/^[\x20-\x7e]*$/.test(text)) throw invalid('reply text must be printable ASCII (no CR, LF or NUL)')
  const line = `${code} ${status} ${text}`.trimEnd()
  if (line.length > MAX_REPLY_LINE) throw invalid(`reply longer than ${MAX_REPLY_LINE} characters`)
  return line.replaceAll('%', '%%')
}

/** SMFIR_REPLYCODE with a validated reply (see {@link formatReplyCode}). */
export function encodeReplyCode(reply: SmtpReply, kind?: 4 | 5): Buffer {
  return encodePacket(SMFIR.REPLYCODE, cstring(formatReplyCode(reply, kind)))
}

/** SMFIR_QUARANTINE: put the message on hold (Postfix: the hold queue) with a reason. */
export function encodeQuarantine(reason: string): Buffer {
  if (reason === '' || /[\0\r\n]/.test(reason)) throw invalid('quarantine reason must be one non-empty line')
  return encodePacket(SMFIR.QUARANTINE, cstring(reason))
}

/**
 * Check a header field name (RFC 5322 ftext: printable ASCII except `:`) and value (no NUL,
 * no bare CR, line breaks only as folding) and return the value with folds as LF, the way
 * libmilter hands them to the MTA.
 */
export function checkHeader(name: string, value: string): string {
  if (!/^[\x21-\x39\x3b-\x7e]+$/.test(name))
    throw invalid(`invalid header field name ${JSON.stringify(name)}`)
  const folded = value.replace(/\r\n/g, '\n')
  if (folded.includes('\0') || folded.includes('\r')) throw invalid(`header ${name}: NUL or bare CR in value`)
  if (/\n(?![ \t])/.test(folded)) throw invalid(`header ${name}: a line break not followed by white space`)
  return folded
}

/** SMFIR_ADDHEADER: append a header field. */
export function encodeAddHeader(name: string, value: string): Buffer {
  const v = checkHeader(name, value)
  return encodePacket(SMFIR.ADDHEADER, Buffer.concat([cstring(name), cstring(v)]))
}

/**
 * SMFIR_CHGHEADER: change the `index`-th (1-based) field called `name`; an empty value
 * deletes it.
 */
export function encodeChangeHeader(index: number, name: string, value: string): Buffer {
  if (!Number.isInteger(index) || index < 1 || index > 0xffffffff) throw invalid(`header index ${index} < 1`)
  const v = checkHeader(name, value)
  return encodePacket(SMFIR.CHGHEADER, Buffer.concat([words(index), cstring(name), cstring(v)]))
}

/** SMFIR_INSHEADER: insert a field at 0-based position `index` among all fields (0 = first). */
export function encodeInsertHeader(index: number, name: string, value: string): Buffer {
  if (!Number.isInteger(index) || index < 0 || index > 0xffffffff) throw invalid(`header index ${index} < 0`)
  const v = checkHeader(name, value)
  return encodePacket(SMFIR.INSHEADER, Buffer.concat([words(index), cstring(name), cstring(v)]))
}

/**
 * SMFIR_REPLBODY packets for a new body, cut into chunks of at most `chunkSize` bytes. The
 * MTA concatenates them; an empty body is one empty packet.
 */
export function encodeReplaceBody(body: Buffer, chunkSize: number = MAX_BODY_CHUNK): Buffer[] {
  if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > MAX_BODY_CHUNK) {
    throw invalid(`body chunk size ${chunkSize} outside 1..${MAX_BODY_CHUNK}`)
  }
  if (body.length === 0) return [encodePacket(SMFIR.REPLBODY)]
  const out: Buffer[] = []
  for (let at = 0; at < body.length; at += chunkSize) {
    out.push(encodePacket(SMFIR.REPLBODY, body.subarray(at, at + chunkSize)))
  }
  return out
}

/** What the filter answers in option negotiation. */
export interface OptnegReply {
  readonly version: number
  readonly actions: number
  readonly protocol: number
  /** Macro names wanted per stage (SETSYMLIST); names with braces as the MTA expects. */
  readonly macros?: ReadonlyMap<MacroStage, readonly string[]>
}

/** SMFIC_OPTNEG reply: version, actions, protocol, then `(stage, "names\0")` per stage. */
export function encodeOptneg(reply: OptnegReply): Buffer {
  const parts: Buffer[] = [words(reply.version, reply.actions, reply.protocol)]
  for (const [stage, names] of reply.macros ?? []) {
    if (names.length === 0) continue
    for (const name of names) {
      if (!/^(?:[A-Za-z_]|\{[A-Za-z0-9_]+\})$/.test(name)) throw invalid(`invalid macro name ${name}`)
    }
    parts.push(words(stage), cstring(names.join(' ')))
  }
  return encodePacket(SMFIR.OPTNEG, Buffer.concat(parts))
}

/** Decode one filter → MTA packet (what the MTA side reads). */
export function decodeResponse(packet: MilterPacket): MilterResponse {
  const { code, data } = packet
  switch (code) {
    case SMFIR.OPTNEG: {
      const r = new Reader(data, 'OPTNEG reply')
      const version = r.uint32()
      const actions = r.uint32()
      const protocol = r.uint32()
      const macros = new Map<number, readonly string[]>()
      while (!r.done) macros.set(r.uint32(), r.string().split(' ').filter(Boolean))
      return { type: 'optneg', version, actions, protocol, macros }
    }
    case SMFIR.CONTINUE:
      return { type: 'continue' }
    case SMFIR.ACCEPT:
      return { type: 'accept' }
    case SMFIR.REJECT:
      return { type: 'reject' }
    case SMFIR.TEMPFAIL:
      return { type: 'tempfail' }
    case SMFIR.DISCARD:
      return { type: 'discard' }
    case SMFIR.PROGRESS:
      return { type: 'progress' }
    case SMFIR.REPLYCODE:
      return { type: 'replycode', text: new Reader(data, 'REPLYCODE').string() }
    case SMFIR.QUARANTINE:
      return { type: 'quarantine', reason: new Reader(data, 'QUARANTINE').string() }
    case SMFIR.ADDHEADER: {
      const r = new Reader(data, 'ADDHEADER')
      return { type: 'addheader', name: r.string(), value: r.string() }
    }
    case SMFIR.CHGHEADER:
    case SMFIR.INSHEADER: {
      const r = new Reader(data, 'CHGHEADER')
      const index = r.uint32()
      return {
        type: code === SMFIR.CHGHEADER ? 'chgheader' : 'insheader',
        index,
        name: r.string(),
        value: r.string(),
      }
    }
    case SMFIR.REPLBODY:
      return { type: 'replbody', chunk: data }
    default:
      throw new MilterProtocolError('MSC_MILTER_UNKNOWN_COMMAND', `unknown milter response 0x${hex(code)}`)
  }
}

// ---------------------------------------------------------------------------------------------
// Option negotiation

/**
 * The actions we may need at end of message: add/insert headers, change headers (subject
 * tag, removing forged X-Spam-*), replace the body (`strip`), quarantine (Postfix's hold
 * queue), and SETSYMLIST to name the macros we want. Never recipients or the sender.
 */
export const WANTED_ACTIONS =
  SMFIF.ADDHDRS | SMFIF.CHGHDRS | SMFIF.CHGBODY | SMFIF.QUARANTINE | SMFIF.SETSYMLIST

/**
 * Steps we never need: unknown SMTP commands (the MTA refuses them itself) and end-of-headers
 * (the first body chunk or EOM tells us). Every step we do see only collects data, so we ask
 * for no reply to any of them, except RCPT when a recipient check may refuse one, and DATA.
 *
 * DATA is taken, with a reply, for speed: Postfix sends its DATA-stage macros (`i`) even when
 * the step is skipped, in a packet of its own that gets no answer, and then writes the whole
 * message on the same socket with Nagle on. That write waits for the ACK of the macro packet,
 * which the receiver delays (~40 ms on Linux): 50 ms per message at concurrency 1 instead of
 * 3 (benchmarks/milter.ts). Our CONTINUE to DATA carries the ACK at once.
 */
const SKIPPED_STEPS = SMFIP.NOUNKNOWN | SMFIP.NOEOH
const NO_REPLY_STEPS =
  SMFIP.NR_CONN | SMFIP.NR_HELO | SMFIP.NR_MAIL | SMFIP.NR_HDR | SMFIP.NR_BODY | SMFIP.NR_EOH | SMFIP.NR_UNKN

/**
 * The macros we ask for, per stage. CONNECT: our host name (`j`), the client as the MTA saw
 * it, and which listener took it. HELO: TLS facts. MAIL: the queue ID (`i`, known from MAIL
 * in Postfix unless `smtpd_delay_open_until_valid_rcpt`), SMTP AUTH, the parsed sender.
 * RCPT: the queue ID (Postfix's delayed open) and the parsed recipient. EOM: the queue ID once
 * more (always known there).
 */
export const WANTED_MACROS: ReadonlyMap<MacroStage, readonly string[]> = new Map<
  MacroStage,
  readonly string[]
>([
  [SMFIM.CONNECT, ['j', '{daemon_name}', '{client_addr}', '{client_name}', '{client_port}', '{client_ptr}']],
  [SMFIM.HELO, ['{tls_version}', '{cipher}', '{cipher_bits}', '{cert_subject}', '{cert_issuer}']],
  [SMFIM.ENVFROM, ['i', '{auth_type}', '{auth_authen}', '{auth_author}', '{mail_addr}', '{mail_mailer}']],
  [SMFIM.ENVRCPT, ['i', '{rcpt_addr}', '{rcpt_host}', '{rcpt_mailer}']],
  [SMFIM.EOM, ['i']],
])

/** What the MTA offered in SMFIC_OPTNEG. */
export interface OptnegOffer {
  readonly version: number
  readonly actions: number
  readonly protocol: number
}

/** What a session needs from negotiation. */
export interface NegotiationNeeds {
  /** A recipient check may refuse RCPTs, so RCPT needs a reply. */
  readonly recipientReplies?: boolean
}

/**
 * Choose our answer to the MTA's offer: version min(offer, 6) (2 is the oldest that has the
 * flags we use), our actions and protocol flags masked by what was offered (asking for more
 * makes the MTA drop us), and the macro lists only when SETSYMLIST was offered.
 */
export function negotiate(offer: OptnegOffer, needs: NegotiationNeeds = {}): Required<OptnegReply> {
  if (offer.version < 2) {
    throw new MilterProtocolError('MSC_MILTER_MALFORMED', `milter protocol version ${offer.version} < 2`)
  }
  const version = Math.min(offer.version, MILTER_VERSION)
  const actions = WANTED_ACTIONS & offer.actions
  let wantedProtocol = SKIPPED_STEPS | NO_REPLY_STEPS
  if (!needs.recipientReplies) wantedProtocol |= SMFIP.NR_RCPT
  const protocol = (wantedProtocol & offer.protocol) >>> 0
  const macros = actions & SMFIF.SETSYMLIST ? WANTED_MACROS : new Map<MacroStage, readonly string[]>()
  return { version, actions, protocol, macros }
}
