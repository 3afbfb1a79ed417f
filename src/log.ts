import { type DestinationStream, type Logger, type LoggerOptions, pino } from 'pino'

export type { Logger }

export interface LogSettings {
  readonly level: string
}

/**
 * The root logger. One JSON line per event; modules take `log.child({ component })` and bind
 * `{ qid }` per message. Auth secrets are redacted; message bodies are never logged.
 */
export function createLogger(settings: LogSettings, destination?: DestinationStream): Logger {
  const options: LoggerOptions = {
    level: settings.level,
    base: { pid: process.pid },
    redact: ['auth.password', 'envelope.auth.password'],
    timestamp: pino.stdTimeFunctions.isoTime,
  }
  return destination ? pino(options, destination) : pino(options)
}
