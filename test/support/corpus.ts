import path from 'node:path'
import { packageRoot } from '../../src/package-root.js'

/**
 * The shared test corpus (346 real messages and the ClamAV signatures for its virus tests):
 * `$MAILSCREEN_CORPUS` when set (`.ci/run` sets it for a clone that is not beside `shared/`),
 * else `../shared/corpus` beside the package. Never copied into the repository.
 */
export const CORPUS_DIR = process.env.MAILSCREEN_CORPUS ?? path.join(packageRoot, '..', 'shared', 'corpus')
