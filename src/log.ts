import { type DestinationStream, type Logger, type LoggerOptions, pino } from 'pino'

export type { Logger }

export interface LogSettings {
  readonly level: string
}

let stampedAt = Number.NaN
let stamp = ''

/**
 * pino's `isoTime`, formatted once per millisecond: under load the lines of several events
 * share a millisecond, and toISOString was a visible share of the main thread's logging.
 */
export function isoTime(): string {
  const now = Date.now()
  if (now !== stampedAt) {
    stampedAt = now
    stamp = `,"time":"${new Date(now).toISOString()}"`
  }
  return stamp
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
    timestamp: isoTime,
  }
  return destination ? pino(options, destination) : pino(options)
}

/**
 * `parent.child(bindings)`, made on first use. A scan binds the queue ID, and each plugin's
 * name, for every message, while most messages log nothing from the worker: creating the
 * pino children up front (child() serializes its bindings) took a tenth of a scan worker's CPU.
 */
export function lazyChild(parent: Logger, bindings: Record<string, unknown>): Logger {
  let child: Logger | undefined
  const real = (): Logger => {
    child ??= parent.child(bindings)
    return child
  }
  return new Proxy({} as Logger, {
    get(_, prop) {
      const target = real()
      const value: unknown = Reflect.get(target, prop, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
    set: (_, prop, value) => Reflect.set(real(), prop, value),
    has: (_, prop) => prop in real(),
  })
}
