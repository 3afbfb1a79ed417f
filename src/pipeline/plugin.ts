/**
 * The plugin contract: the only module a plugin imports from mailscreen.
 *
 * A plugin is a folder (or npm package) whose default export is the result of
 * {@link definePlugin}. `setup(options)` runs once per worker thread and returns the
 * per-message check; the check looks at a read-only {@link CheckContext} and returns hits.
 * Checks report; the verdict is decided elsewhere, from the hits and the score table.
 */
import { isAbsolute, resolve } from 'node:path'
import type { Logger } from 'pino'
import type { z } from 'zod'
import type { ClientInfo, Envelope } from '../ingress/envelope.js'
import type { MessageView } from '../mail/message.js'
import type { MimePart } from '../mail/mime-parts.js'
import type { QueueId } from '../queue/ids.js'

/** Build a {@link MessageView} over raw bytes: for testing a plugin without a running filter. */
export { createMessageView } from '../mail/message.js'
/** One request/response with a scanning daemon (clamd, spamd, ...): timeouts, abort, cleanup. */
export {
  describeAddress,
  type ExchangeOptions,
  type ExchangeProtocol,
  exchange,
  type ServiceAddress,
  serviceError,
} from './service-exchange.js'
/** The `host`/`port`/`socket` options of a plugin that talks to a daemon. */
export { serviceOptions } from './service-options.js'
export type { ClientInfo, Envelope, Logger, MessageView, MimePart, QueueId }

/** What to do when a check throws or times out. */
export type FailurePolicy = 'tempfail' | 'continue'

/**
 * What a hit on a symbol means beyond its score. `virus` and `banned` (a forbidden attachment)
 * decide the message's category whatever its score; `unscannable` means the content could
 * not be checked (an encrypted archive, a zip bomb's limits).
 */
export type SymbolCategory = 'virus' | 'banned' | 'unscannable'

/** A fact a check can assert, with its default weight (the score table may override it). */
export interface SymbolSpec {
  readonly description: string
  /** Points added to the message's score per hit (times the hit's factor). */
  readonly weight: number
  /** Set for symbols that put the message in a category of their own. */
  readonly category?: SymbolCategory
}

/** A plugin's symbols: fixed, or derived from its options (e.g. one per configured zone). */
export type SymbolTable = Readonly<Record<string, SymbolSpec>>

/** One finding: a declared symbol, the evidence for it, and an optional measured factor. */
export interface Hit {
  readonly symbol: string
  /** Shown in logs and headers, e.g. `['Eicar-Signature']`. */
  readonly evidence?: readonly string[]
  /** Multiplies the symbol's weight (a measured value such as a spam score). Default 1. */
  readonly factor?: number
  /**
   * The MIME parts the finding is in ({@link MimePart.id}, e.g. `"2"`, `"1.3"`): what the
   * `strip` action removes. Absent when the finding concerns the message as a whole.
   */
  readonly parts?: readonly string[]
}

/** Everything a check may read about one message. Read-only; valid for one call. */
export interface CheckContext {
  readonly queueId: QueueId
  readonly envelope: Envelope
  readonly message: MessageView
  /** Logger bound to `{ qid, plugin }`. */
  readonly log: Logger
  /** Aborted when the check's timeout passes; pass it to your I/O. */
  readonly signal: AbortSignal
  /**
   * When {@link signal} aborts, in epoch milliseconds (`Date.now()`): a check that does optional
   * work after its finding (locating it, say) stops in time to return it. Past the deadline the
   * check's result is discarded, and what it found with it.
   */
  readonly deadline: number
}

/** The per-message function `setup` returns. Return hits; never throw to express a verdict. */
export type Check = (ctx: CheckContext) => Promise<readonly Hit[]>

/**
 * What an options schema may depend on. Options that name files are relative to the config
 * file's directory, like every path in mailscreen's config, not to the working directory.
 */
export interface OptionsEnv {
  /** Directory of the config file (the working directory when running on defaults). */
  readonly configDir: string
  /** A path from the options: an absolute one as it is, a relative one inside {@link configDir}. */
  path(p: string): string
}

/** What `setup` gets besides its options. */
export interface SetupEnv {
  /** Logger bound to `{ plugin, worker }`. */
  readonly log: Logger
}

/** A plugin's declaration. `Schema` validates and defaults its options. */
export interface PluginDefinition<Schema extends z.ZodType = z.ZodType> {
  /** Unique name; also the prefix of its `_FAIL` symbol (`my-check` → `MY_CHECK_FAIL`). */
  readonly name: string
  readonly description: string
  /**
   * Schema for `options:` in the config; defaults belong in the schema. A function of the
   * {@link OptionsEnv} when an option is a file path (resolve it with `env.path`).
   */
  readonly options: Schema | ((env: OptionsEnv) => Schema)
  /**
   * Every symbol the check may return, with default weights. Undeclared hits are errors.
   * A function gets the validated options, for symbols named in the config.
   */
  readonly symbols: SymbolTable | ((options: z.output<Schema>) => SymbolTable)
  /** Milliseconds before the check counts as failed. Default 10 000; config may override. */
  readonly timeoutMs?: number
  /** Default failure policy; config may override. Default `tempfail`. */
  readonly onError?: FailurePolicy
  /** Runs once per worker thread with validated options; returns the per-message check. */
  setup(options: z.output<Schema>, env: SetupEnv): Check | Promise<Check>
}

/**
 * Declare a plugin. Identity at run time; it exists so TypeScript infers the options type
 * from the schema and checks `setup` against it.
 *
 * @example
 * ```ts
 * import { z } from 'zod'
 * import { definePlugin } from 'mailscreen'
 *
 * export default definePlugin({
 *   name: 'no-empty-subject',
 *   description: 'Flags messages without a Subject',
 *   options: z.object({ weight: z.number().default(1) }).strict(),
 *   symbols: { NO_SUBJECT: { description: 'Subject header missing or empty', weight: 1 } },
 *   setup: () => async ({ message }) =>
 *     message.header('subject').some((s) => s.trim() !== '') ? [] : [{ symbol: 'NO_SUBJECT' }],
 * })
 * ```
 */
export function definePlugin<Schema extends z.ZodType>(
  definition: PluginDefinition<Schema>,
): PluginDefinition<Schema> {
  return definition
}

/** The environment options of a config in `configDir` are validated in. */
export function optionsEnv(configDir: string): OptionsEnv {
  return { configDir, path: (p) => (isAbsolute(p) ? p : resolve(configDir, p)) }
}

/** The schema of a plugin's options for a config in `configDir`. */
export function optionsSchema<Schema extends z.ZodType>(
  definition: PluginDefinition<Schema>,
  configDir: string,
): Schema {
  return typeof definition.options === 'function'
    ? definition.options(optionsEnv(configDir))
    : definition.options
}

/**
 * Validate options as mailscreen does for a config file in `configDir` (default: the working
 * directory): the options `setup` gets, or a thrown ZodError. For a plugin's own tests.
 */
export function parseOptions<Schema extends z.ZodType>(
  definition: PluginDefinition<Schema>,
  raw: unknown,
  configDir: string = process.cwd(),
): z.output<Schema> {
  return optionsSchema(definition, configDir).parse(raw) as z.output<Schema>
}

/** The symbols a plugin declares for these (validated) options. */
export function declaredSymbols(definition: PluginDefinition, options: unknown): SymbolTable {
  return typeof definition.symbols === 'function' ? definition.symbols(options) : definition.symbols
}

/** The symbol a failed check leaves behind: `my-check` → `MY_CHECK_FAIL`. */
export function failSymbol(pluginName: string): string {
  return `${pluginName.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}_FAIL`
}
