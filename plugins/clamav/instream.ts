/**
 * A small clamd client: INSTREAM (and one-shot commands such as PING) over TCP or a unix socket.
 *
 * Protocol (clamd(8), "z" = NUL-terminated commands and replies):
 *
 *   client: zINSTREAM\0  <len:uint32 BE><bytes> ... <0:uint32 BE>
 *   clamd:  stream: OK\0 | stream: <Name> FOUND\0 | <message> ERROR\0
 *
 * The framing and reply parsing are pure functions; {@link instream} does the socket I/O,
 * one connection per scan (clamd closes the connection after answering a non-session command).
 */
import {
  type ExchangeOptions,
  type ExchangeProtocol,
  exchange,
  type ServiceAddress,
} from '../../src/pipeline/plugin.js'

/** Where clamd listens: TCP host/port, or a unix socket path. */
export type ClamdTarget = ServiceAddress

/** What clamd said about a stream. */
export type ScanResult =
  | { readonly status: 'clean' }
  | { readonly status: 'infected'; readonly names: readonly string[] }
  | { readonly status: 'error'; readonly message: string }

/** The largest chunk the 4-byte length can describe. */
export const MAX_CHUNK = 0xffff_ffff

/** `z<COMMAND>\0`. */
export function encodeCommand(command: string): Buffer {
  if (!/^[A-Z]+$/.test(command)) throw new Error(`clamd: invalid command ${JSON.stringify(command)}`)
  return Buffer.from(`z${command}\0`, 'latin1')
}

/** A 4-byte big-endian length. */
function lengthPrefix(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n, 0)
  return b
}

/**
 * The INSTREAM frames for `data`: `zINSTREAM\0`, then `<len><bytes>` chunks of at most
 * `chunkSize` bytes, then the zero-length terminator. The chunks are views of `data` (no copy).
 */
export function frameInstream(data: Buffer, chunkSize: number): Buffer[] {
  if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > MAX_CHUNK)
    throw new RangeError(`clamd: chunkSize must be an integer in 1..${MAX_CHUNK}, got ${chunkSize}`)
  const frames: Buffer[] = [encodeCommand('INSTREAM')]
  for (let offset = 0; offset < data.length; offset += chunkSize) {
    const chunk = data.subarray(offset, Math.min(offset + chunkSize, data.length))
    frames.push(lengthPrefix(chunk.length), chunk)
  }
  frames.push(lengthPrefix(0))
  return frames
}

/**
 * Parse clamd's reply to INSTREAM (everything it sent before closing). Replies are NUL-
 * terminated (`z` mode); with AllMatchScan clamd may send several `FOUND` lines. An optional
 * session prefix (`<id>: `, IDSESSION) is accepted. Any ERROR, or anything unrecognised,
 * is an error.
 */
export function parseInstreamReply(reply: Buffer | string): ScanResult {
  const text = typeof reply === 'string' ? reply : reply.toString('utf8')
  const lines = text
    .split(/[\0\n]/)
    .map((l) => l.trim())
    .filter((l) => l !== '')
  if (lines.length === 0) return { status: 'error', message: 'clamd: empty reply' }
  const names: string[] = []
  let clean = false
  for (const raw of lines) {
    const line = raw.replace(/^\d+: /, '')
    if (/ ERROR$/.test(line) || line === 'ERROR')
      return { status: 'error', message: `clamd: ${line.replace(/^stream: /, '')}` }
    const found = /^stream: (.+) FOUND$/.exec(line)
    if (found?.[1]) {
      if (!names.includes(found[1])) names.push(found[1])
      continue
    }
    if (line === 'stream: OK') {
      clean = true
      continue
    }
    return { status: 'error', message: `clamd: unexpected reply ${JSON.stringify(line.slice(0, 200))}` }
  }
  if (names.length > 0) return { status: 'infected', names }
  return clean ? { status: 'clean' } : { status: 'error', message: 'clamd: no verdict in reply' }
}

/** clamd answers once, NUL-terminated, then closes. */
const CLAMD: ExchangeProtocol = { service: 'clamd', complete: (reply) => reply.includes(0) }

/** Send `data` to clamd with INSTREAM and parse the verdict. Rejects only on I/O failure. */
export async function instream(
  target: ClamdTarget,
  data: Buffer,
  opts: ExchangeOptions & { readonly chunkSize?: number } = {},
): Promise<ScanResult> {
  const reply = await exchange(CLAMD, target, frameInstream(data, opts.chunkSize ?? 65_536), opts)
  return parseInstreamReply(reply)
}

/** Send a one-shot command (`PING`, `VERSION`) and return the reply without its NUL. */
export async function command(
  target: ClamdTarget,
  name: string,
  opts: ExchangeOptions = {},
): Promise<string> {
  const reply = await exchange(CLAMD, target, [encodeCommand(name)], opts)
  return reply.toString('utf8').replace(/\0+$/, '').trim()
}
