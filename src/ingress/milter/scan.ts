/**
 * The milter front end's handler: each message the MTA holds goes through the same worker
 * pool, plugin chain and policy as in content-filter mode (with the milter's own action
 * lists), and the report becomes the milter's answer. Nothing is spooled: the MTA keeps
 * custody of the message.
 */
import { readFile } from 'node:fs/promises'
import type { Logger } from 'pino'
import type { Metrics } from '../../metrics/metrics.js'
import type { ScanPool } from '../../pipeline/pool.js'
import { newQueueId } from '../../queue/ids.js'
import { toMilterDecision } from './decide.js'
import type { MilterMessageHandler } from './session.js'

/** A {@link MilterMessageHandler} that scans with `pool`. */
export function milterScanHandler(pool: ScanPool, log: Logger, metrics?: Metrics): MilterMessageHandler {
  // The session's signal drops a scan still waiting for a place; one already running
  // finishes (its answer is dropped) rather than take down its thread and the scans beside it.
  return async (message, signal) => {
    const queueId = newQueueId()
    const started = performance.now()
    const raw = message.content.data ?? (await readFile(message.content.path as string))
    const result = await pool.run(
      {
        queueId,
        slot: '',
        front: 'milter',
        entry: { header: { v: 1, id: queueId, envelope: message.envelope }, message: raw },
      },
      { signal },
    )
    const { report } = result
    const stripped = result.stripped
      ? Buffer.from(result.stripped.buffer, result.stripped.byteOffset, result.stripped.byteLength)
      : undefined
    const decision = toMilterDecision(report, message.headers, stripped)
    const { verdict, disposition } = report
    metrics?.scanned(report, (performance.now() - started) / 1000)
    metrics?.milterAnswered(decision.action)
    log[verdict.category === 'clean' && disposition ? 'info' : 'warn'](
      {
        qid: queueId,
        mtaQueueId: message.queueId,
        messageId: report.messageId,
        from: message.envelope.mailFrom,
        to: message.envelope.rcptTo,
        client: message.envelope.client.address,
        ...(disposition
          ? { verdict: verdict.category, actions: disposition.actions, rule: disposition.rule }
          : { tempfail: verdict.tempfail }),
        score: verdict.score,
        symbols: verdict.hits.map((h) => h.symbol),
        ...(verdict.reasons.length > 0 ? { reason: verdict.reasons } : {}),
        answer: decision.action,
        timings: report.timings,
        ms: Math.round(performance.now() - started),
      },
      'milter verdict',
    )
    return decision
  }
}
