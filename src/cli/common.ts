import type { Command } from 'commander'
import { type LoadedConfig, loadConfig } from '../config/load.js'
import { MailscreenError } from '../errors.js'

/** Add the `--config FILE` option every command takes. */
export function withConfig(command: Command): Command {
  return command.option(
    '-c, --config <file>',
    'configuration file (default: ./mailscreen.yaml, or built-in defaults if absent)',
  )
}

/** Load the config named by `--config`, or exit non-zero with every problem listed. */
export function configOrExit(options: { config?: string }): LoadedConfig {
  try {
    return loadConfig(options.config)
  } catch (err) {
    fail(err)
  }
}

/** Print an error the way an administrator wants it (code and text, no stack) and exit 1. */
export function fail(err: unknown): never {
  if (err instanceof MailscreenError) process.stderr.write(`mailscreen: ${err.code}\n${err.message}\n`)
  else if (isSystemError(err)) process.stderr.write(`mailscreen: ${err.message}\n`)
  else process.stderr.write(`mailscreen: ${(err as Error)?.stack ?? String(err)}\n`)
  process.exit(1)
}

/**
 * An error from the operating system (a file that is not there, no permission): its message
 * names the call and the path, which is all an administrator needs; a stack trace is for bugs.
 */
function isSystemError(err: unknown): err is NodeJS.ErrnoException {
  const e = err as NodeJS.ErrnoException | undefined
  return e instanceof Error && typeof e.code === 'string' && typeof e.syscall === 'string'
}
