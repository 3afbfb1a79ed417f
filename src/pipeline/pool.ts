import { fileURLToPath } from 'node:url'
import { Piscina } from 'piscina'
import { builtPath } from '../package-root.js'
import type { ScanResult, ScanTask, WorkerSettings } from './worker.js'

/** Pool sizing. */
export interface PoolOptions {
  readonly workers: number
  /** Tasks one worker runs at once: checks mostly wait on the network. */
  readonly concurrentTasksPerWorker: number
}

/** The worker-thread pool that runs scans. */
export interface ScanPool {
  /** Scan one message; rejects if the worker crashed, or with an AbortError when `signal` fired. */
  run(task: ScanTask, signal?: AbortSignal): Promise<ScanResult>
  /** Stop the workers; without `force`, tasks already running finish first. */
  close(options?: { force?: boolean }): Promise<void>
}

/** The compiled worker module (also when the caller runs from TypeScript sources, as in tests). */
const WORKER_FILE = builtPath(fileURLToPath(new URL('./worker.js', import.meta.url)))

/** Start the pool; each worker sets its plugins up once, on its first task. */
export function createScanPool(settings: WorkerSettings, options: PoolOptions): ScanPool {
  const piscina = new Piscina<ScanTask, ScanResult>({
    filename: WORKER_FILE,
    workerData: settings,
    minThreads: options.workers,
    maxThreads: options.workers,
    concurrentTasksPerWorker: options.concurrentTasksPerWorker,
    idleTimeout: Number.POSITIVE_INFINITY,
    // Checks do network I/O inside workers; with atomics the idle workers would freeze their sockets.
    atomics: 'disabled',
    // A message that makes a worker balloon kills that worker, not the whole process.
    resourceLimits: { maxOldGenerationSizeMb: 2048 },
  })
  return {
    run: (task, signal) => piscina.run(task, signal ? { signal } : {}),
    close: (options) => piscina.close({ force: options?.force ?? true }),
  }
}
