import { EventEmitter } from 'node:events'
import type { ClientInfo } from '../ingress/envelope.js'
import { reply, type SmtpReply } from '../ingress/smtp-reply.js'
import { createSmtpServer, type SmtpServer, type Transaction } from '../ingress/smtp-server.js'

/** How a sink behaves. */
export interface SinkOptions {
  readonly host?: string
  /** 0 (the default) picks a free port. */
  readonly port?: number
  readonly lmtp?: boolean
  /** Store each message in `messages` (default true; benchmarks turn it off and listen instead). */
  readonly keep?: boolean
  /** Accept XCLIENT/XFORWARD from any peer (default false). */
  readonly allowForwarding?: boolean
  readonly maxSize?: number
  /** The reply to one RCPT TO; `undefined` accepts it. */
  readonly decide?: (tx: Transaction, rcpt: string) => SmtpReply | undefined
  /**
   * The reply after DATA (under LMTP, one for every accepted recipient, or one per
   * recipient in order); `undefined` accepts with `250 2.0.0 Ok: queued as <n>`.
   */
  readonly onMessageReply?: (tx: Transaction) => SmtpReply | readonly SmtpReply[] | undefined
  /** Hold the reply after DATA this long: a slow next hop. */
  readonly replyDelayMs?: number
}

/** One message the sink accepted (for at least one recipient, under LMTP). */
export interface SinkMessage {
  readonly mailFrom: string
  /** BODY= of MAIL FROM (`8BITMIME`), when given. */
  readonly body?: string
  /** The recipients it was accepted for. */
  readonly rcptTo: readonly string[]
  /** The message bytes (also when the sink does not keep messages: listeners get them). */
  readonly data: Buffer
  readonly size: number
  readonly client: ClientInfo
  readonly receivedAt: number
}

/** A running SMTP (or LMTP) sink. */
export interface Sink {
  readonly host: string
  readonly port: number
  /** Messages accepted so far. */
  readonly received: number
  /** The accepted messages, oldest first (only when `keep`). */
  readonly messages: readonly SinkMessage[]
  on(event: 'message', listener: (message: SinkMessage) => void): this
  off(event: 'message', listener: (message: SinkMessage) => void): this
  /** Resolve once `count` messages have been accepted in all; reject after `timeoutMs`. */
  waitFor(count: number, timeoutMs?: number): Promise<void>
  close(): Promise<void>
}

/**
 * Start an SMTP sink on our own server: the programmable next hop of tests and benchmarks
 * (say 451 for a while, or 550 to one of two recipients).
 */
export async function startSink(options: SinkOptions = {}): Promise<Sink> {
  const sink = new SinkImpl(options)
  await sink.start()
  return sink
}

class SinkImpl extends EventEmitter implements Sink {
  host = ''
  port = 0
  received = 0
  readonly messages: SinkMessage[] = []
  private readonly server: SmtpServer

  constructor(private readonly options: SinkOptions) {
    super()
    const { decide, onMessageReply } = options
    const allowForwarding = options.allowForwarding ?? false
    const lmtp = options.lmtp ?? false
    const keep = options.keep ?? true
    this.server = createSmtpServer({
      hostname: 'sink.invalid',
      lmtp,
      maxSize: options.maxSize ?? 100 * 1024 * 1024,
      allowForwarding: () => allowForwarding,
      ...(decide ? { onRecipient: (rcpt: string, tx: Transaction) => decide(tx, rcpt) } : {}),
      onMessage: async (tx, data) => {
        const chunks: Buffer[] = []
        let size = 0
        for await (const chunk of data as AsyncIterable<Buffer>) {
          size += chunk.length
          chunks.push(chunk)
        }
        if (options.replyDelayMs) await new Promise((resolve) => setTimeout(resolve, options.replyDelayMs))
        const replies = onMessageReply?.(tx) ?? reply(250, '2.0.0', `Ok: queued as ${this.received + 1}`)
        const accepted = lmtp
          ? tx.rcptTo.filter((_, i) => isPositive(pick(replies, i)))
          : isPositive(pick(replies, 0))
            ? tx.rcptTo
            : []
        if (accepted.length > 0) {
          this.record(keep, {
            mailFrom: tx.mailFrom,
            ...(tx.body === undefined ? {} : { body: tx.body }),
            rcptTo: accepted,
            data: Buffer.concat(chunks, size),
            size,
            client: tx.client,
            receivedAt: Date.now(),
          })
        }
        return replies
      },
    })
  }

  async start(): Promise<void> {
    const bound = await this.server.listen(this.options.host ?? '127.0.0.1', this.options.port ?? 0)
    this.host = bound.host
    this.port = bound.port
  }

  waitFor(count: number, timeoutMs = 10_000): Promise<void> {
    if (this.received >= count) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const onMessage = (): void => {
        if (this.received < count) return
        clearTimeout(timer)
        this.off('message', onMessage)
        resolve()
      }
      const timer = setTimeout(() => {
        this.off('message', onMessage)
        reject(new Error(`sink: ${this.received} of ${count} messages after ${timeoutMs} ms`))
      }, timeoutMs)
      this.on('message', onMessage)
    })
  }

  close(): Promise<void> {
    return this.server.close()
  }

  private record(keep: boolean, message: SinkMessage): void {
    this.received++
    if (keep) this.messages.push(message)
    this.emit('message', message)
  }
}

function pick(replies: SmtpReply | readonly SmtpReply[], index: number): SmtpReply | undefined {
  return 'code' in replies ? replies : (replies[index] ?? replies[replies.length - 1])
}

function isPositive(r: SmtpReply | undefined): boolean {
  return r !== undefined && r.code >= 200 && r.code < 300
}
