import { isUtf8 } from 'node:buffer'
import { createServer, type Server, type Socket } from 'node:net'
import { Readable } from 'node:stream'
import { SmtpReplyError } from '../errors.js'
import { isNonAscii } from '../mail/ascii.js'
import { DotDecoder } from './dot-decoder.js'
import type { ClientInfo, DsnRequest, RecipientDsn } from './envelope.js'
import {
  type Attributes,
  formatReply,
  normalizeIp,
  parseAttributes,
  parseEnvid,
  parseNotify,
  parseOrcpt,
  parseParams,
  parsePath,
  parseRet,
} from './smtp-command.js'
import { reply, type SmtpReply } from './smtp-reply.js'

/** The state of one SMTP transaction, handed to the handlers. */
export interface Transaction {
  /** The peer on the socket. */
  readonly peer: ClientInfo
  /** The original client per XFORWARD/XCLIENT, else the peer. */
  readonly client: ClientInfo
  readonly mailFrom: string
  readonly rcptTo: readonly string[]
  readonly body?: string
  readonly smtpUtf8: boolean
  /** SIZE= declared on MAIL FROM, if any. */
  readonly declaredSize?: number
  /** XFORWARD IDENT: the queue ID the MTA in front gave the message. */
  readonly ident?: string
  /** XFORWARD SOURCE: `LOCAL` or `REMOTE` as the MTA in front saw it. */
  readonly source?: string
  /** The DSN parameters of MAIL FROM and of the recipients accepted, when any was given (RFC 3461). */
  readonly dsn?: DsnRequest
}

export interface SmtpServerOptions {
  /** Our host name, used in the greeting and replies. */
  readonly hostname: string
  /** Speak LMTP (LHLO, one reply per accepted recipient after DATA or BDAT LAST) instead of SMTP. */
  readonly lmtp?: boolean
  /** Largest message in bytes (advertised as SIZE, enforced on the real stream). */
  readonly maxSize: number
  /** Recipients per transaction (default 1000, as Postfix). */
  readonly maxRecipients?: number
  /** Socket idle timeout in ms (default 300 000). */
  readonly idleTimeoutMs?: number
  /** How long close() lets transactions in progress finish, in ms (default 10 000). */
  readonly closeTimeoutMs?: number
  /** Decide on a new connection; return a reply to refuse it (sent instead of the greeting). */
  onConnect?(peer: ClientInfo): SmtpReply | undefined
  /** Whether XCLIENT / XFORWARD are accepted (and advertised) for this peer. */
  allowForwarding?(peer: ClientInfo): boolean
  /**
   * Decide on a MAIL FROM (the transaction has no recipients yet); return a reply to refuse
   * it. A promise holds the reply (and the commands pipelined after it) until it settles.
   */
  onMail?(tx: Transaction): SmtpReply | undefined | Promise<SmtpReply | undefined>
  /** Decide on one RCPT TO; return a reply to refuse that recipient. */
  onRecipient?(address: string, tx: Transaction): SmtpReply | undefined | Promise<SmtpReply | undefined>
  /**
   * Take the message. `data` yields its bytes as received: dot-unstuffed after DATA, the
   * chunks as they are after BDAT (RFC 3030 CHUNKING);
   * it errors with a {@link MessageTooBigError} (552 5.3.4) when the message exceeds
   * `maxSize`, and with an error whose `code` is `ECONNRESET`, `ETIMEDOUT` or `ECONNABORTED`
   * when the session ends before the end of data. Consume `data` before settling: whatever
   * is left unread then is discarded. Resolve with the reply to DATA (or BDAT LAST), or under LMTP with one
   * reply per accepted recipient (a single reply is used for all). A rejection becomes the
   * reply of an {@link SmtpReplyError}, or `451 4.3.0` for anything else.
   */
  onMessage(tx: Transaction, data: Readable): Promise<SmtpReply | readonly SmtpReply[]>
  /** Told about handler failures that became a `451 4.3.0`, and listener errors (for logging). */
  onError?(error: unknown, peer?: ClientInfo): void
}

/** A running SMTP/LMTP listener. */
export interface SmtpServer {
  /** Listen on one more address; port 0 picks a free port. Resolves with the bound address. */
  listen(host: string, port: number): Promise<{ host: string; port: number }>
  /**
   * Stop accepting, let transactions in progress finish (bounded by `closeTimeoutMs`), send
   * `421 4.3.2` to the other sessions, and destroy whatever is left.
   */
  close(): Promise<void>
  /** Open sessions. */
  readonly connections: number
}

/** The error `data` is destroyed with when a message grows past `maxSize`. */
export class MessageTooBigError extends Error {
  readonly responseCode = 552
  readonly enhancedStatus = '5.3.4'

  constructor(readonly maxSize: number) {
    super('Message size exceeds fixed maximum message size')
    this.name = 'MessageTooBigError'
  }
}

/** Create a server; it accepts nothing until {@link SmtpServer.listen}. */
export function createSmtpServer(options: SmtpServerOptions): SmtpServer {
  return new Listener(options)
}

const LF = 0x0a
const CR = 0x0d
const MAX_LINE = 2048
/**
 * Replies gathered before they are written even while commands keep coming: a client that
 * pipelines without reading then fills the socket's buffer, and reading stops (see pump).
 */
const MAX_UNSENT = 16_384
const XCLIENT_ATTRS: ReadonlySet<string> = new Set(['NAME', 'ADDR', 'PROTO', 'HELO'])
const XFORWARD_ATTRS: ReadonlySet<string> = new Set(['NAME', 'ADDR', 'PROTO', 'HELO', 'SOURCE', 'IDENT'])

const TOO_BIG = reply(552, '5.3.4', 'Message size exceeds fixed maximum message size')
const INTERNAL = reply(451, '4.3.0', 'Error: internal error')

const R = {
  tooBig: formatReply(TOO_BIG),
  bdatSyntax: formatReply(reply(501, '5.5.4', 'Syntax: BDAT size [LAST]')),
  dataAfterBdat: formatReply(reply(503, '5.5.1', 'Error: DATA in a BDAT transaction')),
  rcptAfterBdat: formatReply(reply(503, '5.5.1', 'Error: RCPT in a BDAT transaction')),
  ok: formatReply(reply(250, '2.0.0', 'Ok')),
  mailOk: formatReply(reply(250, '2.1.0', 'Ok')),
  rcptOk: formatReply(reply(250, '2.1.5', 'Ok')),
  startData: formatReply(reply(354, undefined, 'End data with <CR><LF>.<CR><LF>')),
  bye: formatReply(reply(221, '2.0.0', 'Bye')),
  vrfy: formatReply(reply(252, '2.5.2', 'Cannot VRFY user, but will accept message and attempt delivery')),
  help: formatReply(reply(214, '2.0.0', 'See RFC 5321')),
  unknown: formatReply(reply(500, '5.5.2', 'Error: command not recognized')),
  lineTooLong: formatReply(reply(500, '5.5.2', 'Error: line too long')),
  needHelo: formatReply(reply(503, '5.5.1', 'Error: send HELO/EHLO first')),
  needLhlo: formatReply(reply(503, '5.5.1', 'Error: send LHLO first')),
  lmtpHello: formatReply(reply(500, '5.5.1', 'Error: this is LMTP, send LHLO')),
  nestedMail: formatReply(reply(503, '5.5.1', 'Error: nested MAIL command')),
  needMail: formatReply(reply(503, '5.5.1', 'Error: need MAIL command')),
  needRcpt: formatReply(reply(503, '5.5.1', 'Error: need RCPT command')),
  noValidRcpt: formatReply(reply(554, '5.5.1', 'Error: no valid recipients')),
  // RFC 2033 4.2: under LMTP, DATA after every RCPT failed is answered 503.
  noValidRcptLmtp: formatReply(reply(503, '5.5.1', 'Error: no valid recipients')),
  notUtf8: formatReply(reply(500, '5.5.2', 'Error: command line is not valid UTF-8')),
  inTransaction: formatReply(reply(503, '5.5.1', 'Error: MAIL transaction in progress')),
  dataSyntax: formatReply(reply(501, '5.5.4', 'Syntax: DATA')),
  tooManyRcpts: formatReply(reply(452, '4.5.3', 'Error: too many recipients')),
  notAuthorized: formatReply(reply(550, '5.7.0', 'Error: insufficient authorization')),
  utf8Needed: formatReply(reply(553, '5.6.7', 'Must declare SMTPUTF8 to send unicode address')),
  sizeSyntax: formatReply(reply(501, '5.5.4', 'Bad SIZE syntax')),
  bodySyntax: formatReply(reply(501, '5.5.4', 'Unsupported BODY type')),
} as const

/** What one listener shares with its sessions, computed once. */
interface Shared {
  readonly options: SmtpServerOptions
  readonly lmtp: boolean
  readonly maxRecipients: number
  readonly greeting: string
  readonly ehlo: string
  readonly ehloForwarding: string
  readonly timeoutReply: string
  readonly shutdownReply: string
}

class Listener implements SmtpServer {
  private readonly servers: Server[] = []
  private readonly sessions = new Set<Session>()
  private readonly shared: Shared
  private closing: Promise<void> | undefined

  constructor(private readonly options: SmtpServerOptions) {
    const { hostname, maxSize } = options
    const lmtp = options.lmtp ?? false
    const caps = [
      hostname,
      'PIPELINING',
      `SIZE ${maxSize}`,
      '8BITMIME',
      'SMTPUTF8',
      'ENHANCEDSTATUSCODES',
      'CHUNKING',
      'DSN',
    ]
    const forwarding = ['XCLIENT NAME ADDR PROTO HELO', 'XFORWARD NAME ADDR PROTO HELO SOURCE IDENT']
    this.shared = {
      options,
      lmtp,
      maxRecipients: options.maxRecipients ?? 1000,
      greeting: formatReply(reply(220, undefined, `${hostname} ${lmtp ? 'LMTP' : 'ESMTP'} mailscreen`)),
      ehlo: formatReply(reply(250, undefined, caps.join('\n'))),
      ehloForwarding: formatReply(reply(250, undefined, [...caps, ...forwarding].join('\n'))),
      timeoutReply: formatReply(reply(421, '4.4.2', `${hostname} Error: timeout exceeded`)),
      shutdownReply: formatReply(reply(421, '4.3.2', `${hostname} Service shutting down, closing channel`)),
    }
  }

  get connections(): number {
    return this.sessions.size
  }

  listen(host: string, port: number): Promise<{ host: string; port: number }> {
    if (this.closing) return Promise.reject(new Error('the SMTP server is closed'))
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(socket))
    return new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        // Accept failures (EMFILE and the like) must not take the process down.
        server.on('error', (err) => this.options.onError?.(err))
        this.servers.push(server)
        const bound = server.address()
        resolve(
          typeof bound === 'object' && bound ? { host: bound.address, port: bound.port } : { host, port },
        )
      })
    })
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async shutdown(): Promise<void> {
    const stopped = this.servers.map(
      (server) => new Promise<void>((resolve) => server.close(() => resolve())),
    )
    for (const session of this.sessions) session.drain()
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      Promise.all([...this.sessions].map((session) => session.closed)),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.options.closeTimeoutMs ?? 10_000)
      }),
    ])
    clearTimeout(timer)
    for (const session of this.sessions) session.destroy()
    await Promise.all(stopped)
  }

  private accept(socket: Socket): void {
    socket.on('error', ignore)
    if (this.closing || socket.remoteAddress === undefined) {
      socket.destroy()
      return
    }
    const peer: ClientInfo = { address: normalizeIp(socket.remoteAddress) }
    let refusal: SmtpReply | undefined
    try {
      refusal = this.options.onConnect?.(peer)
    } catch (err) {
      this.options.onError?.(err, peer)
      refusal = reply(421, '4.3.0', `${this.options.hostname} Error: internal error`)
    }
    if (refusal) {
      socket.end(formatReply(refusal), () => socket.destroy())
      return
    }
    const session = new Session(this.shared, socket, peer)
    this.sessions.add(session)
    void session.closed.then(() => this.sessions.delete(session))
  }
}

const COMMAND = 0 // reading command lines
const DATA = 1 // reading message data up to the final dot
const CHUNK = 2 // reading the octets of one BDAT chunk
const WAIT = 3 // a handler is working; input is buffered, the socket paused
const CLOSED = 4

type Phase = typeof COMMAND | typeof DATA | typeof CHUNK | typeof WAIT | typeof CLOSED

type Outcome = { readonly replies: SmtpReply | readonly SmtpReply[] } | { readonly error: unknown }

interface MutableTransaction extends Transaction {
  readonly rcptTo: string[]
  dsn?: { -readonly [K in keyof DsnRequest]: DsnRequest[K] } & { recipients?: Record<string, RecipientDsn> }
}

/** One message coming in: the stream handed to onMessage, and onMessage's outcome. */
interface Inbound {
  readonly tx: MutableTransaction
  /** The end-of-data finder of DATA; BDAT chunks are counted out instead. */
  readonly decoder?: DotDecoder
  readonly stream: Readable
  readonly outcome: Promise<Outcome>
  /** Message bytes so far (what RFC 1870 SIZE measures). */
  bytes: number
  /** Decoded bytes still go to `stream` (false once it is ended, destroyed or given up). */
  feeding: boolean
  tooBig: boolean
}

/** The BDAT chunk being read: octets still to come, and whether it ends the message. */
type Chunk = {
  remaining: number
  readonly last: boolean
} & (
  | { readonly inbound: Inbound; readonly refusal?: undefined }
  /** A refused BDAT: its octets are read and dropped, then `refusal` answers it. */
  | { readonly inbound?: undefined; readonly refusal: string }
)

/** One connection: reads commands strictly in order, runs the handlers, writes the replies. */
class Session {
  readonly closed: Promise<void>
  private phase: Phase = COMMAND
  private pending: Buffer | undefined
  private skippingLongLine = false
  private inputEnded = false
  /** Replies fill the socket's buffer: no command is read until the client has read them. */
  private awaitingDrain = false
  private draining = false
  private readonly forwarding: boolean
  private helo: string | undefined
  private protocol: string | undefined
  private xclient: Attributes | undefined
  private xforward: Map<string, string | undefined> | undefined
  private tx: MutableTransaction | undefined
  private rcptAttempts = 0
  private inbound: Inbound | undefined
  private chunk: Chunk | undefined
  /** Replies not yet written: each batch goes out in one write (see {@link flush}). */
  private out = ''

  constructor(
    private readonly shared: Shared,
    private readonly socket: Socket,
    private readonly peer: ClientInfo,
  ) {
    const { options } = shared
    let forwarding = false
    try {
      forwarding = options.allowForwarding?.(peer) ?? false
    } catch (err) {
      options.onError?.(err, peer)
    }
    this.forwarding = forwarding
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()))
    socket.on('data', (chunk: Buffer) => this.onSocketData(chunk))
    socket.on('end', () => this.onSocketEnd())
    socket.on('close', () => this.onSocketClose())
    socket.on('timeout', () => this.onTimeout())
    socket.setTimeout(options.idleTimeoutMs ?? 300_000)
    socket.write(shared.greeting)
  }

  /**
   * Server shutdown: say 421 now if idle, else once the current transaction is answered (a
   * BDAT transaction between chunks is not idle: its next chunk may be the last).
   */
  drain(): void {
    this.draining = true
    if (this.phase === COMMAND && !this.inbound) this.hangUp(this.shared.shutdownReply, 'ECONNABORTED')
  }

  destroy(): void {
    this.abortInbound('ECONNABORTED')
    this.socket.destroy()
  }

  private onSocketData(chunk: Buffer): void {
    if (this.phase === CLOSED) return
    this.pending = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk])
    this.pump()
  }

  private onSocketEnd(): void {
    this.inputEnded = true
    this.endIfInputDone()
  }

  /**
   * After the client's end of input, once every whole command has been handled: a partial
   * command line or message is never completed now. While a handler works (WAIT), it decides
   * when; the input it left is handled after it.
   */
  private endIfInputDone(): void {
    if (!this.inputEnded || this.awaitingDrain) return
    if (this.phase === DATA || this.phase === CHUNK || this.phase === COMMAND)
      this.hangUp(undefined, 'ECONNRESET')
  }

  private onSocketClose(): void {
    this.phase = CLOSED
    this.pending = undefined
    this.abortInbound('ECONNRESET')
  }

  private onTimeout(): void {
    // Our last reply was not read: the client is gone or will not read.
    if (this.phase === CLOSED) {
      this.socket.destroy()
      return
    }
    // Only the client's silence counts, not our own handlers or a slow message consumer.
    if (this.phase === WAIT || (this.phase !== COMMAND && this.socket.isPaused())) return
    this.hangUp(this.shared.timeoutReply, 'ETIMEDOUT')
    // A timeout that fired is not armed again by itself: one more, for a client that does not
    // read this last reply either. (After any other hang-up the timer is still armed.)
    this.socket.setTimeout(this.shared.options.idleTimeoutMs ?? 300_000)
  }

  /**
   * Process buffered input until it runs out or a handler has to be waited for, then send the
   * replies gathered on the way in one write: a client that pipelines gets them in one packet,
   * and nothing it needs in order to go on waits for more input.
   */
  private pump(): void {
    while (this.pending !== undefined) {
      if (this.phase === DATA && this.inbound) this.feedData(this.inbound, this.pending)
      else if (this.phase === CHUNK && this.chunk) this.feedChunk(this.chunk, this.pending)
      else if (this.phase !== COMMAND) {
        if (this.phase === WAIT) this.socket.pause()
        break
      } else if (this.socket.writableNeedDrain) {
        this.awaitDrain()
        break
      } else if (!this.nextLine(this.pending)) break
      else if (this.out.length > MAX_UNSENT) this.flush()
    }
    this.flush()
    this.endIfInputDone()
  }

  /** Stop reading commands until the client has read the replies that fill the socket's buffer. */
  private awaitDrain(): void {
    this.socket.pause()
    if (this.awaitingDrain) return
    this.awaitingDrain = true
    this.socket.once('drain', () => {
      this.awaitingDrain = false
      if (this.phase !== COMMAND) return
      this.socket.resume()
      this.pump()
    })
  }

  /** Take one command line off `buf`; false when no full line is there yet. */
  private nextLine(buf: Buffer): boolean {
    const lf = buf.indexOf(LF)
    if (lf === -1) {
      if (buf.length > MAX_LINE + 2 && !this.skippingLongLine) {
        this.skippingLongLine = true
        this.write(R.lineTooLong)
      }
      if (this.skippingLongLine) this.pending = undefined
      return false
    }
    this.pending = lf + 1 < buf.length ? buf.subarray(lf + 1) : undefined
    if (this.skippingLongLine) {
      this.skippingLongLine = false
      return true
    }
    const end = lf > 0 && buf[lf - 1] === CR ? lf - 1 : lf
    const answer = end > MAX_LINE ? R.lineTooLong : this.commandLine(buf, end)
    if (answer !== undefined) this.write(answer)
    return true
  }

  /**
   * The command in the first `end` bytes of `buf`, refused when they are not UTF-8: decoded
   * leniently, a malformed byte would become U+FFFD, and a mailbox another one.
   */
  private commandLine(buf: Buffer, end: number): string | undefined {
    const line = buf.toString('utf8', 0, end)
    if (line.includes('\uFFFD') && !isUtf8(buf.subarray(0, end))) return R.notUtf8
    return this.command(line)
  }

  /** Run one command; returns its reply, or `undefined` when a handler will answer later. */
  private command(line: string): string | undefined {
    const space = line.indexOf(' ')
    const verb = (space === -1 ? line : line.slice(0, space)).toUpperCase()
    const arg = space === -1 ? '' : line.slice(space + 1).trim()
    switch (verb) {
      case 'EHLO':
      case 'HELO':
      case 'LHLO':
        return this.hello(verb, arg)
      case 'MAIL':
        return this.mail(arg)
      case 'RCPT':
        return this.rcpt(arg)
      case 'DATA':
        return this.data(arg)
      case 'BDAT':
        return this.bdat(arg)
      case 'RSET':
        this.resetTransaction()
        return R.ok
      case 'NOOP':
        return R.ok
      case 'QUIT':
        this.hangUp(R.bye, 'ECONNRESET')
        return undefined
      case 'VRFY':
        return R.vrfy
      case 'HELP':
        return R.help
      case 'XFORWARD':
        return this.xforwardCommand(arg)
      case 'XCLIENT':
        return this.xclientCommand(arg)
      default:
        return R.unknown
    }
  }

  private hello(verb: string, arg: string): string | undefined {
    const { lmtp } = this.shared
    if (lmtp !== (verb === 'LHLO')) return lmtp ? R.lmtpHello : R.unknown
    if (arg === '') return formatReply(reply(501, '5.5.4', `Syntax: ${verb} hostname`))
    this.resetTransaction()
    this.helo = arg
    this.protocol = verb === 'HELO' ? 'SMTP' : verb === 'EHLO' ? 'ESMTP' : 'LMTP'
    if (verb === 'HELO') return formatReply(reply(250, undefined, this.shared.options.hostname))
    return this.forwarding ? this.shared.ehloForwarding : this.shared.ehlo
  }

  private mail(arg: string): string | undefined {
    if (this.helo === undefined) return this.shared.lmtp ? R.needLhlo : R.needHelo
    if (this.tx) return R.nestedMail
    const parsed = parsePath(arg, 'FROM')
    if (!parsed.ok) return formatReply(parsed.reply)
    let body: string | undefined
    let smtpUtf8 = false
    let declaredSize: number | undefined
    let dsn: { ret?: 'FULL' | 'HDRS'; envid?: string } | undefined
    for (const { key, value } of parseParams(parsed.value.params)) {
      if (key === 'SIZE') {
        if (value === undefined || !/^\d{1,15}$/.test(value)) return R.sizeSyntax
        declaredSize = Number(value)
        if (declaredSize > this.shared.options.maxSize) return R.tooBig
      } else if (key === 'BODY') {
        body = value?.toUpperCase()
        if (body !== '7BIT' && body !== '8BITMIME') return R.bodySyntax
      } else if (key === 'SMTPUTF8' && value === undefined) {
        smtpUtf8 = true
      } else if (key === 'RET' || key === 'ENVID') {
        const given = key === 'RET' ? parseRet(value) : parseEnvid(value)
        if (!given.ok) return formatReply(given.reply)
        dsn = { ...dsn, [key.toLowerCase()]: given.value }
      } else {
        return formatReply(reply(555, '5.5.4', `Unsupported option: ${key}`))
      }
    }
    const mailFrom = parsed.value.path
    if (!smtpUtf8 && isNonAscii(mailFrom)) return R.utf8Needed
    const peer = this.peerInfo()
    const tx: MutableTransaction = {
      peer,
      client: this.clientInfo(peer),
      mailFrom,
      rcptTo: [],
      smtpUtf8,
      ...(body === undefined ? {} : { body }),
      ...(declaredSize === undefined ? {} : { declaredSize }),
      ...forwardedExtras(this.xforward),
      ...(dsn === undefined ? {} : { dsn }),
    }
    let decision: SmtpReply | undefined | Promise<SmtpReply | undefined>
    try {
      decision = this.shared.options.onMail?.(tx)
    } catch (err) {
      return formatReply(this.errorReply(err))
    }
    if (!(decision instanceof Promise)) return this.openTransaction(tx, decision)
    this.phase = WAIT
    void decision
      .then(
        (refusal) => this.write(this.openTransaction(tx, refusal)),
        (err: unknown) => this.write(formatReply(this.errorReply(err))),
      )
      .finally(() => this.resume())
    return undefined
  }

  private openTransaction(tx: MutableTransaction, refusal: SmtpReply | undefined): string {
    if (refusal) return formatReply(refusal)
    this.tx = tx
    return R.mailOk
  }

  private rcpt(arg: string): string | undefined {
    const tx = this.tx
    if (!tx) return R.needMail
    // The message's envelope went to its handler with the first chunk.
    if (this.inbound) return R.rcptAfterBdat
    const parsed = parsePath(arg, 'TO')
    if (!parsed.ok) return formatReply(parsed.reply)
    const address = parsed.value.path
    if (address === '') return formatReply(reply(501, '5.1.3', 'Bad recipient address syntax'))
    let dsn: RecipientDsn | undefined
    for (const { key, value } of parseParams(parsed.value.params)) {
      if (key !== 'NOTIFY' && key !== 'ORCPT')
        return formatReply(reply(555, '5.5.4', `Unsupported option: ${key}`))
      const given = key === 'NOTIFY' ? parseNotify(value) : parseOrcpt(value)
      if (!given.ok) return formatReply(given.reply)
      dsn = { ...dsn, [key.toLowerCase()]: given.value }
    }
    if (!tx.smtpUtf8 && isNonAscii(address)) return R.utf8Needed
    this.rcptAttempts++
    if (tx.rcptTo.length >= this.shared.maxRecipients) return R.tooManyRcpts
    const decide = this.shared.options.onRecipient
    if (!decide) return this.acceptRecipient(tx, address, dsn, undefined)
    let decision: SmtpReply | undefined | Promise<SmtpReply | undefined>
    try {
      decision = decide(address, tx)
    } catch (err) {
      return formatReply(this.errorReply(err))
    }
    if (!(decision instanceof Promise)) return this.acceptRecipient(tx, address, dsn, decision)
    this.phase = WAIT
    void decision
      .then(
        (refusal) => this.write(this.acceptRecipient(tx, address, dsn, refusal)),
        (err: unknown) => this.write(formatReply(this.errorReply(err))),
      )
      .finally(() => this.resume())
    return undefined
  }

  private acceptRecipient(
    tx: MutableTransaction,
    address: string,
    dsn: RecipientDsn | undefined,
    refusal: SmtpReply | undefined,
  ): string {
    if (refusal) return formatReply(refusal)
    tx.rcptTo.push(address)
    if (dsn) {
      tx.dsn ??= {}
      // No prototype: an address such as `__proto__` is a key like any other.
      tx.dsn.recipients ??= Object.create(null) as Record<string, RecipientDsn>
      tx.dsn.recipients[address] = dsn
    }
    return R.rcptOk
  }

  private data(arg: string): string | undefined {
    if (arg !== '') return R.dataSyntax
    if (this.inbound) return R.dataAfterBdat
    const refusal = this.transactionRefusal()
    if (refusal) return refusal
    this.phase = DATA
    this.inbound = this.openInbound(this.tx as MutableTransaction, true)
    return R.startData
  }

  /**
   * RFC 3030 `BDAT <size> [LAST]`: exactly `size` octets follow the command line, as they
   * are (no dot-stuffing). A chunk that is refused is still read, and dropped.
   */
  private bdat(arg: string): string | undefined {
    const parsed = /^(\d{1,15})(?: +(LAST))? *$/i.exec(arg)
    if (!parsed) {
      // Without a size the octets that may follow cannot be told from commands: end the session.
      this.hangUp(R.bdatSyntax, 'ECONNABORTED')
      return undefined
    }
    const size = Number(parsed[1])
    const last = parsed[2] !== undefined
    const refusal = this.inbound ? undefined : this.transactionRefusal()
    if (refusal) {
      this.readChunk({ remaining: size, last, refusal })
      return undefined
    }
    this.inbound ??= this.openInbound(this.tx as MutableTransaction, false)
    this.readChunk({ remaining: size, last, inbound: this.inbound })
    return undefined
  }

  /** Why DATA or a first BDAT cannot start now; undefined when it can. */
  private transactionRefusal(): string | undefined {
    const tx = this.tx
    if (!tx) return R.needMail
    if (tx.rcptTo.length === 0) {
      if (this.rcptAttempts === 0) return R.needRcpt
      return this.shared.lmtp ? R.noValidRcptLmtp : R.noValidRcpt
    }
    return undefined
  }

  /** Hand the message stream to onMessage; with `dotted`, the end of data is the final dot. */
  private openInbound(tx: MutableTransaction, dotted: boolean): Inbound {
    const stream = new Readable({ highWaterMark: 65_536, read: () => this.readOn() })
    // The consumer sees errors through its own listeners; this one keeps an unhandled
    // 'error' (a consumer that never listened) from taking the process down.
    stream.on('error', ignore)
    let result: Promise<SmtpReply | readonly SmtpReply[]>
    try {
      result = this.shared.options.onMessage(tx, stream)
    } catch (err) {
      result = Promise.reject(err)
    }
    const inbound: Inbound = {
      tx,
      stream,
      ...(dotted ? { decoder: new DotDecoder((chunk) => this.onBody(inbound, chunk)) } : {}),
      outcome: result.then(
        (replies): Outcome => ({ replies }),
        (error: unknown): Outcome => ({ error }),
      ),
      bytes: 0,
      feeding: true,
      tooBig: false,
    }
    stream.once('close', () => this.stopFeeding(inbound))
    // A handler that settles before the end of data has given up on the rest of it.
    void inbound.outcome.then(() => this.stopFeeding(inbound))
    return inbound
  }

  private readChunk(chunk: Chunk): void {
    this.chunk = chunk
    this.phase = CHUNK
    if (chunk.remaining === 0) this.endChunk(chunk)
  }

  /** Take the octets of the current chunk off `buf`; what follows them goes back to `pending`. */
  private feedChunk(chunk: Chunk, buf: Buffer): void {
    const take = Math.min(chunk.remaining, buf.length)
    this.pending = take < buf.length ? buf.subarray(take) : undefined
    chunk.remaining -= take
    if (chunk.inbound) this.onBody(chunk.inbound, take < buf.length ? buf.subarray(0, take) : buf)
    if (chunk.remaining === 0) this.endChunk(chunk)
  }

  /**
   * A chunk is complete. A refused one is answered now that its octets are read. After the
   * last, the message ends and its handler's outcome is the reply; other chunks are
   * acknowledged at once, unless the message has grown too big: then it is refused now and
   * the transaction is over.
   */
  private endChunk(chunk: Chunk): void {
    this.chunk = undefined
    this.phase = COMMAND
    const inbound = chunk.inbound
    if (!inbound) {
      this.write(chunk.refusal)
      return
    }
    if (chunk.last) this.endMessage(inbound)
    else if (!inbound.tooBig)
      this.write(formatReply(reply(250, '2.0.0', `Ok: ${inbound.bytes} octets received`)))
    else {
      // resetTransaction drops the inbound message (its stream is already destroyed).
      this.write(R.tooBig)
      this.resetTransaction()
    }
  }

  private onBody(inbound: Inbound, chunk: Buffer): void {
    inbound.bytes += chunk.length
    if (!inbound.feeding || inbound.stream.destroyed) return
    if (inbound.bytes > this.shared.options.maxSize) {
      inbound.tooBig = true
      inbound.stream.destroy(new MessageTooBigError(this.shared.options.maxSize))
      this.stopFeeding(inbound)
    } else if (!inbound.stream.push(chunk)) {
      this.socket.pause()
    }
  }

  /**
   * Read from the socket again after a full message stream paused it. Not while a handler
   * works (WAIT): that pause is the session's own.
   */
  private readOn(): void {
    if (this.phase === DATA || this.phase === CHUNK || this.phase === COMMAND) this.socket.resume()
  }

  /**
   * Decoded bytes no longer go anywhere; keep reading, to find the end of data (or, between
   * BDAT chunks, the next command).
   */
  private stopFeeding(inbound: Inbound): void {
    if (!inbound.feeding) return
    inbound.feeding = false
    inbound.stream.destroy()
    if (this.inbound === inbound) this.readOn()
  }

  private feedData(inbound: Inbound, chunk: Buffer): void {
    this.pending = undefined
    const rest = inbound.decoder?.feed(chunk)
    if (rest === undefined) return
    this.pending = rest.length > 0 ? rest : undefined
    this.endMessage(inbound)
  }

  /** The whole message is in: end the stream and answer once the handler has. */
  private endMessage(inbound: Inbound): void {
    this.phase = WAIT
    if (inbound.feeding) {
      inbound.feeding = false
      inbound.stream.push(null)
    }
    void inbound.outcome.then((outcome) => this.answerData(inbound, outcome))
  }

  private answerData(inbound: Inbound, outcome: Outcome): void {
    let replies: SmtpReply | readonly SmtpReply[]
    if (inbound.tooBig) replies = TOO_BIG
    else if ('error' in outcome) replies = this.errorReply(outcome.error)
    else replies = outcome.replies
    const count = this.shared.lmtp ? inbound.tx.rcptTo.length : 1
    let out = ''
    for (let i = 0; i < count; i++) out += formatReply(replyAt(replies, i))
    this.write(out)
    this.inbound = undefined
    this.resetTransaction()
    this.resume()
  }

  private xforwardCommand(arg: string): string | undefined {
    if (!this.forwarding) return R.notAuthorized
    if (this.tx) return R.inTransaction
    const parsed = parseAttributes(arg, XFORWARD_ATTRS, 'XFORWARD')
    if (!parsed.ok) return formatReply(parsed.reply)
    this.xforward ??= new Map()
    for (const [name, value] of parsed.value) this.xforward.set(name, value)
    return R.ok
  }

  private xclientCommand(arg: string): string | undefined {
    if (!this.forwarding) return R.notAuthorized
    if (this.tx) return R.inTransaction
    const parsed = parseAttributes(arg, XCLIENT_ATTRS, 'XCLIENT')
    if (!parsed.ok) return formatReply(parsed.reply)
    this.xclient = new Map([...(this.xclient ?? []), ...parsed.value])
    // Postfix starts over as if the client had just connected: new greeting, new EHLO.
    this.helo = undefined
    this.protocol = undefined
    this.resetTransaction()
    return this.shared.greeting
  }

  private peerInfo(): ClientInfo {
    return compact({ address: this.peer.address, helo: this.helo, protocol: this.protocol })
  }

  private clientInfo(peer: ClientInfo): ClientInfo {
    let client = peer
    const xc = this.xclient
    if (xc) {
      client = compact({
        address: xc.get('ADDR') ?? client.address,
        name: xc.has('NAME') ? xc.get('NAME') : client.name,
        helo: xc.has('HELO') ? xc.get('HELO') : client.helo,
        protocol: xc.has('PROTO') ? xc.get('PROTO') : client.protocol,
      })
    }
    const xf = this.xforward
    // A forwarded client is another host: what XFORWARD leaves out is unknown, not ours.
    if (xf && (xf.has('ADDR') || xf.has('NAME') || xf.has('HELO') || xf.has('PROTO'))) {
      client = compact({
        address: xf.get('ADDR') ?? client.address,
        name: xf.get('NAME'),
        helo: xf.get('HELO'),
        protocol: xf.get('PROTO'),
      })
    }
    return client
  }

  private errorReply(err: unknown): SmtpReply {
    if (err instanceof SmtpReplyError) return reply(err.responseCode, err.enhancedStatus, err.message)
    this.shared.options.onError?.(err, this.peer)
    return INTERNAL
  }

  private resetTransaction(): void {
    // RSET (or a new EHLO) between BDAT chunks abandons the message taken so far, and
    // reads on if its full stream had paused the socket.
    if (this.inbound && this.phase === COMMAND) {
      this.abortInbound('ECONNABORTED')
      this.inbound = undefined
      this.readOn()
    }
    this.tx = undefined
    this.xforward = undefined
    this.rcptAttempts = 0
  }

  /** A handler finished: go back to reading commands (or leave, when draining). */
  private resume(): void {
    if (this.phase === CLOSED) return
    this.phase = COMMAND
    if (this.draining) {
      this.hangUp(this.shared.shutdownReply, 'ECONNABORTED')
      return
    }
    this.socket.resume()
    this.pump()
  }

  /** Queue a reply; it goes out with the next {@link flush}. */
  private write(text: string): void {
    this.out += text
  }

  private flush(): void {
    const out = this.out
    this.out = ''
    if (out !== '' && this.phase !== CLOSED && this.socket.writable) this.socket.write(out)
  }

  /** Send a last reply (if any) and close; a message still being received is aborted. */
  private hangUp(last: string | undefined, reason: string): void {
    if (this.phase === CLOSED) return
    if (last) this.write(last)
    this.flush()
    this.phase = CLOSED
    this.pending = undefined
    this.abortInbound(reason)
    this.socket.end(() => this.socket.destroy())
  }

  private abortInbound(reason: string): void {
    const inbound = this.inbound
    if (!inbound?.feeding) return
    inbound.feeding = false
    inbound.stream.destroy(
      Object.assign(new Error(`session ended during DATA (${reason})`), { code: reason }),
    )
  }
}

function replyAt(replies: SmtpReply | readonly SmtpReply[], index: number): SmtpReply {
  if ('code' in replies) return replies
  return replies[index] ?? replies[replies.length - 1] ?? INTERNAL
}

function forwardedExtras(xf: Attributes | undefined): { ident?: string; source?: string } {
  const ident = xf?.get('IDENT')
  const source = xf?.get('SOURCE')
  return { ...(ident === undefined ? {} : { ident }), ...(source === undefined ? {} : { source }) }
}

function compact(info: { address: string; name?: string; helo?: string; protocol?: string }): ClientInfo {
  const out: { address: string; name?: string; helo?: string; protocol?: string } = { address: info.address }
  if (info.name !== undefined) out.name = info.name
  if (info.helo !== undefined) out.helo = info.helo
  if (info.protocol !== undefined) out.protocol = info.protocol
  return out
}

function ignore(): void {}
