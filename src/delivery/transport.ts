import { Semaphore, type WaitLimit } from './limit.js'
import {
  formatHop,
  isSafeAddress,
  type Reply,
  SmtpClient,
  type TlsLevel,
  type Transaction,
} from './smtp-client.js'

/** Where a message goes next: an SMTP (or LMTP) server. */
export interface NextHop {
  readonly host: string
  readonly port: number
  readonly lmtp?: boolean
  /** STARTTLS (default `none`). */
  readonly tls?: TlsLevel
}

/** What became of one recipient at one hop. */
export type RecipientStatus = 'delivered' | 'deferred' | 'failed'

/** One recipient's outcome, with the remote reply kept verbatim for DSNs and logs. */
export interface RecipientResult {
  readonly recipient: string
  readonly status: RecipientStatus
  /** The reply code; 0 when there was no reply (connection failure, timeout, local refusal). */
  readonly code: number
  /** The remote reply in full (`250 2.0.0 Ok: queued as 4Xyz`, lines joined by `\n`), or what went wrong. */
  readonly reply: string
  /**
   * The host that gave the reply, as it was named (a DSN's `Remote-MTA`); absent when the
   * answer was decided here (a routing refusal, a mail loop) or no host answered.
   */
  readonly remoteMta?: string
  /** The address the sender gave, when routing rewrote or expanded it (a DSN's `Original-Recipient`). */
  readonly originalRecipient?: string
  /** The reply was decided here, not given by the hop (a DSN then names no `Remote-MTA`). */
  readonly local?: true
}

/** One message for the next hop: the same shape the SMTP client sends. */
export type SendRequest = Transaction

/** Per-recipient results of one send. */
export interface SendResult {
  /** `host:port` */
  readonly hop: string
  readonly recipients: readonly RecipientResult[]
  readonly durationMs: number
  /**
   * No session could be set up (connection refused or lost, timeout, a greeting or EHLO that
   * was not 2xx): nothing about the message was said, so another host may be tried. Every
   * recipient is then `deferred` with that reply.
   */
  readonly unreachable?: true
  /**
   * Every session to the hop stayed busy for `leaseWaitMs` while other mail waited: nothing
   * was said to the hop, which is neither failing nor to be skipped for another host. Every
   * recipient is then `deferred` with a `4.4.5` reply of ours (code 0).
   */
  readonly busy?: true
  /** The TLS version and cipher of the session that carried the message; absent: clear text. */
  readonly tls?: string
}

/** Options of {@link SmtpTransport}. */
export interface TransportOptions {
  readonly hop: NextHop
  /** Our EHLO name. */
  readonly hostname: string
  readonly maxConnections: number
  /** Retire a connection after this many messages (default 100). */
  readonly maxMessagesPerConnection?: number
  /** TCP connect plus greeting (default 30 s). */
  readonly connectTimeoutMs?: number
  /** Inactivity while a command or the body is in flight (default 300 s, as Postfix's smtp_*_timeout). */
  readonly socketTimeoutMs?: number
  /** Close a connection idle this long (default 5 s). */
  readonly idleTimeoutMs?: number
  /** A cap shared with other transports: sessions in flight over all destinations. */
  readonly shared?: Semaphore
  /**
   * How long a send waits for one of this hop's `maxConnections` sessions before it gives up
   * with a 4xx, if `othersWaiting` says other mail could use its place (default, or 0: no
   * limit). So a hop that answers slowly cannot hold the whole output queue waiting for it.
   */
  readonly leaseWaitMs?: number
  /** Whether other mail waits for a place in the delivery stage (default: always). */
  readonly othersWaiting?: () => boolean
}

/** How a send's attempt went before any answer from the hop. */
interface Attempt {
  /** No session could be set up. */
  failed: boolean
  /** No session came free in time. */
  busy: boolean
  /** How the session that carried the message was protected ({@link SmtpClient.tls}). */
  tls?: string
}

interface Pooled {
  readonly client: SmtpClient
  sent: number
  idleTimer?: NodeJS.Timeout
}

/**
 * A pool of SMTP/LMTP connections to one next hop. {@link SmtpTransport.send} reports each
 * recipient's fate and never rejects for remote trouble; callers beyond `maxConnections`
 * wait in FIFO order, for at most `leaseWaitMs` while other mail waits.
 */
export class SmtpTransport {
  private readonly hop: string
  private readonly maxConnections: number
  private readonly maxMessages: number
  private readonly connectTimeoutMs: number
  private readonly socketTimeoutMs: number
  private readonly idleTimeoutMs: number
  private readonly idle: Pooled[] = []
  private readonly sessions: Semaphore
  private readonly waitLimit: WaitLimit | undefined
  private readonly inFlight = new Set<Promise<unknown>>()
  private readonly quitting = new Set<Promise<void>>()
  private closed = false
  private lastUsed = Date.now()

  constructor(private readonly opts: TransportOptions) {
    if (!(opts.maxConnections >= 1)) throw new RangeError('maxConnections must be at least 1')
    this.hop = formatHop(opts.hop.host, opts.hop.port)
    this.maxConnections = opts.maxConnections
    this.sessions = new Semaphore(opts.maxConnections)
    const { leaseWaitMs, othersWaiting } = opts
    this.waitLimit =
      leaseWaitMs && leaseWaitMs > 0 ? { ms: leaseWaitMs, giveUp: othersWaiting ?? (() => true) } : undefined
    this.maxMessages = opts.maxMessagesPerConnection ?? 100
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 30_000
    this.socketTimeoutMs = opts.socketTimeoutMs ?? 300_000
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 5_000
  }

  /** Send one message; resolves with a result for every recipient, in request order. */
  async send(req: SendRequest): Promise<SendResult> {
    const started = performance.now()
    const setup: Attempt = { failed: false, busy: false }
    const run = this.deliver(req, setup).catch((err: unknown) =>
      req.rcptTo.map((rcpt) => noReply(rcpt, 'deferred', `internal error: ${(err as Error).message}`)),
    )
    this.inFlight.add(run)
    try {
      const recipients = await run
      const durationMs = Math.round(performance.now() - started)
      if (setup.failed) return { hop: this.hop, recipients, durationMs, unreachable: true }
      if (setup.busy) return { hop: this.hop, recipients, durationMs, busy: true }
      return setup.tls === undefined
        ? { hop: this.hop, recipients, durationMs }
        : { hop: this.hop, recipients, durationMs, tls: setup.tls }
    } finally {
      this.inFlight.delete(run)
      this.lastUsed = Date.now()
    }
  }

  /** Whether nothing is in flight, waiting or held open: the transport can be dropped. */
  idleSince(): number | undefined {
    const quiet = this.inFlight.size === 0 && this.sessions.inUse === 0 && this.idle.length === 0
    return quiet ? this.lastUsed : undefined
  }

  /** Stop taking sends, let those in flight finish, then QUIT every connection. */
  async close(): Promise<void> {
    this.closed = true
    this.sessions.cancelWaiting()
    await Promise.allSettled([...this.inFlight])
    for (const conn of this.idle.splice(0)) this.retire(conn)
    await Promise.allSettled([...this.quitting])
  }

  private async deliver(req: SendRequest, setup: Attempt): Promise<RecipientResult[]> {
    if (!isSafeAddress(req.mailFrom)) {
      return req.rcptTo.map((rcpt) => noReply(rcpt, 'failed', 'invalid sender address'))
    }
    const kept = req.rcptTo.flatMap((rcpt, i) => (isSafeAddress(rcpt) ? [i] : []))
    // Every recipient safe, as the listener makes sure: the request goes as it is.
    if (kept.length === req.rcptTo.length) return this.transact(req, setup)
    const results: (RecipientResult | undefined)[] = req.rcptTo.map((rcpt) =>
      isSafeAddress(rcpt) ? undefined : noReply(rcpt, 'failed', 'invalid recipient address'),
    )
    if (kept.length === 0) return results as RecipientResult[]
    // The DSN parameters stay with their recipients.
    const { dsn } = req
    const rest: SendRequest = {
      ...req,
      rcptTo: kept.map((i) => req.rcptTo[i] as string),
      ...(dsn ? { dsn: { ...dsn, recipients: kept.map((i) => dsn.recipients[i]) } } : {}),
    }
    fill(results, await this.transact(rest, setup))
    return results as RecipientResult[]
  }

  private async transact(req: SendRequest, setup: Attempt): Promise<RecipientResult[]> {
    const closed = (): RecipientResult[] =>
      req.rcptTo.map((rcpt) => noReply(rcpt, 'deferred', 'transport closed'))
    const waitStart = performance.now()
    if (this.closed || !(await this.sessions.acquire(this.waitLimit))) {
      if (this.closed) return closed()
      setup.busy = true
      const ms = Math.round(performance.now() - waitStart)
      const waited = ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`
      // Ours to say, not the hop's reply: code 0, so no DSN presents it as an SMTP diagnostic.
      const reply = `4.4.5 ${this.hop} busy: waited ${waited} for one of its ${this.maxConnections} sessions`
      return req.rcptTo.map((rcpt) => noReply(rcpt, 'deferred', reply))
    }
    // The global cap is waited for without a limit: when every session of every destination
    // is busy, giving this message's place to another would not get that one a session either.
    const shared = this.opts.shared
    if (shared && !(await shared.acquire())) {
      this.sessions.release()
      return closed()
    }
    try {
      let conn = this.takeIdle()
      let report = await conn?.client.transaction(req)
      if (!conn || !report || report.stale) {
        // An idle session can die unseen; when it turns out dead before answering, nothing of
        // the message reached the server, so it goes over a new session (never stale itself).
        if (conn) this.retire(conn)
        const opened = await this.open()
        if (!('client' in opened)) {
          // Setup trouble, even a 5xx greeting, says the server will not talk now, not that the
          // message is bad: defer (as Postfix does when it skips a 5xx greeting).
          setup.failed = true
          return req.rcptTo.map((rcpt) => ({
            recipient: rcpt,
            status: 'deferred',
            code: opened.code,
            reply: opened.text,
          }))
        }
        conn = opened
        report = await conn.client.transaction(req)
      }
      conn.sent++
      setup.tls = conn.client.tls
      this.checkin(conn, report.reusable)
      return req.rcptTo.map((rcpt, i) => {
        const reply: Reply = report.replies[i] ?? report.abort ?? { code: 0, text: 'no reply' }
        const result = { recipient: rcpt, status: statusOf(reply.code), code: reply.code, reply: reply.text }
        return reply.local ? { ...result, local: true as const } : result
      })
    } finally {
      shared?.release()
      this.sessions.release()
    }
  }

  /** The most recently used idle session, if any. */
  private takeIdle(): Pooled | undefined {
    const conn = this.idle.pop()
    clearTimeout(conn?.idleTimer)
    return conn
  }

  private async open(): Promise<Pooled | Reply> {
    const opened = await SmtpClient.connect({
      host: this.opts.hop.host,
      port: this.opts.hop.port,
      lmtp: this.opts.hop.lmtp ?? false,
      tls: this.opts.hop.tls ?? 'none',
      name: this.opts.hostname,
      connectTimeoutMs: this.connectTimeoutMs,
      socketTimeoutMs: this.socketTimeoutMs,
    })
    if (!opened.ok) return opened.reply
    const conn: Pooled = { client: opened.client, sent: 0 }
    void opened.client.closed.then(() => this.forget(conn))
    return conn
  }

  private checkin(conn: Pooled, reusable: boolean): void {
    if (!reusable || conn.sent >= this.maxMessages || this.closed) {
      this.retire(conn)
      return
    }
    conn.idleTimer = setTimeout(() => {
      this.forget(conn)
      this.retire(conn)
    }, this.idleTimeoutMs)
    conn.idleTimer.unref()
    this.idle.push(conn)
  }

  private forget(conn: Pooled): void {
    clearTimeout(conn.idleTimer)
    const at = this.idle.indexOf(conn)
    if (at !== -1) this.idle.splice(at, 1)
  }

  private retire(conn: Pooled): void {
    clearTimeout(conn.idleTimer)
    const quit = conn.client.quit()
    this.quitting.add(quit)
    void quit.then(() => this.quitting.delete(quit))
  }
}

function statusOf(code: number): RecipientStatus {
  if (code >= 200 && code < 300) return 'delivered'
  if (code >= 500 && code < 600) return 'failed'
  return 'deferred'
}

function noReply(recipient: string, status: RecipientStatus, reply: string): RecipientResult {
  return { recipient, status, code: 0, reply }
}

function fill(results: (RecipientResult | undefined)[], settled: readonly RecipientResult[]): void {
  let next = 0
  for (const [i, result] of results.entries()) if (result === undefined) results[i] = settled[next++]
}
