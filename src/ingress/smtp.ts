import type { Logger } from 'pino'
import type { Config } from '../config/schema.js'
import type { Metrics } from '../metrics/metrics.js'
import type { SpoolSpace } from '../queue/free-space.js'
import { newQueueId, type QueueId } from '../queue/ids.js'
import type { Spool, SpoolEntry } from '../queue/spool.js'
import type { Envelope } from './envelope.js'
import type { InFlow } from './in-flow.js'
import { reply, type SmtpReply } from './smtp-reply.js'
import { createSmtpServer, type SmtpServer, type Transaction } from './smtp-server.js'
import { trustedNetworks } from './trusted.js'

export interface SmtpIngressDeps {
  readonly config: Config
  readonly spool: Spool
  /** Free space on the spool's disk: MAIL FROM is refused while it is short. */
  readonly space?: SpoolSpace
  readonly metrics?: Metrics
  /** Paces MAIL FROM while the backlog is over `smtp.maxBacklog`. */
  readonly inFlow?: InFlow
  readonly log: Logger
  /** Called once a message is durably in `incoming/`, with its bytes when they are still in memory. */
  readonly onQueued: (id: QueueId, entry?: SpoolEntry) => void
  /**
   * Routing's answer to one RCPT TO: a refusal (unknown user of a domain of ours, a
   * mailertable `error:` entry), or undefined to accept. Without it every syntactically valid
   * recipient is accepted.
   */
  readonly checkRecipient?: (
    address: string,
    mailFrom: string,
  ) => RecipientRefusal | undefined | Promise<RecipientRefusal | undefined>
}

/** A refusal of one recipient: basic code, enhanced status code and text. */
export interface RecipientRefusal {
  readonly code: number
  readonly status: string
  readonly text: string
}

const NO_ROOM = reply(452, '4.3.1', 'Insufficient system storage')

/** Error codes on the data stream that mean the session ended before the final dot. */
const SESSION_ENDED = new Set(['ECONNRESET', 'ETIMEDOUT', 'ECONNABORTED'])

/**
 * The after-queue content-filter listener: only trusted peers (the MTA) may connect; each
 * message is fsynced into the spool before the 250 that lets the MTA forget it.
 */
export function createSmtpIngress({
  config,
  spool,
  space,
  metrics,
  inFlow,
  log,
  onQueued,
  checkRecipient,
}: SmtpIngressDeps): SmtpServer {
  const isTrusted = trustedNetworks(config.smtp.trusted)
  const refused = (address: string, tx: Transaction, refusal: RecipientRefusal | undefined) => {
    if (!refusal) return undefined
    metrics?.smtpRefused({ stage: 'rcpt', code: refusal.code })
    log.info(
      {
        client: tx.client.address,
        from: tx.mailFrom,
        to: address,
        reply: `${refusal.code} ${refusal.status} ${refusal.text}`,
      },
      'recipient refused',
    )
    return reply(refusal.code, refusal.status, refusal.text)
  }
  const onRecipient = checkRecipient
    ? (address: string, tx: Transaction): SmtpReply | undefined | Promise<SmtpReply | undefined> => {
        const answer = checkRecipient(address, tx.mailFrom)
        return answer instanceof Promise
          ? answer.then((refusal) => refused(address, tx, refusal))
          : refused(address, tx, answer)
      }
    : undefined
  const server = createSmtpServer({
    hostname: config.hostname,
    lmtp: config.smtp.lmtp,
    maxSize: config.smtp.maxSize,
    maxRecipients: config.smtp.maxRecipients,
    idleTimeoutMs: config.smtp.idleTimeout,
    onConnect(peer) {
      if (isTrusted(peer.address)) return undefined
      log.warn({ peer: peer.address }, 'connection refused: not in smtp.trusted')
      return reply(554, '5.7.1', `${config.hostname} Access denied: ${peer.address} is not a trusted MTA`)
    },
    allowForwarding: (peer) => isTrusted(peer.address),
    onMail(tx) {
      if (!space || space.hasRoomFor(tx.declaredSize)) {
        if (!inFlow?.pacing) return undefined
        metrics?.mailPaced()
        return inFlow.wait().then(() => undefined)
      }
      metrics?.smtpRefused({ stage: 'mail', code: NO_ROOM.code })
      log.info(
        { client: tx.client.address, from: tx.mailFrom, size: tx.declaredSize, free: space.freeNow },
        'mail refused: 452 4.3.1 spool disk short of space',
      )
      return NO_ROOM
    },
    ...(onRecipient ? { onRecipient } : {}),
    onError: (err, peer) => log.error({ peer: peer?.address, err: (err as Error).message }, 'smtp error'),
    async onMessage(tx, data) {
      const id = newQueueId()
      let received: SpoolEntry | undefined
      const envelope: Envelope = {
        mailFrom: tx.mailFrom,
        rcptTo: tx.rcptTo,
        client: tx.client,
        peer: tx.peer,
        receivedAt: Date.now(),
        ...(tx.body === undefined ? {} : { body: tx.body }),
        ...(tx.smtpUtf8 ? { smtpUtf8: true } : {}),
        ...(tx.dsn === undefined ? {} : { dsn: tx.dsn }),
      }
      try {
        const { size, entry } = await spool.receive({ v: 1, id, envelope }, data)
        received = entry
        metrics?.messageReceived(size)
        log.info(
          {
            qid: id,
            client: tx.client.address,
            clientName: tx.client.name,
            helo: tx.client.helo,
            mtaQueueId: tx.ident,
            from: tx.mailFrom,
            to: tx.rcptTo,
            size,
          },
          'received',
        )
      } catch (err) {
        const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as { code?: string }).code
        const responseCode = (err as { responseCode?: number }).responseCode
        if (responseCode !== undefined) {
          metrics?.smtpRefused({ stage: 'data', code: responseCode })
          log.warn({ qid: id, from: tx.mailFrom, reason: (err as Error).message }, 'rejected')
          throw err
        }
        if (cause !== undefined && SESSION_ENDED.has(cause)) {
          // The client went away mid-DATA: nothing was acknowledged, so nothing is lost.
          log.info({ qid: id, from: tx.mailFrom, reason: cause }, 'aborted')
          throw err
        }
        metrics?.smtpRefused({ stage: 'data', code: 451 })
        log.error({ qid: id, err: (err as Error).message, from: tx.mailFrom }, 'spool write failed')
        // A full disk: measure now, so the next MAIL FROM is refused instead of sent in vain.
        void space?.measure()
        return reply(451, '4.3.0', 'Error: queue file write error, try again later')
      }
      onQueued(id, received)
      return reply(250, '2.0.0', `Ok: queued as ${id}`)
    },
  })
  return server
}
