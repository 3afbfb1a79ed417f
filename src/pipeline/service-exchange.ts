import net from 'node:net'
import { drainedOrClosed } from '../socket-drain.js'

/** Where a network service listens: TCP host and port, or a unix socket path. */
export type ServiceAddress = { readonly host: string; readonly port: number } | { readonly socket: string }

/** Options of {@link exchange}. */
export interface ExchangeOptions {
  /** Aborts the exchange (pass the check's signal). */
  readonly signal?: AbortSignal
  /** The whole exchange fails after this many ms. Default 30 000. */
  readonly timeoutMs?: number
  /** Connecting fails after this many ms. Default: `timeoutMs`. */
  readonly connectTimeoutMs?: number
}

/** How one request/response protocol behaves on the wire. */
export interface ExchangeProtocol {
  /** Names the service in error messages (`clamd`, `spamd`). */
  readonly service: string
  /**
   * Whether the bytes received so far are a whole reply: the exchange then ends without
   * waiting for the server to close, and a reset after it still counts as an answer.
   */
  readonly complete: (reply: Buffer) => boolean
  /** Half-close after the request (servers that read until EOF, like spamd). */
  readonly halfClose?: boolean
}

/** `127.0.0.1:783` or `unix:/path`. */
export function describeAddress(address: ServiceAddress): string {
  return 'socket' in address ? `unix:${address.socket}` : `${address.host}:${address.port}`
}

/** An error naming the service and address; `cause` keeps the original. */
export function serviceError(
  protocol: ExchangeProtocol,
  address: ServiceAddress,
  what: string,
  cause?: unknown,
): Error {
  const detail = cause instanceof Error ? `: ${cause.message}` : ''
  return new Error(
    `${protocol.service} ${describeAddress(address)}: ${what}${detail}`,
    cause === undefined ? undefined : { cause },
  )
}

async function writeAll(socket: net.Socket, parts: readonly Buffer[], halfClose: boolean): Promise<void> {
  for (const part of parts) {
    if (socket.destroyed) return
    if (!socket.write(part)) await drainedOrClosed(socket)
  }
  if (halfClose && !socket.destroyed) socket.end()
}

/**
 * One request/response over a fresh connection, for checks that talk to a scanning daemon:
 * write `request` (respecting backpressure), collect the reply until it is complete or the
 * server closes. Rejects on connect failure, timeout, abort, or a connection that ends
 * without a reply; never leaves a socket or timer behind.
 */
export function exchange(
  protocol: ExchangeProtocol,
  address: ServiceAddress,
  request: readonly Buffer[],
  opts: ExchangeOptions = {},
): Promise<Buffer> {
  const timeoutMs = opts.timeoutMs ?? 30_000
  const connectTimeoutMs = opts.connectTimeoutMs ?? timeoutMs
  const { signal } = opts
  const fail = (what: string, cause?: unknown) => serviceError(protocol, address, what, cause)
  return new Promise<Buffer>((resolve, reject) => {
    if (signal?.aborted) {
      reject(fail('aborted', signal.reason))
      return
    }
    const received: Buffer[] = []
    let connected = false
    let settled = false
    const socket =
      'socket' in address
        ? net.createConnection({ path: address.socket })
        : net.createConnection({ host: address.host, port: address.port })
    const soFar = (): Buffer => Buffer.concat(received)
    const finish = (err: Error | undefined): void => {
      if (settled) return
      settled = true
      clearTimeout(overall)
      clearTimeout(connecting)
      signal?.removeEventListener('abort', onAbort)
      socket.destroy()
      if (err) reject(err)
      else resolve(soFar())
    }
    const onAbort = (): void => finish(fail('aborted', signal?.reason))
    signal?.addEventListener('abort', onAbort, { once: true })
    const overall = setTimeout(() => finish(fail(`timed out after ${timeoutMs} ms`)), timeoutMs)
    const connecting = setTimeout(() => {
      if (!connected) finish(fail(`connect timed out after ${connectTimeoutMs} ms`))
    }, connectTimeoutMs)

    socket.on('data', (chunk: Buffer) => {
      received.push(chunk)
      if (protocol.complete(soFar())) finish(undefined)
    })
    socket.on('error', (err) => {
      // A whole reply and then a reset (the server closed while we were still sending): use the reply.
      if (protocol.complete(soFar())) finish(undefined)
      else if (connected && ['EPIPE', 'ECONNRESET'].includes((err as NodeJS.ErrnoException).code ?? ''))
        // The server gave up on the request (clamd over its StreamMaxLength answers and closes);
        // its reply may be lost in the reset.
        finish(fail('closed the connection while the request was still being sent (a size limit?)', err))
      else finish(fail(connected ? 'connection failed' : 'cannot connect', err))
    })
    const onClose = (): void => {
      if (soFar().length === 0) finish(fail('connection closed without a reply'))
      else finish(undefined)
    }
    socket.on('end', onClose)
    socket.on('close', onClose)
    socket.once('connect', () => {
      connected = true
      clearTimeout(connecting)
      // Write errors surface as 'error' on the socket, handled above.
      void writeAll(socket, request, protocol.halfClose === true).catch(() => undefined)
    })
  })
}
