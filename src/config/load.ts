import { readFileSync } from 'node:fs'
import { dirname, isAbsolute, resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import type { z } from 'zod'
import { MailscreenError } from '../errors.js'
import { type Config, configSchema } from './schema.js'

/** A loaded configuration and where it came from. */
export interface LoadedConfig {
  readonly config: Config
  /** The file it was read from, or undefined when running on defaults. */
  readonly file: string | undefined
  /** The directory relative paths in the config are resolved against. */
  readonly baseDir: string
}

export const DEFAULT_CONFIG_FILE = 'mailscreen.yaml'

/** Freeze an object graph so nothing can change the config after validation. */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const child of Object.values(value)) deepFreeze(child)
  }
  return value
}

/** One line per problem: `file: key.path: reason`. */
export function formatIssues(file: string, issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .map((issue) => {
      const path = issue.path.length ? issue.path.join('.') : '(top level)'
      const keys = issue.code === 'unrecognized_keys' ? ` (${issue.keys.join(', ')})` : ''
      return `${file}: ${path}: ${issue.message}${keys}`
    })
    .join('\n')
}

/** Validate parsed YAML; throws MSC_CONFIG_INVALID listing every issue. */
export function validateConfig(raw: unknown, file: string): Config {
  const result = configSchema.safeParse(raw ?? {})
  if (!result.success)
    throw new MailscreenError('MSC_CONFIG_INVALID', formatIssues(file, result.error.issues))
  return result.data
}

/**
 * Read, validate, resolve paths and freeze the config. Without `--config`, a missing
 * `mailscreen.yaml` means "run on defaults"; a file named explicitly must exist.
 */
export function loadConfig(file: string | undefined, cwd: string = process.cwd()): LoadedConfig {
  const path = resolve(cwd, file ?? DEFAULT_CONFIG_FILE)
  let text: string | undefined
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT'
    if (!(missing && file === undefined))
      throw new MailscreenError('MSC_CONFIG_UNREADABLE', `${path}: ${(err as Error).message}`, { cause: err })
  }
  let raw: unknown = {}
  if (text !== undefined) {
    try {
      raw = parseYaml(text)
    } catch (err) {
      throw new MailscreenError('MSC_CONFIG_UNREADABLE', `${path}: ${(err as Error).message}`, { cause: err })
    }
  }
  const shown = text === undefined ? '(defaults)' : path
  const config = validateConfig(raw, shown)
  const baseDir = text === undefined ? cwd : dirname(path)
  const inBase = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p))
  const { milter } = config
  const resolved: Config = {
    ...config,
    spool: { ...config.spool, dir: inBase(config.spool.dir) },
    routing: { ...config.routing, dir: inBase(config.routing.dir) },
    ...(milter === undefined
      ? {}
      : {
          milter: {
            ...milter,
            listen: milter.listen.map((a) => (a.kind === 'unix' ? { ...a, path: inBase(a.path) } : a)),
            ...(milter.tmpDir === undefined ? {} : { tmpDir: inBase(milter.tmpDir) }),
          },
        }),
  }
  return deepFreeze({ config: resolved, file: text === undefined ? undefined : path, baseDir })
}
