import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

function findRoot(start: string): string {
  let dir = start
  for (;;) {
    const manifest = join(dir, 'package.json')
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, 'utf8')).name === 'mailscreen') return dir
    const parent = dirname(dir)
    if (parent === dir) throw new Error(`mailscreen's package.json not found above ${start}`)
    dir = parent
  }
}

/** The directory of mailscreen's package.json. */
export const packageRoot = findRoot(dirname(fileURLToPath(import.meta.url)))

/**
 * Where the compiled JavaScript for a file of mailscreen's source tree lives. Worker threads
 * and plugin imports need JavaScript, also when the caller runs from TypeScript (tests),
 * so `<root>/src/x.ts` and `<root>/plugins/p` map into `<root>/dist/`.
 */
export function builtPath(path: string): string {
  const rel = relative(packageRoot, path)
  if (rel.startsWith('..') || rel.startsWith(`dist${sep}`) || rel === 'dist') return path
  return join(packageRoot, 'dist', rel.replace(/\.ts$/, '.js'))
}
