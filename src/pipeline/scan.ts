import type { Logger } from 'pino'
import type { Envelope } from '../ingress/envelope.js'
import { applyEdits } from '../mail/edits.js'
import { createMessageView } from '../mail/message.js'
import { stripParts } from '../mail/strip.js'
import type { QueueId } from '../queue/ids.js'
import { compilePolicy, type Disposition, type PolicySettings, plan } from './actions.js'
import type { PluginRef } from './registry.js'
import { type ReadyPlugin, runChecks } from './runner.js'
import { decide, type SymbolInfo, type Verdict } from './verdict.js'

/** Everything a thread needs to scan: JSON-safe, so it crosses into workers as workerData. */
export interface ScanSettings {
  readonly plugins: readonly PluginRef[]
  /** The effective score table (weights after the scores file) as entries. */
  readonly symbols: ReadonlyArray<readonly [string, SymbolInfo]>
  readonly policy: PolicySettings
  /** The policy of the milter front end (its own action lists), when it is configured. */
  readonly milterPolicy?: PolicySettings
}

/** The result of scanning one message. Plain data. */
export interface ScanReport {
  readonly queueId: QueueId
  readonly verdict: Verdict
  /** Milliseconds per plugin. */
  readonly timings: Readonly<Record<string, number>>
  /** Plugins whose check threw or timed out (each left its `_FAIL` symbol). */
  readonly failedChecks: readonly string[]
  readonly messageId?: string
  /** What happens to the message; absent while the verdict is not final (tempfail). */
  readonly disposition?: Disposition
}

/** One message to scan. */
export interface ScanInput {
  readonly queueId: QueueId
  readonly envelope: Envelope
  readonly raw: Buffer
  readonly log: Logger
  /** The last scan before the queue lifetime ends: a tempfail makes it unscannable. */
  readonly lastChance?: boolean
  /** Which front end asks: the milter has its own action lists. Default: content filter. */
  readonly front?: 'filter' | 'milter'
}

/** A scanner bound to its plugins and settings, reused for every message of a thread. */
export interface Scanner {
  scan(input: ScanInput): Promise<ScanReport>
  /** The delivered copy: stripped parts removed, then the header edits applied. */
  render(raw: Buffer, report: ScanReport): Buffer[]
}

/** Build a {@link Scanner}: runs the checks, decides the verdict, plans the actions. */
export function createScanner(plugins: readonly ReadyPlugin[], settings: ScanSettings): Scanner {
  const symbols = new Map(settings.symbols)
  const filterPolicy = compilePolicy(settings.policy)
  const milterPolicy = settings.milterPolicy ? compilePolicy(settings.milterPolicy) : filterPolicy
  return {
    async scan({ queueId, envelope, raw, log, lastChance, front }) {
      const policy = front === 'milter' ? milterPolicy : filterPolicy
      const message = createMessageView(raw)
      const outcomes = await runChecks(plugins, { queueId, envelope, message, log })
      const listed = policy.listed(envelope)
      const verdict = decide(outcomes, symbols, settings.policy.verdict, {
        ...(listed ? { listed } : {}),
        ...(lastChance ? { lastChance } : {}),
      })
      const timings: Record<string, number> = {}
      for (const o of outcomes) timings[o.plugin] = Math.round(o.durationMs * 100) / 100
      const messageId = message.header('message-id')[0]
      return {
        queueId,
        verdict,
        timings,
        failedChecks: outcomes.filter((o) => o.failure !== undefined).map((o) => o.plugin),
        ...(messageId === undefined ? {} : { messageId }),
        ...(verdict.final ? { disposition: plan(verdict, envelope, queueId, policy) } : {}),
      }
    },
    render(raw, report) {
      const strip = report.disposition?.strip
      const body = strip
        ? stripParts(raw, strip.parts === 'all' ? 'all' : new Set(strip.parts), strip.notice)
        : raw
      return applyEdits(body, report.disposition?.edits ?? [])
    },
  }
}
