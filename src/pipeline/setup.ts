import type { Logger } from 'pino'
import { MailscreenError, toErrorInfo } from '../errors.js'
import { type Check, declaredSymbols, type PluginDefinition } from './plugin.js'
import { importDefinition, type PluginRef, validateOptions } from './registry.js'
import type { ReadyPlugin } from './runner.js'

/** After a setup failed, how long its check fails at once before setup is tried again. */
export const SETUP_RETRY_MS = 10_000

/** A setup still running after this long has failed (one hung on a backend would never end). */
export const SETUP_TIMEOUT_MS = 60_000

/**
 * A plugin's check, built by its `setup`. A setup that fails (a database not there yet, a
 * daemon not up) or takes over `SETUP_TIMEOUT_MS` is the plugin's failure, not the message's:
 * each check fails with its error until setup is tried again, at the first check
 * `SETUP_RETRY_MS` after the failure (that try counts against the check's timeout). So the
 * plugin's failure policy applies (tempfail defers the message, continue leaves
 * `<NAME>_FAIL`), and the thread recovers by itself once the backend does. `settled` is the
 * first try, done or failed.
 */
function setUp(
  definition: PluginDefinition,
  options: unknown,
  log: Logger,
): { check: Check; settled: Promise<void> } {
  /** The latest try, under way or done; undefined after it failed. */
  let ready: Promise<Check> | undefined
  let failedAt = Number.NEGATIVE_INFINITY
  let failure: Error | undefined
  const attempt = (): Promise<Check> => {
    let timer: NodeJS.Timeout | undefined
    const bounded = new Promise<Check>((resolve, reject) => {
      timer = setTimeout(
        () => reject(new Error(`did not finish within ${SETUP_TIMEOUT_MS} ms`)),
        SETUP_TIMEOUT_MS,
      )
      Promise.resolve()
        .then(() => definition.setup(options, { log }))
        .then(resolve, reject)
    }).finally(() => clearTimeout(timer))
    const current: Promise<Check> = bounded.catch((err: unknown) => {
      // A try given up on may still end later: only the latest one counts.
      if (ready === current) {
        failedAt = performance.now()
        failure = new MailscreenError(
          'MSC_PLUGIN_FAILED',
          `${definition.name} setup failed: ${toErrorInfo(err).message}`,
        )
        ready = undefined
        log.error({ err: toErrorInfo(err), retryMs: SETUP_RETRY_MS }, 'plugin setup failed')
      }
      throw failure
    })
    ready = current
    return current
  }
  const first = attempt()
  const check: Check = async (ctx) => {
    if (ready === undefined && performance.now() - failedAt < SETUP_RETRY_MS) throw failure
    return (await (ready ?? attempt()))(ctx)
  }
  return {
    check,
    settled: first.then(
      () => undefined,
      () => undefined,
    ),
  }
}

/** Import every plugin, validate its options and run its `setup` once for this thread. */
export async function setupPlugins(refs: readonly PluginRef[], log: Logger): Promise<ReadyPlugin[]> {
  const ready: ReadyPlugin[] = []
  for (const ref of refs) {
    const definition = await importDefinition(ref.url)
    const options = validateOptions(definition, ref.rawOptions, ref.configDir)
    const { check, settled } = setUp(definition, options, log.child({ plugin: definition.name }))
    await settled
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
