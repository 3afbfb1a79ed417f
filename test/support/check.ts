import { pino } from 'pino'
import type { Envelope } from '../../src/ingress/envelope.js'
import { createMessageView } from '../../src/mail/message.js'
import type { Check, Hit } from '../../src/pipeline/plugin.js'
import { newQueueId } from '../../src/queue/ids.js'

/** A logger that prints nothing, for plugin setup and checks under test. */
export const silentLog = pino({ level: 'silent' })

/** The envelope plugin tests run with: a client outside loopback, as an MTA would forward it. */
export const testEnvelope: Envelope = {
  mailFrom: 'a@example.org',
  rcptTo: ['b@example.net'],
  client: { address: '192.0.2.1' },
  peer: { address: '127.0.0.1' },
  receivedAt: 0,
}

/** Run a plugin's check on raw message bytes the way the runner does, with a fresh queue ID. */
export function runCheck(
  check: Check,
  raw: Buffer,
  signal: AbortSignal = AbortSignal.timeout(20_000),
  deadline = Date.now() + 20_000,
): Promise<readonly Hit[]> {
  return check({
    queueId: newQueueId(),
    envelope: testEnvelope,
    message: createMessageView(raw),
    log: silentLog,
    signal,
    deadline,
  })
}
