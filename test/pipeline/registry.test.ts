import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { PluginEntry } from '../../src/config/schema.js'
import { packageRoot } from '../../src/package-root.js'
import {
  importDefinition,
  loadPlugin,
  loadPlugins,
  resolvePlugin,
  scoreTable,
  toRef,
  validateOptions,
} from '../../src/pipeline/registry.js'
import { setupPlugins } from '../../src/pipeline/setup.js'
import { silentLog } from '../support/check.js'

// These tests import the built plugin: run `npm run build` (tsc) first.
const EXAMPLE_JS = join(packageRoot, 'dist', 'plugins', 'example', 'index.js')
const EXAMPLE_URL = pathToFileURL(EXAMPLE_JS).href

let dir: string

beforeAll(async () => {
  expect(existsSync(EXAMPLE_JS), `${EXAMPLE_JS} missing: run npx tsc -p tsconfig.json`).toBe(true)
  dir = await mkdtemp(join(tmpdir(), 'mailscreen-registry-'))
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

function entry(use: string, more: Partial<PluginEntry> = {}): PluginEntry {
  return { use, options: {}, ...more }
}

describe('resolvePlugin', () => {
  it('finds a built-in plugin by name in dist/plugins/<name>/index.js', () => {
    expect(resolvePlugin('example', dir)).toBe(EXAMPLE_URL)
  })

  it('maps a path into mailscreen’s own plugins/ folder to the same built file', () => {
    expect(resolvePlugin('./plugins/example', packageRoot)).toBe(EXAMPLE_URL)
  })

  it('maps an absolute path to a source file of mailscreen’s tree to its built copy', () => {
    expect(resolvePlugin(join(packageRoot, 'plugins', 'example', 'index.ts'), dir)).toBe(EXAMPLE_URL)
  })

  it('resolves a path outside mailscreen’s tree relative to the config directory', async () => {
    await writeFile(join(dir, 'local.mjs'), 'export default 1\n')
    expect(resolvePlugin('./local.mjs', dir)).toBe(pathToFileURL(join(dir, 'local.mjs')).href)
  })

  it('uses package.json main of a plugin folder', async () => {
    await mkdir(join(dir, 'pkg', 'lib'), { recursive: true })
    await writeFile(join(dir, 'pkg', 'package.json'), JSON.stringify({ main: 'lib/entry.js' }))
    await writeFile(join(dir, 'pkg', 'lib', 'entry.js'), 'export default 1\n')
    expect(resolvePlugin('./pkg', dir)).toBe(pathToFileURL(join(dir, 'pkg', 'lib', 'entry.js')).href)
  })

  it('fails with MSC_PLUGIN_NOT_FOUND for an unknown name', () => {
    expect(() => resolvePlugin('no-such-plugin-anywhere', dir)).toThrow(
      expect.objectContaining({ code: 'MSC_PLUGIN_NOT_FOUND' }),
    )
  })

  it('fails with MSC_PLUGIN_NOT_FOUND for a path that does not exist', () => {
    expect(() => resolvePlugin('./nowhere/plugin.js', dir)).toThrow(
      expect.objectContaining({ code: 'MSC_PLUGIN_NOT_FOUND' }),
    )
  })
})

describe('importDefinition', () => {
  it('returns the definePlugin() result a module exports', async () => {
    const definition = await importDefinition(EXAMPLE_URL)
    expect(definition.name).toBe('example')
    expect(Object.keys(definition.symbols)).toContain('EXAMPLE_NO_DATE')
  })

  it('fails with MSC_PLUGIN_INVALID when the default export is not a plugin', async () => {
    await writeFile(join(dir, 'not-a-plugin.mjs'), 'export default { name: "x" }\n')
    await expect(importDefinition(pathToFileURL(join(dir, 'not-a-plugin.mjs')).href)).rejects.toMatchObject({
      code: 'MSC_PLUGIN_INVALID',
    })
  })

  it('fails with MSC_PLUGIN_NOT_FOUND when the module does not load', async () => {
    await writeFile(join(dir, 'broken.mjs'), 'export default {\n')
    await expect(importDefinition(pathToFileURL(join(dir, 'broken.mjs')).href)).rejects.toMatchObject({
      code: 'MSC_PLUGIN_NOT_FOUND',
    })
  })
})

describe('validateOptions', () => {
  it('applies the schema’s defaults', async () => {
    const definition = await importDefinition(EXAMPLE_URL)
    expect(validateOptions(definition, {}, process.cwd())).toEqual({ subjectWords: [] })
  })
})

describe('options that name files', () => {
  // A schema-like object stands in for zod, which a file in a temp directory cannot import.
  const PLUGIN = `export default {
    name: 'paths',
    description: 'takes a file',
    options: (env) => ({ safeParse: (o) => ({ success: true, data: { file: env.path(o.file) } }) }),
    symbols: (o) => ({ PATHS: { description: o.file, weight: 0 } }),
    setup: () => async () => [],
  }\n`

  it("resolve against the config file's directory, in the main thread and from a worker's ref", async () => {
    await writeFile(join(dir, 'paths.mjs'), PLUGIN)
    const plugin = await loadPlugin(entry('./paths.mjs', { options: { file: 'my.rules' } }), dir)
    expect(plugin.options).toEqual({ file: join(dir, 'my.rules') })
    const [ready] = await setupPlugins([toRef(plugin)], silentLog)
    expect(ready?.symbols.PATHS?.description).toBe(join(dir, 'my.rules'))
    const absolute = await loadPlugin(entry('./paths.mjs', { options: { file: '/etc/x.rules' } }), dir)
    expect(absolute.options).toEqual({ file: '/etc/x.rules' })
  })
})

describe('a plugin whose options function is broken', () => {
  it('fails to load with MSC_PLUGIN_INVALID naming the plugin', async () => {
    const body = (options: string) =>
      `export default { name: 'broken', description: 'x', symbols: {}, options: ${options}, setup: () => async () => [] }\n`
    await writeFile(join(dir, 'throws.mjs'), body('() => { throw new Error("no config dir for me") }'))
    await writeFile(join(dir, 'nothing.mjs'), body('() => 42'))
    await expect(loadPlugin(entry('./throws.mjs'), dir)).rejects.toMatchObject({
      code: 'MSC_PLUGIN_INVALID',
      message: expect.stringContaining('plugin broken: its options function threw: no config dir for me'),
    })
    await expect(loadPlugin(entry('./nothing.mjs'), dir)).rejects.toMatchObject({
      code: 'MSC_PLUGIN_INVALID',
      message: expect.stringContaining('plugin broken: its options function returned no schema'),
    })
  })
})

describe('plugin definitions that only JavaScript lets through', () => {
  const ANY = '{ safeParse: (v) => ({ success: true, data: v }) }'
  async function plugin(file: string, body: string): Promise<string> {
    await writeFile(join(dir, file), `export default { description: 'x', options: ${ANY}, ${body} }\n`)
    return `./${file}`
  }
  const refused = (message: string) => ({
    code: 'MSC_PLUGIN_INVALID',
    message: expect.stringContaining(message),
  })

  it('refuses an onError that is neither tempfail nor continue, and a timeout no timer can wait', async () => {
    const typo = await plugin(
      'typo.mjs',
      `name: 'typo', onError: 'temp-fail', symbols: {}, setup: () => async () => []`,
    )
    await expect(loadPlugins([entry(typo)], dir)).rejects.toMatchObject(
      refused('plugin typo: onError must be "tempfail" or "continue", not "temp-fail"'),
    )
    const long = await plugin(
      'long.mjs',
      `name: 'long', timeoutMs: 3e9, symbols: {}, setup: () => async () => []`,
    )
    await expect(loadPlugins([entry(long)], dir)).rejects.toMatchObject(
      refused('plugin long: timeoutMs must be'),
    )
  })

  it('refuses a symbols function that throws, and symbols that are not well-formed, naming the entry', async () => {
    const throws = await plugin(
      'badsyms.mjs',
      `name: 'badsyms', symbols: (o) => Object.fromEntries(o.zones.map((z) => [z, { description: z, weight: 1 }])), setup: () => async () => []`,
    )
    await expect(loadPlugins([entry(throws)], dir)).rejects.toMatchObject(
      refused(`plugins.0 (use: ${throws}): plugin badsyms: its symbols function threw:`),
    )
    const nan = await plugin(
      'nan.mjs',
      `name: 'nan', symbols: { X: { description: 'x', weight: NaN } }, setup: () => async () => []`,
    )
    await expect(loadPlugins([entry(nan)], dir)).rejects.toMatchObject(
      refused('symbol X weight is not a finite number'),
    )
    const empty = await plugin('nul.mjs', `name: 'nul', symbols: null, setup: () => async () => []`)
    await expect(loadPlugins([entry(empty)], dir)).rejects.toMatchObject(refused('is not a definePlugin'))
  })

  it('refuses a symbol that is another plugin’s, or the plugin’s own failure symbol', async () => {
    const av = await plugin(
      'av.mjs',
      `name: 'av', symbols: { VIRUS_FOUND: { description: 'virus', weight: 100, category: 'virus' } }, setup: () => async () => []`,
    )
    const other = await plugin(
      'other.mjs',
      `name: 'other', symbols: { VIRUS_FOUND: { description: 'mentions viruses', weight: 0.1 } }, setup: () => async () => []`,
    )
    await expect(loadPlugins([entry(av), entry(other)], dir)).rejects.toMatchObject(
      refused("plugins.1 (use: ./other.mjs): symbol VIRUS_FOUND of plugin other is already plugin av's"),
    )
    const spf = await plugin(
      'spf.mjs',
      `name: 'spf', symbols: { SPF_FAIL: { description: 'SPF says fail', weight: 3 } }, setup: () => async () => []`,
    )
    await expect(loadPlugins([entry(spf)], dir)).rejects.toMatchObject(
      refused('plugin spf: symbol SPF_FAIL is its failure symbol'),
    )
  })
})

describe('loadPlugins', () => {
  it('loads the example plugin with its own timeout, failure policy and defaulted options', async () => {
    const [plugin] = await loadPlugins([entry('example')], dir)
    expect(plugin?.name).toBe('example')
    expect(plugin?.url).toBe(EXAMPLE_URL)
    expect(plugin?.timeoutMs).toBe(1000)
    expect(plugin?.onError).toBe('continue')
    expect(plugin?.options).toEqual({ subjectWords: [] })
    expect(plugin?.rawOptions).toEqual({})
  })

  it('fails with MSC_PLUGIN_OPTIONS_INVALID naming the bad option', async () => {
    const err = await loadPlugins([entry('example', { options: { subjectWords: 3 } })], dir).then(
      () => undefined,
      (e: unknown) => e as Error & { code: string },
    )
    expect(err?.code).toBe('MSC_PLUGIN_OPTIONS_INVALID')
    expect(err?.message).toContain('options.subjectWords')
  })

  it('fails with MSC_PLUGIN_OPTIONS_INVALID for an unknown option', async () => {
    await expect(
      loadPlugins([entry('example', { options: { subjectWord: ['x'] } })], dir),
    ).rejects.toMatchObject({
      code: 'MSC_PLUGIN_OPTIONS_INVALID',
    })
  })

  it('lets the config override the plugin’s timeout and failure policy', async () => {
    const [plugin] = await loadPlugins([entry('example', { timeout: 2500, onError: 'tempfail' })], dir)
    expect(plugin?.timeoutMs).toBe(2500)
    expect(plugin?.onError).toBe('tempfail')
  })

  it('adds the automatic EXAMPLE_FAIL symbol to the score table with weight 0', async () => {
    const plugins = await loadPlugins([entry('example')], dir)
    const table = scoreTable(plugins)
    expect(table.get('EXAMPLE_FAIL')).toEqual({ weight: 0 })
    expect(table.get('EXAMPLE_SUBJECT_WORD')).toEqual({ weight: 3 })
    expect(table.get('EXAMPLE_NO_MESSAGE_ID')).toEqual({ weight: 1 })
    expect(table.size).toBe(4)
  })

  it('derives symbols from options when a plugin declares them as a function, with categories', async () => {
    const plugins = await loadPlugins(
      [{ use: './test/fixtures/plugins/zones', options: { names: ['ZONE_A', 'ZONE_B'] } }],
      packageRoot,
    )
    const table = scoreTable(plugins)
    expect(table.get('ZONE_A')).toEqual({ weight: 2, category: 'banned' })
    expect(table.get('ZONE_B')).toEqual({ weight: 2, category: 'banned' })
    expect(table.get('ZONES_FAIL')).toEqual({ weight: 0 })
  })

  it('refuses a plugin configured twice', async () => {
    await expect(
      loadPlugins([entry('example'), entry('./plugins/example')], packageRoot),
    ).rejects.toMatchObject({
      code: 'MSC_PLUGIN_INVALID',
    })
  })

  it('loads nothing for an empty list', async () => {
    await expect(loadPlugins([], dir)).resolves.toEqual([])
  })
})

describe('toRef', () => {
  it('keeps only the JSON-safe part a worker needs', async () => {
    const plugin = await loadPlugin(entry('example', { options: { subjectWords: ['x'] }, timeout: 500 }), dir)
    const ref = toRef(plugin)
    expect(ref).toEqual({
      url: EXAMPLE_URL,
      rawOptions: { subjectWords: ['x'] },
      configDir: dir,
      timeoutMs: 500,
      onError: 'continue',
    })
    expect(JSON.parse(JSON.stringify(ref))).toEqual(ref)
  })
})
