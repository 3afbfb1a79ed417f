import { z } from 'zod'
import type { OptionsEnv } from './plugin.js'
import type { ServiceAddress } from './service-exchange.js'

/** The address options as parsed, before they become a {@link ServiceAddress}. */
export interface AddressOptions {
  readonly host?: string
  readonly port?: number
  readonly socket?: string
}

/**
 * The options of a plugin that talks to a daemon (clamd, spamd, ...): where it listens, as
 * `host` and `port` (defaults 127.0.0.1 and `defaultPort`) or as `socket`, a unix socket path
 * relative to the config file's directory; never both. `shape` adds the plugin's own options.
 * The parsed options carry the address as `target`, ready for {@link exchange}.
 */
export function serviceOptions<Shape extends z.ZodRawShape>(
  env: OptionsEnv,
  defaultPort: number,
  shape: Shape,
) {
  return z
    .object({
      /** The daemon's address. Default 127.0.0.1 (not allowed together with `socket`). */
      host: z.string().min(1).optional(),
      /** The daemon's TCP port (not allowed together with `socket`). */
      port: z.number().int().min(1).max(65_535).optional(),
      /** The daemon's unix socket; replaces host/port. */
      socket: z.string().min(1).transform(env.path).optional(),
      ...shape,
    })
    .strict()
    .refine(
      (o) => {
        const { host, port, socket } = o as AddressOptions
        return socket === undefined || (host === undefined && port === undefined)
      },
      { message: '`socket` cannot be combined with `host`/`port`' },
    )
    .transform((o) => {
      // zod cannot see these keys through the generic `Shape`; they are the ones declared above.
      const { host, port, socket, ...own } = o as AddressOptions & z.output<z.ZodObject<Shape>>
      const target: ServiceAddress =
        socket !== undefined ? { socket } : { host: host ?? '127.0.0.1', port: port ?? defaultPort }
      return { ...own, target }
    })
}

/** The daemon address in a plugin's parsed options, if they came from {@link serviceOptions}. */
export function serviceTarget(options: unknown): ServiceAddress | undefined {
  const target = (options as { target?: unknown } | undefined)?.target as
    | Partial<Record<string, unknown>>
    | undefined
  if (typeof target?.socket === 'string') return { socket: target.socket }
  if (typeof target?.host === 'string' && typeof target.port === 'number')
    return { host: target.host, port: target.port }
  return undefined
}
