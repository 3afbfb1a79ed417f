/**
 * Scanner overhead (issue #3): how close mailscreen comes to the throughput of the scanners
 * it drives, on a mixed corpus, in one run.
 *
 *   node dist/benchmarks/scanners.js [--messages N] [--concurrency C] [--rounds R]
 *     [--spamd-children S] [--workers W] [--max-in-flight M] [--warmup K] [--seed X] [--json]
 *
 * Starts a private clamd, spamd and rbldnsd on loopback (test/support/), loads the corpus
 * (../shared/corpus/, files up to 1 MB, seeded order, repeated to N messages) and then
 * alternates, R times:
 *
 *  A "direct": C concurrent loops; per message, clamd INSTREAM of the raw message, spamd
 *    SYMBOLS (skipped above the plugin's maxSize, as the plugin does) and the DNSBL A query
 *    (+ TXT when listed) for the message's client address, all three at once, as the plugin
 *    chain runs them; with our own clients (plugins/clamav/instream.ts,
 *    plugins/spamassassin/spamc.ts, plugins/dnsbl/lookup.ts). The scanners' own ceiling.
 *  B "mailscreen": the built CLI as a child process (dnsbl + clamav + spamassassin +
 *    attachments, default policy actions, fsync on, log level info) relaying to an
 *    in-process sink; the same N messages at the same C over SMTP, one message per
 *    connection, each with XFORWARD ADDR=<client> (so dnsbl has a forwarded client) and
 *    MAIL/RCPT/DATA pipelined. A message is done when it reaches the sink, or, when its
 *    actions deliver nothing (quarantine), when mailscreen logs its final verdict.
 *
 * Everything started here is stopped by PID, also on error and on SIGINT/SIGTERM.
 */
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { instream } from '../plugins/clamav/instream.js'
import { queryA, queryTxt, reverseName } from '../plugins/dnsbl/lookup.js'
import { check as spamdCheck, ping as spamdPing } from '../plugins/spamassassin/spamc.js'
import { type CpuProbe, measured, selfCpuMs, treeCpuMs } from '../src/bench/cpu.js'
import { type Sink, type SinkMessage, startSink } from '../src/bench/sink.js'
import { type LatencySummary, summarize } from '../src/bench/stats.js'
import { type ClamdInstance, startClamd } from '../test/support/clamd.js'
import { CORPUS_DIR } from '../test/support/corpus.js'
import { startDaemon } from '../test/support/daemon.js'
import { freePort } from '../test/support/ports.js'
import { LOCAL_CF, rulesDir, SPAMD_BINARY, SYSTEM_SITE_CONFIG } from '../test/support/spamd.js'
import { startMailscreen } from './support/child.js'
import { pct, prng } from './support/format.js'
import { int } from './support/options.js'

const MAX_FILE = 1024 * 1024
/** The spamassassin plugin's default maxSize: larger messages are not sent to spamd. */
const SPAMD_MAX_SIZE = 512_000
const RBL_ZONE_SYMBOL = 'RBL_EXAMPLE'

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  readonly messages: number
  readonly concurrency: number
  readonly rounds: number
  readonly spamdChildren: number
  readonly workers: number
  readonly maxInFlight: number
  readonly warmup: number
  readonly seed: number
  readonly timeoutMs: number
  /** Diagnostics: mailscreen's spool.fsync and log.level (defaults: true, info). */
  readonly fsync: boolean
  readonly logLevel: string
  /** Diagnostics: extra NODE_OPTIONS for the mailscreen child (e.g. --perf-basic-prof for perf). */
  readonly nodeOptions?: string
  readonly json: boolean
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      messages: { type: 'string', short: 'n' },
      concurrency: { type: 'string', short: 'C' },
      rounds: { type: 'string' },
      'spamd-children': { type: 'string' },
      workers: { type: 'string' },
      'max-in-flight': { type: 'string' },
      warmup: { type: 'string' },
      seed: { type: 'string' },
      timeout: { type: 'string' },
      'no-fsync': { type: 'boolean' },
      'log-level': { type: 'string' },
      'node-options': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(
      'usage: node dist/benchmarks/scanners.js [--messages N=300] [--concurrency C=8] [--rounds R=3]\n' +
        '  [--spamd-children S=cores] [--workers W=2] [--max-in-flight M=C] [--warmup K=40] [--seed X=3]\n' +
        '  [--timeout SECONDS=120] [--no-fsync] [--log-level LEVEL=info] [--node-options OPTS] [--json]\n' +
        '--no-fsync and --log-level warn are for diagnostics only (warn hides clean verdicts from the mix)\n',
    )
    process.exit(0)
  }
  const concurrency = int('concurrency', values.concurrency, 8)
  return {
    messages: int('messages', values.messages, 300),
    concurrency,
    rounds: int('rounds', values.rounds, 3),
    spamdChildren: int('spamd-children', values['spamd-children'], os.availableParallelism()),
    workers: int('workers', values.workers, 2),
    maxInFlight: int('max-in-flight', values['max-in-flight'], concurrency),
    warmup: int('warmup', values.warmup, 40, 0),
    seed: int('seed', values.seed, 3, 0),
    timeoutMs: int('timeout', values.timeout, 120) * 1000,
    fsync: values['no-fsync'] !== true,
    logLevel: values['log-level'] ?? 'info',
    ...(values['node-options'] !== undefined ? { nodeOptions: values['node-options'] } : {}),
    json: values.json === true,
  }
}

// ---------------------------------------------------------------------------------------------
// Corpus

interface CorpusMessage {
  readonly file: string
  /** What the scanners get and mailscreen receives: CRLF line ends, ending in CRLF. */
  readonly content: Buffer
  /** `content` dot-stuffed for DATA, with the terminating `.\r\n`. */
  readonly data: Buffer
}

const CRLF = Buffer.from('\r\n')

/** Every LF not preceded by CR becomes CRLF; the message ends with CRLF. */
function toCrlf(raw: Buffer): Buffer {
  const parts: Buffer[] = []
  let from = 0
  for (let lf = raw.indexOf(0x0a); lf !== -1; lf = raw.indexOf(0x0a, lf + 1)) {
    if (lf > 0 && raw[lf - 1] === 0x0d) continue
    parts.push(raw.subarray(from, lf), CRLF)
    from = lf + 1
  }
  parts.push(raw.subarray(from))
  const out = Buffer.concat(parts)
  return out.length >= 2 && out[out.length - 2] === 0x0d && out[out.length - 1] === 0x0a
    ? out
    : Buffer.concat([out, CRLF])
}

/** A dot at the start or after CRLF is doubled; then the end-of-data line. */
function dotStuff(content: Buffer): Buffer {
  const parts: Buffer[] = []
  let from = 0
  if (content[0] === 0x2e) parts.push(Buffer.from('.'))
  for (let at = content.indexOf('\r\n.'); at !== -1; at = content.indexOf('\r\n.', at + 2)) {
    parts.push(content.subarray(from, at + 2), Buffer.from('.'))
    from = at + 2
  }
  parts.push(content.subarray(from), Buffer.from('.\r\n'))
  return Buffer.concat(parts)
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) out.push(...(await walk(full)))
    else if (entry.name.endsWith('.eml')) out.push(full)
  }
  return out
}

async function loadCorpus(seed: number): Promise<{ messages: CorpusMessage[]; skipped: string[] }> {
  const files = (await walk(CORPUS_DIR)).sort()
  const messages: CorpusMessage[] = []
  const skipped: string[] = []
  for (const file of files) {
    if ((await stat(file)).size > MAX_FILE) {
      skipped.push(path.relative(CORPUS_DIR, file))
      continue
    }
    const content = toCrlf(await readFile(file))
    messages.push({ file: path.relative(CORPUS_DIR, file), content, data: dotStuff(content) })
  }
  const random = prng(seed)
  for (let i = messages.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[messages[i], messages[j]] = [messages[j] as CorpusMessage, messages[i] as CorpusMessage]
  }
  return { messages, skipped }
}

/**
 * The client address of message `seq` (forwarded with XFORWARD; asked of the DNSBL): one in
 * ten listed, one in ten listed with two codes and two TXT texts, the rest not listed.
 */
function clientAddress(seq: number): string {
  if (seq % 10 === 3) return '192.0.2.2'
  if (seq % 10 === 7) return '192.0.2.4'
  return `198.51.100.${(seq % 250) + 1}`
}

// ---------------------------------------------------------------------------------------------
// Daemons

interface Started {
  readonly name: string
  readonly pid: number
  stop(): Promise<void>
}

/** spamd as test/support/spamd.ts starts it, but with the children count this benchmark needs. */
async function startSpamdWith(children: number): Promise<Started & { port: number }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mailscreen-bench-spamd-'))
  await chmod(dir, 0o755)
  const siteDir = path.join(dir, 'site')
  const logPath = path.join(dir, 'spamd.log')
  const port = await freePort()
  await mkdir(siteDir, { recursive: true })
  for (const f of await readdir(SYSTEM_SITE_CONFIG).catch(() => [] as string[]))
    if (f.endsWith('.pre')) await copyFile(path.join(SYSTEM_SITE_CONFIG, f), path.join(siteDir, f))
  await writeFile(path.join(siteDir, 'local.cf'), LOCAL_CF)
  const target = { host: '127.0.0.1', port }
  const daemon = await startDaemon({
    name: 'spamd',
    binary: SPAMD_BINARY,
    args: [
      '--local',
      `--listen=127.0.0.1:${port}`,
      '--allowed-ips=127.0.0.1',
      // All children pre-forked and kept: no fork or reap in the measured phases.
      `--max-children=${children}`,
      `--min-children=${children}`,
      '--min-spare=1',
      `--max-spare=${children}`,
      `--pidfile=${path.join(dir, 'spamd.pid')}`,
      `--siteconfigpath=${siteDir}`,
      `--configpath=${rulesDir()}`,
      `--syslog=${logPath}`,
      '--nouser-config',
    ],
    dir,
    logPath,
    ready: () => spamdPing(target, { timeoutMs: 2000 }),
    startTimeoutMs: 120_000,
    pollMs: 250,
    killAfterMs: 10_000,
  })
  return { name: 'spamd', pid: daemon.pid, port, stop: () => daemon.stop() }
}

/** The rbldnsd support module is optional: another engineer is writing it alongside. */
async function tryStartRbldnsd(): Promise<
  (Started & { server: string; zone: string }) | { unavailable: string }
> {
  try {
    const mod = (await import('../test/support/rbldnsd.js')) as typeof import('../test/support/rbldnsd.js')
    const rbl = await mod.startRbldnsd()
    return { name: 'rbldnsd', pid: rbl.pid, server: rbl.server, zone: mod.RBL_ZONE, stop: () => rbl.stop() }
  } catch (err) {
    return { unavailable: (err as Error).message.split('\n')[0] ?? String(err) }
  }
}

// ---------------------------------------------------------------------------------------------
// Phases

interface PhaseResult {
  readonly phase: 'direct' | 'mailscreen'
  readonly round: number
  readonly messages: number
  readonly done: number
  readonly errors: string[]
  readonly rate: number
  /** direct: per message, all scanners answered; mailscreen: connect to done. */
  readonly latency: LatencySummary
  /** mailscreen only: connect to the 250 after DATA. */
  readonly accept?: LatencySummary
  readonly elapsedMs: number
  /** CPU ms per message by component, and machine-wide busy %. */
  readonly cpuPerMsg: Record<string, number>
  readonly machineBusy: number
  /** What the scanners / the verdicts said (a sanity check that both phases saw the same mix). */
  readonly mix: Record<string, number>
  /** mailscreen only: mean ms per plugin from the verdict log's timings, and of the whole scan. */
  readonly pluginMs?: Record<string, number>
  /** mailscreen only: the scheduler's scan time (claim, worker, checks, staging), from the verdict log. */
  readonly scan?: LatencySummary
}

interface Targets {
  readonly clamd: { host: string; port: number }
  readonly spamd: { host: string; port: number }
  readonly rbl?: { server: string; zone: string }
}

function now(): number {
  return performance.timeOrigin + performance.now()
}

/** Phase A: the scanners called directly, C at a time, all three at once per message. */
async function runDirect(
  round: number,
  list: readonly CorpusMessage[],
  concurrency: number,
  targets: Targets,
  probe: CpuProbe,
): Promise<PhaseResult> {
  const latencies: number[] = []
  const errors: string[] = []
  const mix: Record<string, number> = { virus: 0, spam5: 0, listed: 0, spamdSkipped: 0 }
  const timeoutMs = 60_000
  let next = 0
  let done = 0
  const { value: elapsedMs, ...cpu } = await measured(probe, list.length, async () => {
    const t0 = performance.now()
    const loop = async (): Promise<void> => {
      while (next < list.length) {
        const seq = next++
        const message = list[seq] as CorpusMessage
        const started = performance.now()
        const clam = instream(targets.clamd, message.content, { timeoutMs, connectTimeoutMs: 5000 })
        const spam =
          message.content.length > SPAMD_MAX_SIZE
            ? Promise.resolve(undefined)
            : spamdCheck(targets.spamd, message.content, { timeoutMs })
        const dns = targets.rbl ? dnsblLookup(clientAddress(seq), targets.rbl) : Promise.resolve(false)
        const [c, s, d] = await Promise.allSettled([clam, spam, dns])
        latencies.push(performance.now() - started)
        let failed = false
        if (c.status === 'rejected') errors.push(`clamd: ${String(c.reason)}`)
        else if (c.value.status === 'error') errors.push(c.value.message)
        else if (c.value.status === 'infected') mix.virus = (mix.virus ?? 0) + 1
        if (c.status === 'rejected' || c.value.status === 'error') failed = true
        if (s.status === 'rejected') {
          errors.push(`spamd: ${String(s.reason)}`)
          failed = true
        } else if (s.value === undefined) mix.spamdSkipped = (mix.spamdSkipped ?? 0) + 1
        else if (s.value.score >= 5) mix.spam5 = (mix.spam5 ?? 0) + 1
        if (d.status === 'rejected') {
          errors.push(`dnsbl: ${String(d.reason)}`)
          failed = true
        } else if (d.value) mix.listed = (mix.listed ?? 0) + 1
        if (!failed) done++
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, list.length) }, loop))
    return performance.now() - t0
  })
  return {
    phase: 'direct',
    round,
    messages: list.length,
    done,
    errors,
    rate: list.length / (elapsedMs / 1000),
    latency: summarize(latencies),
    elapsedMs,
    ...cpu,
    mix,
  }
}

/** What the dnsbl plugin asks: the A record of <reversed>.<zone>, and its TXT when listed. */
async function dnsblLookup(address: string, rbl: { server: string; zone: string }): Promise<boolean> {
  const name = `${reverseName(address)}.${rbl.zone}`
  const opts = { servers: [rbl.server], timeoutMs: 2000 }
  const records = await queryA(name, opts)
  if (records === undefined || records.length === 0) return false
  await queryTxt(name, opts).catch(() => [])
  return true
}

/** One SMTP session: EHLO, then XFORWARD + MAIL + RCPT + DATA pipelined, the message, QUIT. */
function sendOne(port: number, addr: string | undefined, from: string, data: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect({ host: '127.0.0.1', port })
    socket.setNoDelay(true)
    socket.setEncoding('latin1')
    let buffer = ''
    let step = 0
    // Replies expected after the greeting: EHLO, [XFORWARD], MAIL, RCPT, DATA(354), end of data.
    const pipelined = addr === undefined ? 3 : 4
    let queued = ''
    const fail = (err: Error) => {
      socket.destroy()
      reject(err)
    }
    socket.on('error', fail)
    socket.on('close', () => {
      if (step < 4) reject(new Error(`connection closed at step ${step}`))
    })
    let pending = 0
    socket.on('data', (chunk: string) => {
      buffer += chunk
      for (let eol = buffer.indexOf('\r\n'); eol !== -1; eol = buffer.indexOf('\r\n')) {
        const line = buffer.slice(0, eol)
        buffer = buffer.slice(eol + 2)
        if (line[3] === '-') continue
        if (step === 0) {
          if (line[0] !== '2') return fail(new Error(`greeting: ${line}`))
          socket.write('EHLO bench.mailscreen.test\r\n')
          step = 1
        } else if (step === 1) {
          if (line[0] !== '2') return fail(new Error(`EHLO: ${line}`))
          const xforward =
            addr === undefined ? '' : `XFORWARD ADDR=${addr} NAME=[UNAVAILABLE] PROTO=ESMTP\r\n`
          socket.write(`${xforward}MAIL FROM:<${from}>\r\nRCPT TO:<sink@example.test>\r\nDATA\r\n`)
          step = 2
          pending = pipelined
        } else if (step === 2) {
          pending--
          const expected = pending === 0 ? '3' : '2'
          if (line[0] !== expected) return fail(new Error(`transaction: ${line}`))
          if (pending === 0) {
            socket.write(data)
            step = 3
          }
        } else if (step === 3) {
          if (line[0] !== '2') return fail(new Error(`end of data: ${line}`))
          queued = /queued as ([0-9A-Za-z]+)/.exec(line)?.[1] ?? ''
          step = 4
          socket.end('QUIT\r\n')
          resolve(queued)
        }
      }
    })
  })
}

/** One `verdict` line of mailscreen's JSON log. */
type VerdictLine = Record<string, unknown> & { qid: string; time: string }

/** The mailscreen under test (the built CLI as a child process), shared by all its rounds. */
interface MailscreenChild extends Started {
  readonly port: number
  /** Every final `verdict` line so far, oldest first. */
  readonly verdicts: VerdictLine[]
}

/**
 * Start `mailscreen start` on a config of its own in a temp dir (spool there too;
 * benchmarks/support/child.ts) and wait until it greets on its port. Registers itself with
 * `started` at once, so a failed start is stopped too. Only `verdict` lines of its log are
 * parsed (a substring test first, to keep the load generator's CPU low).
 */
async function startFilter(
  config: Record<string, unknown>,
  nodeOptions: string | undefined,
  started: Started[],
): Promise<MailscreenChild> {
  const port = await freePort()
  const env = { ...process.env }
  if (nodeOptions !== undefined) env.NODE_OPTIONS = `${env.NODE_OPTIONS ?? ''} ${nodeOptions}`.trim()
  const verdicts: VerdictLine[] = []
  const child = await startMailscreen({
    tmpPrefix: 'mailscreen-bench-filter-',
    config: (dir) => ({
      hostname: 'mailscreen.test',
      ...config,
      smtp: { listen: [`127.0.0.1:${port}`] },
      spool: { dir: path.join(dir, 'spool'), ...(config.spool as object) },
    }),
    env,
    onLogLine: (text) => {
      if (!text.includes('"msg":"verdict"')) return
      try {
        const line = JSON.parse(text) as VerdictLine
        if (line.msg === 'verdict' && line.actions !== undefined) verdicts.push(line)
      } catch {
        // not JSON: ignore
      }
    },
    ready: { greeting: port },
    register: (c) => started.push({ name: 'mailscreen', pid: c.pid, stop: c.stop }),
  })
  return { name: 'mailscreen', pid: child.pid, port, verdicts, stop: child.stop }
}

/** Phase B: the same messages through mailscreen over SMTP. */
async function runFiltered(
  round: number,
  list: readonly CorpusMessage[],
  opts: Options,
  ms: MailscreenChild,
  sink: Sink,
  probe: CpuProbe,
  forward: boolean,
): Promise<PhaseResult> {
  const n = list.length
  const startedAt = new Float64Array(n)
  const acceptedAt = new Float64Array(n)
  const arrivedAt = new Float64Array(n)
  const quarantinedAt = new Float64Array(n)
  const qidSeq = new Map<string, number>()
  const verdictLines = new Map<string, VerdictLine>()
  const errors: string[] = []
  const prefix = `r${round}-`
  const onMessage = (m: SinkMessage) => {
    if (!m.mailFrom.startsWith(prefix)) return
    const seq = Number(m.mailFrom.slice(prefix.length, m.mailFrom.indexOf('@')))
    if (seq >= 0 && seq < n && arrivedAt[seq] === 0) arrivedAt[seq] = now()
  }
  sink.on('message', onMessage)
  let cursor = ms.verdicts.length
  /** Final verdicts that deliver nothing (quarantine only), by queue ID: done when logged. */
  const undelivered = new Map<string, number>()
  /** Read the log lines that came since the last call; returns how many messages are done. */
  const settle = (): number => {
    for (; cursor < ms.verdicts.length; cursor++) {
      const line = ms.verdicts[cursor] as VerdictLine
      verdictLines.set(line.qid, line)
      if (line.to === undefined) undelivered.set(line.qid, Date.parse(line.time))
    }
    for (const [qid, time] of undelivered) {
      const seq = qidSeq.get(qid)
      if (seq === undefined) continue
      quarantinedAt[seq] = time
      undelivered.delete(qid)
    }
    let count = 0
    for (let seq = 0; seq < n; seq++) if (arrivedAt[seq] !== 0 || quarantinedAt[seq] !== 0) count++
    return count
  }

  let next = 0
  let accepted = 0
  const { value: elapsedMs, ...cpu } = await measured(probe, n, async () => {
    const t0 = performance.now()
    const loop = async (): Promise<void> => {
      while (next < n) {
        const seq = next++
        const message = list[seq] as CorpusMessage
        startedAt[seq] = now()
        try {
          const qid = await sendOne(
            ms.port,
            forward ? clientAddress(seq) : undefined,
            `${prefix}${seq}@bench.example.test`,
            message.data,
          )
          acceptedAt[seq] = now()
          qidSeq.set(qid, seq)
          accepted++
        } catch (err) {
          errors.push(`${message.file}: ${(err as Error).message}`)
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(opts.concurrency, n) }, loop))
    const deadline = performance.now() + opts.timeoutMs
    while (settle() < accepted && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    return performance.now() - t0
  })
  sink.off('message', onMessage)
  settle()

  const e2e: number[] = []
  const accept: number[] = []
  let first = Number.POSITIVE_INFINITY
  let last = 0
  let done = 0
  for (let seq = 0; seq < n; seq++) {
    first = Math.min(first, startedAt[seq] as number)
    if (acceptedAt[seq] !== 0) accept.push((acceptedAt[seq] as number) - (startedAt[seq] as number))
    const end = arrivedAt[seq] || quarantinedAt[seq]
    if (end) {
      done++
      last = Math.max(last, end)
      e2e.push(end - (startedAt[seq] as number))
    } else if (acceptedAt[seq] !== 0) errors.push(`${list[seq]?.file}: accepted, not done`)
  }
  const mix: Record<string, number> = {}
  const pluginTotals: Record<string, number> = {}
  const scanMs: number[] = []
  let verdicts = 0
  for (const [qid, line] of verdictLines) {
    if (!qidSeq.has(qid)) continue
    verdicts++
    const category = String(line.verdict)
    mix[category] = (mix[category] ?? 0) + 1
    const symbols = Array.isArray(line.symbols) ? (line.symbols as string[]) : []
    for (const s of symbols)
      if (s.endsWith('_FAIL') || s === RBL_ZONE_SYMBOL || s === 'SPAMD_SKIPPED_TOO_BIG')
        mix[s] = (mix[s] ?? 0) + 1
    for (const [plugin, ms] of Object.entries((line.timings ?? {}) as Record<string, number>))
      pluginTotals[plugin] = (pluginTotals[plugin] ?? 0) + ms
    if (typeof line.ms === 'number') scanMs.push(line.ms)
  }
  const pluginMs: Record<string, number> = {}
  for (const [plugin, total] of Object.entries(pluginTotals)) pluginMs[plugin] = total / Math.max(1, verdicts)
  pluginMs['scan (scheduler)'] = scanMs.reduce((a, b) => a + b, 0) / Math.max(1, scanMs.length)
  return {
    phase: 'mailscreen',
    round,
    messages: n,
    done,
    errors,
    rate: done / ((last - first) / 1000),
    latency: summarize(e2e),
    accept: summarize(accept),
    scan: summarize(scanMs),
    elapsedMs,
    ...cpu,
    mix,
    pluginMs,
  }
}

// ---------------------------------------------------------------------------------------------
// Output

/** CPU ms per message of what this benchmark started (scanners, mailscreen, itself). */
function ownCpu(r: PhaseResult): number {
  return (r.cpuPerMsg['machine total'] ?? 0) - (r.cpuPerMsg.other ?? 0)
}

/**
 * msgs/s had the CPU that other processes took been ours: the phases are CPU-bound (the
 * machine is ~100 % busy), so rate x (all busy CPU / our CPU). An estimate, for a shared VM.
 */
function adjustedRate(r: PhaseResult): number {
  const own = ownCpu(r)
  return own > 0 ? (r.rate * (r.cpuPerMsg['machine total'] ?? own)) / own : r.rate
}

function pooled(results: PhaseResult[], rate: (r: PhaseResult) => number): number {
  const done = results.reduce((s, r) => s + r.done, 0)
  const seconds = results.reduce((s, r) => s + r.done / rate(r), 0)
  return done / seconds
}

function format(results: PhaseResult[], settings: Record<string, string>): string {
  const out: string[] = []
  out.push('settings:')
  for (const [k, v] of Object.entries(settings)) out.push(`  ${k.padEnd(20)} ${v}`)
  out.push('')
  out.push(
    '| round | phase      | msgs/s | CPU-adj. msgs/s | own CPU ms/msg | others’ CPU ms/msg | machine busy | done/sent |',
    '| ----: | ---------- | -----: | --------------: | -------------: | -----------------: | -----------: | --------: |',
  )
  for (const r of results)
    out.push(
      `| ${r.round} | ${r.phase} | ${r.rate.toFixed(1)} | ${adjustedRate(r).toFixed(1)} | ${ownCpu(r).toFixed(1)} | ${(r.cpuPerMsg.other ?? 0).toFixed(1)} | ${(r.machineBusy * 100).toFixed(0)} % | ${r.done}/${r.messages} |`,
    )
  out.push('')
  out.push(
    '| round | phase      | accept p50 / p95 / p99 ms | scan p50 / p95 / p99 ms | end-to-end p50 / p95 / p99 ms |',
    '| ----: | ---------- | ------------------------- | ----------------------- | ----------------------------- |',
  )
  for (const r of results)
    out.push(
      r.phase === 'direct'
        ? `| ${r.round} | ${r.phase} | - | ${pct(r.latency)} | - |`
        : `| ${r.round} | ${r.phase} | ${pct(r.accept)} | ${pct(r.scan)} | ${pct(r.latency)} |`,
    )
  out.push(
    'direct scan = the three scanners called until the last answered; mailscreen scan = claim, worker hop, checks and staging (verdict log `ms`);',
    'accept = connect to the 250 after DATA; end-to-end = connect to arrival at the sink (or the final verdict for quarantine-only)',
    '',
  )
  out.push(
    '| round | mailscreen / direct msgs/s | overhead | CPU-adjusted ratio | overhead |',
    '| ----: | -------------------------: | -------: | -----------------: | -------: |',
  )
  const pairs: Array<[PhaseResult, PhaseResult]> = []
  for (const b of results.filter((r) => r.phase === 'mailscreen')) {
    const a = results.find((r) => r.phase === 'direct' && r.round === b.round)
    if (a) pairs.push([a, b])
  }
  const line = (label: string, raw: number, adj: number) =>
    `| ${label} | ${raw.toFixed(3)} | ${((1 - raw) * 100).toFixed(1)} % | ${adj.toFixed(3)} | ${((1 - adj) * 100).toFixed(1)} % |`
  for (const [a, b] of pairs)
    out.push(line(String(b.round), b.rate / a.rate, adjustedRate(b) / adjustedRate(a)))
  if (pairs.length > 0) {
    const as = pairs.map(([a]) => a)
    const bs = pairs.map(([, b]) => b)
    const raw = pooled(bs, (r) => r.rate) / pooled(as, (r) => r.rate)
    const adj = pooled(bs, adjustedRate) / pooled(as, adjustedRate)
    out.push(line('all (pooled)', raw, adj))
    out.push(
      '',
      `pooled: direct ${pooled(as, (r) => r.rate).toFixed(1)} msgs/s (CPU-adjusted ${pooled(as, adjustedRate).toFixed(1)}), ` +
        `mailscreen ${pooled(bs, (r) => r.rate).toFixed(1)} msgs/s (CPU-adjusted ${pooled(bs, adjustedRate).toFixed(1)})`,
      `target (mailscreen within 15 % of the scanners' ceiling): raw ${raw >= 0.85 ? 'met' : 'NOT met'}, CPU-adjusted ${adj >= 0.85 ? 'met' : 'NOT met'}`,
    )
  }
  out.push('')
  out.push(
    'CPU ms per message (from /proc: whole process trees; other = busy CPU nothing here accounts for):',
  )
  const names = Object.keys(results[0]?.cpuPerMsg ?? {})
  out.push(`| round | phase      | ${names.join(' | ')} |`)
  out.push(`| ----: | ---------- | ${names.map(() => '---:').join(' | ')} |`)
  for (const r of results)
    out.push(
      `| ${r.round} | ${r.phase} | ${names.map((n) => (r.cpuPerMsg[n] ?? 0).toFixed(1)).join(' | ')} |`,
    )
  out.push('')
  out.push('what the scanners / verdicts said:')
  for (const r of results)
    out.push(
      `  ${r.round} ${r.phase.padEnd(10)} ${Object.entries(r.mix)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    )
  const withPlugins = results.filter((r) => r.pluginMs)
  if (withPlugins.length > 0) {
    out.push('')
    out.push('mailscreen: mean ms per message, per plugin (verdict log timings) and whole scan:')
    for (const r of withPlugins)
      out.push(
        `  ${r.round} ${Object.entries(r.pluginMs ?? {})
          .map(([k, v]) => `${k} ${v.toFixed(1)}`)
          .join(', ')}`,
      )
  }
  const errs = results.flatMap((r) => r.errors.map((e) => `${r.round} ${r.phase}: ${e}`))
  if (errs.length > 0) {
    out.push('')
    out.push(`errors (${errs.length}):`)
    for (const e of errs.slice(0, 20)) out.push(`  ${e.slice(0, 200)}`)
  }
  return `${out.join('\n')}\n`
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const opts = parseOptions()
  const started: Started[] = []
  let sink: Sink | undefined
  let stopping: Promise<void> | undefined
  const stopAll = (): Promise<void> => {
    stopping ??= (async () => {
      // mailscreen first (registered last), then the sink it delivers to, then the daemons.
      for (const s of started.reverse()) await s.stop().catch(() => undefined)
      await sink?.close().catch(() => undefined)
    })()
    return stopping
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: stopping what this benchmark started\n`)
      void stopAll().finally(() => process.exit(130))
    })

  try {
    const { messages: corpus, skipped } = await loadCorpus(opts.seed)
    const list = Array.from({ length: opts.messages }, (_, i) => corpus[i % corpus.length] as CorpusMessage)
    const bytes = list.reduce((s, m) => s + m.content.length, 0)
    const log = (text: string) => process.stderr.write(`${text}\n`)
    log(
      `corpus: ${corpus.length} messages (skipped > 1 MB: ${skipped.join(', ') || 'none'}); ` +
        `run: ${list.length} messages, ${(bytes / list.length / 1024).toFixed(1)} KiB mean`,
    )

    log('starting clamd, spamd, rbldnsd ...')
    // Each registers as soon as it is up, so that a failure of another still stops it.
    const register = <T extends Started>(s: T): T => {
      started.push(s)
      return s
    }
    const [clamdStart, spamdStart, rblStart] = await Promise.allSettled([
      startClamd({ extraConfig: { MaxThreads: String(Math.max(4, opts.concurrency)) } }).then(
        (c: ClamdInstance) => register({ name: 'clamd', pid: c.pid, port: c.port, stop: () => c.stop() }),
      ),
      startSpamdWith(opts.spamdChildren).then(register),
      tryStartRbldnsd().then((r) => ('pid' in r ? register(r) : r)),
    ])
    if (clamdStart.status === 'rejected') throw clamdStart.reason
    if (spamdStart.status === 'rejected') throw spamdStart.reason
    const clamd = clamdStart.value
    const spamd = spamdStart.value
    const rbl = rblStart.status === 'fulfilled' ? rblStart.value : { unavailable: String(rblStart.reason) }
    const rblReady = 'pid' in rbl ? rbl : undefined
    if (!rblReady)
      log(`rbldnsd unavailable, running without dnsbl: ${(rbl as { unavailable: string }).unavailable}`)
    const targets: Targets = {
      clamd: { host: '127.0.0.1', port: clamd.port },
      spamd: { host: '127.0.0.1', port: spamd.port },
      ...(rblReady ? { rbl: { server: rblReady.server, zone: rblReady.zone } } : {}),
    }

    sink = await startSink({ keep: false })
    const plugins: Array<Record<string, unknown>> = [
      ...(rblReady
        ? [
            {
              use: 'dnsbl',
              options: {
                servers: [rblReady.server],
                // No cache: every message asks rbldnsd, as the direct phase does.
                cacheSize: 0,
                zones: [{ zone: rblReady.zone, symbol: RBL_ZONE_SYMBOL, score: 3 }],
              },
            },
          ]
        : []),
      { use: 'clamav', options: { host: '127.0.0.1', port: clamd.port } },
      { use: 'spamassassin', options: { host: '127.0.0.1', port: spamd.port } },
      { use: 'attachments' },
    ]
    const config = {
      log: { level: opts.logLevel },
      spool: { fsync: opts.fsync },
      pool: { workers: opts.workers, maxInFlight: opts.maxInFlight },
      delivery: { relay: `127.0.0.1:${sink.port}` },
      plugins,
    }
    log('starting mailscreen ...')
    const ms = await startFilter(config, opts.nodeOptions, started)
    const msPid = ms.pid
    log(`mailscreen pid ${msPid}, spamd pid ${spamd.pid}, clamd pid ${clamd.pid}`)

    const probe: CpuProbe = {
      mailscreen: () => treeCpuMs(msPid),
      spamd: () => treeCpuMs(spamd.pid),
      clamd: () => treeCpuMs(clamd.pid),
      ...(rblReady ? { rbldnsd: () => treeCpuMs(rblReady.pid) } : {}),
      'bench (this process)': selfCpuMs,
    }

    if (opts.warmup > 0) {
      const warm = list.slice(0, opts.warmup)
      log(`warm-up: ${warm.length} messages direct, then through mailscreen`)
      await runDirect(0, warm, opts.concurrency, targets, probe)
      await runFiltered(0, warm, opts, ms, sink, probe, rblReady !== undefined)
    }
    const results: PhaseResult[] = []
    for (let round = 1; round <= opts.rounds; round++) {
      log(`round ${round}: direct`)
      const a = await runDirect(round, list, opts.concurrency, targets, probe)
      log(`  ${a.rate.toFixed(1)} msgs/s`)
      results.push(a)
      log(`round ${round}: mailscreen`)
      const b = await runFiltered(round, list, opts, ms, sink, probe, rblReady !== undefined)
      log(`  ${b.rate.toFixed(1)} msgs/s`)
      results.push(b)
    }

    const settings: Record<string, string> = {
      messages: `${opts.messages} per phase (${corpus.length} corpus messages, seed ${opts.seed}, ${(bytes / list.length / 1024).toFixed(1)} KiB mean), warm-up ${opts.warmup}`,
      concurrency: `${opts.concurrency} (both phases)`,
      'spamd children': `${opts.spamdChildren} (min = max, pre-forked; shared by both phases)`,
      'clamd MaxThreads': String(Math.max(4, opts.concurrency)),
      'pool.workers': String(opts.workers),
      'pool.maxInFlight': String(opts.maxInFlight),
      plugins: plugins.map((p) => String(p.use)).join(', '),
      dnsbl: rblReady ? `rbldnsd ${rblReady.server}, zone ${rblReady.zone}, cacheSize 0` : 'not available',
      policy: `default actions (quarantine counts as done), spool.fsync ${opts.fsync ? 'on' : 'OFF'}, log.level ${opts.logLevel}`,
      smtp: 'one message per connection, XFORWARD ADDR + MAIL/RCPT/DATA pipelined',
      machine: `${os.cpus().length} x ${os.cpus()[0]?.model ?? '?'}, node ${process.version}`,
    }
    process.stdout.write(
      opts.json ? `${JSON.stringify({ settings, results }, null, 2)}\n` : format(results, settings),
    )
  } finally {
    await stopAll()
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exitCode = 1
})
