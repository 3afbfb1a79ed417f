// A small SMTP/LMTP client of our own rather than nodemailer's SMTPConnection, because that
// class cannot report what a delivery agent needs (checked against nodemailer 10.6):
//  - under LMTP it hands back only the last recipient's post-DATA reply, so every other
//    delivered recipient's "250 2.1.5 ..." text is lost;
//  - when a transaction fails after RCPT (DATA refused, end-of-data 4xx/5xx, lost connection)
//    its error no longer carries the RCPT refusals, so a recipient refused with
//    "550 5.1.1 user unknown" would be reported with the DATA reply and retried instead of
//    bounced with its own reason.
// This client pipelines (RFC 2920) when the server offers it, else sends one command at a
// time, and says STARTTLS (RFC 3207) as its `tls` level asks.
import net from 'node:net'
import type { Readable } from 'node:stream'
import tls from 'node:tls'
import type { DsnRequest, RecipientDsn } from '../ingress/envelope.js'
import { isNonAscii } from '../mail/ascii.js'
import { encodeXtext } from '../mail/xtext.js'

/** One server reply: the basic code and the full text, lines joined by `\n`, codes included. */
export interface Reply {
  readonly code: number
  readonly text: string
  /** Decided here, not said by the server (a refusal to send what it cannot take). */
  readonly local?: true
}

/**
 * STARTTLS, as Postfix's `smtp_tls_security_level` names it: `none` never; `may` when the
 * server offers it, in clear text when it does not, refuses it or fails the handshake;
 * `encrypt` always, or no delivery. The certificate is not verified at either level: TLS
 * keeps the mail from eavesdroppers, and a check of the peer's name needs DNSSEC (DANE) or a
 * list of trusted names per destination, which mail to arbitrary MX hosts does not have.
 */
export type TlsLevel = 'none' | 'may' | 'encrypt'

/** Where to connect and how patiently. */
export interface ClientOptions {
  readonly host: string
  readonly port: number
  readonly lmtp: boolean
  /** Our EHLO/LHLO name. */
  readonly name: string
  /** TCP connect plus the server greeting. */
  readonly connectTimeoutMs: number
  /** Inactivity while a command or the message body is in flight. */
  readonly socketTimeoutMs: number
  /** STARTTLS (default `none`). */
  readonly tls?: TlsLevel
  /**
   * The wait for the reply to the end of the message (default 10 min, RFC 5321 4.5.3.2.6 and
   * Postfix's `smtp_data_done_timeout`): a server may scan the message first, and giving up
   * before it answers sends the message again later, when it may well have taken it.
   */
  readonly dataDoneTimeoutMs?: number
}

/** One message to send; addresses must pass {@link isSafeAddress}. */
export interface Transaction {
  readonly mailFrom: string
  readonly rcptTo: readonly string[]
  readonly message: Buffer | (() => Readable)
  readonly size: number
  readonly smtpUtf8?: boolean
  readonly eightBit?: boolean
  /**
   * DSN parameters, passed on when the server offers DSN (RFC 3461): RET and ENVID on MAIL
   * FROM, NOTIFY and ORCPT per recipient (aligned with `rcptTo`).
   */
  readonly dsn?: Pick<DsnRequest, 'ret' | 'envid'> & {
    readonly recipients: readonly (RecipientDsn | undefined)[]
  }
}

/** How one transaction went. */
export interface TransactionReport {
  /** Per recipient, in order: the reply that settled it (RCPT refusal or post-DATA reply). */
  readonly replies: readonly (Reply | undefined)[]
  /** Why recipients left unsettled were not settled: a MAIL/DATA refusal, or code 0 for a broken session. */
  readonly abort?: Reply
  /** Whether the connection may carry another transaction. */
  readonly reusable: boolean
  /**
   * The session had already carried a transaction and turned out dead (or closing) before it
   * answered this one: nothing of the message reached the server, so send it over a new session.
   */
  readonly stale?: true
}

/** The outcome of {@link SmtpClient.connect}. */
export type Connected =
  | { readonly ok: true; readonly client: SmtpClient }
  | { readonly ok: false; readonly reply: Reply }

/** A session set-up that failed in the TLS handshake, which `may` retries without TLS. */
type Opened = Connected | { readonly ok: false; readonly reply: Reply; readonly handshake: true }

const MAX_LINE_BYTES = 16 * 1024
const MAX_REPLY_LINES = 200
const QUIT_TIMEOUT_MS = 5_000
const DATA_DONE_TIMEOUT_MS = 600_000
/**
 * Messages up to this size go out with BDAT (RFC 3030) when the server offers CHUNKING:
 * pipelined with MAIL and RCPT, so a delivery is one write and one read instead of two each.
 * The octets leave before the recipients are answered, so a larger message waits for them (DATA).
 */
const CHUNKING_MAX_BYTES = 1024 * 1024
const LINE_BREAKING = /[\r\n\0]/

/** `host:port`, with IPv6 literals bracketed. */
export function formatHop(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

/**
 * Whether an address can go into MAIL FROM / RCPT TO without breaking the command line: no CR,
 * LF or NUL, quotes balanced, and angle brackets only inside a quoted local part (RFC 5321
 * 4.1.2 allows them there, and our listener accepts them, so refusing them here would bounce
 * or drop mail that was already acknowledged).
 */
export function isSafeAddress(address: string): boolean {
  if (LINE_BREAKING.test(address)) return false
  let quoted = false
  for (let i = 0; i < address.length; i++) {
    const c = address[i]
    if (c === '\\' && quoted) i++
    else if (c === '"') quoted = !quoted
    else if (!quoted && (c === '<' || c === '>')) return false
  }
  return !quoted
}

/** One SMTP or LMTP session. Remote trouble never rejects: it becomes replies, with code 0 when there was none. */
export class SmtpClient {
  /** Resolves once the socket has closed, for whatever reason. */
  readonly closed: Promise<void>
  /**
   * How the session is protected, for the log: the TLS version and cipher once STARTTLS
   * succeeded (`TLSv1.3 TLS_AES_256_GCM_SHA384`), `none (TLS handshake failed: ...)` when
   * `may` fell back to clear text after a failed handshake, else undefined (clear text).
   */
  tls: string | undefined
  /** The TCP socket, and after STARTTLS the TLS socket over it. */
  private socket: net.Socket
  private onClose: () => void = () => {}
  private readonly hop: string
  private readonly extensions = new Set<string>()
  private readonly inbox: Reply[] = []
  private waiter: { resolve: (reply: Reply) => void; reject: (err: Error) => void } | undefined
  private unblock: ((err: Error) => void) | undefined
  private lines: string[] = []
  private partial: Buffer = Buffer.alloc(0)
  private failure: Error | undefined
  private connected = false
  private busy = true
  /** A transaction has run on this session (so it may have died while idle). */
  private used = false
  /** The server may hold a transaction of ours (one did not reach its end of data): RSET first. */
  private dirty = false
  /**
   * No further transaction here: the server said 421 (it is closing the session, whatever
   * command that answered), or it may be out of step with us.
   */
  private spent = false
  /** The TLS handshake is under way (its failure is not the server refusing to talk). */
  private handshaking = false
  /** The reply awaited answers STARTTLS: once it is complete, the rest of the input is dropped. */
  private lastBeforeTls = false
  /** Input is dropped: it came behind a 220 to STARTTLS, where only the handshake may follow. */
  private dropInput = false
  private stage = 'receiving the initial server greeting'

  private constructor(private readonly options: ClientOptions) {
    this.hop = formatHop(options.host, options.port)
    this.socket = net.connect({ host: options.host, port: options.port })
    this.closed = new Promise((resolve) => {
      this.onClose = resolve
    })
    this.socket.setNoDelay(true)
    this.socket.on('connect', () => {
      this.connected = true
    })
    this.listen(this.socket)
  }

  /**
   * Connect, read the greeting, say EHLO (LHLO for LMTP; HELO if EHLO is refused) and, as
   * `options.tls` asks, STARTTLS and EHLO again. Under `may`, a failed handshake leaves that
   * session and sets up a new one in clear text (the mail still goes, as when TLS is not offered).
   */
  static async connect(options: ClientOptions): Promise<Connected> {
    const opened = await SmtpClient.open(options)
    if (!opened.ok && 'handshake' in opened && options.tls === 'may') {
      const plain = await SmtpClient.open({ ...options, tls: 'none' })
      if (plain.ok) plain.client.tls = `none (TLS handshake failed: ${opened.reply.text})`
      return plain
    }
    return opened.ok ? opened : { ok: false, reply: opened.reply }
  }

  private static async open(options: ClientOptions): Promise<Opened> {
    const client = new SmtpClient(options)
    const timer = setTimeout(() => client.fail(client.broken('timeout')), options.connectTimeoutMs)
    try {
      const greeting = await client.readReply()
      clearTimeout(timer)
      let refusal = greeting.code === 220 ? await client.hello() : greeting
      if (refusal === undefined && (options.tls ?? 'none') !== 'none')
        refusal = await client.startTls(options.tls === 'encrypt')
      if (refusal === undefined) {
        client.idle()
        return { ok: true, client }
      }
      await client.quit()
      return { ok: false, reply: refusal }
    } catch (err) {
      clearTimeout(timer)
      const reply = { code: 0, text: client.fail(err as Error).message }
      return client.handshaking ? { ok: false, reply, handshake: true } : { ok: false, reply }
    }
  }

  /** Send one message. Resolves with each recipient's reply; rejects only for unsafe addresses. */
  async transaction(tx: Transaction): Promise<TransactionReport> {
    if (!isSafeAddress(tx.mailFrom) || !tx.rcptTo.every(isSafeAddress)) {
      throw new TypeError('addresses must not contain CR, LF, NUL, or angle brackets outside quotes')
    }
    this.begin()
    const replies: (Reply | undefined)[] = tx.rcptTo.map(() => undefined)
    // Until a reused session answers, nothing tells it from one the server dropped while idle.
    let probing = this.used
    this.used = true
    try {
      if (this.failure) throw this.failure
      // RFC 6531 3.4: a UTF-8 address must not go to a server that does not offer SMTPUTF8
      // (an ASCII local part goes, its domain in A-labels: routing wrote it so).
      if (tx.smtpUtf8 && !this.extensions.has('SMTPUTF8') && [tx.mailFrom, ...tx.rcptTo].some(isNonAscii))
        return this.report(replies, {
          code: 550,
          text: `550 5.6.7 SMTPUTF8 is required, but was not offered by host ${this.hop}`,
          local: true,
        })
      const pipelining = this.extensions.has('PIPELINING')
      const mailLine = `MAIL FROM:<${tx.mailFrom}>${this.mailParams(tx)}`
      const rcptLines = tx.rcptTo.map((rcpt, i) => `RCPT TO:<${rcpt}>${this.rcptParams(tx, i)}`)
      const reset = this.dirty
      this.dirty = true
      const chunk =
        pipelining &&
        this.extensions.has('CHUNKING') &&
        Buffer.isBuffer(tx.message) &&
        tx.message.length <= CHUNKING_MAX_BYTES
          ? tx.message
          : undefined
      const opening = [...(reset ? ['RSET'] : []), mailLine, ...rcptLines]
      // RFC 2920: the whole group, up to DATA (or the BDAT LAST chunk), in one write; the replies come back in order.
      if (chunk) this.sendChunk(opening, chunk)
      else if (pipelining) this.send([...opening, 'DATA'])
      const ask = (line: string, stage: string): Promise<Reply> => {
        this.stage = stage
        if (!pipelining) this.send([line])
        return this.readReply()
      }
      if (reset) {
        const rset = await ask('RSET', 'sending RSET')
        if (!positive(rset)) throw new Error(`RSET refused by ${this.hop}: ${printable(rset.text)}`)
      }
      const mail = await ask(mailLine, 'sending MAIL FROM')
      // A 421 to a reused session is most likely the server ending it for idleness just now.
      if (probing && mail.code === 421) throw new Error(`${this.hop} is closing the session`)
      probing = false
      if (!positive(mail) && !pipelining) return this.report(replies, mail)
      const accepted: number[] = []
      for (const [i, line] of rcptLines.entries()) {
        const reply = await ask(line, 'sending RCPT TO')
        // Pipelined RCPTs after a refused MAIL were refused for that alone: MAIL's reply stands.
        if (!positive(mail)) continue
        if (positive(reply)) accepted.push(i)
        // RFC 5321 4.5.3.1.10: a 552 to RCPT is "too many recipients" from RFC 821's days, to be
        // taken as the 452 it means, so the recipient is retried rather than bounced.
        else replies[i] = reply.code === 552 ? { code: 452, text: reply.text } : reply
      }
      const abort = positive(mail) ? undefined : mail
      if (chunk) return await this.chunkReplies(replies, accepted, abort)
      if (accepted.length === 0 && !pipelining) return this.report(replies)
      const data = await ask('DATA', 'sending DATA')
      if (accepted.length === 0) {
        // With nobody to deliver to, DATA's refusal concerns no one. A server may accept it all
        // the same; RFC 2920 3.1: end that (empty) message with a lone dot.
        if (data.code === 354) await this.endEmptyMessage()
        return this.report(replies, abort)
      }
      if (data.code >= 400) return this.report(replies, data)
      // Only 354 lets the body go; a stray 2xx must not pass for the message being taken.
      if (data.code !== 354)
        throw new Error(`unexpected reply to DATA from ${this.hop}: ${printable(data.text)}`)
      await this.writeBody(tx.message)
      this.stage = 'waiting for the end of data reply'
      return await this.messageReplies(replies, accepted, 'DATA')
    } catch (err) {
      // The session may be mid-DATA: only closing it keeps a truncated message from being delivered.
      const failure = this.fail(err as Error)
      // A server may answer early (e.g. 552 too big) and hang up while the body is still going out.
      // Only a refusal is such an answer: a 2xx waiting there answers a pipelined command (MAIL
      // after a refused RSET) and must not pass for the message being taken.
      const early = this.inbox.shift()
      const abort = early && early.code >= 400 ? early : { code: 0, text: failure.message }
      return probing ? { replies, abort, reusable: false, stale: true } : { replies, abort, reusable: false }
    } finally {
      this.idle()
    }
  }

  /** Say QUIT and close; resolves once the socket is gone. */
  async quit(): Promise<void> {
    if (!this.failure) {
      this.begin()
      const timer = setTimeout(() => this.socket.destroy(), QUIT_TIMEOUT_MS)
      try {
        await this.command('QUIT', 'sending QUIT')
      } catch {
        // The session is being discarded either way.
      } finally {
        clearTimeout(timer)
      }
    }
    this.socket.destroy()
    await this.closed
  }

  /**
   * RFC 3207: STARTTLS when offered (or, `required`, a refusal when not), then EHLO again over
   * TLS. Undefined when the session may carry mail; throws when the handshake fails.
   */
  private async startTls(required: boolean): Promise<Reply | undefined> {
    if (!this.extensions.has('STARTTLS'))
      return required ? { code: 0, text: `TLS is required, but was not offered by ${this.hop}` } : undefined
    // RFC 3207 6: nothing the server says behind its reply may count after the handshake (a
    // reply slipped in behind the 220 would answer our next command): it is not even read.
    this.lastBeforeTls = true
    const reply = await this.command('STARTTLS', 'sending STARTTLS')
    this.lastBeforeTls = false
    if (reply.code !== 220) {
      this.dropInput = false
      // `may`: a server that cannot start TLS now still takes the mail in clear text; but not
      // one that answers 421: it is closing the session, which failed to set up.
      return required || reply.code === 421 ? reply : undefined
    }
    if (this.failure) throw this.failure
    this.stage = 'performing the TLS handshake'
    this.handshaking = true
    const raw = this.socket
    raw.removeAllListeners('data')
    raw.removeAllListeners('timeout')
    raw.setTimeout(0)
    this.dropInput = false
    const secure = tls.connect({ socket: raw, rejectUnauthorized: false })
    this.socket = secure
    this.listen(secure)
    await new Promise<void>((resolve, reject) => {
      if (this.failure) reject(this.failure)
      secure.once('secureConnect', () => resolve())
      this.unblock = reject
    })
    this.unblock = undefined
    this.handshaking = false
    this.tls = `${secure.getProtocol() ?? 'TLS'} ${secure.getCipher().standardName}`
    this.extensions.clear()
    return this.hello()
  }

  private async hello(): Promise<Reply | undefined> {
    const verb = this.options.lmtp ? 'LHLO' : 'EHLO'
    const name = this.options.name.replace(/[^\x21-\x7e]/g, '')
    let reply = await this.command(`${verb} ${name}`, `sending ${verb}`)
    if (!this.options.lmtp && reply.code >= 500 && reply.code < 600) {
      reply = await this.command(`HELO ${name}`, 'sending HELO')
      return positive(reply) ? undefined : reply
    }
    if (!positive(reply)) return reply
    for (const line of reply.text.split('\n').slice(1)) {
      const keyword = line.slice(4).trim().split(/\s+/)[0]
      if (keyword) this.extensions.add(keyword.toUpperCase())
    }
    return undefined
  }

  private mailParams(tx: Transaction): string {
    let params = ''
    if (this.extensions.has('SIZE') && tx.size > 0) params += ` SIZE=${tx.size}`
    if (tx.eightBit && this.extensions.has('8BITMIME')) params += ' BODY=8BITMIME'
    if (tx.smtpUtf8 && this.extensions.has('SMTPUTF8')) params += ' SMTPUTF8'
    if (tx.dsn && this.extensions.has('DSN')) {
      if (tx.dsn.ret) params += ` RET=${tx.dsn.ret}`
      if (tx.dsn.envid) params += ` ENVID=${encodeXtext(tx.dsn.envid)}`
    }
    return params
  }

  private rcptParams(tx: Transaction, i: number): string {
    const dsn = tx.dsn?.recipients[i]
    if (!dsn || !this.extensions.has('DSN')) return ''
    let params = dsn.notify ? ` NOTIFY=${dsn.notify.join(',')}` : ''
    if (dsn.orcpt) {
      const semi = dsn.orcpt.indexOf(';')
      params += ` ORCPT=${dsn.orcpt.slice(0, semi)};${encodeXtext(dsn.orcpt.slice(semi + 1))}`
    }
    return params
  }

  private report(replies: (Reply | undefined)[], abort?: Reply): TransactionReport {
    const reusable = !this.failure && !this.spent
    return abort ? { replies, abort, reusable } : { replies, reusable }
  }

  /**
   * The replies to a BDAT LAST sent with its message: one for the message (SMTP), one per
   * accepted recipient (LMTP), or, with no recipient accepted, the one refusing the BDAT.
   */
  private async chunkReplies(
    replies: (Reply | undefined)[],
    accepted: readonly number[],
    abort: Reply | undefined,
  ): Promise<TransactionReport> {
    this.stage = 'waiting for the reply to BDAT'
    if (accepted.length === 0) {
      // The server may still hold the transaction (as after a refused DATA): RSET next time.
      await this.readReply()
      return this.report(replies, abort)
    }
    return this.messageReplies(replies, accepted, 'BDAT')
  }

  /**
   * The replies that end a message: one per accepted recipient (LMTP), or one for them all.
   * After DATA's they end the transaction, whatever they say; after a BDAT refused, the server
   * may still hold it (RFC 3030 leaves its state open), so the next transaction starts with RSET.
   */
  private async messageReplies(
    replies: (Reply | undefined)[],
    accepted: readonly number[],
    verb: 'DATA' | 'BDAT',
  ): Promise<TransactionReport> {
    this.socket.setTimeout(this.options.dataDoneTimeoutMs ?? DATA_DONE_TIMEOUT_MS)
    if (this.options.lmtp) {
      for (const i of accepted) replies[i] = await this.readReply()
    } else {
      const final = await this.readReply()
      for (const i of accepted) replies[i] = final
    }
    this.socket.setTimeout(this.options.socketTimeoutMs)
    if (verb === 'DATA' || accepted.every((i) => positive(replies[i] as Reply))) this.dirty = false
    return this.report(replies)
  }

  /** End the data of a DATA accepted without any recipient accepted. */
  private async endEmptyMessage(): Promise<void> {
    this.stage = 'ending an empty message'
    this.send(['.'])
    // SMTP answers the dot once. LMTP answers once per accepted recipient, here never; but a
    // server that took this DATA is not to be trusted to agree, so the session is not reused.
    if (this.options.lmtp) this.spent = true
    else await this.readReply()
  }

  private async writeBody(message: Buffer | (() => Readable)): Promise<void> {
    this.stage = 'sending message body'
    // A message already in memory goes out in one write, terminator included.
    if (Buffer.isBuffer(message)) {
      this.socket.write(wireForm('DATA', message))
      return
    }
    const stuffer = new WireForm('DATA')
    try {
      for await (const chunk of message()) {
        if (this.failure) throw this.failure
        const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string)
        if (!this.socket.write(stuffer.push(bytes))) await this.drained()
      }
    } catch (err) {
      throw this.failure ?? new Error(`error reading the message: ${(err as Error).message}`)
    }
    if (this.failure) throw this.failure
    this.socket.write(stuffer.end())
  }

  private drained(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure)
    return new Promise((resolve, reject) => {
      const onDrain = () => {
        this.unblock = undefined
        resolve()
      }
      this.socket.once('drain', onDrain)
      this.unblock = (err) => {
        this.socket.off('drain', onDrain)
        reject(err)
      }
    })
  }

  private command(line: string, stage: string): Promise<Reply> {
    this.stage = stage
    this.send([line])
    return this.readReply()
  }

  /** Write command lines, all in one write. */
  private send(lines: readonly string[]): void {
    if (!this.failure) this.socket.write(`${lines.join('\r\n')}\r\n`)
  }

  /** `lines`, then `BDAT <n> LAST` and the message (CRLF line ends, no dot-stuffing), in one write. */
  private sendChunk(lines: readonly string[], message: Buffer): void {
    if (this.failure) return
    this.stage = 'sending BDAT'
    const chunk = wireForm('BDAT', message)
    this.socket.cork()
    this.send([...lines, `BDAT ${chunk.length} LAST`])
    this.socket.write(chunk)
    this.socket.uncork()
  }

  private readReply(): Promise<Reply> {
    const queued = this.inbox.shift()
    if (queued) return Promise.resolve(queued)
    if (this.failure) return Promise.reject(this.failure)
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject }
    })
  }

  private onData(chunk: Buffer): void {
    if (this.dropInput) return
    const data = this.partial.length > 0 ? Buffer.concat([this.partial, chunk]) : chunk
    let start = 0
    for (let lf = data.indexOf(0x0a); lf !== -1 && !this.failure; lf = data.indexOf(0x0a, start)) {
      const end = lf > start && data[lf - 1] === 0x0d ? lf - 1 : lf
      this.onLine(data.toString('utf8', start, end))
      start = lf + 1
      if (this.dropInput) {
        this.partial = Buffer.alloc(0)
        return
      }
    }
    this.partial = data.subarray(start)
    if (this.partial.length > MAX_LINE_BYTES) this.fail(new Error(`over-long reply line from ${this.hop}`))
  }

  private onLine(line: string): void {
    const match = /^(\d{3})([ -]|$)/.exec(line)
    if (!match) {
      this.fail(new Error(`malformed reply from ${this.hop}: ${printable(line).slice(0, 200)}`))
      return
    }
    this.lines.push(line)
    if (match[2] === '-') {
      if (this.lines.length > MAX_REPLY_LINES) this.fail(new Error(`over-long reply from ${this.hop}`))
      return
    }
    const reply = { code: Number(match[1]), text: this.lines.join('\n') }
    this.lines = []
    if (this.lastBeforeTls) {
      this.lastBeforeTls = false
      this.dropInput = true
    }
    if (reply.code === 421) this.spent = true
    const waiter = this.waiter
    this.waiter = undefined
    if (waiter) waiter.resolve(reply)
    else {
      this.inbox.push(reply)
      // Nothing was asked: a server ending an idle session ("421 idle timeout"). Close it so
      // the stray reply cannot be read as the answer to our next command.
      if (!this.busy) this.socket.destroy()
    }
  }

  private broken(why: string): Error {
    const what = why === 'timeout' ? 'timed out' : why === 'closed' ? 'connection closed' : why
    if (!this.connected) return new Error(`connect to ${this.hop}: ${what}`)
    if (why === 'timeout') return new Error(`conversation with ${this.hop} timed out while ${this.stage}`)
    const suffix = why === 'closed' ? '' : `: ${why}`
    return new Error(`lost connection with ${this.hop} while ${this.stage}${suffix}`)
  }

  /** Break the session for good; returns the error that broke it first. */
  private fail(err: Error): Error {
    if (this.failure) return this.failure
    this.failure = err
    this.socket.destroy()
    const waiter = this.waiter
    this.waiter = undefined
    waiter?.reject(err)
    this.unblock?.(err)
    this.unblock = undefined
    return err
  }

  /** Read replies from `socket`, and break the session on its errors, timeout or close. */
  private listen(socket: net.Socket): void {
    socket.setTimeout(this.options.socketTimeoutMs)
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.on('error', (err: NodeJS.ErrnoException) => this.fail(this.broken(err.code ?? err.message)))
    socket.on('timeout', () => {
      if (this.busy) this.fail(this.broken('timeout'))
    })
    // After STARTTLS the TCP socket is the TLS socket's to close: the session ends with that.
    socket.on('close', () => {
      if (socket !== this.socket) return
      this.onClose()
      this.fail(this.broken('closed'))
    })
  }

  private begin(): void {
    this.busy = true
    this.socket.ref()
  }

  // An idle pooled session must never keep the process alive.
  private idle(): void {
    this.busy = false
    this.socket.unref()
  }
}

function positive(reply: Reply): boolean {
  return reply.code >= 200 && reply.code < 300
}

function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?')
}

const DOT = Buffer.from('.')
const CRLF = Buffer.from('\r\n')
const LF = 0x0a
const CR = 0x0d

/**
 * A whole message in its wire form for `verb` (for DATA, terminator included). A message
 * already in CRLF form goes out with BDAT as it is, without a copy.
 */
function wireForm(verb: 'DATA' | 'BDAT', message: Buffer): Buffer {
  if (verb === 'BDAT' && inWireForm(message)) return message
  const wire = new WireForm(verb)
  return Buffer.concat([wire.push(message), wire.end()])
}

/** Whether every LF of `message` follows a CR and it ends with one (or is empty): nothing for {@link WireForm} to do. */
function inWireForm(message: Buffer): boolean {
  if (message.length === 0) return true
  if (message[message.length - 1] !== LF) return false
  for (let lf = message.indexOf(LF); lf !== -1; lf = message.indexOf(LF, lf + 1)) {
    if (message[lf - 1] !== CR) return false
  }
  return true
}

/**
 * Puts message bytes into their wire form across chunk boundaries: bare LF becomes CRLF and,
 * for DATA, a leading dot is doubled (RFC 5321 4.5.2); {@link WireForm.end} adds a missing final
 * line break and, for DATA, the terminator. BDAT carries the same lines without the dots, so a
 * message goes out alike whichever verb the next hop gets it with.
 */
class WireForm {
  private atLineStart = true
  private previous = -1

  constructor(private readonly verb: 'DATA' | 'BDAT') {}

  /** The wire bytes for the next chunk of the message. */
  push(chunk: Buffer): Buffer {
    const parts: Buffer[] = []
    let pos = 0
    while (pos < chunk.length) {
      if (this.verb === 'DATA' && this.atLineStart && chunk[pos] === DOT[0]) parts.push(DOT)
      const lf = chunk.indexOf(LF, pos)
      if (lf === -1) {
        parts.push(chunk.subarray(pos))
        this.atLineStart = false
        this.previous = chunk[chunk.length - 1] as number
        break
      }
      const crBefore = lf > pos ? chunk[lf - 1] === CR : this.previous === CR
      if (crBefore) parts.push(chunk.subarray(pos, lf + 1))
      else parts.push(chunk.subarray(pos, lf), CRLF)
      pos = lf + 1
      this.atLineStart = true
      this.previous = LF
    }
    return Buffer.concat(parts)
  }

  /** A line break if the message lacked a final one, then (DATA) the end-of-data line. */
  end(): Buffer {
    const lineBreak = this.atLineStart ? '' : '\r\n'
    return Buffer.from(this.verb === 'DATA' ? `${lineBreak}.\r\n` : lineBreak)
  }
}
