import type { Command } from 'commander'
import { loadPlugins, scoreTable } from '../pipeline/registry.js'
import { configOrExit, fail, withConfig } from './common.js'

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
        const plugins = await loadPlugins(loaded.config.plugins, loaded.baseDir)
        const table = Object.fromEntries(scoreTable(plugins))
        if (options.json) {
          process.stdout.write(
            `${JSON.stringify({ file: loaded.file ?? null, config: loaded.config, scores: table }, null, 2)}\n`,
          )
          return
        }
        const { config } = loaded
        const out = [
          `${loaded.file ?? '(no config file: built-in defaults)'}: OK`,
          `listen    ${config.smtp.listen.map((l) => `${l.host}:${l.port}`).join(', ')}${config.smtp.lmtp ? ' (LMTP)' : ''}`,
          `trusted   ${config.smtp.trusted.join(', ')}`,
          `spool     ${config.spool.dir}`,
          `workers   ${config.pool.workers}`,
          `relay     ${config.delivery.relay.host}:${config.delivery.relay.port}`,
          `plugins   ${plugins.map((p) => `${p.name} (timeout ${p.timeoutMs} ms, on error ${p.onError})`).join(', ') || 'none'}`,
          'symbols:',
          ...Object.entries(table).map(([symbol, weight]) => `  ${symbol.padEnd(32)} ${weight}`),
        ]
        process.stdout.write(`${out.join('\n')}\n`)
      } catch (err) {
        fail(err)
      }
    })
}
