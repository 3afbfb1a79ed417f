import type { Logger } from 'pino'
import { type ErrorInfo, MailscreenError, toErrorInfo } from '../errors.js'
import type { Envelope } from '../ingress/envelope.js'
import { lazyChild } from '../log.js'
import type { MessageView } from '../mail/message.js'
import type { QueueId } from '../queue/ids.js'
import { type Check, type FailurePolicy, failSymbol, type Hit, type SymbolSpec } from './plugin.js'

/** A plugin ready to run in this thread: its check built by `setup`. */
export interface ReadyPlugin {
  readonly name: string
  readonly check: Check
  readonly timeoutMs: number
  readonly onError: FailurePolicy
  readonly symbols: Readonly<Record<string, SymbolSpec>>
}

/** What one check produced. Plain data. */
export interface CheckOutcome {
  readonly plugin: string
  readonly hits: readonly Hit[]
  readonly durationMs: number
  /** Set when the check threw, timed out or returned a bad hit (an undeclared symbol, say). */
  readonly failure?: ErrorInfo & { readonly policy: FailurePolicy }
}

/** The message a run looks at. */
export interface RunInput {
  readonly queueId: QueueId
  readonly envelope: Envelope
  readonly message: MessageView
  readonly log: Logger
}

function withTimeout(
  plugin: ReadyPlugin,
  run: (signal: AbortSignal, deadline: number) => Promise<readonly Hit[]>,
): Promise<readonly Hit[]> {
  const controller = new AbortController()
  const deadline = Date.now() + plugin.timeoutMs
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new MailscreenError(
        'MSC_PLUGIN_TIMEOUT',
        `${plugin.name} did not answer within ${plugin.timeoutMs} ms`,
      )
      controller.abort(err)
      reject(err)
    }, plugin.timeoutMs)
  })
  // new Promise() turns a synchronous throw from a non-async check into a rejection, so the
  // race (and the finally that disarms the timer) is always set up.
  const checked = new Promise<readonly Hit[]>((resolve) => resolve(run(controller.signal, deadline)))
  return Promise.race([checked, timeout]).finally(() => clearTimeout(timer))
}

const isStrings = (value: unknown): boolean =>
  Array.isArray(value) && value.every((item) => typeof item === 'string')

/** What is wrong with one hit, if anything: one bad value (a NaN factor) must not spoil the score. */
function hitProblem(plugin: ReadyPlugin, hit: Hit): string | undefined {
  if (typeof hit !== 'object' || hit === null) return 'a hit that is not an object'
  if (!Object.hasOwn(plugin.symbols, hit.symbol)) return `undeclared symbol ${hit.symbol}`
  if (hit.factor !== undefined && !(typeof hit.factor === 'number' && Number.isFinite(hit.factor)))
    return `${hit.symbol} with factor ${String(hit.factor)}, not a finite number`
  if (hit.evidence !== undefined && !isStrings(hit.evidence))
    return `${hit.symbol} with evidence that is not strings`
  if (hit.parts !== undefined && !isStrings(hit.parts)) return `${hit.symbol} with parts that are not strings`
  return undefined
}

function checkHits(plugin: ReadyPlugin, hits: readonly Hit[]): void {
  if (!Array.isArray(hits))
    throw new MailscreenError('MSC_PLUGIN_FAILED', `${plugin.name} returned no list of hits`)
  for (const hit of hits) {
    const problem = hitProblem(plugin, hit)
    if (problem) throw new MailscreenError('MSC_PLUGIN_FAILED', `${plugin.name} returned ${problem}`)
  }
}

async function runOne(plugin: ReadyPlugin, input: RunInput): Promise<CheckOutcome> {
  const started = performance.now()
  const log = lazyChild(input.log, { plugin: plugin.name })
  try {
    const hits = await withTimeout(plugin, (signal, deadline) =>
      plugin.check({
        queueId: input.queueId,
        envelope: input.envelope,
        message: input.message,
        log,
        signal,
        deadline,
      }),
    )
    checkHits(plugin, hits)
    return { plugin: plugin.name, hits, durationMs: performance.now() - started }
  } catch (err) {
    const info = toErrorInfo(err)
    const code =
      info.code === 'MSC_PLUGIN_TIMEOUT' || info.code === 'MSC_PLUGIN_FAILED'
        ? info.code
        : 'MSC_PLUGIN_FAILED'
    log.warn({ err: info, policy: plugin.onError }, 'check failed')
    return {
      plugin: plugin.name,
      hits: [{ symbol: failSymbol(plugin.name), evidence: [info.message] }],
      durationMs: performance.now() - started,
      failure: { code, message: info.message, policy: plugin.onError },
    }
  }
}

/**
 * Run every check on one message concurrently, each under its own timeout. A throw, a
 * timeout and a hit that is not well-formed (an undeclared symbol, a factor that is not a
 * finite number) are all failures: they leave the plugin's `_FAIL` hit and
 * carry its policy. Never rejects.
 */
export function runChecks(plugins: readonly ReadyPlugin[], input: RunInput): Promise<CheckOutcome[]> {
  return Promise.all(plugins.map((plugin) => runOne(plugin, input)))
}
