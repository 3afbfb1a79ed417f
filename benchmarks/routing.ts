/**
 * Routing cost (issue #4): "Routing decision cost with 100,000 aliases / directory rows
 * (lookups per second, memory), and map reload time; delivery throughput to 10 next hops at
 * once vs one."
 *
 *   node --expose-gc dist/benchmarks/routing.js [--entries N=100000] [--lookups L=100000]
 *     [--messages M=2000] [--concurrency C=50] [--size BYTES=10240] [--warmup K=200]
 *     [--seed X=4] [--skip-delivery] [--json]
 *
 * Part A, in this process, no network. A routing maps folder is generated into a temp dir
 * (seeded, so every run gets the same maps): `local-host-names` (corp.example, example.org),
 * an `aliases` file of N aliases (60 % one target, 20 % nested: the name of an earlier
 * alias, 20 % lists of 2–10 targets mixing directory users, earlier aliases and foreign
 * addresses, long ones with continuation lines), a `users` file of N rows of corp.example
 * with homes on five subdomains, and a mailertable of four entries. Measured:
 *  - `loadRoutingMaps` (src/routing/maps.ts): wall time, and heap / RSS growth between two
 *    `global.gc()` (with `--expose-gc`; without it the figures include garbage and say so);
 *    then where the time goes (read, each parser, the alias loop check, the directory index);
 *  - `reloadRoutingMaps` (src/routing/reload.ts) over the same folder, three times;
 *  - `route()` (src/routing/router.ts) for L seeded addresses of each kind: alias hits, user
 *    directory hits (one in ten with a +extension), unknown users of corp.example (refused
 *    550 5.1.1) and foreign addresses (the default relay). A warm-up pass, a pass timed as a
 *    whole (lookups/s), then a pass timing every call (p50/p95/p99 in µs; each decision is
 *    also checked to be the expected kind).
 *
 * Part B, over loopback only. Ten SMTP sinks (src/bench/sink.ts) plus one for the relay,
 * and the built CLI as a child process (`mailscreen start`, its own spool and config in a
 * temp dir, example plugin, defaults otherwise: 2 workers, fsync on, log level info) whose
 * mailertable routes `dN.example` to sink N (`dN.example smtp:[127.0.0.1]:PORT`) and whose
 * `delivery.relay` is the relay sink (which should get nothing). After a warm-up spread over
 * all ten hops, the load generator (src/bench/load.ts, one message per connection) pushes M
 * messages of `--size` bytes, one recipient each, twice: (1) all to d0.example, one next hop;
 * (2) round-robin over d0…d9, ten next hops. Arrivals are matched by X-Bench-Id and the run's
 * recipient prefix; delivered/s = arrivals per second from the first send to the last
 * arrival, e2e = first byte sent to arrival at the sink (as `mailscreen bench`).
 *
 * Everything started here is stopped by PID and every temp dir removed, also on error and on
 * SIGINT/SIGTERM.
 */
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { runLoad } from '../src/bench/load.js'
import { benchIdOf } from '../src/bench/message.js'
import { Progress } from '../src/bench/progress.js'
import { type Sink, type SinkMessage, startSink } from '../src/bench/sink.js'
import { type LatencySummary, summarize } from '../src/bench/stats.js'
import { findAliasLoops, parseAliases } from '../src/routing/aliases.js'
import { parseLocalHostNames } from '../src/routing/local-host-names.js'
import { loadRoutingMaps, MAP_FILES, type RoutingMaps } from '../src/routing/maps.js'
import { reloadRoutingMaps } from '../src/routing/reload.js'
import { type RouteDecision, type RouteOptions, route } from '../src/routing/router.js'
import { memoryUserDirectory, parseUserRows } from '../src/routing/users.js'
import { freePort } from '../test/support/ports.js'
import { startMailscreen } from './support/child.js'
import { prng } from './support/format.js'
import { int } from './support/options.js'

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  readonly entries: number
  readonly lookups: number
  readonly messages: number
  readonly concurrency: number
  readonly size: number
  readonly warmup: number
  readonly seed: number
  readonly skipDelivery: boolean
  readonly json: boolean
}

const HELP = `usage: node --expose-gc dist/benchmarks/routing.js [options]

Part A: load, reload and route() cost of generated routing maps (in process).
Part B: delivery through a mailscreen child to one next hop vs ten (loopback sinks).

  --entries N       aliases and directory rows, each (default 100000)
  --lookups L       route() calls per kind and pass (default 100000)
  --messages M      messages per delivery run (default 2000)
  --concurrency C   concurrent SMTP clients (default 50)
  --size BYTES      message size (default 10240)
  --warmup K        delivery warm-up messages over all ten hops, not counted (default 200)
  --seed X          seed of the generated maps and lookup addresses (default 4)
  --skip-delivery   Part A only
  --json            print the figures as JSON
  -h, --help        this text

Run with node --expose-gc for exact heap figures (without it they include garbage).
`

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      entries: { type: 'string' },
      lookups: { type: 'string' },
      messages: { type: 'string', short: 'n' },
      concurrency: { type: 'string', short: 'C' },
      size: { type: 'string' },
      warmup: { type: 'string' },
      seed: { type: 'string' },
      'skip-delivery': { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(HELP)
    process.exit(0)
  }
  return {
    entries: int('entries', values.entries, 100_000, 10),
    lookups: int('lookups', values.lookups, 100_000),
    messages: int('messages', values.messages, 2000),
    concurrency: int('concurrency', values.concurrency, 50),
    size: int('size', values.size, 10_240),
    warmup: int('warmup', values.warmup, 200, 0),
    seed: int('seed', values.seed, 4, 0),
    skipDelivery: values['skip-delivery'] === true,
    json: values.json === true,
  }
}

const log = (text: string): void => {
  process.stderr.write(`${text}\n`)
}

/** What was started or created, to be stopped or removed in reverse order. */
type Cleanup = () => Promise<void>

// ---------------------------------------------------------------------------------------------
// Part A: the generated maps

/** The main domain of the directory users (and an alias domain). */
const CORP = 'corp.example'
/** A second domain of ours: aliases only (its directory is empty). */
const ORG = 'example.org'
const HOMES = ['s0', 's1', 's2', 's3', 's4'].map((s) => `${s}.${CORP}`)
const RELAY = { host: '127.0.0.1', port: 10026 }

const MAILERTABLE = `# generated by benchmarks/routing.ts
.${CORP}          smtp:[127.0.0.1]:2525        # the mailbox servers (user homes)
partner.example   smtp:[127.0.0.2]:25
.partner.example  smtp:mx.partner.example
old.example       error:5.1.2:550 old.example is retired
`

/** Counts of what the aliases file holds. */
interface AliasMix {
  single: number
  nested: number
  lists: number
  listTargets: number
}

/** Target generators for one aliases file: `users` directory users, alias names below `i`. */
function targetPicker(random: () => number, users: number) {
  const below = (n: number): number => Math.floor(random() * n)
  return {
    user: (): string => `u${below(users)}@${CORP}`,
    alias: (i: number): string => `a${below(i)}`,
    foreign: (): string => {
      const k = below(1_000_000)
      return random() < 0.5 ? `ext${k}@partner.example` : `x${k}@f${k % 97}.example`
    },
  }
}

/** One alias line (with a continuation line for long lists). */
function aliasLine(
  i: number,
  random: () => number,
  pick: ReturnType<typeof targetPicker>,
  mix: AliasMix,
): string {
  const r = i === 0 ? 0 : random()
  let targets: string[]
  if (r < 0.6) {
    mix.single++
    targets = [random() < 0.85 ? pick.user() : pick.foreign()]
  } else if (r < 0.8) {
    mix.nested++
    targets = [pick.alias(i)]
  } else {
    mix.lists++
    const n = 2 + Math.floor(random() * 9)
    targets = Array.from({ length: n }, () => {
      const t = random()
      return t < 0.5 ? pick.user() : t < 0.75 ? pick.alias(i) : pick.foreign()
    })
    mix.listTargets += n
  }
  if (targets.length <= 4) return `a${i}: ${targets.join(', ')}`
  return `a${i}: ${targets.slice(0, 3).join(', ')},\n      ${targets.slice(3).join(', ')}`
}

function aliasesText(entries: number, random: () => number, mix: AliasMix): string {
  const pick = targetPicker(random, entries)
  const lines = ['# generated by benchmarks/routing.ts', 'postmaster: root', 'root: \\root']
  for (let i = 0; i < entries - 2; i++) lines.push(aliasLine(i, random, pick, mix))
  return `${lines.join('\n')}\n`
}

function usersText(entries: number, random: () => number): string {
  const lines = ['# official address    home subdomain']
  for (let k = 0; k < entries; k++)
    lines.push(`u${k}@${CORP}  ${HOMES[Math.floor(random() * HOMES.length)] as string}`)
  return `${lines.join('\n')}\n`
}

interface GeneratedMaps {
  readonly dir: string
  /** Bytes per file. */
  readonly bytes: Record<string, number>
  readonly mix: AliasMix
}

/** Write the maps folder of Part A into `dir`. */
async function writeMaps(dir: string, entries: number, seed: number): Promise<GeneratedMaps> {
  const random = prng(seed)
  const mix: AliasMix = { single: 0, nested: 0, lists: 0, listTargets: 0 }
  const files: Record<string, string> = {
    'local-host-names': `${CORP}\n${ORG}\n`,
    aliases: aliasesText(entries, random, mix),
    users: usersText(entries, random),
    mailertable: MAILERTABLE,
  }
  const bytes: Record<string, number> = {}
  for (const [name, text] of Object.entries(files)) {
    await writeFile(path.join(dir, name), text)
    bytes[name] = (await stat(path.join(dir, name))).size
  }
  return { dir, bytes, mix }
}

// ---------------------------------------------------------------------------------------------
// Part A: load, memory, reload

const gc = (globalThis as { gc?: () => void }).gc

interface Memory {
  readonly heapUsed: number
  readonly rss: number
}

/** Memory after a full collection (when --expose-gc gave us one). */
function memoryNow(): Memory {
  gc?.()
  gc?.()
  const { heapUsed, rss } = process.memoryUsage()
  return { heapUsed, rss }
}

const MB = 1024 * 1024

interface LoadFigures {
  readonly loadMs: number
  /** Growth from before the load to after it (maps alive), MB. */
  readonly heapMB: number
  readonly rssMB: number
  readonly problems: number
  readonly aliases: number
  readonly users: number
}

async function measureLoad(dir: string): Promise<{ figures: LoadFigures; maps: RoutingMaps }> {
  const before = memoryNow()
  const t0 = performance.now()
  const maps = loadRoutingMaps(dir)
  const loadMs = performance.now() - t0
  const after = memoryNow()
  const figures: LoadFigures = {
    loadMs,
    heapMB: (after.heapUsed - before.heapUsed) / MB,
    rssMB: (after.rss - before.rss) / MB,
    problems: maps.problems.length,
    aliases: maps.aliases.entries.size,
    users: await maps.users.count(),
  }
  return { figures, maps }
}

interface ReloadFigures {
  readonly ms: number[]
  readonly applied: boolean[]
  /** Heap after the reloads, only the last maps alive, minus before the first load, MB. */
  readonly heapMB: number
  /** This process's peak RSS so far (the reloads hold two sets of maps at once), MB. */
  readonly peakRssMB: number
}

/**
 * Load the maps, then reload them `rounds` times over the same folder, each time replacing
 * the running maps. Only the last maps are reachable once this returns.
 */
async function loadAndReload(
  dir: string,
  rounds: number,
): Promise<{ load: LoadFigures; reload: Pick<ReloadFigures, 'ms' | 'applied'>; maps: RoutingMaps }> {
  log('part A: loadRoutingMaps')
  const first = await measureLoad(dir)
  log(`part A: reloadRoutingMaps x${rounds}`)
  let maps = first.maps
  const ms: number[] = []
  const applied: boolean[] = []
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now()
    const result = reloadRoutingMaps(maps, dir)
    ms.push(performance.now() - t0)
    applied.push(result.applied)
    maps = result.maps
  }
  return { load: first.figures, reload: { ms, applied }, maps }
}

/** Where a load's time goes: the same steps as `buildRoutingMaps`, timed one by one (ms). */
function loadBreakdown(dir: string): Record<string, number> {
  const out: Record<string, number> = {}
  const timed = <T>(name: string, run: () => T): T => {
    const t0 = performance.now()
    const value = run()
    out[name] = performance.now() - t0
    return value
  }
  const file = (name: string) => path.join(dir, name)
  const texts = timed('read files', () =>
    Object.fromEntries(
      MAP_FILES.map((name) => {
        try {
          return [name, readFileSync(file(name), 'utf8')]
        } catch {
          return [name, '']
        }
      }),
    ),
  )
  const local = parseLocalHostNames(texts['local-host-names'] ?? '', file('local-host-names')).map
  const aliases = timed('parseAliases', () => parseAliases(texts.aliases ?? '', file('aliases')).map)
  timed('findAliasLoops', () => findAliasLoops(aliases, (d) => local.domains.has(d)))
  const rows = timed('parseUserRows', () => parseUserRows(texts.users ?? '', file('users')).map)
  timed('memoryUserDirectory', () => memoryUserDirectory('users', rows))
  return out
}

// ---------------------------------------------------------------------------------------------
// Part A: route()

/** One kind of lookup: its addresses and what its decisions must look like. */
interface LookupKind {
  readonly name: string
  readonly addresses: readonly string[]
  readonly expected: (d: RouteDecision) => boolean
}

function lookupKinds(entries: number, lookups: number, seed: number): LookupKind[] {
  const random = prng(seed + 1)
  const below = (n: number): number => Math.floor(random() * n)
  const many = (make: () => string): string[] => Array.from({ length: lookups }, make)
  const hit = (map: string) => (d: RouteDecision) => d.steps.some((s) => s.map === map && s.result === 'hit')
  return [
    {
      name: 'alias hit',
      addresses: many(() => `a${below(entries - 2)}@${random() < 0.8 ? CORP : ORG}`),
      expected: hit('aliases'),
    },
    {
      name: 'user hit',
      addresses: many(() => `u${below(entries)}${random() < 0.1 ? '+news' : ''}@${CORP}`),
      expected: (d) => hit('users')(d) && d.recipients.every((r) => r.nextHop.kind === 'smtp'),
    },
    {
      name: 'unknown local (550)',
      addresses: many(() => `nobody${below(1_000_000)}@${CORP}`),
      expected: (d) => !d.accepted && d.refusal?.status === '5.1.1',
    },
    {
      name: 'foreign (relay)',
      addresses: many(() => {
        const k = below(1_000_000)
        return `x${k}@f${k % 97}.example`
      }),
      expected: (d) => d.recipients.length === 1 && d.recipients[0]?.nextHop.kind === 'relay',
    },
  ]
}

interface LookupFigures {
  readonly kind: string
  readonly lookups: number
  readonly perSecond: number
  /** One route() call, µs. */
  readonly latencyUs: LatencySummary
  readonly asExpected: number
  /** Mean final recipients per decision. */
  readonly recipients: number
  /** Mean trace steps per decision. */
  readonly steps: number
}

const ROUTE_OPTIONS: RouteOptions = { from: 'bench@example.test', defaultRelay: RELAY }

async function measureLookups(maps: RoutingMaps, kind: LookupKind): Promise<LookupFigures> {
  const { addresses } = kind
  for (const address of addresses.slice(0, Math.min(addresses.length, 5000)))
    await route(address, maps, ROUTE_OPTIONS)
  const t0 = performance.now()
  for (const address of addresses) await route(address, maps, ROUTE_OPTIONS)
  const elapsed = performance.now() - t0
  const latencies = new Array<number>(addresses.length)
  let asExpected = 0
  let recipients = 0
  let steps = 0
  for (const [i, address] of addresses.entries()) {
    const start = performance.now()
    const decision = await route(address, maps, ROUTE_OPTIONS)
    latencies[i] = (performance.now() - start) * 1000
    if (kind.expected(decision)) asExpected++
    recipients += decision.recipients.length
    steps += decision.steps.length
  }
  return {
    kind: kind.name,
    lookups: addresses.length,
    perSecond: addresses.length / (elapsed / 1000),
    latencyUs: summarize(latencies),
    asExpected,
    recipients: recipients / addresses.length,
    steps: steps / addresses.length,
  }
}

interface PartA {
  readonly files: Record<string, number>
  readonly mix: AliasMix
  readonly gc: boolean
  readonly load: LoadFigures
  readonly breakdown: Record<string, number>
  readonly reload: ReloadFigures
  readonly lookups: LookupFigures[]
}

async function runPartA(opts: Options, cleanups: Cleanup[]): Promise<PartA> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mailscreen-bench-routing-'))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  log(`part A: writing ${opts.entries} aliases and ${opts.entries} directory rows to ${dir}`)
  const generated = await writeMaps(dir, opts.entries, opts.seed)
  const kinds = lookupKinds(opts.entries, opts.lookups, opts.seed)
  const baseline = memoryNow()
  const { load, reload: times, maps } = await loadAndReload(dir, 3)
  const reload: ReloadFigures = {
    ...times,
    heapMB: (memoryNow().heapUsed - baseline.heapUsed) / MB,
    peakRssMB: process.resourceUsage().maxRSS / 1024,
  }
  const lookups: LookupFigures[] = []
  for (const kind of kinds) {
    log(`part A: route() ${kind.name}, ${opts.lookups} lookups x2`)
    lookups.push(await measureLookups(maps, kind))
  }
  log('part A: load breakdown')
  const breakdown = loadBreakdown(dir)
  return {
    files: generated.bytes,
    mix: generated.mix,
    gc: gc !== undefined,
    load,
    breakdown,
    reload,
    lookups,
  }
}

// ---------------------------------------------------------------------------------------------
// Part B: delivery to one next hop vs ten

const HOPS = 10
const hopDomain = (n: number): string => `d${n}.example`
const DELIVERY_TIMEOUT_MS = 120_000

/** The mailscreen under test: the built CLI as a child process. */
interface Filter {
  readonly pid: number
  readonly port: number
}

/**
 * Start `mailscreen start` with its own config, spool and routing folder in a temp dir
 * (benchmarks/support/child.ts): the mailertable sends dN.example to hop sink N, the relay is
 * the relay sink. Registers its stop (by PID; it also removes the dir) with `cleanups` before
 * it waits for the greeting.
 */
async function startFilter(hops: readonly Sink[], relay: Sink, cleanups: Cleanup[]): Promise<Filter> {
  const port = await freePort()
  const child = await startMailscreen({
    tmpPrefix: 'mailscreen-bench-fanout-',
    config: async (dir) => {
      const rules = path.join(dir, 'rules')
      await mkdir(rules)
      const table = hops.map((sink, n) => `${hopDomain(n)}  smtp:[127.0.0.1]:${sink.port}`)
      await writeFile(path.join(rules, 'mailertable'), `${table.join('\n')}\n`)
      return {
        smtp: { listen: [`127.0.0.1:${port}`] },
        spool: { dir: path.join(dir, 'spool') },
        delivery: { relay: `127.0.0.1:${relay.port}` },
        routing: { dir: rules },
        plugins: [{ use: 'example' }],
      }
    },
    ready: { greeting: port },
    register: (c) => cleanups.push(c.stop),
  })
  return { pid: child.pid, port }
}

interface DeliveryFigures {
  readonly label: string
  readonly hops: number
  readonly messages: number
  readonly accepted: number
  readonly delivered: number
  readonly errors: number
  /** Arrived at a sink other than the recipient domain's, or at the relay. */
  readonly misrouted: number
  /** Arrivals per hop sink. */
  readonly perHop: number[]
  readonly acceptRate: number
  readonly deliveredRate: number
  readonly acceptMs: LatencySummary
  readonly endToEndMs: LatencySummary
}

interface Fanout {
  readonly filter: Filter
  readonly hops: readonly Sink[]
  readonly relay: Sink
}

/** Arrivals of one run, matched by X-Bench-Id among messages for the run's recipients. */
function arrivals(fanout: Fanout, tag: string, messages: number) {
  const state = {
    arrived: new Float64Array(messages),
    perHop: new Array<number>(fanout.hops.length).fill(0),
    delivered: 0,
    misrouted: 0,
    lastArrival: 0,
  }
  const listener = (at: number | 'relay') => (message: SinkMessage) => {
    const rcpt = message.rcptTo.find((r) => r.startsWith(`${tag}-`))
    const seq = benchIdOf(message.data)
    if (rcpt === undefined || seq === undefined || seq >= messages || state.arrived[seq] !== 0) return
    if (at === 'relay' || !rcpt.toLowerCase().endsWith(`@${hopDomain(at)}`)) state.misrouted++
    if (at !== 'relay') state.perHop[at] = (state.perHop[at] ?? 0) + 1
    state.lastArrival = performance.now()
    state.arrived[seq] = state.lastArrival
    state.delivered++
  }
  const attached = [
    ...fanout.hops.map((sink, n) => ({ sink, fn: listener(n) })),
    { sink: fanout.relay, fn: listener('relay') },
  ]
  for (const { sink, fn } of attached) sink.on('message', fn)
  const detach = () => {
    for (const { sink, fn } of attached) sink.off('message', fn)
  }
  return { state, detach }
}

/** One load run through mailscreen; message `seq` goes to `tag-seq@` the domain `hopOf(seq)`. */
async function deliveryRun(
  label: string,
  tag: string,
  hopOf: (seq: number) => number,
  fanout: Fanout,
  opts: Options,
): Promise<DeliveryFigures> {
  const { state, detach } = arrivals(fanout, tag, opts.messages)
  let accepted = 0
  const progress = new Progress(label, opts.messages, () => ({ accepted, delivered: state.delivered }))
  progress.start()
  const load = await runLoad({
    host: '127.0.0.1',
    port: fanout.filter.port,
    messages: opts.messages,
    concurrency: opts.concurrency,
    size: opts.size,
    reuse: false,
    recipient: (seq) => `${tag}-${seq}@${hopDomain(hopOf(seq))}`,
    onAccepted: () => {
      accepted++
    },
  })
  const deadline = performance.now() + DELIVERY_TIMEOUT_MS
  while (state.delivered < load.acceptMs.length && performance.now() < deadline)
    await new Promise((r) => setTimeout(r, 20))
  progress.stop()
  detach()
  const endToEnd: number[] = []
  let firstStart = Number.POSITIVE_INFINITY
  for (let seq = 0; seq < opts.messages; seq++) {
    const start = load.startedAt[seq] as number
    firstStart = Math.min(firstStart, start)
    if (state.arrived[seq]) endToEnd.push((state.arrived[seq] as number) - start)
  }
  return {
    label,
    hops: new Set(Array.from({ length: opts.messages }, (_, seq) => hopOf(seq))).size,
    messages: opts.messages,
    accepted: load.acceptMs.length,
    delivered: state.delivered,
    errors: load.errors.length,
    misrouted: state.misrouted,
    perHop: state.perHop,
    acceptRate: load.acceptMs.length / (load.elapsedMs / 1000),
    deliveredRate: state.delivered / ((state.lastArrival - firstStart) / 1000),
    acceptMs: summarize(load.acceptMs),
    endToEndMs: summarize(endToEnd),
  }
}

interface PartB {
  readonly one: DeliveryFigures
  readonly ten: DeliveryFigures
  /** ten / one, delivered msgs/s. */
  readonly ratio: number
}

async function runPartB(opts: Options, cleanups: Cleanup[]): Promise<PartB> {
  log(`part B: starting ${HOPS} hop sinks, a relay sink and mailscreen`)
  const hops: Sink[] = []
  for (let n = 0; n < HOPS; n++) {
    const sink = await startSink({ host: '127.0.0.1', keep: false })
    cleanups.push(() => sink.close())
    hops.push(sink)
  }
  const relay = await startSink({ host: '127.0.0.1', keep: false })
  cleanups.push(() => relay.close())
  const filter = await startFilter(hops, relay, cleanups)
  log(`part B: mailscreen pid ${filter.pid} on 127.0.0.1:${filter.port}`)
  const fanout: Fanout = { filter, hops, relay }
  if (opts.warmup > 0)
    await deliveryRun('warm-up', 'w', (seq) => seq % HOPS, fanout, { ...opts, messages: opts.warmup })
  const one = await deliveryRun('one next hop', 'r1', () => 0, fanout, opts)
  const ten = await deliveryRun('ten next hops', 'r2', (seq) => seq % HOPS, fanout, opts)
  return { one, ten, ratio: ten.deliveredRate / one.deliveredRate }
}

// ---------------------------------------------------------------------------------------------
// Output

const fixed = (v: number, digits = 1): string => (Number.isNaN(v) ? '-' : v.toFixed(digits))
const triple = (s: LatencySummary, digits = 1): string =>
  `${fixed(s.p50, digits)} / ${fixed(s.p95, digits)} / ${fixed(s.p99, digits)}`

function formatPartA(a: PartA, opts: Options): string[] {
  const kB = (n: number | undefined) => `${((n ?? 0) / 1024).toFixed(0)} KiB`
  const reload = [...a.reload.ms].sort((x, y) => x - y)
  return [
    `## Part A: ${opts.entries} aliases, ${opts.entries} directory rows (seed ${opts.seed})`,
    '',
    `files: aliases ${kB(a.files.aliases)}, users ${kB(a.files.users)}; aliases: ${a.mix.single} one target, ${a.mix.nested} nested, ${a.mix.lists} lists (${fixed(a.mix.listTargets / Math.max(1, a.mix.lists))} targets each)`,
    `loaded: ${a.load.aliases} aliases, ${a.load.users} users, ${a.load.problems} problems`,
    '',
    '| operation | figure |',
    '| --- | ---: |',
    `| loadRoutingMaps | ${fixed(a.load.loadMs, 0)} ms |`,
    `| heap growth (maps alive) | ${fixed(a.load.heapMB)} MB |`,
    `| RSS growth | ${fixed(a.load.rssMB)} MB |`,
    `| reloadRoutingMaps x${reload.length} (min / median / max) | ${fixed(reload[0] ?? Number.NaN, 0)} / ${fixed(reload[Math.floor(reload.length / 2)] ?? Number.NaN, 0)} / ${fixed(reload[reload.length - 1] ?? Number.NaN, 0)} ms (applied: ${a.reload.applied.join(', ')}) |`,
    `| heap after the reloads (old maps released) | ${fixed(a.reload.heapMB)} MB |`,
    `| peak RSS of this process up to here | ${fixed(a.reload.peakRssMB)} MB |`,
    '',
    a.gc
      ? 'heap/RSS after global.gc(); RSS growth is what the OS kept, V8 does not give all of it back'
      : 'global.gc not available (run with node --expose-gc): heap/RSS figures include uncollected garbage',
    '',
    `load breakdown (ms): ${Object.entries(a.breakdown)
      .map(([k, v]) => `${k} ${fixed(v, 0)}`)
      .join(', ')}`,
    '',
    '| route() of | lookups/s | one call p50 / p95 / p99 µs | recipients | steps | as expected |',
    '| --- | ---: | --- | ---: | ---: | ---: |',
    ...a.lookups.map(
      (l) =>
        `| ${l.kind} | ${fixed(l.perSecond, 0)} | ${triple(l.latencyUs)} | ${fixed(l.recipients, 2)} | ${fixed(l.steps, 1)} | ${l.asExpected}/${l.lookups} |`,
    ),
    '',
    'lookups/s: a pass timed as a whole (after a warm-up); µs: a second pass timing each call (await included);',
    'recipients/steps: mean final recipients and trace steps per decision',
  ]
}

function formatPartB(b: PartB, opts: Options): string[] {
  const row = (r: DeliveryFigures) =>
    `| ${r.label} | ${fixed(r.acceptRate, 0)} | ${fixed(r.deliveredRate, 0)} | ${triple(r.acceptMs)} | ${triple(r.endToEndMs)} | ${r.messages - r.delivered} | ${r.misrouted} |`
  return [
    `## Part B: delivery, ${opts.messages} messages of ${opts.size} B, concurrency ${opts.concurrency}, one message per connection (after ${opts.warmup} warm-up)`,
    '',
    '| run | accepted/s | delivered/s | accept p50 / p95 / p99 ms | e2e p50 / p95 / p99 ms | not delivered | misrouted |',
    '| --- | ---: | ---: | --- | --- | ---: | ---: |',
    row(b.one),
    row(b.ten),
    '',
    `ten next hops / one next hop (delivered msgs/s): ${fixed(b.ratio, 2)}x`,
    `arrivals per hop, ten next hops: ${b.ten.perHop.join(', ')}`,
    'mailscreen: example plugin, 2 workers, fsync on, delivery defaults (maxConnections 20, maxConnectionsPerDestination 20)',
    'misrouted = arrived at another hop than its domain\u2019s or at the relay; e2e = first byte sent to arrival at the sink',
  ]
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const opts = parseOptions()
  const cleanups: Cleanup[] = []
  let stopping: Promise<void> | undefined
  const stopAll = (): Promise<void> => {
    stopping ??= (async () => {
      // mailscreen before the sinks it delivers to; temp dirs last.
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined)
    })()
    return stopping
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.once(signal, () => {
      log(`\n${signal}: stopping what this benchmark started`)
      void stopAll().finally(() => process.exit(130))
    })
  try {
    if (!gc) log('global.gc not available: run with node --expose-gc for exact heap figures')
    const partA = await runPartA(opts, cleanups)
    const partB = opts.skipDelivery ? undefined : await runPartB(opts, cleanups)
    const settings = {
      ...opts,
      machine: `${os.cpus().length} x ${os.cpus()[0]?.model ?? '?'}, node ${process.version}`,
    }
    if (opts.json) process.stdout.write(`${JSON.stringify({ settings, partA, partB }, null, 2)}\n`)
    else {
      const lines = [`machine: ${settings.machine}`, '', ...formatPartA(partA, opts)]
      if (partB) lines.push('', ...formatPartB(partB, opts))
      process.stdout.write(`${lines.join('\n')}\n`)
    }
  } finally {
    await stopAll()
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exitCode = 1
})
