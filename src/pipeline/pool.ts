import { fileURLToPath } from 'node:url'
import type { Worker } from 'node:worker_threads'
import type { Logger } from 'pino'
import { Piscina } from 'piscina'
import { Semaphore } from '../delivery/limit.js'
import { MailscreenError, toErrorInfo } from '../errors.js'
import { builtPath } from '../package-root.js'
import { isBoardMessage, nextSeq, Watchdog } from './watchdog.js'
import type {
  LoadedMessage,
  ScanResult,
  ScanTask,
  SpoolWriteMark,
  WatchedTask,
  WorkerData,
  WorkerSettings,
} from './worker.js'

/** Pool sizing. */
export interface PoolOptions {
  readonly workers: number
  /** Tasks one worker runs at once: checks mostly wait on the network. */
  readonly concurrentTasksPerWorker: number
  /** A scan running longer than this (from when its worker began it) hung its worker. */
  readonly taskTimeoutMs: number
  readonly log: Logger
  /** A worker thread started (at first, or to replace one): see thread-scheduling.ts. */
  readonly onThreadStart?: () => void
}

export interface RunOptions {
  /**
   * Scan on a thread of its own (one kept for suspects, one scan at a time), so that if the
   * thread dies, this message is surely the cause, and no other scan dies with it.
   */
  readonly alone?: boolean
  /** The answer is no longer wanted: a scan still waiting for a place is dropped (AbortError). */
  readonly signal?: AbortSignal
}

/** The worker-thread pool that runs scans. */
export interface ScanPool {
  /**
   * Scan one message. Rejects with `MSC_SCAN_FAILED` when its worker thread died under it:
   * the thread crashed, or this scan or another one on the same thread overran the task
   * timeout and the thread was replaced; with `MSC_POOL_CLOSED` when the pool was closed
   * (a reload, a stop) before the scan was done, which says nothing about the message.
   */
  run(task: ScanTask, options?: RunOptions): Promise<ScanResult>
  /**
   * Stop the threads. Scans already running finish (or the watchdog ends them); those still
   * waiting for a thread are turned away with `MSC_POOL_CLOSED`.
   */
  close(): Promise<void>
}

/** The compiled worker module (also when the caller runs from TypeScript sources, as in tests). */
const WORKER_FILE = builtPath(fileURLToPath(new URL('./worker.js', import.meta.url)))

/** How often a scan waiting for a place looks whether its caller gave up. */
const GIVE_UP_POLL_MS = 250

/** How long close() waits for terminated threads to exit. */
const EXIT_WAIT_MS = 10_000

/**
 * How long close() waits for new threads to load their modules before it terminates them. One
 * that takes longer is stuck in a module's top level, and goes anyway.
 */
const LOAD_WAIT_MS = 10_000

/**
 * How long a piscina pool may stay short of threads before it is started anew, doubling with
 * each restart in a row (see `renew`), up to RENEW_MAX_MS.
 */
const SHORT_OF_THREADS_MS = 2_000
const RENEW_MAX_MS = 60_000

interface Sizing {
  readonly minThreads: number
  readonly maxThreads: number
  readonly perThread: number
  readonly idleTimeout: number
}

/** One of the pool's two piscina pools, replaced as a whole when piscina gave up on its threads. */
interface Side {
  readonly name: 'shared' | 'suspects'
  readonly sizing: Sizing
  piscina: Piscina<WatchedTask, ScanResult>
  /** Since when (performance.now()) it has had fewer threads than it should. */
  shortSince?: number
  /** Restarts in a row; back to 0 once it has kept its threads for RENEW_MAX_MS. */
  renewals: number
  renewedAt: number
}

type Balancer = NonNullable<NonNullable<ConstructorParameters<typeof Piscina>[0]>['loadBalancer']>

/**
 * Start the pool: `workers` threads that share the scans, and one for suspects. Each thread
 * loads its plugins at start, and sets them up on its first task.
 */
export function createScanPool(settings: WorkerSettings, options: PoolOptions): ScanPool {
  const limitMs = options.taskTimeoutMs
  const watchdog = new Watchdog(limitMs)
  // How often the watchdog reads the boards, and how often each worker's heartbeat beats.
  const periodMs = Math.min(1_000, Math.max(25, limitMs / 4))
  /** Threads being terminated: they get no new task (terminate() takes a while). */
  const dying = new Set<number>()
  /** Called when a scan settles (close() listens while it waits). */
  let onSettled: (() => void) | undefined
  let closing = false
  /** close() gave up on piscina's own close (which then times out, harmlessly) and destroyed. */
  let destroyed = false
  /** Rejects a running task's promise, by task number: the watchdog settles them at once. */
  const lose = new Map<number, (err: Error) => void>()
  /** Threads that have loaded their modules (see worker.ts): only those are terminated at once. */
  const loaded = new Set<number>()
  /** Threads still loading their plugins, and since when (performance.now()); reported once if slow. */
  const loading = new Map<number, number>()
  /** Whether a thread may be terminated now: it has loaded its modules, or it is gone (-1). */
  const mayTerminate = (thread: Worker): boolean => thread.threadId === -1 || loaded.has(thread.threadId)
  /** Terminate a thread once it has loaded its modules, or after LOAD_WAIT_MS if it never does. */
  const terminate = async (thread: Worker): Promise<void> => {
    await until(() => mayTerminate(thread), LOAD_WAIT_MS)
    await thread.terminate()
  }

  const start = (sizing: Sizing): Piscina<WatchedTask, ScanResult> => {
    const { perThread, ...threads } = sizing
    const piscina = new Piscina<WatchedTask, ScanResult>({
      ...threads,
      filename: WORKER_FILE,
      workerData: { ...settings, boardCapacity: perThread, beatMs: periodMs } satisfies WorkerData,
      concurrentTasksPerWorker: perThread,
      loadBalancer: leastBusy(perThread, dying),
      // Checks do network I/O inside workers; with atomics the idle workers would freeze their sockets.
      atomics: 'disabled',
      // A message that makes a worker balloon kills that worker, not the whole process.
      resourceLimits: { maxOldGenerationSizeMb: 2048 },
    })
    // A thread that fails between tasks (a plugin's stray throw): piscina replaces it, and
    // without a listener this event would end the whole process.
    piscina.on('error', (err: unknown) => {
      if (destroyed) return
      if (closing) options.log.warn({ err: toErrorInfo(err) }, 'scan pool: error while closing')
      else options.log.error({ err: toErrorInfo(err) }, 'worker thread failed between scans: replaced')
    })
    piscina.on('message', (message: unknown) => {
      if ((message as Partial<LoadedMessage> | null)?.loaded === true) {
        loaded.add((message as LoadedMessage).threadId)
        loading.delete((message as LoadedMessage).threadId)
        return
      }
      if (!isBoardMessage(message)) return
      const { threadId, board } = message
      const thread = threadOf(threadId)
      if (thread === undefined) return
      watchdog.watch(threadId, board)
      if (!loaded.has(threadId)) loading.set(threadId, performance.now())
      options.onThreadStart?.()
      // Keyed by the ID read now: once a thread has exited, its threadId reads -1.
      thread.once('exit', () => {
        watchdog.forget(threadId)
        dying.delete(threadId)
        loaded.delete(threadId)
        loading.delete(threadId)
      })
    })
    return piscina
  }
  const side = (name: Side['name'], sizing: Sizing): Side => ({
    name,
    sizing,
    piscina: start(sizing),
    renewals: 0,
    renewedAt: performance.now(),
  })
  const shared = side('shared', {
    minThreads: options.workers,
    maxThreads: options.workers,
    perThread: options.concurrentTasksPerWorker,
    idleTimeout: Number.POSITIVE_INFINITY,
  })
  // Kept up even when idle: piscina replaces a lost thread only down to minThreads, and
  // tasks queued for a pool with no thread would wait for the next submission.
  const suspects = side('suspects', {
    minThreads: 1,
    maxThreads: 1,
    perThread: 1,
    idleTimeout: Number.POSITIVE_INFINITY,
  })
  const sides = [shared, suspects]
  /** Pools started anew whose threads still finish their scans: the watchdog still minds them. */
  const retiring = new Set<Piscina<WatchedTask, ScanResult>>()
  const pools = (): Piscina<WatchedTask, ScanResult>[] => [...sides.map((s) => s.piscina), ...retiring]
  const allThreads = (): Worker[] => pools().flatMap((piscina) => piscina.threads)
  const threadOf = (threadId: number): Worker | undefined =>
    allThreads().find((thread) => thread.threadId === threadId)
  /** piscina pools given up on: the scans they turn away were no fault of the messages. */
  const retired = new WeakSet<Piscina<WatchedTask, ScanResult>>()
  /**
   * piscina replaces a thread that dies, but once a replacement fails while it starts (a file
   * descriptor, memory or a plugin's import failing just then) it starts one again only for a
   * scan sent while no thread can take it: scans already waiting in its queue stay there, and
   * with every place taken no new scan comes, so the pool runs none while the listener goes on
   * answering 250. A side short of threads for SHORT_OF_THREADS_MS (longer after each restart
   * in a row) is started anew; the scans waiting in the old one go to the new one.
   */
  const renewIfShort = (s: Side, now: number): void => {
    if (s.piscina.threads.length >= s.sizing.minThreads) {
      s.shortSince = undefined
      if (now - s.renewedAt > RENEW_MAX_MS) s.renewals = 0
      return
    }
    s.shortSince ??= now
    if (now - s.shortSince < Math.min(RENEW_MAX_MS, SHORT_OF_THREADS_MS * 2 ** s.renewals)) return
    const old = s.piscina
    retired.add(old)
    retiring.add(old)
    s.piscina = start(s.sizing)
    s.shortSince = undefined
    s.renewals++
    s.renewedAt = now
    options.log.error(
      { pool: s.name, threads: old.threads.length, wanted: s.sizing.minThreads, restarts: s.renewals },
      'scan pool restarted: a worker thread failed to start and was not replaced',
    )
    // Scans still running on its threads finish; those waiting are turned away (and go to the
    // new pool). Not while one of its threads still loads its modules (see worker.ts).
    void until(() => old.threads.every(mayTerminate), LOAD_WAIT_MS)
      .then(() => old.close({ force: true }))
      .catch(() => undefined)
      .finally(() => retiring.delete(old))
  }
  // Scans beyond what the shared threads take at once wait here rather than in piscina, where
  // a scan nobody waits for any more (a milter client gone) would still be run.
  const places = new Semaphore(options.workers * options.concurrentTasksPerWorker)

  const watch = setInterval(() => {
    const now = performance.now()
    if (!closing) for (const s of sides) renewIfShort(s, now)
    // A thread takes scans once its plugins are loaded; one that never finishes (an import
    // waiting on something forever) holds its scans, and cannot safely be terminated.
    for (const [threadId, since] of loading)
      if (now - since > LOAD_WAIT_MS) {
        loading.delete(threadId)
        options.log.error(
          { thread: threadId, seconds: Math.round((now - since) / 1000) },
          'worker thread still loading its plugins: scans wait for it',
        )
      }
    for (const { threadId, overran, others, stuckMs } of watchdog.overruns()) {
      watchdog.forget(threadId)
      dying.add(threadId)
      if (stuckMs === undefined) {
        options.log.warn(
          { thread: threadId, overran: overran.length, beside: others.length, timeoutMs: limitMs },
          'worker thread terminated: a scan ran past pool.taskTimeout',
        )
      } else {
        // The scans sent to it never began; piscina fails them when the thread exits.
        options.log.warn(
          { thread: threadId, stuckMs: Math.round(stuckMs), timeoutMs: limitMs },
          'worker thread terminated: stuck outside any scan for longer than pool.taskTimeout',
        )
      }
      for (const seq of overran) lose.get(seq)?.(lost(`scan did not finish within ${limitMs} ms`))
      for (const seq of others) {
        lose.get(seq)?.(lost(`its worker thread was replaced: another scan on it ran past ${limitMs} ms`))
      }
      // piscina starts a new thread in its place once this one has exited.
      const thread = threadOf(threadId)
      if (thread) void terminate(thread)
    }
  }, periodMs)
  watch.unref()

  let seq = 0
  const scanError = (err: unknown): MailscreenError => {
    const { message } = toErrorInfo(err)
    const spoolWrite = (err as { cause?: Partial<SpoolWriteMark> } | undefined)?.cause?.spoolWrite === true
    return new MailscreenError(spoolWrite ? 'MSC_SPOOL_WRITE_FAILED' : 'MSC_SCAN_FAILED', message, {
      cause: err,
    })
  }
  const closed = (cause?: unknown): MailscreenError =>
    new MailscreenError('MSC_POOL_CLOSED', 'the scan pool closed before the scan was done', { cause })
  /** Run on a side's pool; a scan turned away because that pool was started anew goes to the new one. */
  const submit = (s: Side, task: ScanTask): Promise<ScanResult> => {
    seq = nextSeq(seq)
    const mine = seq
    const { piscina } = s
    return new Promise<ScanResult>((resolve, reject) => {
      lose.set(mine, reject)
      piscina.run({ seq: mine, task }).then(resolve, (err: unknown) => {
        if (closing) reject(closed(err))
        // Turned away unstarted by a pool started anew (piscina's AbortError 'pool is closed'):
        // on to the new one. A scan that crashed its thread there is a crash like any other.
        else if (retired.has(piscina) && (err as Error | undefined)?.name === 'AbortError')
          submit(s, task).then(resolve, reject)
        else reject(scanError(err))
      })
    }).finally(() => {
      lose.delete(mine)
      onSettled?.()
    })
  }

  return {
    run: async (task, runOptions) => {
      if (closing) throw closed()
      if (runOptions?.alone) return submit(suspects, task)
      const signal = runOptions?.signal
      const placed = await places.acquire(signal && { ms: GIVE_UP_POLL_MS, giveUp: () => signal.aborted })
      if (!placed) {
        if (closing) throw closed()
        throw new DOMException('the answer is no longer wanted', 'AbortError')
      }
      try {
        return await submit(shared, task)
      } finally {
        places.release()
      }
    },
    close: async () => {
      closing = true
      places.cancelWaiting()
      // Closing terminates the threads: not while one still loads its modules (see worker.ts),
      // as one started by a reload a moment ago may.
      await until(() => allThreads().every(mayTerminate), LOAD_WAIT_MS)
      // piscina's close counts its threads when it begins and waits for each to say it is idle.
      // A thread the watchdog terminated, or one that exits by itself (a crash), never does, and
      // the close would wait out piscina's closeTimeout. Once every scan sent has settled (the
      // watchdog settles a hung one at once), there is nothing left to wait for: destroy then.
      let settledAll = (): void => undefined
      const drained = new Promise<void>((resolve) => {
        settledAll = () => {
          if (lose.size === 0) resolve()
        }
      })
      onSettled = settledAll
      // force: scans not yet on a thread are turned away; running ones finish. The watchdog
      // stays on meanwhile, so a hung scan cannot hold the close.
      // A pool started anew is being closed already: its second close may fail, harmlessly.
      const flushed = Promise.all(
        pools().map((piscina) => piscina.close({ force: true }).catch(() => undefined)),
      )
      settledAll()
      const closedCleanly = await Promise.race([flushed.then(() => true), drained.then(() => false)])
      if (!closedCleanly) {
        destroyed = true
        // A thread stuck in native code does not stop for terminate(): leave it behind.
        await settledWithin(Promise.all(pools().map((piscina) => piscina.destroy())), EXIT_WAIT_MS)
      }
      clearInterval(watch)
    },
  }
}

/** Resolves once `done()` holds (looked at every 20 ms), or after `ms`. */
async function until(done: () => boolean, ms: number): Promise<void> {
  const deadline = performance.now() + ms
  while (!done() && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
}

/** Resolves when `promise` settles, or after `ms`, whichever comes first. */
function settledWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise.then(
      () => undefined,
      () => undefined,
    ),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

function lost(reason: string): MailscreenError {
  return new MailscreenError('MSC_SCAN_FAILED', reason)
}

/**
 * piscina's own balancer, less the threads being terminated: the least busy thread with room,
 * or none (the task waits in piscina's queue).
 */
function leastBusy(perThread: number, dying: ReadonlySet<number>): Balancer {
  return (_task, workers) => {
    let best: (typeof workers)[number] | null = null
    for (const worker of workers) {
      if (dying.has(worker.id) || worker.currentUsage >= perThread) continue
      if (best === null || worker.currentUsage < best.currentUsage) best = worker
    }
    return best
  }
}
