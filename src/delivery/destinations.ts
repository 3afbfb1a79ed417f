/**
 * The output queue's connections: one pooled {@link SmtpTransport} per destination
 * (`host:port`, LMTP apart), so sessions are reused per destination; a per-destination cap and
 * one global cap on sessions in flight; and a per-destination backoff: a destination that
 * failed `backoffAfter` connections in a row is left alone for a while, doubling while it keeps
 * failing, so a dead host costs one connect timeout per backoff period instead of one per message.
 */
import { Semaphore } from './limit.js'
import { formatHop, type TlsLevel } from './smtp-client.js'
import { SmtpTransport } from './transport.js'

export interface DestinationsOptions {
  /** Our EHLO name. */
  readonly hostname: string
  /** Sessions in flight at once, all destinations together. */
  readonly maxConnections: number
  /** Sessions in flight at once to one destination. */
  readonly maxPerDestination: number
  /**
   * How long a message waits for a session to one destination before it is deferred, when
   * `othersWaiting` says other mail could use its place (0 or absent: no limit).
   */
  readonly destinationWaitMs?: number
  /** Whether other mail waits for a place in the delivery stage. */
  readonly othersWaiting?: () => boolean
  readonly maxMessagesPerConnection: number
  readonly connectTimeoutMs: number
  /** Failed connections in a row before a destination is backed off. */
  readonly backoffAfter: number
  readonly backoffMinMs: number
  readonly backoffMaxMs: number
  /** Drop a destination's transport unused this long (default 5 min). */
  readonly forgetAfterMs?: number
  readonly now?: () => number
}

interface Health {
  failures: number
  until: number
  /** When the last failure was. */
  last: number
}

/** Per-destination transports, limits and backoff. */
export class Destinations {
  private readonly transports = new Map<string, SmtpTransport>()
  private readonly health = new Map<string, Health>()
  private readonly shared: Semaphore
  private readonly now: () => number
  private readonly sweeper: NodeJS.Timeout
  private closed = false

  constructor(private readonly opts: DestinationsOptions) {
    this.shared = new Semaphore(opts.maxConnections)
    this.now = opts.now ?? Date.now
    const forget = opts.forgetAfterMs ?? 300_000
    this.sweeper = setInterval(() => this.sweep(forget), Math.min(forget, 60_000))
    this.sweeper.unref()
  }

  /**
   * The key of a destination: `host:port`, with `lmtp:` before it for LMTP and `tls-may:` or
   * `tls-encrypt:` for STARTTLS (a host reached both as relay and as MX host may get two).
   */
  static key(host: string, port: number, lmtp = false, tls: TlsLevel = 'none'): string {
    return `${lmtp ? 'lmtp:' : ''}${tls === 'none' ? '' : `tls-${tls}:`}${formatHop(host, port)}`
  }

  /** The pooled transport of a destination, created on first use. */
  transport(host: string, port: number, lmtp = false, tls: TlsLevel = 'none'): SmtpTransport {
    const key = Destinations.key(host, port, lmtp, tls)
    let transport = this.transports.get(key)
    if (!transport) {
      transport = new SmtpTransport({
        hop: { host, port, lmtp, tls },
        hostname: this.opts.hostname,
        maxConnections: this.opts.maxPerDestination,
        maxMessagesPerConnection: this.opts.maxMessagesPerConnection,
        connectTimeoutMs: this.opts.connectTimeoutMs,
        shared: this.shared,
        ...(this.opts.destinationWaitMs === undefined ? {} : { leaseWaitMs: this.opts.destinationWaitMs }),
        ...(this.opts.othersWaiting === undefined ? {} : { othersWaiting: this.opts.othersWaiting }),
      })
      this.transports.set(key, transport)
    }
    return transport
  }

  /** Until when a destination is backed off (epoch ms), or undefined when it may be tried. */
  backedOff(key: string): number | undefined {
    const health = this.health.get(key)
    return health && health.until > this.now() ? health.until : undefined
  }

  /** Record a connection that could not be set up. Returns the backoff end if it starts or grows now. */
  failed(key: string): number | undefined {
    const health = this.health.get(key) ?? { failures: 0, until: 0, last: 0 }
    health.last = this.now()
    // Sessions that were in flight when the host went away fail together: while a backoff
    // runs they add nothing, so a 2-second restart of the relay costs one backoffMin, not backoffMax.
    if (health.until > health.last) return undefined
    health.failures++
    this.health.set(key, health)
    const over = health.failures - this.opts.backoffAfter
    if (over < 0) return undefined
    const wait = Math.min(this.opts.backoffMaxMs, this.opts.backoffMinMs * 2 ** Math.min(over, 30))
    health.until = this.now() + wait
    return health.until
  }

  /** Record a session that was set up: the destination's failure count starts again. */
  succeeded(key: string): void {
    this.health.delete(key)
  }

  /** Sessions in flight over all destinations, and callers waiting for the global cap. */
  get load(): { readonly inUse: number; readonly queued: number; readonly destinations: number } {
    return { inUse: this.shared.inUse, queued: this.shared.queued, destinations: this.transports.size }
  }

  /** Close every transport (sends in flight finish first). */
  async close(): Promise<void> {
    this.closed = true
    clearInterval(this.sweeper)
    await Promise.allSettled([...this.transports.values()].map((t) => t.close()))
    this.transports.clear()
  }

  private sweep(forgetAfterMs: number): void {
    if (this.closed) return
    const now = Date.now()
    for (const [key, transport] of this.transports) {
      const since = transport.idleSince()
      if (since !== undefined && now - since > forgetAfterMs) {
        this.transports.delete(key)
        void transport.close()
      }
    }
    // A destination that has not failed for a while starts with a clean slate.
    for (const [key, health] of this.health)
      if (this.now() - health.last > forgetAfterMs && health.until <= this.now()) this.health.delete(key)
  }
}
