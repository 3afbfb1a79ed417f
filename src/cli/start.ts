import type { Command } from 'commander'
import { buildApp } from '../app.js'
import { loadConfig } from '../config/load.js'
import { toErrorInfo } from '../errors.js'
import { createLogger } from '../log.js'
import { BatchedDestination } from '../log-destination.js'
import { configOrExit, fail, withConfig } from './common.js'

/** The signals that steer a running mailscreen (see the command's description). */
const CONTROL_SIGNALS = ['SIGUSR1', 'SIGUSR2', 'SIGHUP'] as const
type ControlSignal = (typeof CONTROL_SIGNALS)[number]

/** `mailscreen start`: run the filter in the foreground until SIGTERM/SIGINT. */
export function registerStart(program: Command): void {
  withConfig(program.command('start'))
    .description(
      'run the filter in the foreground: the SMTP listener, and the milter when milter: is configured (SIGTERM/SIGINT stop it, SIGUSR1 flushes the deferred queue, SIGUSR2 logs what the CLI did to queued mail, SIGHUP reloads plugins, policy and routing maps)',
    )
    .action(async (options: { config?: string }) => {
      const loaded = configOrExit(options)
      const log = createLogger({ level: loaded.config.log.level }, new BatchedDestination())
      const app = buildApp(loaded, log)
      // The CLI signals the PID in the spool, which start-up writes before it has recovered the
      // spool and started the workers. Until then a control signal is remembered and acted on
      // once started: unhandled, SIGUSR1, SIGUSR2 and SIGHUP would end the process.
      const early = new Set<ControlSignal>()
      const remember = (signal: ControlSignal) => early.add(signal)
      for (const signal of CONTROL_SIGNALS) process.on(signal, remember)
      try {
        await app.start()
      } catch (err) {
        log.fatal({ err: toErrorInfo(err) }, 'start failed')
        await app.stop().catch(() => undefined)
        log.flush()
        fail(err)
      }
      let stopping = false
      let reloading: Promise<void> | undefined
      let reloadAgain = false
      const stop = async (signal: string) => {
        if (stopping) return
        stopping = true
        log.info({ signal }, 'stopping')
        // A reload under way would start a pool after the stop closed the one it found.
        while (reloading) await reloading
        await app.stop()
        log.flush()
        process.exitCode = 0
      }
      process.on('SIGTERM', () => void stop('SIGTERM'))
      process.on('SIGINT', () => void stop('SIGINT'))
      // The file it started from, by name: should it be gone at a reload, that is an error,
      // not "run on defaults" (an editor or a deployment tool may have it moved aside).
      const configFile = options.config ?? loaded.file
      const reload = async (): Promise<void> => {
        // Keep the last good config: a file that fails validation changes nothing.
        let next: ReturnType<typeof loadConfig>
        try {
          next = loadConfig(configFile)
        } catch (err) {
          log.error(
            { err: toErrorInfo(err) },
            'SIGHUP: configuration invalid; running configuration unchanged',
          )
          return
        }
        await app
          .reload(next)
          .catch((err) =>
            log.error({ err: toErrorInfo(err) }, 'SIGHUP: reload failed; running configuration unchanged'),
          )
      }
      const handlers: Record<ControlSignal, () => void> = {
        SIGUSR1: () => void app.flush(),
        SIGUSR2: () => void app.logAdminActions(),
        SIGHUP: () => {
          if (stopping) return
          // One reload at a time; signals that come meanwhile make one more, with the file as
          // it is then.
          if (reloading) {
            reloadAgain = true
            return
          }
          reloading = (async () => {
            do {
              reloadAgain = false
              await reload()
            } while (reloadAgain && !stopping)
          })().finally(() => {
            reloading = undefined
          })
        },
      }
      for (const signal of CONTROL_SIGNALS) {
        process.off(signal, remember)
        process.on(signal, handlers[signal])
      }
      for (const signal of early) handlers[signal]()
    })
}
