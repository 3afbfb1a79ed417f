import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { type AddressInfo, connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { stringify } from 'yaml'
import { builtPath } from '../package-root.js'
import { SCAN_THREAD_NAME } from '../pipeline/thread-name.js'
import { type CpuProbe, measured, selfCpuMs, threadsCpuMs, treeCpuMs } from './cpu.js'
import { runLoad } from './load.js'
import { benchIdOf } from './message.js'
import { Progress } from './progress.js'
import { startSink } from './sink.js'
import { type LatencySummary, summarize } from './stats.js'

/** What one measured run produced. */
export interface RunFigures {
  readonly label: string
  readonly messages: number
  readonly accepted: number
  readonly delivered: number
  /** Sends that failed (no 250). */
  readonly errors: number
  /** Messages accepted (250) that had not reached the sink when the run gave up waiting. */
  readonly lost: number
  /** Accepted messages per second over the load phase. */
  readonly acceptRate: number
  /** Delivered messages per second, from the first send to the last arrival at the sink. */
  readonly deliveredRate: number
  readonly acceptMs: LatencySummary
  readonly endToEndMs: LatencySummary
  /**
   * CPU ms per delivered message (Linux /proc): the server under test (absent for the bare
   * sink, which runs in the bench process), the bench process (load generator and sink), and
   * the whole machine. More stable than msgs/s on a shared machine. Absent without /proc.
   */
  readonly cpuMsPerMessage?: {
    readonly server?: number
    /** The server's CPU split: its main thread, its scan workers, and Node's other threads. */
    readonly serverThreads?: { readonly main: number; readonly scan: number; readonly other: number }
    readonly bench: number
    readonly machine: number
  }
}

export interface BenchOptions {
  readonly messages: number
  readonly concurrency: number
  readonly size: number
  readonly reuse: boolean
  /** Offered load in msgs/s (an open loop, see `LoadOptions.rate` in load.ts); without it, a closed loop. */
  readonly rate?: number
  /** Base config (plugins, workers, ...) for the mailscreen under test, as plain data. */
  readonly config: Record<string, unknown>
  /**
   * The directory of the file `config` came from: the bench's copy is written there (and
   * removed afterwards), so relative paths in it (plugins, rules, maps) mean what they meant.
   */
  readonly configDir?: string
  /** The built CLI to start mailscreen with. */
  readonly cli: string
  readonly timeoutMs: number
  /** Messages sent through mailscreen first and not counted (JIT, connection pools, spool files). */
  readonly warmup: number
  /** Also measure the minimal durable relay (src/bench/relay.ts): the floor of a durable filter. */
  readonly baseline?: boolean
}

/** What `runBench` measured; `relay` with {@link BenchOptions.baseline}. */
export interface BenchResult {
  readonly filter: RunFigures
  readonly relay?: RunFigures
  readonly ceiling: RunFigures
}

/** The durable relay's entry point, built (as workers are, also when the caller runs from sources). */
const RELAY_MAIN = builtPath(fileURLToPath(new URL('./relay-main.js', import.meta.url)))

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/** Whether something on 127.0.0.1:`port` sends its first bytes (an SMTP greeting) when connected to. */
function greets(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.setTimeout(2_000, () => socket.destroy())
    socket.once('data', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
    // Closed (or timed out) without a greeting: not yet.
    socket.once('close', () => resolve(false))
  })
}

/**
 * Wait until something greets on 127.0.0.1:`port`, trying every 100 ms. `running` says whether
 * the process that is to listen there still runs; once it does not, or once `timeoutMs` has
 * passed, this throws the error `failure` makes of `exited` or `timeout`. Also used by the
 * benchmark scripts (benchmarks/support/child.ts).
 */
export async function waitForGreeting(
  port: number,
  timeoutMs: number,
  running: () => boolean,
  failure: (why: 'exited' | 'timeout') => Error,
): Promise<void> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    if (!running()) throw failure('exited')
    if (await greets(port)) return
    if (performance.now() > deadline) throw failure('timeout')
    await new Promise((r) => setTimeout(r, 100))
  }
}

/**
 * The server process tree, and within it its main thread and its scan workers (they name
 * themselves); the rest are Node's own threads: libuv's file-system pool and V8's GC helpers.
 */
function serverProbes(pid: number): CpuProbe {
  return {
    server: () => treeCpuMs(pid),
    'main thread': () => threadsCpuMs(pid, (tid) => tid === pid),
    'scan workers': () => threadsCpuMs(pid, (_, name) => name === SCAN_THREAD_NAME),
  }
}

/** One load run against host:port (a process `serverPid` serves it, if not this one), with arrivals counted at `sink`. */
async function measure(
  label: string,
  port: number,
  sink: Awaited<ReturnType<typeof startSink>>,
  opts: BenchOptions,
  serverPid?: number,
): Promise<RunFigures> {
  let delivered = 0
  const run = () =>
    runAndWait(label, port, sink, opts, (count) => {
      delivered = count
    })
  // CPU figures come from /proc: on a system without it, the run goes without them.
  if (!existsSync('/proc/self/stat')) return run()
  const probe: CpuProbe = { bench: selfCpuMs, ...(serverPid ? serverProbes(serverPid) : {}) }
  const { value, cpuPerMsg } = await measured(probe, () => delivered, run)
  const server = cpuPerMsg.server
  const main = cpuPerMsg['main thread'] ?? 0
  const scan = cpuPerMsg['scan workers'] ?? 0
  return {
    ...value,
    cpuMsPerMessage: {
      ...(server !== undefined ? { server, serverThreads: { main, scan, other: server - main - scan } } : {}),
      bench: cpuPerMsg.bench as number,
      machine: cpuPerMsg['machine total'] as number,
    },
  }
}

/** The warm-up: as fast as it goes (a closed loop), whatever rate the measured runs offer. */
function warmUp(
  port: number,
  sink: Awaited<ReturnType<typeof startSink>>,
  opts: BenchOptions,
): Promise<RunFigures> {
  return measure('warm-up', port, sink, { ...opts, messages: opts.warmup, rate: undefined })
}

/** Runs so far in this process: each tags its messages with its number. */
let runs = 0

/** The load, then the wait for its deliveries; `onDelivered` hears the count as it grows. */
async function runAndWait(
  label: string,
  port: number,
  sink: Awaited<ReturnType<typeof startSink>>,
  opts: BenchOptions,
  onDelivered: (count: number) => void,
): Promise<RunFigures> {
  // A run of its own: what arrives late from an earlier one (which gave up waiting) is not ours.
  const run = ++runs
  const arrived = new Float64Array(opts.messages)
  let delivered = 0
  let lastArrival = 0
  const onMessage = (message: { data: Buffer }) => {
    const seq = benchIdOf(message.data, run)
    if (seq === undefined || seq >= opts.messages || arrived[seq] !== 0) return
    lastArrival = performance.now()
    arrived[seq] = lastArrival
    delivered++
    onDelivered(delivered)
  }
  sink.on('message', onMessage)
  let accepted = 0
  const progress = new Progress(label, opts.messages, () => ({ accepted, delivered }))
  progress.start()
  const load = await runLoad({
    host: '127.0.0.1',
    port,
    messages: opts.messages,
    concurrency: opts.concurrency,
    size: opts.size,
    reuse: opts.reuse,
    rate: opts.rate,
    run,
    onAccepted: () => {
      accepted++
    },
  })
  const deadline = performance.now() + opts.timeoutMs
  while (delivered < load.acceptMs.length && performance.now() < deadline)
    await new Promise((r) => setTimeout(r, 20))
  progress.stop()
  sink.off('message', onMessage)
  const endToEnd: number[] = []
  let firstStart = Number.POSITIVE_INFINITY
  for (let seq = 0; seq < opts.messages; seq++) {
    const start = load.startedAt[seq] as number
    firstStart = Math.min(firstStart, start)
    if (arrived[seq]) endToEnd.push((arrived[seq] as number) - start)
  }
  return {
    label,
    messages: opts.messages,
    accepted: load.acceptMs.length,
    delivered,
    errors: load.errors.length,
    lost: load.acceptMs.length - delivered,
    acceptRate: load.acceptMs.length / (load.elapsedMs / 1000),
    deliveredRate: delivered === 0 ? 0 : delivered / ((lastArrival - firstStart) / 1000),
    acceptMs: summarize(load.acceptMs),
    endToEndMs: summarize(endToEnd),
  }
}

/**
 * The benchmark: start a sink and a mailscreen (its own spool in a temp dir, relaying to
 * the sink), push the load through mailscreen, then push the same load straight into the
 * sink: the ceiling this machine and load generator allow.
 */
export async function runBench(opts: BenchOptions): Promise<BenchResult> {
  const dir = await mkdtemp(join(tmpdir(), 'mailscreen-bench-'))
  const sink = await startSink({ keep: false })
  const port = await freePort()
  // Not the milter's or the metrics' addresses of the config it copies: a mailscreen that
  // runs with that config would hold them.
  const { milter: _milter, metrics: _metrics, ...own } = opts.config
  const config = {
    ...own,
    smtp: { ...(opts.config.smtp as object), listen: [`127.0.0.1:${port}`] },
    spool: { ...(opts.config.spool as object), dir: join(dir, 'spool') },
    delivery: { ...(opts.config.delivery as object), relay: `127.0.0.1:${sink.port}` },
  }
  const configFile = join(opts.configDir ?? dir, `.mailscreen-bench-${process.pid}.yaml`)
  await writeFile(configFile, stringify(config))
  const child = spawn(process.execPath, [opts.cli, 'start', '--config', configFile], {
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  try {
    const timeoutMs = 30_000
    await waitForGreeting(
      port,
      timeoutMs,
      () => child.exitCode === null,
      (why) =>
        new Error(
          why === 'exited'
            ? `mailscreen exited with ${child.exitCode} during start-up`
            : `mailscreen did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`,
        ),
    )
    if (opts.warmup > 0) await warmUp(port, sink, opts)
    const filter = await measure('via mailscreen', port, sink, opts, child.pid)
    const relay = opts.baseline ? await measureRelay(dir, sink, opts) : undefined
    const ceiling = await measure('straight to sink', sink.port, sink, opts)
    return relay ? { filter, relay, ceiling } : { filter, ceiling }
  } finally {
    child.kill('SIGTERM')
    await new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)))
    await sink.close()
    await rm(configFile, { force: true })
    await rm(dir, { recursive: true, force: true })
  }
}

/** The durable relay as a child process relaying to `sink`: warmed up like mailscreen, then measured. */
async function measureRelay(
  dir: string,
  sink: Awaited<ReturnType<typeof startSink>>,
  opts: BenchOptions,
): Promise<RunFigures> {
  const port = await freePort()
  const files = join(dir, 'relay')
  await mkdir(files)
  const child = spawn(process.execPath, [RELAY_MAIN, String(port), files, String(sink.port)], {
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  try {
    await waitForGreeting(
      port,
      30_000,
      () => child.exitCode === null,
      (why) =>
        new Error(`durable relay ${why === 'exited' ? `exited with ${child.exitCode}` : 'did not listen'}`),
    )
    if (opts.warmup > 0) await warmUp(port, sink, opts)
    return await measure('durable relay', port, sink, opts, child.pid)
  } finally {
    child.kill('SIGTERM')
    await new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)))
  }
}

function ms(value: number): string {
  return Number.isNaN(value) ? '-' : value.toFixed(1)
}

/** The CPU table (and a blank line after it), when the runs have CPU figures. */
function cpuTable(rows: readonly RunFigures[]): string[] {
  if (rows.some((r) => r.cpuMsPerMessage === undefined)) return []
  const figure = (value: number | undefined, width: number) =>
    (value === undefined || Number.isNaN(value) ? '-' : value.toFixed(2)).padStart(width)
  return [
    `${'CPU ms per message'.padEnd(18)} ${'server'.padStart(10)} ${'main'.padStart(7)} ${'scan'.padStart(7)} ${'other'.padStart(7)} ${'bench'.padStart(11)} ${'machine'.padStart(10)}`,
    ...rows.map((r) => {
      const cpu = r.cpuMsPerMessage
      const threads = cpu?.serverThreads
      return `${r.label.padEnd(18)} ${figure(cpu?.server, 10)} ${figure(threads?.main, 7)} ${figure(threads?.scan, 7)} ${figure(threads?.other, 7)} ${figure(cpu?.bench, 11)} ${figure(cpu?.machine, 10)}`
    }),
    '',
  ]
}

/** How the load was offered, for the table's first line. */
function loadLine(opts: BenchOptions): string {
  const offered =
    opts.rate === undefined
      ? `concurrency ${opts.concurrency}`
      : `offered ${opts.rate} msgs/s (open loop), at most ${opts.concurrency} connections`
  return `messages ${opts.messages} (after ${opts.warmup} warm-up), ${offered}, size ${opts.size} B, ${opts.reuse ? 'connections reused' : 'one message per connection'}`
}

/**
 * How much faster the others went than mailscreen. Under an open loop every run goes at the
 * offered rate, if it can: the latencies compare them, a ratio of rates would not.
 */
function ratioLines(result: BenchResult, opts: BenchOptions): string[] {
  // Under an open loop, or with nothing delivered through mailscreen, there is no ratio to give.
  if (opts.rate !== undefined || result.filter.deliveredRate === 0) return []
  const ratio = (run: RunFigures) => (run.deliveredRate / result.filter.deliveredRate).toFixed(2)
  return [
    `ceiling / mailscreen (delivered msgs/s): ${ratio(result.ceiling)}x`,
    ...(result.relay
      ? [
          `durable relay / mailscreen (delivered msgs/s): ${ratio(result.relay)}x (fsync + two SMTP hops, nothing else)`,
        ]
      : []),
  ]
}

/** The results as a table, with the filter/ceiling ratio. */
export function formatBench(result: BenchResult, opts: BenchOptions): string {
  const rows = [result.filter, ...(result.relay ? [result.relay] : []), result.ceiling]
  const acceptFrom =
    opts.rate === undefined ? 'connect' : 'when the message was due (queueing for a free connection included)'
  const lines = [
    loadLine(opts),
    '',
    `${'run'.padEnd(18)} ${'accepted/s'.padStart(10)} ${'delivered/s'.padStart(11)} ${'accept p50'.padStart(10)} ${'p95'.padStart(7)} ${'p99'.padStart(7)} ${'e2e p50'.padStart(8)} ${'p95'.padStart(7)} ${'p99'.padStart(7)} ${'errors'.padStart(6)} ${'lost'.padStart(5)}`,
    ...rows.map(
      (r) =>
        `${r.label.padEnd(18)} ${r.acceptRate.toFixed(0).padStart(10)} ${r.deliveredRate.toFixed(0).padStart(11)} ${ms(r.acceptMs.p50).padStart(10)} ${ms(r.acceptMs.p95).padStart(7)} ${ms(r.acceptMs.p99).padStart(7)} ${ms(r.endToEndMs.p50).padStart(8)} ${ms(r.endToEndMs.p95).padStart(7)} ${ms(r.endToEndMs.p99).padStart(7)} ${String(r.errors).padStart(6)} ${String(r.lost).padStart(5)}`,
    ),
    '',
    ...cpuTable(rows),
    ...ratioLines(result, opts),
    `latencies in ms; accept = ${acceptFrom} to 250 after DATA; e2e = ${opts.rate === undefined ? 'first byte sent' : 'due'} to arrival at the sink; errors = failed sends; lost = accepted but not delivered within --timeout`,
    'CPU: server = mailscreen (or the relay) with its threads, split into its main thread, its scan workers and the other threads (libuv file-system pool, V8 GC helpers); bench = load generator and sink (this process); machine = every CPU of the host, from /proc/stat',
  ]
  return `${lines.join('\n')}\n`
}
