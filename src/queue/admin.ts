/**
 * The administrator's operations on queued mail, for `mailscreen queue show|delete|requeue`
 * (Postfix's postcat -q, postsuper -d and postsuper -r). They run in the CLI's process, next
 * to a mailscreen that may be running on the same spool, so they only touch mail that the
 * running process is not working on, or hand mail to it the way it expects (through
 * `deferred/`, due now).
 */
import { MailscreenError, toErrorInfo } from '../errors.js'
import { parseQueueId, type QueueId } from './ids.js'
import { type Claim, isMissing, type Spool, type SpoolEntry, type SpoolState } from './spool.js'

/** States a queued message can be in (quarantine has its own commands). */
export const QUEUE_STATES: readonly SpoolState[] = [
  'incoming',
  'processing',
  'outgoing',
  'deferred',
  'failed',
]

/** States whose mail a running mailscreen is scanning or delivering right now. */
const IN_FLIGHT: ReadonlySet<SpoolState> = new Set(['incoming', 'processing', 'outgoing'])

/** A queue ID from the command line, or MSC_NOT_FOUND. */
export function queueIdArgument(text: string): QueueId {
  const id = parseQueueId(text)
  if (!id) throw new MailscreenError('MSC_NOT_FOUND', `not a queue ID: ${JSON.stringify(text)}`)
  return id
}

/** Which queue state holds `id`; MSC_NOT_FOUND (naming the quarantine when it is there) if none. */
export async function queuedState(spool: Spool, id: QueueId): Promise<SpoolState> {
  const state = await spool.find(id)
  if (state === 'quarantine')
    throw new MailscreenError(
      'MSC_NOT_FOUND',
      `${id} is in quarantine (see: mailscreen quarantine show ${id})`,
    )
  if (state === undefined)
    throw new MailscreenError('MSC_NOT_FOUND', `${id} is not queued (delivered, or never accepted)`)
  return state
}

/** A queued message with its state; MSC_NOT_FOUND when it moved on meanwhile. */
export async function readQueued(
  spool: Spool,
  id: QueueId,
): Promise<{ state: SpoolState; entry: SpoolEntry }> {
  const state = await queuedState(spool, id)
  try {
    return { state, entry: await spool.read(state, id) }
  } catch (err) {
    if (isMissing(err))
      throw new MailscreenError('MSC_NOT_FOUND', `${id} moved on while being read; try again`)
    throw err
  }
}

/**
 * Delete a queued message for good; returns the states it was deleted from. Mail a running
 * mailscreen is scanning or delivering (`owner` is its PID) is refused: its copy in memory
 * would still go out. (A deferred message whose retry is under way at that moment may still go
 * out once; the runner then finds it deleted and does not retry it.) With no mailscreen
 * running, every copy goes: a crash can leave an original in `processing/` beside its scanned
 * copy in `outgoing/` or `deferred/`.
 */
export async function deleteQueued(
  spool: Spool,
  id: QueueId,
  owner: number | undefined,
): Promise<SpoolState[]> {
  const state = await queuedState(spool, id)
  if (owner !== undefined) {
    if (IN_FLIGHT.has(state))
      throw new MailscreenError(
        'MSC_IN_FLIGHT',
        `${id} is ${state === 'outgoing' ? 'being delivered' : 'being scanned'} by mailscreen (pid ${owner}); delete it once it is deferred, or stop mailscreen first`,
      )
    if (!(await spool.discard(state, id)))
      throw new MailscreenError('MSC_NOT_FOUND', `${id} left ${state}/ meanwhile; see: mailscreen queue list`)
    return [state]
  }
  const deleted: SpoolState[] = []
  for (const each of QUEUE_STATES) if (await spool.discard(each, id)) deleted.push(each)
  return deleted
}

/**
 * Scan a message of `failed/` again (after the administrator fixed what made it crash the
 * workers), with its queue lifetime started again: it goes to `deferred/` with a retry state
 * "scan, due now", which the running
 * mailscreen's next queue run (or a flush) takes back to the scan, as for a tempfailed check.
 */
export async function requeueFailed(spool: Spool, id: QueueId): Promise<string | undefined> {
  const state = await queuedState(spool, id)
  if (state !== 'failed')
    throw new MailscreenError(
      'MSC_NOT_FAILED',
      `${id} is in ${state}/, not failed/: only mail that crashed the scan is requeued (deferred mail: mailscreen queue flush)`,
    )
  const gone = (): MailscreenError => new MailscreenError('MSC_NOT_FOUND', `${id} left failed/ meanwhile`)
  // Taken first: of two requeues at once only one gets it, so it is scanned once.
  let claim: Claim
  try {
    claim = await spool.claim('failed', id)
  } catch (err) {
    throw isMissing(err) ? gone() : err
  }
  const { header, message } = claim.entry
  try {
    // The retry state goes first, so that a sweep never sees the message without it.
    await spool.writeRetry(id, {
      phase: 'scan',
      attempts: 0,
      nextAttemptAt: 0,
      pending: header.envelope.rcptTo,
    })
    // Its queue lifetime starts again, like `postsuper -r`.
    await spool.create('deferred', { ...header, lifetimeFrom: Date.now() }, message)
  } catch (err) {
    // create leaves nothing in deferred/ when it fails: the message goes back to failed/.
    if (await spool.holds('deferred', id)) await claim.done()
    else {
      await spool.removeRetry(id)
      claim.undo()
    }
    throw err
  }
  // Requeued from here on, whatever follows. A claim left behind would go back into failed/ at
  // the next start, and a second requeue would deliver the message twice: said, not thrown.
  return claim.done().then(
    () => undefined,
    (err: unknown) =>
      `but its claim failed/${id}.claimed could not be removed (${toErrorInfo(err).message}): remove it by hand, or the next start puts the message back into failed/`,
  )
}
