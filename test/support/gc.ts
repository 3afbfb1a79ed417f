import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

// Node 20 drops an AbortSignal.timeout() that only AbortSignal.any() refers to when the
// garbage collector runs (nodejs/node#57736), so tests that guard against that need a GC now.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/**
 * Runs full garbage collections every `everyMs` until `work` settles, and returns its result:
 * a timer or signal that is only weakly held is lost this way rather than by chance.
 */
export async function underGarbageCollection<T>(work: Promise<T>, everyMs = 50): Promise<T> {
  const timer = setInterval(gc, everyMs)
  try {
    return await work
  } finally {
    clearInterval(timer)
  }
}
