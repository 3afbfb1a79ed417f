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
import net from 'node:net'

/** Where clamd listens: TCP host/port, or a unix socket path. */
export type ClamdTarget = { readonly host: string; readonly port: number } | { readonly socket: string }

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

export interface IoOptions {
  /** Aborts the exchange (the check's timeout). */
  readonly signal?: AbortSignal
  /** The whole exchange fails after this many ms. Default 30 000. */
  readonly timeoutMs?: number
  /** Connecting fails after this many ms. Default: `timeoutMs`. */
  readonly connectTimeoutMs?: number
}

function describe(target: ClamdTarget): string {
  return 'socket' in target ? `unix:${target.socket}` : `${target.host}:${target.port}`
}

/** Error with the target in its message; `cause` keeps the original. */
function clamdError(target: ClamdTarget, what: string, cause?: unknown): Error {
  const detail = cause instanceof Error ? `: ${cause.message}` : ''
  return new Error(`clamd ${describe(target)}: ${what}${detail}`, cause === undefined ? undefined : { cause })
}

/**
 * Open a connection, write `frames`, and collect everything clamd sends until it closes the
 * connection (or, after at least one complete NUL-terminated reply, the connection fails:
 * clamd answers "size limit exceeded" and closes while we may still be writing).
 * Rejects on connect failure, timeout, abort, or a connection that ends without a reply.
 */
export function exchange(
  target: ClamdTarget,
  frames: readonly Buffer[],
  opts: IoOptions = {},
): Promise<Buffer> {
  const timeoutMs = opts.timeoutMs ?? 30_000
  const connectTimeoutMs = opts.connectTimeoutMs ?? timeoutMs
  const { signal } = opts
  return new Promise<Buffer>((resolve, reject) => {
    if (signal?.aborted) {
      reject(clamdError(target, 'aborted', signal.reason))
      return
    }
    const received: Buffer[] = []
    let connected = false
    let settled = false
    const socket =
      'socket' in target
        ? net.createConnection({ path: target.socket })
        : net.createConnection({ host: target.host, port: target.port })

    const replySoFar = (): Buffer => Buffer.concat(received)
    const finish = (err: Error | undefined): void => {
      if (settled) return
      settled = true
      clearTimeout(overall)
      clearTimeout(connecting)
      signal?.removeEventListener('abort', onAbort)
      socket.destroy()
      if (err) reject(err)
      else resolve(replySoFar())
    }
    const onAbort = (): void => finish(clamdError(target, 'aborted', signal?.reason))
    signal?.addEventListener('abort', onAbort, { once: true })
    const overall = setTimeout(() => finish(clamdError(target, `timed out after ${timeoutMs} ms`)), timeoutMs)
    const connecting = setTimeout(() => {
      if (!connected) finish(clamdError(target, `connect timed out after ${connectTimeoutMs} ms`))
    }, connectTimeoutMs)

    socket.on('data', (chunk: Buffer) => received.push(chunk))
    socket.on('error', (err) => {
      // A complete reply followed by a reset (clamd closed while we were still sending): use the reply.
      if (replySoFar().includes(0)) finish(undefined)
      else finish(clamdError(target, connected ? 'connection failed' : 'cannot connect', err))
    })
    socket.on('end', () => {
      if (replySoFar().length === 0) finish(clamdError(target, 'connection closed without a reply'))
      else finish(undefined)
    })
    socket.on('close', () => {
      if (replySoFar().length === 0) finish(clamdError(target, 'connection closed without a reply'))
      else finish(undefined)
    })
    socket.once('connect', () => {
      connected = true
      clearTimeout(connecting)
      void writeAll(socket, frames).catch(() => {
        // Write errors surface as 'error' on the socket, handled above.
      })
    })
  })
}

async function writeAll(socket: net.Socket, frames: readonly Buffer[]): Promise<void> {
  for (const frame of frames) {
    if (socket.destroyed) return
    if (!socket.write(frame)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          socket.off('drain', done)
          socket.off('close', done)
          resolve()
        }
        socket.on('drain', done)
        socket.on('close', done)
      })
    }
  }
}

/** Send `data` to clamd with INSTREAM and parse the verdict. Rejects only on I/O failure. */
export async function instream(
  target: ClamdTarget,
  data: Buffer,
  opts: IoOptions & { readonly chunkSize?: number } = {},
): Promise<ScanResult> {
  const reply = await exchange(target, frameInstream(data, opts.chunkSize ?? 65_536), opts)
  return parseInstreamReply(reply)
}

/** Send a one-shot command (`PING`, `VERSION`) and return the reply without its NUL. */
export async function command(target: ClamdTarget, name: string, opts: IoOptions = {}): Promise<string> {
  const reply = await exchange(target, [encodeCommand(name)], opts)
  return reply.toString('utf8').replace(/\0+$/, '').trim()
}
