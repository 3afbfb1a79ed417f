/**
 * One milter connection: a state machine driven by decoded commands. It collects what the MTA
 * tells it about the SMTP session (connect info, macros, HELO, MAIL, each RCPT, the header
 * fields and the body, the body spilled to a temp file past a threshold), asks an injected
 * handler for a decision at end of message within a time budget, and answers with the
 * modification responses followed by the final one.
 */
import { randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { type FileHandle, open, readFile, rm } from 'node:fs/promises'
import path from 'node:path'
import { Readable } from 'node:stream'
import type { Logger } from 'pino'
import { drainedOrClosed } from '../../socket-drain.js'
import type { ClientInfo, Envelope } from '../envelope.js'
import { normalizeIp } from '../smtp-command.js'
import type { SmtpReply } from '../smtp-reply.js'
import {
  ACCEPT,
  CONTINUE,
  type ConnectFamily,
  DEFAULT_MAX_PACKET,
  DISCARD,
  decodeCommand,
  encodeAddHeader,
  encodeChangeHeader,
  encodeInsertHeader,
  encodeOptneg,
  encodePacket,
  encodeQuarantine,
  encodeReplaceBody,
  encodeReplyCode,
  FrameDecoder,
  MAX_BODY_CHUNK,
  type MilterCommand,
  MilterProtocolError,
  negotiate,
  PROGRESS,
  REJECT,
  SMFIC,
  SMFIF,
  SMFIP,
  SMFIR,
  TEMPFAIL,
} from './codec.js'

// ---------------------------------------------------------------------------------------------
// Public types

/** The client connection as SMFIC_CONNECT described it. */
export interface MilterConnectInfo {
  /** Host name as the MTA has it (`unknown` or `[addr]` when it has none). */
  readonly hostname: string
  readonly family: ConnectFamily
  /** IP address (or socket path for `unix`); absent for an unknown family. */
  readonly address?: string
  readonly port?: number
}

/** One accepted recipient. */
export interface MilterRecipient {
  /** The address without angle brackets. */
  readonly address: string
  /** ESMTP arguments of RCPT TO (`NOTIFY=NEVER`, `ORCPT=...`). */
  readonly args: readonly string[]
  /** Macros the MTA sent with this RCPT (names without braces). */
  readonly macros: Readonly<Record<string, string>>
}

/** One header field as the MTA sent it. */
export interface MilterHeader {
  readonly name: string
  /** UTF-8 reading of the value (folds kept as sent). */
  readonly value: string
}

/**
 * The message as received: header block, empty line, body, with CRLF line ends. Held in
 * memory (`data`) or, past the spill threshold, in a temp file (`path`) that exists only
 * until the handler settles or its signal aborts.
 */
export interface MilterContent {
  readonly size: number
  /** Offset of the body (just past the empty line). */
  readonly bodyOffset: number
  readonly data?: Buffer
  readonly path?: string
}

/** What the handler gets at end of message. Plain data: safe to pass to a worker thread. */
export interface MilterMessage {
  /** The same envelope the SMTP front end produces. */
  readonly envelope: Envelope
  /** The MTA's queue ID (macro `i`), when it sent one. */
  readonly queueId?: string
  /** The SMTP AUTH user (macro `{auth_authen}`), when the client authenticated. */
  readonly authUser?: string
  readonly connect?: MilterConnectInfo
  /** ESMTP arguments of MAIL FROM (`SIZE=`, `BODY=`, ...). */
  readonly mailArgs: readonly string[]
  readonly recipients: readonly MilterRecipient[]
  readonly headers: readonly MilterHeader[]
  /** Every macro of this connection and message, names without braces; later stages win. */
  readonly macros: Readonly<Record<string, string>>
  readonly content: MilterContent
}

/** A header change at end of message. */
export type MilterHeaderEdit =
  /** Append a field (SMFIR_ADDHEADER). */
  | { readonly op: 'addheader'; readonly name: string; readonly value: string }
  /** Change the `index`-th (1-based) field called `name`; `''` deletes it (SMFIR_CHGHEADER). */
  | { readonly op: 'chgheader'; readonly name: string; readonly index: number; readonly value: string }
  /** Insert a field at 0-based position `index` among all fields (SMFIR_INSHEADER). */
  | { readonly op: 'insheader'; readonly index: number; readonly name: string; readonly value: string }

/** A new body (CRLF line ends): bytes, or a file to stream from. */
export type MilterBodyReplacement = Buffer | { readonly path: string }

/** Changes that go with a message the MTA keeps. */
interface Modifications {
  readonly headers?: readonly MilterHeaderEdit[]
  readonly body?: MilterBodyReplacement
}

/**
 * The handler's answer. `reject` needs a 5xx reply and `tempfail` a 4xx one, each with an
 * enhanced status (`550 5.7.1 ...`); without one the MTA uses its own text. `quarantine`
 * keeps the message in the MTA's hold queue.
 */
export type MilterDecision =
  | ({ readonly action: 'accept' } & Modifications)
  | ({ readonly action: 'quarantine'; readonly reason: string } & Modifications)
  | { readonly action: 'reject'; readonly reply?: SmtpReply }
  | { readonly action: 'tempfail'; readonly reply?: SmtpReply }
  | { readonly action: 'discard' }

/** Decide on one message. Settle within the budget; `signal` aborts when the answer is no longer wanted. */
export type MilterMessageHandler = (message: MilterMessage, signal: AbortSignal) => Promise<MilterDecision>

/** Decide on one RCPT: a 4xx/5xx reply refuses that recipient, `undefined` takes it. */
export type MilterRecipientHandler = (
  recipient: MilterRecipient,
  context: { readonly mailFrom: string; readonly client: ClientInfo; readonly signal: AbortSignal },
) => Promise<SmtpReply | undefined> | SmtpReply | undefined

/** What a session needs. */
export interface MilterSessionOptions {
  readonly onMessage: MilterMessageHandler
  /** Optional recipient check; when set, RCPT is negotiated with replies. */
  readonly onRecipient?: MilterRecipientHandler
  /** Budget for `onMessage`, from end of message to our answer, in ms. */
  readonly timeoutMs: number
  /** Budget for `onRecipient` in ms (default 10 000); past it the recipient is taken. */
  readonly recipientTimeoutMs?: number
  /** The answer when `onMessage` overruns its budget or fails. */
  readonly defaultAction: 'tempfail' | 'accept'
  /** Reply for the `tempfail` default (default `451 4.7.1 ...`). */
  readonly tempfailReply?: SmtpReply
  /** Header added under the `accept` default. */
  readonly defaultHeader?: { readonly name: string; readonly value: string }
  /** Message bytes held in memory before spilling to a temp file (default 1 MiB). */
  readonly spillThreshold?: number
  /** Header bytes of one message past which it is refused with 552 5.3.4 (default 1 MiB). */
  readonly maxHeaderSize?: number
  /** Header fields of one message past which it is refused with 552 5.3.4 (default 10,000). */
  readonly maxHeaderFields?: number
  /** Directory for spill files. */
  readonly tmpDir: string
  /** Send SMFIR_PROGRESS this often while the handler works (ms; 0 = never; default 10 000). */
  readonly progressIntervalMs?: number
  /** Largest packet accepted (default {@link DEFAULT_MAX_PACKET}). */
  readonly maxPacket?: number
  /** The MTA on the other end of the socket. */
  readonly peer?: ClientInfo
  readonly log?: Logger
  /** Clock for `receivedAt` (ms since the epoch). */
  readonly now?: () => number
}

/** Where a session writes its responses. */
export interface MilterOutput {
  /** Send bytes; resolves once they are handed to the socket (after a drain when needed). */
  write(data: Buffer): Promise<void>
}

/** What the caller should do after a command. */
export type SessionStep = 'continue' | 'close'

export const DEFAULT_TEMPFAIL_REPLY: SmtpReply = {
  code: 451,
  status: '4.7.1',
  text: 'Message content could not be scanned in time, try again later',
}
export const DEFAULT_HEADER = { name: 'X-mailscreen-Warning', value: 'not scanned (time budget exceeded)' }
export const DEFAULT_SPILL_THRESHOLD = 1_048_576
/** Header bytes and fields held for one message (they are kept in memory, as fields). */
export const DEFAULT_MAX_HEADER_SIZE = 1_048_576
export const DEFAULT_MAX_HEADER_FIELDS = 10_000
const HEADER_TOO_LARGE: SmtpReply = { code: 552, status: '5.3.4', text: 'Message header too large' }

// ---------------------------------------------------------------------------------------------
// Session

interface Negotiated {
  readonly version: number
  readonly actions: number
  readonly protocol: number
}

interface MessageState {
  readonly mailFrom: string
  readonly mailArgs: readonly string[]
  readonly recipients: MilterRecipient[]
  readonly headers: { name: string; value: string; raw: Buffer }[]
  /** Bytes of the header fields so far, as rendered. */
  headerBytes: number
  /** The header went past a limit: the fields after it are not kept, the message is refused. */
  headerTooLarge: boolean
  readonly macros: Map<string, string>
  readonly content: ContentSink
}

/**
 * The state machine of one connection. Feed it commands in order with {@link handle}; call
 * {@link close} when the connection ends, whichever way.
 */
export class MilterSession {
  private negotiated: Negotiated | undefined
  private connect: MilterConnectInfo | undefined
  private helo: string | undefined
  private connMacros = new Map<string, string>()
  private mailMacros: Map<string, string> | undefined
  private rcptMacros: Map<string, string> | undefined
  private message: MessageState | undefined
  private closed = false
  /** Aborts whatever handler runs now. */
  private inflight: AbortController | undefined
  /** From end of message until its final answer is written. */
  private answering = false
  /** While the handler decides on a message (the MTA waits, silent). */
  private deciding = false

  constructor(
    private readonly options: MilterSessionOptions,
    private readonly output: MilterOutput,
  ) {}

  /** Whether an end of message is being answered (handler running or answer being written). */
  get busy(): boolean {
    return this.answering
  }

  /** Whether the handler is deciding on a message: the MTA's silence is expected meanwhile. */
  get waitingForHandler(): boolean {
    return this.deciding
  }

  /** Process one command; resolves once its reply (if any) is written. */
  async handle(command: MilterCommand): Promise<SessionStep> {
    if (this.closed) return 'close'
    if (command.type !== 'optneg' && command.type !== 'quit' && this.negotiated === undefined) {
      throw new MilterProtocolError('MSC_MILTER_STATE', `${command.type} before option negotiation`)
    }
    switch (command.type) {
      case 'optneg':
        return this.optneg(command)
      case 'macro':
        this.macro(command.forCommand, command.macros)
        return 'continue'
      case 'connect':
        await this.resetMessage()
        this.connect = compactConnect(command)
        this.helo = undefined
        return this.reply(SMFIP.NR_CONN)
      case 'helo':
        this.helo = command.name
        return this.reply(SMFIP.NR_HELO)
      case 'mail':
        await this.startMessage(command.sender, command.args)
        return this.reply(SMFIP.NR_MAIL)
      case 'rcpt':
        return this.rcpt(command.recipient, command.args)
      case 'data':
        this.needMessage('DATA')
        return this.reply(SMFIP.NR_DATA)
      case 'header': {
        const message = this.needMessage('HEADER')
        if (message.content.started)
          throw new MilterProtocolError('MSC_MILTER_STATE', 'HEADER after the body began')
        this.takeHeader(message, command.name, command.value, command.raw)
        return this.reply(SMFIP.NR_HDR)
      }
      case 'eoh':
        await this.startContent(this.needMessage('EOH'))
        return this.reply(SMFIP.NR_EOH)
      case 'body': {
        const message = this.needMessage('BODY')
        await this.startContent(message)
        await message.content.append(command.chunk)
        return this.reply(SMFIP.NR_BODY)
      }
      case 'eob':
        return this.endOfMessage(command.chunk)
      case 'abort':
        // The MTA expects no reply; the connection goes on with a new MAIL (or QUIT).
        await this.resetMessage()
        return 'continue'
      case 'quit':
        await this.close()
        return 'close'
      case 'quitNc':
        // The connection stays; a new SMTP session (CONNECT, or a fresh OPTNEG) follows.
        await this.resetMessage()
        this.connect = undefined
        this.helo = undefined
        this.connMacros = new Map()
        this.mailMacros = undefined
        this.rcptMacros = undefined
        return 'continue'
      case 'unknown':
        return this.reply(SMFIP.NR_UNKN)
    }
  }

  /** Release everything: abort a running handler, remove a spill file. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.inflight?.abort()
    await this.resetMessage()
  }

  private async optneg(offer: { version: number; actions: number; protocol: number }): Promise<SessionStep> {
    if (this.message) throw new MilterProtocolError('MSC_MILTER_STATE', 'OPTNEG inside a message')
    const answer = negotiate(offer, { recipientReplies: this.options.onRecipient !== undefined })
    this.negotiated = answer
    this.options.log?.debug(
      { version: answer.version, actions: answer.actions, protocol: answer.protocol },
      'milter negotiated',
    )
    await this.write(encodeOptneg(answer))
    return 'continue'
  }

  private macro(forCommand: number, macros: ReadonlyMap<string, string>): void {
    const plain = new Map<string, string>()
    for (const [name, value] of macros) plain.set(unbrace(name), value)
    switch (forCommand) {
      case SMFIC.CONNECT:
        this.connMacros = plain
        break
      case SMFIC.HELO:
        for (const [name, value] of plain) this.connMacros.set(name, value)
        break
      // MAIL and RCPT macros come before their command, which starts the state they belong to.
      case SMFIC.MAIL:
        this.mailMacros = plain
        break
      case SMFIC.RCPT:
        this.rcptMacros = plain
        break
      default:
        if (this.message) for (const [name, value] of plain) this.message.macros.set(name, value)
    }
  }

  private needMessage(what: string): MessageState {
    if (!this.message)
      throw new MilterProtocolError('MSC_MILTER_STATE', `${what} outside a message (no MAIL)`)
    return this.message
  }

  private async startMessage(sender: string, args: readonly string[]): Promise<void> {
    // A MAIL without ABORT after the last message: that message is over either way.
    await this.resetMessage()
    this.message = {
      mailFrom: unbracket(sender),
      mailArgs: args,
      recipients: [],
      headers: [],
      headerBytes: 0,
      headerTooLarge: false,
      macros: new Map(this.mailMacros ?? []),
      content: new ContentSink(this.options.tmpDir, this.options.spillThreshold ?? DEFAULT_SPILL_THRESHOLD),
    }
    this.mailMacros = undefined
  }

  private async rcpt(address: string, args: readonly string[]): Promise<SessionStep> {
    const message = this.needMessage('RCPT')
    const macros = this.rcptMacros ?? new Map<string, string>()
    this.rcptMacros = undefined
    for (const [name, value] of macros) message.macros.set(name, value)
    const recipient: MilterRecipient = {
      address: unbracket(address),
      args,
      macros: Object.fromEntries(macros),
    }
    const check = this.options.onRecipient
    if (!check || this.noReply(SMFIP.NR_RCPT)) {
      message.recipients.push(recipient)
      return this.reply(SMFIP.NR_RCPT)
    }
    const refusal = await this.checkRecipient(check, recipient, message)
    if (refusal) {
      await this.write(refusal)
      return 'continue'
    }
    message.recipients.push(recipient)
    await this.write(CONTINUE)
    return 'continue'
  }

  /** Run the recipient check; returns the refusal packet, if any. Failures take the recipient. */
  private async checkRecipient(
    check: MilterRecipientHandler,
    recipient: MilterRecipient,
    message: MessageState,
  ): Promise<Buffer | undefined> {
    const controller = new AbortController()
    const budget = this.options.recipientTimeoutMs ?? 10_000
    const log = this.options.log
    const outcome = await withTimeout(
      () =>
        check(recipient, { mailFrom: message.mailFrom, client: this.client(), signal: controller.signal }),
      budget,
    )
    controller.abort()
    if (outcome.kind === 'timeout') {
      log?.warn({ rcpt: recipient.address, timeoutMs: budget }, 'milter recipient check timeout')
      return undefined
    }
    if (outcome.kind === 'error') {
      log?.error({ rcpt: recipient.address, err: errorText(outcome.error) }, 'milter recipient check failed')
      return undefined
    }
    if (!outcome.value) return undefined
    try {
      return encodeReplyCode(sanitizeReply(outcome.value))
    } catch (err) {
      log?.error({ rcpt: recipient.address, err: errorText(err) }, 'milter recipient check: invalid reply')
      return undefined
    }
  }

  /**
   * Keep a header field, within the limits: fields are held in memory (the decision's header
   * edits need them), so a message of many small fields would cost far more than its size.
   */
  private takeHeader(message: MessageState, name: string, value: string, raw: Buffer): void {
    if (message.headerTooLarge) return
    message.headerBytes += name.length + raw.length + 4
    const maxSize = this.options.maxHeaderSize ?? DEFAULT_MAX_HEADER_SIZE
    const maxFields = this.options.maxHeaderFields ?? DEFAULT_MAX_HEADER_FIELDS
    if (message.headerBytes > maxSize || message.headers.length >= maxFields) {
      message.headerTooLarge = true
      this.options.log?.warn(
        {
          fields: message.headers.length,
          bytes: message.headerBytes,
          maxHeaderSize: maxSize,
          maxHeaderFields: maxFields,
        },
        'milter: message header too large, the message will be refused',
      )
      return
    }
    message.headers.push({ name, value, raw })
  }

  private async startContent(message: MessageState): Promise<void> {
    if (message.content.started) return
    await message.content.start(renderHeaders(message.headers))
  }

  private async endOfMessage(lastChunk: Buffer): Promise<SessionStep> {
    this.answering = true
    try {
      return await this.answer(lastChunk)
    } finally {
      this.answering = false
    }
  }

  private async answer(lastChunk: Buffer): Promise<SessionStep> {
    const message = this.needMessage('end of message')
    if (message.headerTooLarge) {
      await this.resetMessage()
      const { packets } = planResponse({ action: 'reject', reply: HEADER_TOO_LARGE }, 0)
      await this.write(packets.final)
      return 'continue'
    }
    await this.startContent(message)
    if (lastChunk.length > 0) await message.content.append(lastChunk)
    const content = await message.content.finish()
    const input = this.buildMessage(message, content)
    const controller = new AbortController()
    this.inflight = controller
    const log = this.options.log?.child({ mtaQid: input.queueId })
    let decision: MilterDecision
    let progress: NodeJS.Timeout | undefined
    const every = this.options.progressIntervalMs ?? 10_000
    if (every > 0 && every < this.options.timeoutMs) {
      progress = setInterval(() => void this.write(PROGRESS), every)
    }
    this.deciding = true
    const outcome = await withTimeout(
      () => this.options.onMessage(input, controller.signal),
      this.options.timeoutMs,
    ).finally(() => {
      this.deciding = false
    })
    clearInterval(progress)
    controller.abort()
    this.inflight = undefined
    if (this.closed) return 'close'
    // The message is over for us: drop its bytes (and spill file) before answering.
    await this.resetMessage()
    if (outcome.kind === 'timeout') {
      log?.warn({ timeoutMs: this.options.timeoutMs, action: this.options.defaultAction }, 'milter timeout')
      decision = this.defaultDecision()
    } else if (outcome.kind === 'error') {
      log?.error(
        { err: errorText(outcome.error), action: this.options.defaultAction },
        'milter handler failed',
      )
      decision = this.defaultDecision()
    } else decision = outcome.value
    const negotiated = this.negotiated as Negotiated
    const { packets, body, warnings } = planResponse(decision, negotiated.actions)
    for (const warning of warnings)
      log?.warn({ action: decision.action, problem: warning }, 'milter response')
    // Open a replacement file before anything is sent, so a missing one only drops the body change.
    let bodyFile: FileHandle | undefined
    if (body && !Buffer.isBuffer(body)) {
      bodyFile = await open(body.path, 'r').catch((err: unknown) => {
        log?.error({ err: errorText(err) }, 'milter response: replacement body unreadable, body kept')
        return undefined
      })
    }
    // What is in memory goes out in one write: the MTA reads the whole answer at once
    // instead of waking for each header edit.
    const inMemory = [...packets.modifications, ...(Buffer.isBuffer(body) ? encodeReplaceBody(body) : [])]
    if (!bodyFile) {
      // The next message starts with MAIL (Postfix sends an ABORT first).
      await this.write(Buffer.concat([...inMemory, packets.final]))
      return 'continue'
    }
    try {
      if (inMemory.length > 0) await this.write(Buffer.concat(inMemory))
      await this.writeBodyFile(bodyFile)
    } finally {
      await bodyFile.close().catch(ignore)
    }
    await this.write(packets.final)
    return 'continue'
  }

  /** Stream a replacement body from a file as SMFIR_REPLBODY chunks. */
  private async writeBodyFile(file: FileHandle): Promise<void> {
    const buffer = Buffer.allocUnsafe(MAX_BODY_CHUNK)
    let sent = false
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, MAX_BODY_CHUNK, null)
      if (bytesRead === 0) break
      // encodePacket copies, so the buffer can be refilled while the packet waits in the socket.
      await this.write(encodePacket(SMFIR.REPLBODY, buffer.subarray(0, bytesRead)))
      sent = true
    }
    if (!sent) await this.write(encodePacket(SMFIR.REPLBODY))
  }

  private defaultDecision(): MilterDecision {
    if (this.options.defaultAction === 'accept') {
      const header = this.options.defaultHeader ?? DEFAULT_HEADER
      return { action: 'accept', headers: [{ op: 'addheader', name: header.name, value: header.value }] }
    }
    return { action: 'tempfail', reply: this.options.tempfailReply ?? DEFAULT_TEMPFAIL_REPLY }
  }

  private buildMessage(message: MessageState, content: MilterContent): MilterMessage {
    const macros: Record<string, string> = {}
    for (const [name, value] of this.connMacros) macros[name] = value
    for (const [name, value] of message.macros) macros[name] = value
    const upperArgs = message.mailArgs.map((arg) => arg.toUpperCase())
    const bodyArg = upperArgs.find((arg) => arg.startsWith('BODY='))?.slice(5)
    const queueId = macros.i
    const authUser = macros.auth_authen
    const envelope: Envelope = {
      mailFrom: message.mailFrom,
      rcptTo: message.recipients.map((r) => r.address),
      client: this.client(),
      peer: this.options.peer ?? { address: '' },
      receivedAt: (this.options.now ?? Date.now)(),
      ...(bodyArg ? { body: bodyArg } : {}),
      ...(upperArgs.includes('SMTPUTF8') ? { smtpUtf8: true } : {}),
    }
    return {
      envelope,
      ...(queueId ? { queueId } : {}),
      ...(authUser ? { authUser } : {}),
      ...(this.connect ? { connect: this.connect } : {}),
      mailArgs: message.mailArgs,
      recipients: message.recipients,
      headers: message.headers.map(({ name, value }) => ({ name, value })),
      macros,
      content,
    }
  }

  /** The SMTP client as the MTA described it (connect info, else the client macros). */
  private client(): ClientInfo {
    const c = this.connect
    const inet = c !== undefined && (c.family === 'inet4' || c.family === 'inet6')
    const rawAddress = inet ? c?.address : this.connMacros.get('client_addr')
    const address = rawAddress ? normalizeIp(rawAddress.replace(/^IPv6:/i, '')) : ''
    const rawName = this.connMacros.get('client_name') ?? c?.hostname
    const name = rawName && rawName !== 'unknown' && !rawName.startsWith('[') ? rawName : undefined
    return {
      address,
      ...(name ? { name } : {}),
      ...(this.helo ? { helo: this.helo } : {}),
    }
  }

  private noReply(flag: number): boolean {
    return ((this.negotiated?.protocol ?? 0) & flag) !== 0
  }

  /** Answer CONTINUE unless the step was negotiated as no-reply. */
  private async reply(noReplyFlag: number): Promise<SessionStep> {
    if (!this.noReply(noReplyFlag)) await this.write(CONTINUE)
    return 'continue'
  }

  private async write(data: Buffer): Promise<void> {
    if (this.closed) return
    await this.output.write(data)
  }

  private async resetMessage(): Promise<void> {
    const message = this.message
    this.message = undefined
    this.inflight?.abort()
    if (message) await message.content.release()
  }
}

// ---------------------------------------------------------------------------------------------
// Response planning (pure)

/** The packets answering a decision. */
export interface ResponsePlan {
  readonly packets: { readonly modifications: readonly Buffer[]; readonly final: Buffer }
  /** A body to send as SMFIR_REPLBODY, after the header changes. */
  readonly body?: MilterBodyReplacement
  /** What had to be left out or repaired, for the log. */
  readonly warnings: readonly string[]
}

/**
 * Turn a decision into responses, within the negotiated `actions`. Nothing here throws: an
 * invalid piece is repaired (reply text made printable) or left out (with a warning), never
 * allowed to take the answer down. Order: header changes and the quarantine request, then
 * the body (Postfix refuses body chunks interleaved with other requests), then the final
 * answer; `quarantine` is a request, not an answer, so it ends with SMFIR_ACCEPT too.
 */
export function planResponse(decision: MilterDecision, actions: number): ResponsePlan {
  const warnings: string[] = []
  const modifications: Buffer[] = []
  switch (decision.action) {
    case 'reject':
    case 'tempfail': {
      const kind = decision.action === 'reject' ? 5 : 4
      const plain = decision.action === 'reject' ? REJECT : TEMPFAIL
      if (!decision.reply) return { packets: { modifications, final: plain }, warnings }
      try {
        return {
          packets: { modifications, final: encodeReplyCode(sanitizeReply(decision.reply), kind) },
          warnings,
        }
      } catch (err) {
        warnings.push(`reply dropped: ${errorText(err)}`)
        return { packets: { modifications, final: plain }, warnings }
      }
    }
    case 'discard':
      return { packets: { modifications, final: DISCARD }, warnings }
    case 'accept':
    case 'quarantine':
      break
  }
  for (const edit of decision.headers ?? []) {
    const needed = edit.op === 'chgheader' ? SMFIF.CHGHDRS : SMFIF.ADDHDRS
    if ((actions & needed) === 0) {
      warnings.push(`${edit.op} ${edit.name} dropped: not negotiated`)
      continue
    }
    try {
      if (edit.op === 'addheader') modifications.push(encodeAddHeader(edit.name, edit.value))
      else if (edit.op === 'chgheader')
        modifications.push(encodeChangeHeader(edit.index, edit.name, edit.value))
      else modifications.push(encodeInsertHeader(edit.index, edit.name, edit.value))
    } catch (err) {
      warnings.push(`${edit.op} dropped: ${errorText(err)}`)
    }
  }
  let body: MilterBodyReplacement | undefined
  if (decision.body !== undefined) {
    if (actions & SMFIF.CHGBODY) body = decision.body
    else warnings.push('body replacement dropped: not negotiated')
  }
  if (decision.action === 'quarantine') {
    if ((actions & SMFIF.QUARANTINE) === 0) warnings.push('quarantine dropped: not negotiated')
    else modifications.push(encodeQuarantine(oneLine(decision.reason) || 'quarantined'))
  }
  return { packets: { modifications, final: ACCEPT }, ...(body ? { body } : {}), warnings }
}

/** Make a reply's text one printable-ASCII line (reasons may carry header text). */
export function sanitizeReply(reply: SmtpReply): SmtpReply {
  const text = oneLine(reply.text)
  const room = 510 - `${reply.code} ${reply.status ?? ''} `.length
  return { ...reply, text: text.length > room ? text.slice(0, room) : text }
}

function oneLine(text: string): string {
  return text
    .replace(/[\r\n\t]+/g, ' ')
    .replace(/[^\x20-\x7e]/g, '?')
    .trim()
}

// ---------------------------------------------------------------------------------------------
// Content: the message in bounded memory

const CRLF = Buffer.from('\r\n')

/** Render the header block (with its terminating empty line) as CRLF text. */
export function renderHeaders(headers: readonly { name: string; raw: Buffer }[]): Buffer {
  const parts: Buffer[] = []
  for (const { name, raw } of headers) {
    // The MTA strips the space after the colon unless HDR_LEADSPC was negotiated (it is not).
    parts.push(Buffer.from(`${name}: `, 'utf8'), toCrlf(raw), CRLF)
  }
  parts.push(CRLF)
  return Buffer.concat(parts)
}

/** Folded values come with LF (Postfix) or CRLF (Sendmail) between lines; make them CRLF. */
function toCrlf(value: Buffer): Buffer {
  if (!value.includes(0x0a)) return value
  return Buffer.from(value.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1')
}

/**
 * The message bytes: in memory up to `threshold`, then in a temp file (0600, a random name
 * in `dir`) that {@link release} removes.
 */
class ContentSink {
  private chunks: Buffer[] = []
  private size = 0
  private bodyOffset = 0
  private file: { path: string; handle: FileHandle | undefined } | undefined
  private released = false
  started = false

  constructor(
    private readonly dir: string,
    private readonly threshold: number,
  ) {}

  async start(headerBlock: Buffer): Promise<void> {
    this.started = true
    this.bodyOffset = headerBlock.length
    await this.append(headerBlock)
  }

  async append(chunk: Buffer): Promise<void> {
    if (this.released || chunk.length === 0) return
    this.size += chunk.length
    if (this.file) {
      await this.writeAll(chunk)
      return
    }
    this.chunks.push(chunk)
    if (this.size > this.threshold) await this.spill()
  }

  async finish(): Promise<MilterContent> {
    if (this.file) {
      const handle = this.file.handle
      this.file.handle = undefined
      await handle?.close()
      return { size: this.size, bodyOffset: this.bodyOffset, path: this.file.path }
    }
    const data = Buffer.concat(this.chunks, this.size)
    this.chunks = [data]
    return { size: this.size, bodyOffset: this.bodyOffset, data }
  }

  /** Drop the bytes and remove the spill file. */
  async release(): Promise<void> {
    if (this.released) return
    this.released = true
    this.chunks = []
    const file = this.file
    this.file = undefined
    if (!file) return
    await file.handle?.close().catch(ignore)
    await rm(file.path, { force: true })
  }

  private async spill(): Promise<void> {
    const file = path.join(this.dir, `milter-${process.pid}-${randomBytes(9).toString('hex')}.eml`)
    const handle = await open(file, 'wx', 0o600)
    if (this.released) {
      // Released while the file was being created: it was never ours to keep.
      await handle.close()
      await rm(file, { force: true })
      return
    }
    this.file = { path: file, handle }
    const pending = this.chunks
    this.chunks = []
    for (const chunk of pending) await this.writeAll(chunk)
  }

  private async writeAll(chunk: Buffer): Promise<void> {
    const handle = this.file?.handle
    if (!handle) return
    let at = 0
    while (at < chunk.length) {
      const { bytesWritten } = await handle.write(chunk, at, chunk.length - at)
      at += bytesWritten
    }
  }
}

/** Stream a message's content (from memory or its spill file). */
export function openContent(content: MilterContent): Readable {
  if (content.data) return Readable.from([content.data])
  if (content.path) return createReadStream(content.path)
  return Readable.from([])
}

/** Read a message's content into memory. */
export async function readContent(content: MilterContent): Promise<Buffer> {
  if (content.data) return content.data
  if (content.path) return readFile(content.path)
  return Buffer.alloc(0)
}

// ---------------------------------------------------------------------------------------------
// The connection driver

/** A socket-like duplex the driver talks to (a `net.Socket` in practice). */
export interface MilterSocket {
  on(event: 'data', listener: (chunk: Buffer) => void): this
  on(event: 'end' | 'close' | 'drain', listener: () => void): this
  on(event: 'error', listener: (err: Error) => void): this
  once(event: 'drain' | 'close', listener: () => void): this
  removeListener(event: 'drain' | 'close', listener: () => void): this
  write(data: Buffer): boolean
  end(): void
  destroy(): void
  pause(): void
  resume(): void
  readonly destroyed: boolean
  readonly writable: boolean
}

/** Commands queued beyond this pause reading from the MTA (it streams body chunks unanswered). */
const HIGH_WATER = 32
const LOW_WATER = 8

/** A running connection: its session and when it is over. */
export interface MilterConnection {
  readonly session: MilterSession
  /** Resolves when the connection is closed and everything it held is released. */
  readonly done: Promise<void>
  /** End the connection: pending answers are flushed, then the socket closes (server shutdown). */
  close(): void
  /** End the connection now, dropping anything unsent. */
  destroy(): void
}

/**
 * Run one milter connection over `socket`: decode packets, feed the session one command at a
 * time, pause reading while commands pile up, and close the connection (only this one) on a
 * protocol error, logging it. Resolves `done` once the socket is closed and released.
 */
export function serveMilterConnection(socket: MilterSocket, options: MilterSessionOptions): MilterConnection {
  const log = options.log
  const decoder = new FrameDecoder(options.maxPacket ?? DEFAULT_MAX_PACKET)
  const queue: MilterCommand[] = []
  let running = false
  let paused = false
  let finished = false
  let inputEnded = false
  let resolveDone: () => void = ignore
  const done = new Promise<void>((resolve) => {
    resolveDone = resolve
  })

  const output: MilterOutput = {
    write(data) {
      if (socket.destroyed || !socket.writable) return Promise.resolve()
      if (socket.write(data)) return Promise.resolve()
      return drainedOrClosed(socket)
    },
  }
  const session = new MilterSession(options, output)

  const finish = (): void => {
    if (finished) return
    finished = true
    queue.length = 0
    void session
      .close()
      .catch((err: unknown) => log?.error({ err: errorText(err) }, 'milter cleanup failed'))
      .finally(resolveDone)
  }

  const fail = (err: unknown): void => {
    const code = err instanceof MilterProtocolError ? err.code : undefined
    // After the connection is gone, a failing write to a released spill file is no news.
    if (finished) log?.debug({ code, err: errorText(err) }, 'milter error after close')
    else log?.warn({ code, err: errorText(err) }, 'milter session error')
    queue.length = 0
    socket.destroy()
    finish()
  }

  const pump = async (): Promise<void> => {
    if (running) return
    running = true
    try {
      while (queue.length > 0 && !finished) {
        const command = queue.shift() as MilterCommand
        const step = await session.handle(command)
        if (step === 'close') {
          queue.length = 0
          socket.end()
          finish()
          break
        }
        if (paused && queue.length <= LOW_WATER) {
          paused = false
          socket.resume()
        }
      }
    } catch (err) {
      fail(err)
    } finally {
      running = false
    }
    if (inputEnded && !finished) {
      socket.end()
      finish()
    }
  }

  socket.on('data', (chunk: Buffer) => {
    if (finished) return
    try {
      for (const packet of decoder.push(chunk)) queue.push(decodeCommand(packet))
    } catch (err) {
      fail(err)
      return
    }
    if (!paused && queue.length >= HIGH_WATER) {
      paused = true
      socket.pause()
    }
    void pump()
  })
  socket.on('error', (err: Error) => {
    log?.debug({ err: err.message }, 'milter socket error')
  })
  socket.on('end', () => {
    // The MTA hung up without QUIT (it does after its own timeouts): finish what was sent, then go.
    inputEnded = true
    void pump()
  })
  socket.on('close', finish)

  return {
    session,
    done,
    close() {
      socket.end()
      finish()
      // A peer that never reads would keep a half-closed socket forever.
      setTimeout(() => socket.destroy(), 1000).unref()
    },
    destroy() {
      socket.destroy()
      finish()
    },
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

function compactConnect(command: {
  hostname: string
  family: ConnectFamily
  port?: number
  address?: string
}): MilterConnectInfo {
  const { hostname, family, port, address } = command
  return {
    hostname,
    family,
    ...(address === undefined ? {} : { address }),
    ...(port === undefined ? {} : { port }),
  }
}

/** `{client_addr}` → `client_addr`; `j` stays `j`. */
function unbrace(name: string): string {
  return name.length > 2 && name.startsWith('{') && name.endsWith('}') ? name.slice(1, -1) : name
}

/** `<a@b>` → `a@b`; `<>` → ``. */
function unbracket(path: string): string {
  const trimmed = path.trim()
  return trimmed.startsWith('<') && trimmed.endsWith('>') ? trimmed.slice(1, -1) : trimmed
}

type Outcome<T> =
  | { readonly kind: 'value'; readonly value: T }
  | { readonly kind: 'error'; readonly error: unknown }
  | { readonly kind: 'timeout' }

/**
 * Run `task` against a timer. Never rejects; the timer never outlives the race, and a task
 * that fails after losing it is not an unhandled rejection.
 */
async function withTimeout<T>(task: () => T | Promise<T>, ms: number): Promise<Outcome<T>> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<Outcome<T>>((resolve) => {
    timer = setTimeout(() => resolve({ kind: 'timeout' }), ms)
  })
  const settled = Promise.resolve()
    .then(task)
    .then(
      (value): Outcome<T> => ({ kind: 'value', value }),
      (error: unknown): Outcome<T> => ({ kind: 'error', error }),
    )
  try {
    return await Promise.race([settled, timeout])
  } finally {
    clearTimeout(timer)
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function ignore(): void {}
