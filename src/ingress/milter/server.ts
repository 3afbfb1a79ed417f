/**
 * The milter listener: accepts MTA connections on TCP or a unix socket and runs one
 * {@link serveMilterConnection} per connection. A protocol error ends only its own connection.
 */
import { chmod, lstat, rm } from 'node:fs/promises'
import { createConnection, createServer, isIP, type Server, type Socket } from 'node:net'
import os from 'node:os'
import type { Logger } from 'pino'
import { z } from 'zod'
import { duration, positiveDuration } from '../../config/duration.js'
import { normalizeIp } from '../smtp-command.js'
import { DEFAULT_MAX_PACKET } from './codec.js'
import {
  DEFAULT_HEADER,
  DEFAULT_MAX_HEADER_FIELDS,
  DEFAULT_MAX_HEADER_SIZE,
  DEFAULT_SPILL_THRESHOLD,
  type MilterConnection,
  type MilterMessageHandler,
  type MilterRecipientHandler,
  type MilterSessionOptions,
  serveMilterConnection,
} from './session.js'

/** Where a milter listener listens. */
export type MilterAddress =
  | { readonly kind: 'inet'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string }

/**
 * Parse a milter socket address, in Postfix (`inet:127.0.0.1:8891`, `inet:[::1]:8891`,
 * `unix:/path`) or Sendmail/libmilter form (`inet:8891@127.0.0.1`, `inet6:8891@::1`,
 * `local:/path`). `inet6:` wants an IPv6 literal. The host is required: a filter listens
 * where it is told, never on every interface by default. Returns `undefined` when invalid.
 */
export function parseMilterListen(text: string): MilterAddress | undefined {
  const colon = text.indexOf(':')
  if (colon === -1) return undefined
  const scheme = text.slice(0, colon).toLowerCase()
  const rest = text.slice(colon + 1).trim()
  if (scheme === 'unix' || scheme === 'local') {
    return rest !== '' && !rest.includes('\0') ? { kind: 'unix', path: rest } : undefined
  }
  if (scheme !== 'inet' && scheme !== 'inet6') return undefined
  let host: string | undefined
  let portText: string | undefined
  const at = /^(\d{1,5})@(.+)$/.exec(rest)
  if (at) {
    portText = at[1]
    host = (at[2] as string).replace(/^\[(.*)\]$/, '$1')
  } else {
    const hp = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(rest)
    if (!hp) return undefined
    host = hp[1] ?? hp[2]
    portText = hp[3]
  }
  const port = Number(portText)
  if (host === undefined || !Number.isInteger(port) || port > 65_535) return undefined
  if (scheme === 'inet6' && isIP(host) !== 6) return undefined
  if (isIP(host) === 0 && !/^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(host)) return undefined
  return { kind: 'inet', host, port }
}

/** Render an address the way Postfix's `smtpd_milters` writes it. */
export function formatMilterAddress(address: MilterAddress): string {
  if (address.kind === 'unix') return `unix:${address.path}`
  return isIP(address.host) === 6
    ? `inet:[${address.host}]:${address.port}`
    : `inet:${address.host}:${address.port}`
}

/** Zod type for one listen address. */
export const milterListen = z.string().transform((value, ctx) => {
  const parsed = parseMilterListen(value)
  if (!parsed) {
    ctx.addIssue({
      code: 'custom',
      message: `not a milter address: ${JSON.stringify(value)} (use inet:HOST:PORT, inet6:[ADDR]:PORT or unix:/path)`,
    })
    return z.NEVER
  }
  return parsed
})

/**
 * `milter:` — the pre-queue milter listener. Wire it into the config as
 * `milter: milterSection.optional()` (absent: no milter listener).
 */
export const milterSection = z
  .object({
    /** One address or a list: `inet:127.0.0.1:8891`, `inet6:[::1]:8891`, `unix:/path`. */
    listen: z
      .preprocess((value) => (typeof value === 'string' ? [value] : value), z.array(milterListen).min(1))
      .prefault('inet:127.0.0.1:8891'),
    /** Budget from end of message to our answer; keep it under the MTA's `milter_content_timeout` (300s). */
    timeout: positiveDuration.prefault('60s'),
    /** The answer when the chain overruns `timeout` or fails: `tempfail` (451 4.7.1) or `accept` plus a header. */
    defaultAction: z.enum(['tempfail', 'accept']).default('tempfail'),
    /** The header the `accept` default adds. */
    defaultHeader: z
      .object({
        name: z.string().regex(/^[\x21-\x39\x3b-\x7e]+$/, 'not a header field name'),
        value: z.string().regex(/^[^\r\n\0]*$/, 'one line'),
      })
      .strict()
      .prefault(DEFAULT_HEADER),
    /** Message bytes held in memory before the rest goes to a temp file. */
    spillThreshold: z.number().int().min(0).default(DEFAULT_SPILL_THRESHOLD),
    /**
     * Header bytes, and header fields, of one message past which it is refused at its end with
     * 552 5.3.4: the header is held in memory as fields, not spilled like the body.
     */
    maxHeaderSize: z.number().int().min(1024).default(DEFAULT_MAX_HEADER_SIZE),
    maxHeaderFields: z.number().int().min(100).default(DEFAULT_MAX_HEADER_FIELDS),
    /** Directory for spill files (default: the system temp dir). */
    tmpDir: z.string().min(1).optional(),
    /** Send SMFIR_PROGRESS this often while the chain works (0: never). */
    progressInterval: duration.prefault('10s'),
    /** Budget for a recipient check, when one is configured. */
    recipientTimeout: positiveDuration.prefault('10s'),
    /** Largest packet accepted; must hold a 64 KiB body chunk (see docs/milter.md). */
    maxPacket: z.number().int().min(65_536).default(DEFAULT_MAX_PACKET),
    /** Concurrent MTA connections (Postfix opens one per SMTP session). */
    maxConnections: z.number().int().positive().default(1000),
    /** Close a connection the MTA has said nothing on for this long. */
    idleTimeout: positiveDuration.prefault('30m'),
    /** Permissions of a unix socket (octal), so the MTA's user can connect. */
    socketMode: z
      .string()
      .regex(/^0?[0-7]{3}$/, 'octal mode like 660')
      .default('660')
      .transform((mode) => Number.parseInt(mode, 8)),
  })
  .strict()

/** The validated `milter:` section. */
export type MilterConfig = z.output<typeof milterSection>

/** What {@link createMilterServer} needs. */
export interface MilterServerOptions extends Omit<MilterSessionOptions, 'peer' | 'tmpDir' | 'log'> {
  /** One address or several (see {@link parseMilterListen}); port 0 picks a free port. */
  readonly listen: string | readonly string[]
  /** Directory for spill files (default: the system temp dir). */
  readonly tmpDir?: string
  readonly maxConnections?: number
  /** Idle connection timeout in ms (default 30 min). */
  readonly idleTimeoutMs?: number
  /** How long close() lets answers in progress finish, in ms (default 10 000). */
  readonly closeTimeoutMs?: number
  /** Mode of unix sockets (default 0o660). */
  readonly socketMode?: number
  readonly log?: Logger
}

/** A running milter listener. */
export interface MilterServer {
  /** Bind every address; resolves with the bound ones (real ports for port 0). */
  listen(): Promise<readonly MilterAddress[]>
  /**
   * Stop accepting, let answers in progress finish (bounded by `closeTimeoutMs`), close every
   * connection and remove the unix sockets we created.
   */
  close(): Promise<void>
  /** Open MTA connections. */
  readonly connections: number
}

/** Server options from the validated config section. */
export function milterServerOptions(
  config: MilterConfig,
  deps: {
    readonly onMessage: MilterMessageHandler
    readonly onRecipient?: MilterRecipientHandler
    readonly log?: Logger
  },
): MilterServerOptions {
  return {
    listen: config.listen.map(formatMilterAddress),
    onMessage: deps.onMessage,
    ...(deps.onRecipient === undefined ? {} : { onRecipient: deps.onRecipient }),
    timeoutMs: config.timeout,
    defaultAction: config.defaultAction,
    defaultHeader: config.defaultHeader,
    spillThreshold: config.spillThreshold,
    maxHeaderSize: config.maxHeaderSize,
    maxHeaderFields: config.maxHeaderFields,
    progressIntervalMs: config.progressInterval,
    recipientTimeoutMs: config.recipientTimeout,
    maxPacket: config.maxPacket,
    maxConnections: config.maxConnections,
    idleTimeoutMs: config.idleTimeout,
    socketMode: config.socketMode,
    ...(config.tmpDir === undefined ? {} : { tmpDir: config.tmpDir }),
    ...(deps.log === undefined ? {} : { log: deps.log }),
  }
}

/** Create a milter server; it accepts nothing until {@link MilterServer.listen}. */
export function createMilterServer(options: MilterServerOptions): MilterServer {
  const addresses = (typeof options.listen === 'string' ? [options.listen] : options.listen).map((text) => {
    const parsed = parseMilterListen(text)
    if (!parsed) throw new TypeError(`not a milter address: ${JSON.stringify(text)}`)
    return parsed
  })
  const log = options.log?.child({ component: 'milter' })
  const servers: Server[] = []
  const ownedSockets: string[] = []
  const connections = new Set<MilterConnection>()
  let sequence = 0
  let closing: Promise<void> | undefined

  const onConnection = (socket: Socket): void => {
    if (closing) {
      socket.destroy()
      return
    }
    const id = ++sequence
    const remote = socket.remoteAddress
    const peer = { address: remote ? normalizeIp(remote) : '' }
    const connLog = log?.child({ conn: id, peer: peer.address || 'unix' })
    socket.setNoDelay(true)
    socket.setTimeout(options.idleTimeoutMs ?? 1_800_000)
    socket.on('timeout', () => {
      // Silence while we are the ones working (a slow chain) is not the MTA's idleness. An
      // answer the MTA does not read is: that write would hold the connection for good.
      if (connection.session.waitingForHandler) return
      connLog?.info('milter idle timeout')
      socket.destroy()
    })
    const connection = serveMilterConnection(socket, {
      ...options,
      tmpDir: options.tmpDir ?? os.tmpdir(),
      peer,
      ...(connLog ? { log: connLog } : {}),
    })
    connections.add(connection)
    connLog?.debug('milter connect')
    void connection.done.then(() => {
      connections.delete(connection)
      connLog?.debug('milter disconnect')
    })
  }

  const listenOne = async (address: MilterAddress): Promise<MilterAddress> => {
    const server = createServer({ noDelay: true }, onConnection)
    if (options.maxConnections !== undefined) server.maxConnections = options.maxConnections
    server.on('error', (err) => log?.error({ err: err.message }, 'milter listener error'))
    if (address.kind === 'unix') await clearStaleSocket(address.path)
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      const done = (): void => {
        server.removeListener('error', reject)
        resolve()
      }
      if (address.kind === 'unix') server.listen(address.path, done)
      else server.listen({ host: address.host, port: address.port, exclusive: true }, done)
    })
    servers.push(server)
    if (address.kind === 'unix') {
      ownedSockets.push(address.path)
      await chmod(address.path, options.socketMode ?? 0o660)
      return address
    }
    const bound = server.address()
    if (bound === null || typeof bound === 'string') return address
    return { kind: 'inet', host: address.host, port: bound.port }
  }

  return {
    async listen() {
      const bound: MilterAddress[] = []
      for (const address of addresses) {
        const result = await listenOne(address)
        bound.push(result)
        log?.info({ listen: formatMilterAddress(result) }, 'milter listening')
      }
      return bound
    },
    close() {
      closing ??= (async () => {
        // server.close() stops accepting now but calls back only once every connection is gone.
        const stopped = servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())))
        const deadline = Date.now() + (options.closeTimeoutMs ?? 10_000)
        while ([...connections].some((c) => c.session.busy) && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 20))
        }
        for (const connection of connections) connection.close()
        await Promise.all([...connections].map((c) => c.done))
        await Promise.all(stopped)
        await Promise.all(ownedSockets.map((path) => rm(path, { force: true })))
      })()
      return closing
    },
    get connections() {
      return connections.size
    },
  }
}

/**
 * Remove a unix socket left by a previous run, but only a socket nobody answers on: a live
 * one means another instance runs, and a non-socket file is not ours to delete.
 */
async function clearStaleSocket(path: string): Promise<void> {
  const stat = await lstat(path).catch(() => undefined)
  if (!stat) return
  if (!stat.isSocket()) throw new Error(`milter listen path exists and is not a socket: ${path}`)
  const live = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path)
    probe.once('connect', () => {
      probe.destroy()
      resolve(true)
    })
    probe.once('error', () => resolve(false))
  })
  if (live) throw new Error(`another process listens on ${path}`)
  await rm(path, { force: true })
}
