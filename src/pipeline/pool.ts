import { fileURLToPath } from 'node:url'
import { Piscina } from 'piscina'
import { MailscreenError, toErrorInfo } from '../errors.js'
import { builtPath } from '../package-root.js'
import { isBoardMessage, nextSeq, Watchdog } from './watchdog.js'
import type { ScanResult, ScanTask, WatchedTask, WorkerSettings } from './worker.js'

/** Pool sizing. */
export interface PoolOptions {
  readonly workers: number
  /** Tasks one worker runs at once: checks mostly wait on the network. */
  readonly concurrentTasksPerWorker: number
  /** A scan running longer than this (from when its worker began it) hung its worker. */
  readonly taskTimeoutMs: number
}

/** The worker-thread pool that runs scans. */
export interface ScanPool {
  /**
   * Scan one message. Rejects with `MSC_SCAN_FAILED` when its worker thread died under it:
   * the thread crashed, or this scan or another one on the same thread overran the task
   * timeout and the thread was replaced. `alone`: give the scan a thread of its own, so that
   * if the thread dies, this message is surely the cause.
   */
  run(task: ScanTask, options?: { readonly alone?: boolean }): Promise<ScanResult>
  /** Stop the workers; without `force`, tasks already running finish first. */
  close(options?: { force?: boolean }): Promise<void>
}

/** The compiled worker module (also when the caller runs from TypeScript sources, as in tests). */
const WORKER_FILE = builtPath(fileURLToPath(new URL('./worker.js', import.meta.url)))

/** Start the pool; each worker sets its plugins up once, on its first task. */
export function createScanPool(settings: WorkerSettings, options: PoolOptions): ScanPool {
  const piscina = new Piscina<WatchedTask, ScanResult>({
    filename: WORKER_FILE,
    workerData: { ...settings, boardCapacity: options.concurrentTasksPerWorker },
    minThreads: options.workers,
    maxThreads: options.workers,
    concurrentTasksPerWorker: options.concurrentTasksPerWorker,
    idleTimeout: Number.POSITIVE_INFINITY,
    // Checks do network I/O inside workers; with atomics the idle workers would freeze their sockets.
    atomics: 'disabled',
    // A message that makes a worker balloon kills that worker, not the whole process.
    resourceLimits: { maxOldGenerationSizeMb: 2048 },
  })
  const limitMs = options.taskTimeoutMs
  const watchdog = new Watchdog(limitMs)
  piscina.on('message', (message: unknown) => {
    if (isBoardMessage(message)) watchdog.watch(message.threadId, message.board)
  })
  piscina.on('workerDestroy', (worker: { id: number }) => watchdog.forget(worker.id))
  /** Why a task's thread was replaced, by task number, for the rejection that follows. */
  const replaced = new Map<number, string>()
  const watch = setInterval(
    () => {
      for (const { threadId, overran, others } of watchdog.overruns()) {
        watchdog.forget(threadId)
        for (const seq of overran) replaced.set(seq, `scan did not finish within ${limitMs} ms`)
        for (const seq of others) {
          replaced.set(seq, `its worker thread was replaced: another scan on it ran past ${limitMs} ms`)
        }
        // piscina rejects the thread's tasks and starts a new thread in its place.
        void piscina.threads.find((thread) => thread.threadId === threadId)?.terminate()
      }
    },
    Math.min(1_000, Math.max(25, limitMs / 4)),
  )
  watch.unref()
  let seq = 0
  return {
    run: async (task, runOptions) => {
      seq = nextSeq(seq)
      const mine = seq
      try {
        // piscina puts a task that has an AbortSignal only on an idle thread, and nothing else
        // beside it until it ends (LeastBusyBalancer, isRunningAbortableTask). The signal never
        // fires: the watchdog, not piscina, ends a thread that hangs.
        return await piscina.run(
          { seq: mine, task },
          runOptions?.alone ? { signal: new AbortController().signal } : {},
        )
      } catch (err) {
        throw new MailscreenError('MSC_SCAN_FAILED', replaced.get(mine) ?? toErrorInfo(err).message, {
          cause: err,
        })
      } finally {
        replaced.delete(mine)
      }
    },
    close: async (closeOptions) => {
      clearInterval(watch)
      await piscina.close({ force: closeOptions?.force ?? true })
    },
  }
}
