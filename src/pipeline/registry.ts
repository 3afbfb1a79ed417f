import { existsSync, readFileSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { isAbsolute, join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { MAX_TIMER_MS } from '../config/duration.js'
import type { PluginEntry } from '../config/schema.js'
import { MailscreenError, toErrorInfo } from '../errors.js'
import { builtPath, packageRoot } from '../package-root.js'
import {
  declaredSymbols,
  type FailurePolicy,
  failSymbol,
  optionsSchema,
  type PluginDefinition,
  type SymbolCategory,
  type SymbolSpec,
  type SymbolTable,
} from './plugin.js'
import type { SymbolInfo } from './verdict.js'

const DEFAULT_TIMEOUT_MS = 10_000

/** A plugin whose module was found and whose options passed its schema. Plain data except `definition`. */
export interface LoadedPlugin {
  readonly name: string
  /** The `file:` URL it was imported from (workers import it again from there). */
  readonly url: string
  readonly definition: PluginDefinition
  /** Options after the plugin's schema applied its defaults. */
  readonly options: unknown
  /** Options as written in the config (workers validate them again themselves). */
  readonly rawOptions: unknown
  /** Directory relative option paths are in (the config file's). */
  readonly configDir: string
  readonly timeoutMs: number
  readonly onError: FailurePolicy
  /** Declared symbols plus the automatic `<NAME>_FAIL`. */
  readonly symbols: Readonly<Record<string, SymbolSpec>>
}

/** What a worker needs to load the same plugins: JSON-safe. */
export interface PluginRef {
  readonly url: string
  readonly rawOptions: unknown
  readonly configDir: string
  readonly timeoutMs: number
  readonly onError: FailurePolicy
}

function isPath(use: string): boolean {
  return use.startsWith('.') || isAbsolute(use)
}

/** Pick the importable file of a plugin folder: package.json main, else index.js. */
function entryOfDirectory(dir: string): string {
  const manifest = join(dir, 'package.json')
  if (existsSync(manifest)) {
    const main = JSON.parse(readFileSync(manifest, 'utf8')).main
    if (typeof main === 'string') return join(dir, main)
  }
  return join(dir, 'index.js')
}

/**
 * Resolve `use:` to a `file:` URL: a built-in name (`example`), a path relative to the config
 * file (a folder or a file; folders inside mailscreen's own tree run their built copy), or an
 * npm package name resolved from the config file's folder.
 */
export function resolvePlugin(use: string, baseDir: string): string {
  let file: string
  if (isPath(use)) {
    const target = builtPath(resolve(baseDir, use))
    file = existsSync(target) && statSync(target).isDirectory() ? entryOfDirectory(target) : target
  } else if (/^[a-z0-9][a-z0-9-]*$/.test(use) && existsSync(join(packageRoot, 'plugins', use))) {
    file = entryOfDirectory(builtPath(join(packageRoot, 'plugins', use)))
  } else {
    try {
      file = createRequire(join(baseDir, 'mailscreen.yaml')).resolve(use)
    } catch (err) {
      throw new MailscreenError(
        'MSC_PLUGIN_NOT_FOUND',
        `plugin ${JSON.stringify(use)}: not a built-in, path or installed package`,
        { cause: err },
      )
    }
  }
  if (!existsSync(file))
    throw new MailscreenError(
      'MSC_PLUGIN_NOT_FOUND',
      `plugin ${JSON.stringify(use)}: ${file} does not exist (built? run npm run build)`,
    )
  return pathToFileURL(file).href
}

function isDefinition(value: unknown): value is PluginDefinition {
  const d = value as PluginDefinition | undefined
  return (
    !!d &&
    typeof d.name === 'string' &&
    typeof d.setup === 'function' &&
    (typeof d.options === 'function' || typeof d.options?.safeParse === 'function') &&
    ((typeof d.symbols === 'object' && d.symbols !== null) || typeof d.symbols === 'function')
  )
}

/**
 * What is wrong with a definition's settings that TypeScript would have caught, for plugins
 * written in JavaScript: a misspelled `onError` would act as `continue` and pass unscanned
 * mail as clean; a `timeoutMs` past a timer's range would time every check out at once.
 */
function settingsProblem(d: PluginDefinition): string | undefined {
  if (d.onError !== undefined && d.onError !== 'tempfail' && d.onError !== 'continue')
    return `onError must be "tempfail" or "continue", not ${JSON.stringify(d.onError)}`
  const t = d.timeoutMs
  if (t !== undefined && !(Number.isInteger(t) && t > 0 && t <= MAX_TIMER_MS))
    return `timeoutMs must be a whole number of milliseconds from 1 to ${MAX_TIMER_MS}, not ${JSON.stringify(t)}`
  return undefined
}

const CATEGORIES: ReadonlySet<SymbolCategory> = new Set(['virus', 'banned', 'unscannable'])

/** What is wrong with one declared symbol, if anything. */
function symbolProblem(spec: unknown): string | undefined {
  const s = spec as Partial<SymbolSpec> | null
  if (typeof s !== 'object' || s === null) return 'not an object'
  if (typeof s.description !== 'string') return 'description is not a string'
  if (typeof s.weight !== 'number' || !Number.isFinite(s.weight)) return 'weight is not a finite number'
  if (s.category !== undefined && !CATEGORIES.has(s.category))
    return `category must be one of ${[...CATEGORIES].join(', ')}`
  return undefined
}

/** A plugin's symbols for its options, checked; errors say which plugin and which symbol. */
function checkedSymbols(definition: PluginDefinition, options: unknown): SymbolTable {
  let table: SymbolTable
  try {
    table = declaredSymbols(definition, options)
  } catch (err) {
    throw new MailscreenError(
      'MSC_PLUGIN_INVALID',
      `plugin ${definition.name}: its symbols function threw: ${toErrorInfo(err).message}`,
    )
  }
  if (typeof table !== 'object' || table === null)
    throw new MailscreenError(
      'MSC_PLUGIN_INVALID',
      `plugin ${definition.name}: its symbols are not an object`,
    )
  const fail = failSymbol(definition.name)
  for (const [symbol, spec] of Object.entries(table)) {
    const problem =
      symbol === fail ? `is its failure symbol, which mailscreen declares itself` : symbolProblem(spec)
    if (problem)
      throw new MailscreenError(
        'MSC_PLUGIN_INVALID',
        `plugin ${definition.name}: symbol ${symbol} ${problem}`,
      )
  }
  return table
}

/** Import a plugin module and return its definition. */
export async function importDefinition(url: string): Promise<PluginDefinition> {
  let mod: { default?: unknown }
  try {
    mod = await import(url)
  } catch (err) {
    throw new MailscreenError(
      'MSC_PLUGIN_NOT_FOUND',
      `plugin ${url}: import failed: ${(err as Error).message}`,
      { cause: err },
    )
  }
  if (!isDefinition(mod.default))
    throw new MailscreenError(
      'MSC_PLUGIN_INVALID',
      `plugin ${url}: default export is not a definePlugin({...}) result`,
    )
  const problem = settingsProblem(mod.default)
  if (problem) throw new MailscreenError('MSC_PLUGIN_INVALID', `plugin ${mod.default.name}: ${problem}`)
  return mod.default
}

/** Validate a plugin's options against its schema; errors name the option path. */
export function validateOptions(definition: PluginDefinition, options: unknown, configDir: string): unknown {
  let schema: ReturnType<typeof optionsSchema>
  try {
    schema = optionsSchema(definition, configDir)
  } catch (err) {
    throw new MailscreenError(
      'MSC_PLUGIN_INVALID',
      `plugin ${definition.name}: its options function threw: ${(err as Error).message}`,
      { cause: err },
    )
  }
  if (typeof schema?.safeParse !== 'function')
    throw new MailscreenError(
      'MSC_PLUGIN_INVALID',
      `plugin ${definition.name}: its options function returned no schema`,
    )
  const result = schema.safeParse(options)
  if (result.success) return result.data
  const detail = result.error.issues
    .map((i) => `${['options', ...i.path].join('.')}: ${i.message}`)
    .join('; ')
  throw new MailscreenError('MSC_PLUGIN_OPTIONS_INVALID', `plugin ${definition.name}: ${detail}`)
}

/** Load one entry: resolve, import, validate options, apply config overrides. */
export async function loadPlugin(entry: PluginEntry, baseDir: string): Promise<LoadedPlugin> {
  const url = resolvePlugin(entry.use, baseDir)
  const definition = await importDefinition(url)
  const options = validateOptions(definition, entry.options, baseDir)
  const fail = failSymbol(definition.name)
  return {
    name: definition.name,
    url,
    definition,
    options,
    rawOptions: entry.options,
    configDir: baseDir,
    timeoutMs: entry.timeout ?? definition.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    onError: entry.onError ?? definition.onError ?? 'tempfail',
    symbols: {
      ...checkedSymbols(definition, options),
      [fail]: { description: `${definition.name} failed or timed out`, weight: 0 },
    },
  }
}

/**
 * Load every configured plugin; names must be unique. Errors name the config `file` (when
 * there is one) and the entry, like the config's own errors.
 */
export async function loadPlugins(
  entries: readonly PluginEntry[],
  baseDir: string,
  file?: string,
): Promise<LoadedPlugin[]> {
  const where = file === undefined ? '' : `${file}: `
  const loaded: LoadedPlugin[] = []
  for (const [index, entry] of entries.entries()) {
    let plugin: LoadedPlugin
    try {
      plugin = await loadPlugin(entry, baseDir)
    } catch (err) {
      // Name the config entry, so an administrator with several plugins knows which line to fix.
      if (err instanceof MailscreenError)
        throw new MailscreenError(err.code, `${where}plugins.${index} (use: ${entry.use}): ${err.message}`, {
          cause: err,
        })
      throw err
    }
    if (loaded.some((p) => p.name === plugin.name))
      throw new MailscreenError(
        'MSC_PLUGIN_INVALID',
        `${where}plugins.${index} (use: ${entry.use}): plugin ${plugin.name} is configured twice`,
      )
    // One symbol, one meaning: a second declaration would silently replace the first's weight
    // and category (a virus symbol that stops being one).
    for (const symbol of Object.keys(plugin.symbols)) {
      const owner = loaded.find((p) => Object.hasOwn(p.symbols, symbol))
      if (owner)
        throw new MailscreenError(
          'MSC_PLUGIN_INVALID',
          `${where}plugins.${index} (use: ${entry.use}): symbol ${symbol} of plugin ${plugin.name} is already plugin ${owner.name}'s`,
        )
    }
    loaded.push(plugin)
  }
  return loaded
}

/** The JSON-safe part a worker needs to load the same plugin. */
export function toRef(plugin: LoadedPlugin): PluginRef {
  return {
    url: plugin.url,
    rawOptions: plugin.rawOptions,
    configDir: plugin.configDir,
    timeoutMs: plugin.timeoutMs,
    onError: plugin.onError,
  }
}

/** The declared score table: every symbol with its default weight and category. */
export function scoreTable(plugins: readonly LoadedPlugin[]): Map<string, SymbolInfo> {
  const table = new Map<string, SymbolInfo>()
  for (const plugin of plugins)
    for (const [symbol, spec] of Object.entries(plugin.symbols))
      table.set(
        symbol,
        spec.category ? { weight: spec.weight, category: spec.category } : { weight: spec.weight },
      )
  return table
}
