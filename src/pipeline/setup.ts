import type { Logger } from 'pino'
import { MailscreenError, toErrorInfo } from '../errors.js'
import { type Check, type CheckContext, declaredSymbols, type Hit, type PluginDefinition } from './plugin.js'
import { importDefinition, type PluginRef, validateOptions } from './registry.js'
import type { ReadyPlugin } from './runner.js'

/** After a setup failed, how long its check fails at once before setup is tried again. */
export const SETUP_RETRY_MS = 10_000

/**
 * A setup still running after this long may be hung on a backend that will never answer: the
 * next check starts another try beside it (whichever ends first is used).
 */
export const SETUP_STALL_MS = 60_000

/**
 * A plugin's check, built by its `setup`, which starts at once and is not waited for here: a
 * check waits for it, within the check's own timeout. A setup that fails (a database not
 * there yet, a daemon not up) is the plugin's failure, not the message's: each check fails with
 * its error until setup is tried again, at the first check `SETUP_RETRY_MS` after the failure.
 * A setup slower than the check's timeout fails the checks that wait, under the plugin's
 * policy, and is used once it is done; one still running after `SETUP_STALL_MS` gets another
 * try beside it. So the plugin's failure policy applies (tempfail defers the message, continue
 * leaves `<NAME>_FAIL`), and the thread recovers by itself once the backend does.
 */
function setUp(definition: PluginDefinition, options: unknown, log: Logger): Check {
  /** The first setup that succeeded. */
  let built: Check | undefined
  /** The latest try still running, and since when. */
  let running: Promise<Check> | undefined
  let runningSince = 0
  let failedAt = Number.NEGATIVE_INFINITY
  let failure: Error | undefined
  const setupFailed = (err: unknown): Error =>
    new MailscreenError('MSC_PLUGIN_FAILED', `${definition.name} setup failed: ${toErrorInfo(err).message}`)
  const attempt = (): void => {
    const current = Promise.resolve().then(() => definition.setup(options, { log }))
    running = current
    runningSince = performance.now()
    current.then(
      (check) => {
        // A try given up on that ends after all still counts, if none did before it.
        built ??= check
        if (running === current) running = undefined
      },
      (err: unknown) => {
        if (running !== current) return
        running = undefined
        failedAt = performance.now()
        failure = setupFailed(err)
        log.error({ err: toErrorInfo(err), retryMs: SETUP_RETRY_MS }, 'plugin setup failed')
      },
    )
  }
  attempt()
  const waitForSetup = async (ctx: CheckContext): Promise<readonly Hit[]> => {
    if (running === undefined) {
      if (performance.now() - failedAt < SETUP_RETRY_MS) throw failure
      attempt()
    } else if (performance.now() - runningSince > SETUP_STALL_MS) {
      log.warn(
        { stalledMs: Math.round(performance.now() - runningSince) },
        'plugin setup still running: trying again beside it',
      )
      attempt()
    }
    const check = await (running as Promise<Check>).catch((err: unknown) => Promise.reject(setupFailed(err)))
    return (built ?? check)(ctx)
  }
  // Once set up, every message goes straight to the plugin's check, with no wrapper's promise.
  return (ctx) => (built ? built(ctx) : waitForSetup(ctx))
}

/** Import every plugin, validate its options and start its `setup`, once for this thread. */
export async function setupPlugins(refs: readonly PluginRef[], log: Logger): Promise<ReadyPlugin[]> {
  const ready: ReadyPlugin[] = []
  for (const ref of refs) {
    const definition = await importDefinition(ref.url)
    const options = validateOptions(definition, ref.rawOptions, ref.configDir)
    const check = setUp(definition, options, log.child({ plugin: definition.name }))
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
