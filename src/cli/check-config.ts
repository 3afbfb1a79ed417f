import type { Command } from 'commander'
import { scanSettings } from '../app.js'
import { formatHop } from '../delivery/smtp-client.js'
import { formatMilterAddress } from '../ingress/milter/server.js'
import type { Action } from '../pipeline/action-list.js'
import { formatActionList } from '../pipeline/action-list.js'
import { type LoadedPlugin, loadPlugins } from '../pipeline/registry.js'
import type { Ruleset } from '../pipeline/ruleset.js'
import { describeAddress } from '../pipeline/service-exchange.js'
import { serviceTarget } from '../pipeline/service-options.js'
import { minFreeBytes } from '../queue/free-space.js'
import { configOrExit, fail, withConfig } from './common.js'

/** What `spool.minFree` does, for people: `new mail refused below 75 MiB free`. */
function describeMinFree(bytes: number): string {
  if (bytes === 0) return 'no free-space check'
  const mib = bytes / 1024 ** 2
  return `new mail refused below ${mib >= 10 ? Math.round(mib) : mib.toFixed(1)} MiB free`
}

/** `clamav at unix:/run/clamav/clamd.ctl (timeout 30000 ms, on error tempfail)`: where relative paths ended up, too. */
function describePlugin(plugin: LoadedPlugin): string {
  const target = serviceTarget(plugin.options)
  const at = target ? ` at ${describeAddress(target)}` : ''
  return `${plugin.name}${at} (timeout ${plugin.timeoutMs} ms, on error ${plugin.onError})`
}

/** `mailscreen check-config`: validate the config and every plugin's options; print the result. */
export function registerCheckConfig(program: Command): void {
  withConfig(program.command('check-config'))
    .description(
      'validate the configuration and plugin options; print the effective settings and score table',
    )
    .option('--json', 'print the effective configuration as JSON')
    .action(async (options: { config?: string; json?: boolean }) => {
      const loaded = configOrExit(options)
      try {
        const plugins = await loadPlugins(loaded.config.plugins, loaded.baseDir, loaded.file)
        // The same loading `start` does: rulesets and the scores file are checked too.
        const settings = await scanSettings(loaded, plugins)
        const table = Object.fromEntries(settings.symbols.map(([symbol, info]) => [symbol, info.weight]))
        const actions = Object.fromEntries(
          Object.entries(settings.policy.actions).map(([category, ruleset]) => [category, describe(ruleset)]),
        )
        const milterActions = settings.milterPolicy
          ? Object.fromEntries(
              Object.entries(settings.milterPolicy.actions).map(([category, ruleset]) => [
                category,
                describe(ruleset),
              ]),
            )
          : undefined
        if (options.json) {
          process.stdout.write(
            `${JSON.stringify({ file: loaded.file ?? null, config: loaded.config, scores: table, actions, ...(milterActions ? { milterActions } : {}) }, null, 2)}\n`,
          )
          return
        }
        const { config } = loaded
        const out = [
          `${loaded.file ?? '(no config file: built-in defaults)'}: OK`,
          `listen    ${config.smtp.listen.map((l) => `${l.host}:${l.port}`).join(', ')}${config.smtp.lmtp ? ' (LMTP)' : ''}`,
          `trusted   ${config.smtp.trusted.join(', ')}`,
          `spool     ${config.spool.dir} (${describeMinFree(minFreeBytes(config.spool.minFree, config.smtp.maxSize))})`,
          `workers   ${config.pool.workers}`,
          `metrics   ${config.metrics ? `http://${formatHop(config.metrics.listen.host, config.metrics.listen.port)}/metrics` : 'off'}`,
          `relay     ${config.delivery.relay ? `${config.delivery.relay.host}:${config.delivery.relay.port}` : 'none: foreign domains go to their MX hosts'}`,
          `tls       STARTTLS ${config.delivery.tls.mx} to MX and mailertable hosts, ${config.delivery.tls.relay} to the relay`,
          `plugins   ${plugins.map(describePlugin).join(', ') || 'none'}`,
          'symbols:',
          ...settings.symbols.map(
            ([symbol, info]) =>
              `  ${symbol.padEnd(32)} ${String(info.weight).padStart(6)}${info.category ? `  ${info.category}` : ''}`,
          ),
          `thresholds spam ${settings.policy.verdict.spamThreshold}, high-scoring ${settings.policy.verdict.highSpamThreshold}`,
          'actions:',
          ...Object.entries(actions).map(([category, text]) => `  ${category.padEnd(12)} ${text}`),
          ...(config.milter && milterActions
            ? [
                `milter    ${config.milter.listen.map(formatMilterAddress).join(', ')} (timeout ${config.milter.timeout} ms, default ${config.milter.defaultAction})`,
                'milter actions:',
                ...Object.entries(milterActions).map(
                  ([category, text]) => `  ${category.padEnd(12)} ${text}`,
                ),
              ]
            : []),
        ]
        process.stdout.write(`${out.join('\n')}\n`)
      } catch (err) {
        fail(err)
      }
    })
}

/** An action setting in one line: the inline list, or the ruleset file and its rule count. */
function describe(ruleset: Ruleset<Action[]>): string {
  const [only] = ruleset.rules
  if (ruleset.rules.length === 1 && only?.line === 0) return formatActionList(only.value)
  return `ruleset ${ruleset.source} (${ruleset.rules.length} rules)`
}
