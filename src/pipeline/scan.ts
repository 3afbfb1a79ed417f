import type { Logger } from 'pino'
import type { Envelope } from '../ingress/envelope.js'
import { applyEdits, type HeaderEdit } from '../mail/edits.js'
import { createMessageView } from '../mail/message.js'
import type { QueueId } from '../queue/ids.js'
import { type ActionSettings, headerActions } from './actions.js'
import { declaredSymbols } from './plugin.js'
import { importDefinition, type PluginRef, validateOptions } from './registry.js'
import { type ReadyPlugin, runChecks } from './runner.js'
import { decide, type Verdict, type VerdictPolicy } from './verdict.js'

/** Everything a thread needs to scan: JSON-safe, so it crosses into workers as workerData. */
export interface ScanSettings {
  readonly plugins: readonly PluginRef[]
  /** The effective score table as entries. */
  readonly weights: ReadonlyArray<readonly [string, number]>
  readonly policy: VerdictPolicy
  readonly actions: ActionSettings
}

/** The result of scanning one message. Plain data. */
export interface ScanReport {
  readonly queueId: QueueId
  readonly verdict: Verdict
  /** Milliseconds per plugin. */
  readonly timings: Readonly<Record<string, number>>
  readonly messageId?: string
  readonly edits: readonly HeaderEdit[]
}

/** Import every plugin, validate its options and run its `setup` once for this thread. */
export async function setupPlugins(refs: readonly PluginRef[], log: Logger): Promise<ReadyPlugin[]> {
  const ready: ReadyPlugin[] = []
  for (const ref of refs) {
    const definition = await importDefinition(ref.url)
    const options = validateOptions(definition, ref.rawOptions)
    const check = await definition.setup(options, { log: log.child({ plugin: definition.name }) })
    ready.push({
      name: definition.name,
      check,
      timeoutMs: ref.timeoutMs,
      onError: ref.onError,
      symbols: declaredSymbols(definition, options),
    })
  }
  return ready
}

/** A scanner bound to its plugins and settings, reused for every message of a thread. */
export interface Scanner {
  scan(input: { queueId: QueueId; envelope: Envelope; raw: Buffer; log: Logger }): Promise<ScanReport>
  /** The message as it goes on: the report's edits applied to the raw bytes. */
  render(raw: Buffer, report: ScanReport): Buffer[]
}

/** Build a {@link Scanner}: runs the checks, decides the verdict, picks header actions. */
export function createScanner(plugins: readonly ReadyPlugin[], settings: ScanSettings): Scanner {
  const weights = new Map(settings.weights)
  return {
    async scan({ queueId, envelope, raw, log }) {
      const message = createMessageView(raw)
      const outcomes = await runChecks(plugins, { queueId, envelope, message, log })
      const verdict = decide(outcomes, weights, settings.policy)
      const timings: Record<string, number> = {}
      for (const o of outcomes) timings[o.plugin] = Math.round(o.durationMs * 100) / 100
      const messageId = message.header('message-id')[0]
      const edits = headerActions(verdict, envelope, queueId, settings.actions)
      return messageId === undefined
        ? { queueId, verdict, timings, edits }
        : { queueId, verdict, timings, messageId, edits }
    },
    render(raw, report) {
      return applyEdits(raw, report.edits)
    },
  }
}
