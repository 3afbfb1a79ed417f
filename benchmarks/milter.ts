/**
 * Milter overhead (issue #5): messages/s through Postfix + the mailscreen milter against
 * Postfix alone, in the same run (the ratio), and the accept latency the milter adds per
 * message at p50 and p99.
 *
 *   node dist/benchmarks/milter.js [--messages M=2000] [--concurrency C=20] [--rounds R=2]
 *     [--size BYTES=10240] [--warmup K=200] [--scanners] [--timeout SECONDS=120] [--json]
 *
 * Starts, all on loopback:
 *  - two SMTP sinks in this process (src/bench/sink.ts), one per Postfix, so a late delivery
 *    of one run can never be counted in another;
 *  - a mailscreen child (the built CLI, its own temp dir) with `milter.listen` on
 *    inet:127.0.0.1:PORT, default milter settings (60 s budget, tempfail), log level info,
 *    2 workers; plugins: the example plugin only, or with --scanners also clamav and
 *    spamassassin against a private clamd and spamd (test/support/clamd.ts, spamd.ts);
 *  - two private Postfix instances (test/support/postfix.ts), identical but for the milter:
 *      A "postfix"         no smtpd_milters
 *      B "postfix+milter"  smtpd_milters = inet:127.0.0.1:PORT, milter_protocol = 6,
 *                          milter_default_action = tempfail
 *    each relaying everything to its sink. On top of the harness's settings (in_flow_delay = 0,
 *    smtpd_error_sleep_time = 0, no DNS, no TLS, chroot n), both get the same extra main.cf
 *    (POSTFIX_TUNING below) so that Postfix's own limits do not cap the load:
 *      default_process_limit = 200               (smtpd, smtp, cleanup: 100 by default)
 *      in_flow_delay = 0                         (no 1 s pause per message when the queue grows)
 *      smtpd_client_connection_count_limit = 0,
 *      smtpd_client_connection_rate_limit = 0,
 *      smtpd_client_message_rate_limit = 0       (anvil: no per-client caps; loopback is in
 *                                                 mynetworks and exempt anyway, said explicitly)
 *      smtpd_peername_lookup = no                (no reverse lookup of 127.0.0.1 per connection)
 *      default_destination_concurrency_limit = 50,
 *      initial_destination_concurrency = 20      (delivery to the sink: not the bottleneck)
 *
 * Then, after K warm-up messages into each instance (smtpd processes forked, milter workers
 * warm), R rounds of: A, then B. Each run pushes M messages of BYTES bytes at concurrency C,
 * one message per connection (src/bench/load.ts `runLoad`, MAIL/RCPT/DATA pipelined) into that
 * Postfix's smtpd, and waits until every accepted message reached its sink. Measured per run:
 *  - accepted/s: messages answered 250 after DATA / duration of the load;
 *  - accept latency: connect to the 250 after DATA (p50/p95/p99). This is where the milter's
 *    time goes: smtpd opens the milter connection at CONNECT and sends CONNECT to RCPT (plus
 *    the DATA macros), cleanup(8) streams the header and body on the same connection and
 *    waits for the verdict at end of message, and only then does smtpd answer 250;
 *  - delivered/s: arrivals at the sink / (first send to last arrival); e2e latency: connect to
 *    arrival at the sink (Postfix's queue manager and smtp client included);
 *  - CPU ms per message of the Postfix instance in use (master and all its children), of
 *    mailscreen, of this process (load generator and sinks) and of everything else on the
 *    machine (from /proc), and the machine's busy share: this is a shared 2-core VM.
 *  - B only: mailscreen's own time per message from its `milter verdict` log line (`ms`,
 *    end of message to decision), its answers, and any `milter timeout` or error lines.
 * Reported: per round and pooled over the rounds, milter / alone for accepted/s and
 * delivered/s, and accept latency B minus A at p50 and p99 (pooled: percentiles over all
 * samples of all rounds). Postfix warnings from both maillogs are listed at the end.
 *
 * Everything started here is stopped by PID (Postfix: postfix stop, then its master's PID and
 * process group), also on error and on SIGINT/SIGTERM; temp dirs are removed.
 */
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { type CpuFigures, type CpuProbe, measured, selfCpuMs, treeCpuMs } from '../src/bench/cpu.js'
import { runLoad } from '../src/bench/load.js'
import { benchIdOf } from '../src/bench/message.js'
import { Progress } from '../src/bench/progress.js'
import { type Sink, type SinkMessage, startSink } from '../src/bench/sink.js'
import { type LatencySummary, summarize } from '../src/bench/stats.js'
import { startClamd } from '../test/support/clamd.js'
import { freePort } from '../test/support/ports.js'
import { type PostfixInstance, startPostfix } from '../test/support/postfix.js'
import { startSpamd } from '../test/support/spamd.js'
import { startMailscreen } from './support/child.js'
import { ms, pct } from './support/format.js'
import { int } from './support/options.js'

/** main.cf settings given to both Postfix instances alike (see the header comment). */
const POSTFIX_TUNING: Readonly<Record<string, string>> = {
  default_process_limit: '200',
  in_flow_delay: '0',
  smtpd_client_connection_count_limit: '0',
  smtpd_client_connection_rate_limit: '0',
  smtpd_client_message_rate_limit: '0',
  smtpd_peername_lookup: 'no',
  default_destination_concurrency_limit: '50',
  initial_destination_concurrency: '20',
}

/** Only B: what the harness sets for a milter, plus the timeouts spelled out. */
const MILTER_MAIN: Readonly<Record<string, string>> = {
  milter_protocol: '6',
  milter_default_action: 'tempfail',
  milter_connect_timeout: '30s',
  milter_command_timeout: '30s',
  milter_content_timeout: '300s',
}

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  readonly messages: number
  readonly concurrency: number
  readonly rounds: number
  readonly size: number
  readonly warmup: number
  readonly scanners: boolean
  readonly timeoutMs: number
  readonly json: boolean
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      messages: { type: 'string', short: 'n' },
      concurrency: { type: 'string', short: 'C' },
      rounds: { type: 'string' },
      size: { type: 'string' },
      warmup: { type: 'string' },
      scanners: { type: 'boolean' },
      timeout: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(
      'usage: node dist/benchmarks/milter.js [--messages M=2000] [--concurrency C=20] [--rounds R=2]\n' +
        '  [--size BYTES=10240] [--warmup K=200] [--scanners] [--timeout SECONDS=120] [--json]\n' +
        'Postfix alone (A) against Postfix + mailscreen milter (B), alternating A B for R rounds;\n' +
        'reports msgs/s milter/alone and the accept latency the milter adds at p50/p99.\n' +
        '--scanners: clamav + spamassassin (private clamd, spamd) besides the example plugin.\n' +
        '--timeout: how long to wait for accepted messages to reach the sink after each run.\n',
    )
    process.exit(0)
  }
  return {
    messages: int('messages', values.messages, 2000),
    concurrency: int('concurrency', values.concurrency, 20),
    rounds: int('rounds', values.rounds, 2),
    size: int('size', values.size, 10240, 200),
    warmup: int('warmup', values.warmup, 200, 0),
    scanners: values.scanners === true,
    timeoutMs: int('timeout', values.timeout, 120) * 1000,
    json: values.json === true,
  }
}

// ---------------------------------------------------------------------------------------------
// What this benchmark starts

interface Started {
  readonly name: string
  stop(): Promise<void>
}

interface MilterVerdict {
  readonly answer: string
  readonly ms: number
  readonly verdict: string
}

interface MilterChild extends Started {
  readonly pid: number
  readonly milterPort: number
  /** `milter verdict` lines so far. */
  readonly verdicts: MilterVerdict[]
  /** Other warning/error lines so far, by message (`milter timeout`, `milter session error`, ...). */
  readonly problems: Map<string, number>
}

/**
 * `mailscreen start` with a milter listener (benchmarks/support/child.ts: its own temp dir,
 * registered by PID before it is ready, so a start that hangs is still stopped, SIGKILL
 * fallback on stop), ready once it logs `started`; only the log lines this benchmark needs
 * are parsed.
 */
async function startMilter(
  plugins: Array<Record<string, unknown>>,
  relayPort: number,
  register: (s: Started) => void,
): Promise<MilterChild> {
  const smtpPort = await freePort()
  const milterPort = await freePort()
  const verdicts: MilterVerdict[] = []
  const problems = new Map<string, number>()
  const onLogLine = (text: string) => {
    // Parse only what is needed: verdicts and anything at warn (40) or above.
    if (!text.includes('"msg":"milter verdict"') && !/"level":[4-6]\d/.test(text)) return
    let line: Record<string, unknown>
    try {
      line = JSON.parse(text) as Record<string, unknown>
    } catch {
      return
    }
    if (line.msg === 'milter verdict') {
      verdicts.push({
        answer: String(line.answer),
        ms: typeof line.ms === 'number' ? line.ms : Number.NaN,
        verdict: String(line.verdict ?? (line.tempfail ? 'tempfail' : '?')),
      })
    } else if (typeof line.level === 'number' && line.level >= 40) {
      const key = `${String(line.msg)}${line.err ? `: ${String(line.err).slice(0, 120)}` : ''}`
      problems.set(key, (problems.get(key) ?? 0) + 1)
    }
  }
  const child = await startMailscreen({
    tmpPrefix: 'mailscreen-bench-milter-',
    config: (dir) => ({
      hostname: 'mailscreen.test',
      log: { level: 'info' },
      smtp: { listen: [`127.0.0.1:${smtpPort}`] },
      spool: { dir: path.join(dir, 'spool') },
      delivery: { relay: `127.0.0.1:${relayPort}` },
      milter: { listen: `inet:127.0.0.1:${milterPort}` },
      plugins,
    }),
    onLogLine,
    ready: { logged: 'started' },
    register: (c) => register({ name: 'mailscreen', stop: c.stop }),
  })
  return { name: 'mailscreen', pid: child.pid, milterPort, verdicts, problems, stop: child.stop }
}

// ---------------------------------------------------------------------------------------------
// One run

type Phase = 'postfix' | 'postfix+milter'

interface RunResult {
  readonly phase: Phase
  readonly round: number
  readonly messages: number
  readonly accepted: number
  readonly delivered: number
  /** Failed sends, by reply or error text. */
  readonly errors: Record<string, number>
  readonly acceptedRate: number
  readonly deliveredRate: number
  readonly accept: LatencySummary
  readonly e2e: LatencySummary
  readonly loadMs: number
  readonly cpuPerMsg: Record<string, number>
  readonly machineBusy: number
  /** B only: mailscreen's time per message (verdict log `ms`), its answers and problems. */
  readonly milterMs?: LatencySummary
  readonly answers?: Record<string, number>
  readonly problems?: Record<string, number>
  /** Raw samples, for pooling over rounds (left out of --json). */
  readonly acceptSamples: number[]
}

interface Target {
  readonly phase: Phase
  readonly postfix: PostfixInstance
  readonly sink: Sink
}

async function runOnce(
  label: string,
  round: number,
  messages: number,
  target: Target,
  opts: Options,
  probe: CpuProbe,
  milter: MilterChild,
): Promise<RunResult> {
  const arrived = new Float64Array(messages)
  let delivered = 0
  let lastArrival = 0
  const onMessage = (message: SinkMessage) => {
    const seq = benchIdOf(message.data)
    if (seq === undefined || seq >= messages || arrived[seq] !== 0) return
    lastArrival = performance.now()
    arrived[seq] = lastArrival
    delivered++
  }
  const verdictsBefore = milter.verdicts.length
  const problemsBefore = new Map(milter.problems)
  let accepted = 0
  target.sink.on('message', onMessage)
  const progress = new Progress(label, messages, () => ({ accepted, delivered }))
  progress.start()
  let load: Awaited<ReturnType<typeof runLoad>>
  let cpu: CpuFigures
  try {
    const m = await measured(
      probe,
      () => accepted,
      async () => {
        const result = await runLoad({
          host: '127.0.0.1',
          port: target.postfix.smtpPort,
          messages,
          concurrency: opts.concurrency,
          size: opts.size,
          reuse: false,
          onAccepted: () => {
            accepted++
          },
        })
        const deadline = performance.now() + opts.timeoutMs
        while (delivered < result.acceptMs.length && performance.now() < deadline)
          await new Promise((r) => setTimeout(r, 20))
        return result
      },
    )
    load = m.value
    cpu = m
  } finally {
    progress.stop()
    target.sink.off('message', onMessage)
  }
  if (process.stderr.isTTY) process.stderr.write('\n')

  const errors: Record<string, number> = {}
  for (const e of load.errors) {
    const key = e.replace(/^unexpected reply: /, '').slice(0, 160)
    errors[key] = (errors[key] ?? 0) + 1
  }
  if (delivered < load.acceptMs.length)
    errors[`accepted but not at the sink after ${opts.timeoutMs / 1000} s`] = load.acceptMs.length - delivered
  const e2e: number[] = []
  let firstStart = Number.POSITIVE_INFINITY
  for (let seq = 0; seq < messages; seq++) {
    const start = load.startedAt[seq] as number
    firstStart = Math.min(firstStart, start)
    if (arrived[seq]) e2e.push((arrived[seq] as number) - start)
  }
  const result: RunResult = {
    phase: target.phase,
    round,
    messages,
    accepted: load.acceptMs.length,
    delivered,
    errors,
    acceptedRate: load.acceptMs.length / (load.elapsedMs / 1000),
    deliveredRate: delivered / ((lastArrival - firstStart) / 1000),
    accept: summarize(load.acceptMs),
    e2e: summarize(e2e),
    loadMs: load.elapsedMs,
    ...cpu,
    acceptSamples: load.acceptMs,
  }
  if (target.phase === 'postfix') return result
  const verdicts = milter.verdicts.slice(verdictsBefore)
  const answers: Record<string, number> = {}
  for (const v of verdicts) {
    const key = `${v.answer} (${v.verdict})`
    answers[key] = (answers[key] ?? 0) + 1
  }
  const problems: Record<string, number> = {}
  for (const [k, n] of milter.problems) {
    const added = n - (problemsBefore.get(k) ?? 0)
    if (added > 0) problems[k] = added
  }
  return {
    ...result,
    milterMs: summarize(verdicts.map((v) => v.ms).filter((v) => !Number.isNaN(v))),
    answers,
    problems,
  }
}

/** Before a run: the previous one left nothing in this Postfix's queue. */
async function drained(target: Target, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const queue = await target.postfix.mailq()
    if (queue.length === 0) return
    if (performance.now() > deadline)
      throw new Error(`${target.phase}: ${queue.length} messages still in Postfix's queue`)
    await new Promise((r) => setTimeout(r, 250))
  }
}

// ---------------------------------------------------------------------------------------------
// Output

function signed(v: number): string {
  return Number.isNaN(v) ? '-' : `${v >= 0 ? '+' : ''}${v.toFixed(1)}`
}

interface Comparison {
  readonly round: string
  readonly acceptedRatio: number
  readonly deliveredRatio: number
  readonly addedAcceptP50: number
  readonly addedAcceptP99: number
}

function compare(results: readonly RunResult[]): Comparison[] {
  const as = results.filter((r) => r.phase === 'postfix')
  const bs = results.filter((r) => r.phase === 'postfix+milter')
  const out: Comparison[] = []
  for (const b of bs) {
    const a = as.find((r) => r.round === b.round)
    if (!a) continue
    out.push({
      round: String(b.round),
      acceptedRatio: b.acceptedRate / a.acceptedRate,
      deliveredRatio: b.deliveredRate / a.deliveredRate,
      addedAcceptP50: b.accept.p50 - a.accept.p50,
      addedAcceptP99: b.accept.p99 - a.accept.p99,
    })
  }
  if (as.length > 0 && bs.length > 0) {
    // Pooled: total messages over total time; percentiles over every sample of every round.
    const rate = (rs: readonly RunResult[], n: (r: RunResult) => number, r0: (r: RunResult) => number) =>
      rs.reduce((s, r) => s + n(r), 0) / rs.reduce((s, r) => s + n(r) / r0(r), 0)
    const accepted = (rs: readonly RunResult[]) =>
      rate(
        rs,
        (r) => r.accepted,
        (r) => r.acceptedRate,
      )
    const delivered = (rs: readonly RunResult[]) =>
      rate(
        rs,
        (r) => r.delivered,
        (r) => r.deliveredRate,
      )
    const pa = summarize(as.flatMap((r) => r.acceptSamples))
    const pb = summarize(bs.flatMap((r) => r.acceptSamples))
    out.push({
      round: 'all (pooled)',
      acceptedRatio: accepted(bs) / accepted(as),
      deliveredRatio: delivered(bs) / delivered(as),
      addedAcceptP50: pb.p50 - pa.p50,
      addedAcceptP99: pb.p99 - pa.p99,
    })
  }
  return out
}

function format(
  results: readonly RunResult[],
  comparisons: readonly Comparison[],
  settings: Record<string, string>,
  maillog: Record<string, Record<string, number>>,
): string {
  const out: string[] = ['settings:']
  for (const [k, v] of Object.entries(settings)) out.push(`  ${k.padEnd(16)} ${v}`)
  out.push(
    '',
    '| round | run            | accepted/s | delivered/s | accept p50 / p95 / p99 ms | e2e p50 / p95 / p99 ms | accepted / delivered / sent |',
    '| ----: | -------------- | ---------: | ----------: | ------------------------- | ---------------------- | --------------------------- |',
  )
  for (const r of results)
    out.push(
      `| ${r.round} | ${r.phase} | ${r.acceptedRate.toFixed(1)} | ${r.deliveredRate.toFixed(1)} | ${pct(r.accept)} | ${pct(r.e2e)} | ${r.accepted} / ${r.delivered} / ${r.messages} |`,
    )
  out.push(
    'accept = connect to the 250 after DATA (the milter answers before it); e2e = connect to arrival at the sink;',
    'delivered/s = arrivals / (first send to last arrival)',
    '',
    '| round | milter / alone accepted/s | milter / alone delivered/s | added accept p50 ms | added accept p99 ms |',
    '| ----: | ------------------------: | -------------------------: | ------------------: | ------------------: |',
  )
  for (const c of comparisons)
    out.push(
      `| ${c.round} | ${c.acceptedRatio.toFixed(3)} | ${c.deliveredRatio.toFixed(3)} | ${signed(c.addedAcceptP50)} | ${signed(c.addedAcceptP99)} |`,
    )
  out.push(
    '',
    'CPU ms per accepted message (from /proc; postfix = the instance in use, master and children):',
  )
  const names = Object.keys(results[0]?.cpuPerMsg ?? {})
  out.push(
    `| round | run            | ${names.join(' | ')} | machine busy |`,
    `| ----: | -------------- | ${names.map(() => '---:').join(' | ')} | ---: |`,
  )
  for (const r of results)
    out.push(
      `| ${r.round} | ${r.phase} | ${names.map((n) => (r.cpuPerMsg[n] ?? 0).toFixed(2)).join(' | ')} | ${(r.machineBusy * 100).toFixed(0)} % |`,
    )
  out.push('', 'mailscreen (B runs): end of message to answer (verdict log ms) p50 / p95 / p99, answers:')
  for (const r of results.filter((x) => x.phase === 'postfix+milter'))
    out.push(
      `  ${r.round}  ${pct(r.milterMs)} ms; ${
        Object.entries(r.answers ?? {})
          .map(([k, v]) => `${k} ${v}`)
          .join(', ') || 'no verdicts'
      }${
        Object.keys(r.problems ?? {}).length > 0
          ? `; problems: ${Object.entries(r.problems ?? {})
              .map(([k, v]) => `${k} x${v}`)
              .join(', ')}`
          : ''
      }`,
    )
  const errs = results.flatMap((r) =>
    Object.entries(r.errors).map(([e, n]) => `${r.round} ${r.phase}: ${e} x${n}`),
  )
  out.push('', errs.length > 0 ? `errors (${errs.length} kinds):` : 'errors: none')
  for (const e of errs.slice(0, 20)) out.push(`  ${e}`)
  for (const [name, lines] of Object.entries(maillog)) {
    const entries = Object.entries(lines)
    out.push(`Postfix ${name} maillog warnings/errors: ${entries.length === 0 ? 'none' : ''}`)
    for (const [text, n] of entries.slice(0, 10)) out.push(`  x${n} ${text}`)
  }
  return `${out.join('\n')}\n`
}

/** warning:/error:/fatal:/panic: lines of a maillog, with digits folded, counted. */
function maillogProblems(text: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const line of text.split('\n')) {
    const m = /postfix[^:]*\[\d+\]: ((?:warning|error|fatal|panic): .*)$/.exec(line)
    if (!m) continue
    const key = (m[1] as string).replace(/\d+/g, '#').slice(0, 200)
    out[key] = (out[key] ?? 0) + 1
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const opts = parseOptions()
  const log = (text: string) => process.stderr.write(`${text}\n`)
  const started: Started[] = []
  const starting: Array<Promise<unknown>> = []
  const sinks: Sink[] = []
  let stopping: Promise<void> | undefined
  const stopAll = (): Promise<void> => {
    stopping ??= (async () => {
      // Whatever is still starting registers itself first (also what began while we waited);
      // then the reverse order of start.
      for (let seen = -1; seen !== starting.length; ) {
        seen = starting.length
        await Promise.allSettled(starting)
      }
      for (const s of started.reverse()) await s.stop().catch(() => undefined)
      for (const sink of sinks) await sink.close().catch(() => undefined)
    })()
    return stopping
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: stopping what this benchmark started\n`)
      void stopAll().finally(() => process.exit(130))
    })
  /** Before each start: once a signal asked to stop, start nothing more. */
  const proceed = (): void => {
    if (stopping) throw new Error('stopped by a signal')
  }
  /** Start something and register it as soon as it runs, so that stopAll also gets it. */
  const track = <T extends Started>(start: Promise<T>): Promise<T> => {
    const registered = start.then((s) => {
      started.push(s)
      return s
    })
    starting.push(registered.catch(() => undefined))
    return registered
  }

  try {
    const [sinkA, sinkB] = await Promise.all([startSink({ keep: false }), startSink({ keep: false })])
    sinks.push(sinkA, sinkB)

    const plugins: Array<Record<string, unknown>> = [{ use: 'example', options: {} }]
    if (opts.scanners) {
      proceed()
      log('starting clamd and spamd ...')
      const [clamd, spamd] = await Promise.all([
        track(
          startClamd({ extraConfig: { MaxThreads: String(Math.max(4, opts.concurrency)) } }).then((c) => ({
            name: 'clamd',
            port: c.port,
            stop: () => c.stop(),
          })),
        ),
        track(startSpamd().then((s) => ({ name: 'spamd', port: s.port, stop: () => s.stop() }))),
      ])
      plugins.push(
        { use: 'clamav', options: { host: '127.0.0.1', port: clamd.port } },
        { use: 'spamassassin', options: { host: '127.0.0.1', port: spamd.port } },
      )
    }

    proceed()
    log('starting mailscreen (milter) ...')
    const milterStart = startMilter(plugins, sinkB.port, (s) => {
      started.push(s)
    })
    starting.push(milterStart.catch(() => undefined))
    const milter = await milterStart

    proceed()
    log('starting two Postfix instances ...')
    const postfixService = (name: string, pf: PostfixInstance) => ({ name, pf, stop: () => pf.stop() })
    const [pfA, pfB] = await Promise.all([
      track(
        freePort().then(async (smtpPort) =>
          postfixService(
            'postfix',
            await startPostfix({
              smtpPort,
              relay: { host: '127.0.0.1', port: sinkA.port },
              extraMain: { ...POSTFIX_TUNING },
            }),
          ),
        ),
      ),
      track(
        freePort().then(async (smtpPort) =>
          postfixService(
            'postfix+milter',
            await startPostfix({
              smtpPort,
              relay: { host: '127.0.0.1', port: sinkB.port },
              milter: `inet:127.0.0.1:${milter.milterPort}`,
              extraMain: { ...POSTFIX_TUNING, ...MILTER_MAIN },
            }),
          ),
        ),
      ),
    ])
    const alone: Target = { phase: 'postfix', postfix: pfA.pf, sink: sinkA }
    const withMilter: Target = { phase: 'postfix+milter', postfix: pfB.pf, sink: sinkB }
    const milterLine = await pfB.pf.postconf('smtpd_milters')
    log(
      `postfix (A) master ${pfA.pf.masterPid} smtpd 127.0.0.1:${pfA.pf.smtpPort}; ` +
        `postfix+milter (B) master ${pfB.pf.masterPid} smtpd 127.0.0.1:${pfB.pf.smtpPort}, smtpd_milters = ${milterLine}; ` +
        `mailscreen pid ${milter.pid}`,
    )

    const probeFor = (t: Target): CpuProbe => ({
      postfix: () => treeCpuMs(t.postfix.masterPid),
      mailscreen: () => treeCpuMs(milter.pid),
      'bench (load + sinks)': selfCpuMs,
    })

    if (opts.warmup > 0) {
      for (const t of [alone, withMilter]) {
        await runOnce(`warm-up ${t.phase}`, 0, opts.warmup, t, opts, probeFor(t), milter)
        await drained(t, opts.timeoutMs)
      }
    }
    const results: RunResult[] = []
    for (let round = 1; round <= opts.rounds; round++) {
      for (const t of [alone, withMilter]) {
        await drained(t, opts.timeoutMs)
        const r = await runOnce(`${round} ${t.phase}`, round, opts.messages, t, opts, probeFor(t), milter)
        log(
          `round ${round} ${t.phase}: ${r.acceptedRate.toFixed(1)} accepted/s, ${r.deliveredRate.toFixed(1)} delivered/s, ` +
            `accept p50/p99 ${ms(r.accept.p50)}/${ms(r.accept.p99)} ms`,
        )
        results.push(r)
      }
    }

    const maillog = {
      'A (alone)': maillogProblems(await pfA.pf.maillog()),
      'B (milter)': maillogProblems(await pfB.pf.maillog()),
    }
    const comparisons = compare(results)
    const settings: Record<string, string> = {
      messages: `${opts.messages} per run, ${opts.size} B, one per connection, after ${opts.warmup} warm-up per instance`,
      concurrency: String(opts.concurrency),
      rounds: `${opts.rounds} (A = postfix alone, then B = postfix+milter, each round)`,
      postfix: `${await pfA.pf.postconf('mail_version')}; both: ${Object.entries(POSTFIX_TUNING)
        .map(([k, v]) => `${k}=${v}`)
        .join(', ')}`,
      'postfix B': Object.entries(MILTER_MAIN)
        .map(([k, v]) => `${k}=${v}`)
        .join(', '),
      mailscreen: `milter on inet:127.0.0.1:${milter.milterPort}, defaults (timeout 60s, tempfail, 2 workers), log info; plugins: ${plugins.map((p) => String(p.use)).join(', ')}`,
      machine: `${os.cpus().length} x ${os.cpus()[0]?.model ?? '?'}, node ${process.version}`,
    }
    process.stdout.write(
      opts.json
        ? `${JSON.stringify(
            { settings, results: results.map(({ acceptSamples: _, ...r }) => r), comparisons, maillog },
            null,
            2,
          )}\n`
        : format(results, comparisons, settings, maillog),
    )
  } finally {
    await stopAll()
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exitCode = 1
})
