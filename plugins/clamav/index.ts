/**
 * clamav — scans the whole raw message with clamd (INSTREAM over TCP or a unix socket).
 * clamd decodes MIME and unpacks archives itself. Anything that is not a clean/infected
 * verdict (ERROR replies such as StreamMaxLength, unreachable clamd, timeouts) throws, so
 * it becomes CLAMAV_FAIL under the plugin's failure policy (default tempfail: an unscanned
 * message is never delivered as clean). One connection per scan.
 *
 * When the message is infected, each MIME part is scanned again on its own to name the parts
 * that carry the virus, so `strip` removes only those, and the message without them is scanned
 * once more: clamd finds some viruses only in the whole (a uuencoded program in a text part).
 * Whenever the parts cannot be told so (a virus found only in the whole, a part scan that
 * fails, a remainder still infected, no time left), the hit goes without parts and `strip`
 * removes everything.
 */
import { z } from 'zod'
import { definePlugin, type MessageView, type OptionsEnv, serviceOptions } from '../../src/pipeline/plugin.js'
import { instream } from './instream.js'

/** Parts scanned one by one to locate a virus; a message with more is stripped whole. */
const MAX_LOCATED_PARTS = 64
/** Time kept back from the check's deadline for returning the hit once locating stops. */
const DEADLINE_MARGIN_MS = 250

type Scan = (data: Buffer, signal: AbortSignal) => ReturnType<typeof instream>

/**
 * The IDs of the parts clamd flags on their own, provided the message without them scans
 * clean; undefined when that cannot be told: too many parts, an error reply, a scan that fails
 * or runs out of `budgetMs`, a remainder clamd still flags. The virus is found either way;
 * locating it must never cost the finding.
 */
async function infectedParts(
  message: MessageView,
  scan: Scan,
  signal: AbortSignal,
  budgetMs: number,
): Promise<string[] | undefined> {
  const parts = message.parts()
  if (parts.length > MAX_LOCATED_PARTS || budgetMs <= 0) return undefined
  // A controller and a timer of our own, not AbortSignal.timeout(): Node 20 lets the garbage
  // collector take a timeout signal that only AbortSignal.any() refers to, and the budget with it
  // (nodejs/node#57736).
  const budget = new AbortController()
  const timer = setTimeout(() => budget.abort(new Error(`part scans took over ${budgetMs} ms`)), budgetMs)
  const bounded = AbortSignal.any([signal, budget.signal])
  const found: string[] = []
  try {
    for (const part of parts) {
      const content = part.content()
      if (content.length === 0) continue
      const result = await scan(content, bounded)
      if (result.status === 'error') return undefined
      if (result.status === 'infected') found.push(part.id)
    }
    if (found.length === 0) return undefined
    const rest = without(message, found)
    if (rest.length === 0) return found
    return (await scan(rest, bounded)).status === 'clean' ? found : undefined
  } catch {
    return undefined
  } finally {
    clearTimeout(timer)
  }
}

/** The raw message without the byte ranges of the parts `ids`: what `strip` would deliver, less its notes. */
function without(message: MessageView, ids: readonly string[]): Buffer {
  const cuts = message
    .parts()
    .filter((p) => ids.includes(p.id))
    .sort((a, b) => a.cutStart - b.cutStart)
  const kept: Buffer[] = []
  let at = 0
  for (const part of cuts) {
    kept.push(message.raw.subarray(at, part.cutStart))
    at = part.end
  }
  kept.push(message.raw.subarray(at))
  return Buffer.concat(kept)
}

/**
 * Time the part scans get: about as many bytes again as the whole message's scan, and the
 * remainder once more, so about twice as long, and a little more; but never past the check's
 * deadline, past which the runner discards the hit. Out of time, it goes without parts.
 */
function partBudgetMs(wholeScanMs: number, deadline: number): number {
  return Math.min(Math.ceil(2 * wholeScanMs) + 1_000, deadline - Date.now() - DEADLINE_MARGIN_MS)
}

/** clamd's TCPAddr and TCPSocket (default port 3310) or its LocalSocket, and how to stream. */
const options = (env: OptionsEnv) =>
  serviceOptions(env, 3310, {
    /** Bytes per INSTREAM chunk. Default 64 KiB. Must stay below clamd's StreamMaxLength. */
    chunkSize: z
      .number()
      .int()
      .min(1)
      .max(16 * 1024 * 1024)
      .default(64 * 1024),
    /** Milliseconds to connect before failing. Default 5000. The whole scan is bounded by the plugin timeout. */
    connectTimeoutMs: z.number().int().min(1).default(5000),
  })

export default definePlugin({
  name: 'clamav',
  description: 'Scans the raw message with clamd (INSTREAM)',
  options,
  symbols: {
    CLAMAV_VIRUS: {
      description: 'clamd found a virus (evidence: the signature names)',
      weight: 100,
      category: 'virus',
    },
  },
  timeoutMs: 30_000,
  onError: 'tempfail',
  setup({ target, chunkSize, connectTimeoutMs }) {
    return async ({ message, signal, deadline }) => {
      const scan: Scan = (data, until) =>
        instream(target, data, {
          signal: until,
          chunkSize,
          connectTimeoutMs,
          // The plugin timeout (signal) bounds the scan; this is a backstop if no signal ever fires.
          timeoutMs: 10 * 60_000,
        })
      const started = performance.now()
      const result = await scan(message.raw, signal)
      switch (result.status) {
        case 'clean':
          return []
        case 'infected': {
          const budget = partBudgetMs(performance.now() - started, deadline)
          const parts = await infectedParts(message, scan, signal, budget)
          return [{ symbol: 'CLAMAV_VIRUS', evidence: [...result.names], ...(parts ? { parts } : {}) }]
        }
        case 'error':
          throw new Error(result.message)
      }
    }
  },
})
