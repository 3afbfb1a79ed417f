/**
 * clamav — scans the whole raw message with clamd (INSTREAM over TCP or a unix socket).
 * clamd decodes MIME and unpacks archives itself. Anything that is not a clean/infected
 * verdict (ERROR replies such as StreamMaxLength, unreachable clamd, timeouts) throws, so
 * it becomes CLAMAV_FAIL under the plugin's failure policy (default tempfail: an unscanned
 * message is never delivered as clean). One connection per scan.
 */
import { z } from 'zod'
import { definePlugin } from '../../src/pipeline/plugin.js'
import { type ClamdTarget, instream } from './instream.js'

const options = z
  .object({
    /** clamd's TCPAddr. Default 127.0.0.1 (not allowed together with `socket`). */
    host: z.string().min(1).optional(),
    /** clamd's TCPSocket. Default 3310 (not allowed together with `socket`). */
    port: z.number().int().min(1).max(65_535).optional(),
    /** clamd's LocalSocket (a unix socket path); replaces host/port. */
    socket: z.string().min(1).optional(),
    /** Bytes per INSTREAM chunk. Default 64 KiB. Must stay below clamd's StreamMaxLength. */
    chunkSize: z
      .number()
      .int()
      .min(1)
      .max(16 * 1024 * 1024)
      .default(64 * 1024),
    /** Milliseconds to connect before failing. Default 5000. The whole scan is bounded by the plugin timeout. */
    connectTimeoutMs: z.number().int().min(1).default(5000),
  })
  .strict()
  .refine((o) => o.socket === undefined || (o.host === undefined && o.port === undefined), {
    message: '`socket` cannot be combined with `host`/`port`',
  })
  .transform((o) =>
    o.socket !== undefined
      ? { socket: o.socket, chunkSize: o.chunkSize, connectTimeoutMs: o.connectTimeoutMs }
      : {
          host: o.host ?? '127.0.0.1',
          port: o.port ?? 3310,
          chunkSize: o.chunkSize,
          connectTimeoutMs: o.connectTimeoutMs,
        },
  )

export default definePlugin({
  name: 'clamav',
  description: 'Scans the raw message with clamd (INSTREAM)',
  options,
  symbols: {
    CLAMAV_VIRUS: {
      description: 'clamd found a virus (evidence: the signature names)',
      weight: 100,
      category: 'virus',
    },
  },
  timeoutMs: 30_000,
  onError: 'tempfail',
  setup(opts) {
    const target: ClamdTarget =
      'socket' in opts && opts.socket !== undefined
        ? { socket: opts.socket }
        : { host: opts.host ?? '127.0.0.1', port: opts.port ?? 3310 }
    return async ({ message, signal }) => {
      const result = await instream(target, message.raw, {
        signal,
        chunkSize: opts.chunkSize,
        connectTimeoutMs: opts.connectTimeoutMs,
        // The plugin timeout (signal) bounds the scan; this is a backstop if no signal ever fires.
        timeoutMs: 10 * 60_000,
      })
      switch (result.status) {
        case 'clean':
          return []
        case 'infected':
          return [{ symbol: 'CLAMAV_VIRUS', evidence: [...result.names] }]
        case 'error':
          throw new Error(result.message)
      }
    }
  },
})
