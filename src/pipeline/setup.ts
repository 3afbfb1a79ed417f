import type { Logger } from 'pino'
import { MailscreenError, toErrorInfo } from '../errors.js'
import { type Check, declaredSymbols, type PluginDefinition } from './plugin.js'
import { importDefinition, type PluginRef, validateOptions } from './registry.js'
import type { ReadyPlugin } from './runner.js'

/** After a setup failed, how long its check fails at once before setup is tried again. */
export const SETUP_RETRY_MS = 10_000

/**
 * A plugin's check, built by its `setup`. A setup that fails (a database not there yet, a
 * daemon not up) is the plugin's failure, not the message's: each check fails with its error
 * until setup is tried again, at the first check `SETUP_RETRY_MS` after the failure (that try
 * counts against the check's timeout). So the plugin's failure policy applies (tempfail defers
 * the message, continue leaves `<NAME>_FAIL`), and the thread recovers by itself once the
 * backend does. `settled` is the first try, done or failed.
 */
function setUp(
  definition: PluginDefinition,
  options: unknown,
  log: Logger,
): { check: Check; settled: Promise<void> } {
  let ready: Promise<Check> | undefined
  let failedAt = 0
  let failure: Error | undefined
  const attempt = (): Promise<Check> => {
    const started = Promise.resolve().then(() => definition.setup(options, { log }))
    ready = started
    return started.catch((err: unknown) => {
      failedAt = Date.now()
      failure = new MailscreenError(
        'MSC_PLUGIN_FAILED',
        `${definition.name} setup failed: ${toErrorInfo(err).message}`,
      )
      ready = undefined
      log.error({ err: toErrorInfo(err), retryMs: SETUP_RETRY_MS }, 'plugin setup failed')
      throw failure
    })
  }
  const first = attempt()
  const check: Check = async (ctx) => {
    const built = ready ?? (Date.now() - failedAt < SETUP_RETRY_MS ? undefined : attempt())
    if (built === undefined) throw failure
    return (await built.catch(() => Promise.reject(failure)))(ctx)
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
