import { resolve } from 'node:path'
import type { Logger } from 'pino'
import type { LoadedConfig } from './config/load.js'
import type { Config } from './config/schema.js'
import { Destinations } from './delivery/destinations.js'
import { Dispatcher, ownAddresses, type RoutingState } from './delivery/dispatch.js'
import { NextHopDns } from './delivery/mx.js'
import { DeliveryQueue } from './delivery/queue-runner.js'
import { formatHop } from './delivery/smtp-client.js'
import { MailscreenError, toErrorInfo } from './errors.js'
import { InFlow } from './ingress/in-flow.js'
import { milterScanHandler } from './ingress/milter/scan.js'
import {
  createMilterServer,
  formatMilterAddress,
  type MilterServer,
  milterServerOptions,
} from './ingress/milter/server.js'
import { createSmtpIngress } from './ingress/smtp.js'
import { reply } from './ingress/smtp-reply.js'
import { Metrics } from './metrics/metrics.js'
import { createMetricsServer } from './metrics/server.js'
import { loadPolicy } from './pipeline/policy.js'
import { createScanPool, type ScanPool } from './pipeline/pool.js'
import { type LoadedPlugin, loadPlugins, scoreTable, toRef } from './pipeline/registry.js'
import type { ScanSettings } from './pipeline/scan.js'
import { ScanScheduler } from './pipeline/scheduler.js'
import { applyScoresFile } from './pipeline/scores.js'
import { takeAdminActions } from './queue/admin-journal.js'
import { minFreeBytes, type SpaceEvent, SpoolSpace } from './queue/free-space.js'
import { FreshRun } from './queue/fresh-run.js'
import { claimPidFile, removePidFile } from './queue/pid-file.js'
import { SPOOL_STATES, Spool } from './queue/spool.js'
import { emptyRoutingMaps, loadRoutingMaps, MAP_FILES, type RoutingMaps } from './routing/maps.js'
import { reloadRoutingMaps } from './routing/reload.js'
import { type MapProblem, where } from './routing/text.js'
import { HelperScheduling } from './thread-scheduling.js'

/** The running filter. */
export interface App {
  /** Recover the spool, start workers, queues and listeners. Resolves with the bound addresses. */
  start(): Promise<Array<{ host: string; port: number }>>
  /** Stop listening, finish in-flight work, close the pool. Nothing accepted is dropped. */
  stop(): Promise<void>
  /** Retry everything deferred now. */
  flush(): Promise<void>
  /** Log what the CLI did to queued mail (the spool's admin journal), and forget it; never rejects. */
  logAdminActions(): Promise<void>
  /**
   * Apply a new configuration's routing maps (keeping the last good ones when the new files
   * have new problems), routing settings, plugins and policy: new workers are set up and take
   * over, the old ones finish what they hold. Listeners, spool and delivery settings need a restart.
   */
  reload(next: LoadedConfig): Promise<void>
}

/**
 * Scan settings for workers (and for `mailscreen scan`), from the config and its plugins,
 * loaded here unless the caller has them already (check-config prints them too).
 */
export async function scanSettings(
  loaded: LoadedConfig,
  plugins?: readonly LoadedPlugin[],
): Promise<ScanSettings> {
  const { config, baseDir, file } = loaded
  plugins ??= await loadPlugins(config.plugins, baseDir, file)
  const declared = scoreTable(plugins)
  const { scores } = config.policy
  const symbols = scores === undefined ? declared : applyScoresFile(declared, resolve(baseDir, scores))
  const { milter } = config
  return {
    plugins: plugins.map(toRef),
    symbols: [...symbols],
    policy: inConfig(file, () => loadPolicy(config.policy, baseDir, config.hostname)),
    ...(milter
      ? {
          milterPolicy: inConfig(file, () =>
            loadPolicy(config.policy, baseDir, config.hostname, {
              key: 'milter.actions',
              actions: milter.actions,
            }),
          ),
        }
      : {}),
  }
}

/**
 * An error about a key of the config (`policy.actions.spam: ...`) names the file first, as
 * the schema's own errors do; one about a rules file already names that file.
 */
function inConfig<T>(file: string | undefined, load: () => T): T {
  try {
    return load()
  } catch (err) {
    if (err instanceof MailscreenError && /^(policy|milter)\./.test(err.message))
      throw new MailscreenError(err.code, `${file ?? '(defaults)'}: ${err.message}`, { cause: err })
    throw err
  }
}

/** Take the spool for this process, or refuse: another mailscreen runs on it. A PID file left by a crash is taken over. */
async function claimSpool(spoolDir: string): Promise<void> {
  const other = await claimPidFile(spoolDir)
  if (other !== undefined)
    throw new MailscreenError('MSC_SPOOL_IN_USE', `mailscreen (pid ${other}) already runs on ${spoolDir}`)
}

/** `file:line: reason`, for logs. */
function describeProblems(problems: readonly MapProblem[]): string[] {
  return problems.map((p) => `${where(p)}: ${p.reason}`)
}

/** The map files present, for logs. */
function presentMaps(maps: RoutingMaps): string[] {
  return MAP_FILES.filter((name) => maps.files[name] !== undefined)
}

/** The free-space guard of the spool (`spool.minFree`, default 1.5 × `smtp.maxSize`), or none when 0. */
function spoolSpace(config: LoadedConfig['config'], log: Logger): SpoolSpace | undefined {
  const reserve = minFreeBytes(config.spool.minFree, config.smtp.maxSize)
  if (reserve === 0) return undefined
  const report = (event: SpaceEvent): void => {
    if (event.kind === 'unmeasurable')
      log.warn(
        { dir: config.spool.dir, err: event.error.message },
        'spool free space unknown: not refusing mail for it',
      )
    else if (event.kind === 'low')
      log.error(
        { dir: config.spool.dir, free: event.free, minFree: event.reserve },
        'spool disk short of space: new mail gets 452 4.3.1 until it has room',
      )
    else
      log.info(
        { dir: config.spool.dir, free: event.free, minFree: event.reserve },
        'spool disk has room again',
      )
  }
  return new SpoolSpace({ dir: config.spool.dir, reserve, onChange: report })
}

/** Wire every stage together. No I/O happens until `start()`. */
export function buildApp(loaded: LoadedConfig, log: Logger): App {
  const { config } = loaded
  const spool = new Spool(config.spool.dir, config.spool.fsync)
  const routingLog = log.child({ component: 'routing' })
  const dnsOf = (servers: readonly string[]) => new NextHopDns({ servers })
  // Swapped as a whole on reload; readers take it once per decision.
  let routing: RoutingState & { readonly servers: string } = {
    maps: emptyRoutingMaps(),
    hopLimit: config.routing.hopLimit,
    dns: dnsOf(config.routing.resolver.servers),
    servers: JSON.stringify(config.routing.resolver.servers),
  }
  const { relay } = config.delivery
  const local = config.delivery.local === undefined ? relay : config.delivery.local
  const destinations = new Destinations({
    hostname: config.hostname,
    maxConnections: config.delivery.maxConnections,
    maxPerDestination: config.delivery.maxConnectionsPerDestination,
    destinationWaitMs: config.delivery.destinationWait,
    // A message gives up waiting for a busy destination only to make room for other mail.
    othersWaiting: () => (delivery?.backlog ?? 0) > 0,
    maxMessagesPerConnection: config.delivery.maxMessagesPerConnection,
    connectTimeoutMs: config.delivery.connectTimeout,
    backoffAfter: config.delivery.backoffAfter,
    backoffMinMs: config.delivery.backoffMin,
    backoffMaxMs: config.delivery.backoffMax,
  })
  const dispatcher = new Dispatcher({
    routing: () => routing,
    relay,
    local,
    lmtp: config.delivery.lmtp,
    tls: config.delivery.tls,
    maxRecipientsPerTransaction: config.delivery.maxRecipientsPerTransaction,
    mxPort: config.delivery.mxPort,
    hostname: config.hostname,
    ownAddresses: ownAddresses(config.smtp.listen),
    destinations,
    log: log.child({ component: 'delivery' }),
  })
  let scheduler: ScanScheduler | undefined
  let delivery: DeliveryQueue | undefined
  let pool: ScanPool | undefined
  // The scheduler runs tasks through this, so a reload can swap the pool underneath it.
  const currentPool: ScanPool = {
    run: (task, options) => (pool as ScanPool).run(task, options),
    close: () => (pool as ScanPool).close(),
  }
  const startPool = (settings: ScanSettings, from: LoadedConfig): ScanPool =>
    createScanPool(
      {
        scan: settings,
        spoolDir: config.spool.dir,
        fsync: config.spool.fsync,
        logLevel: from.config.log.level,
      },
      {
        workers: from.config.pool.workers,
        concurrentTasksPerWorker: Math.max(
          1,
          Math.ceil(from.config.pool.maxInFlight / from.config.pool.workers),
        ),
        taskTimeoutMs: from.config.pool.taskTimeout,
        log: log.child({ component: 'pool' }),
        onThreadStart: () => void scheduling.refresh(),
      },
    )
  const scheduling = new HelperScheduling((failure) =>
    log.warn({ component: 'pool', failure }, 'helper threads: scheduling policy not changed'),
  )
  let ownsSpool = false
  const space = spoolSpace(config, log.child({ component: 'spool' }))
  const metrics = new Metrics({
    queueSizes: async () => {
      const sizes: Record<string, number> = {}
      for (const state of SPOOL_STATES) sizes[state] = await spool.count(state)
      return sizes
    },
    spoolFreeBytes: () => space?.freeNow,
    smtpSessions: () => ingress.connections,
    scansPending: () => scheduler?.pending ?? 0,
    deliveriesPending: () => delivery?.pending ?? 0,
  })
  const metricsServer = config.metrics
    ? createMetricsServer(metrics.withProcessMetrics(), (err) =>
        log.error({ err: toErrorInfo(err) }, 'metrics collection failed'),
      )
    : undefined
  const smtpLog = log.child({ component: 'smtp' })
  const inFlow = new InFlow({
    backlog: () => (scheduler?.backlog ?? 0) + (delivery?.backlog ?? 0),
    maxBacklog: config.smtp.maxBacklog,
    delayMs: config.smtp.inFlowDelay,
    onChange: (over, backlog) => {
      const fields = { backlog, maxBacklog: config.smtp.maxBacklog, inFlowDelay: config.smtp.inFlowDelay }
      if (over) smtpLog.warn(fields, 'backlog over smtp.maxBacklog: pacing MAIL FROM')
      else smtpLog.info(fields, 'backlog below smtp.maxBacklog again: MAIL FROM at full pace')
    },
  })
  const ingress = createSmtpIngress({
    config,
    spool,
    inFlow,
    ...(space ? { space } : {}),
    metrics,
    log: smtpLog,
    onQueued: (id, entry) => scheduler?.enqueue(id, entry ? { entry } : {}),
    checkRecipient: (address, mailFrom) => dispatcher.check(address, mailFrom),
  })

  // The pre-queue front end, when configured: the same pool and policy, answered in the SMTP session.
  const milter: MilterServer | undefined = config.milter
    ? createMilterServer(
        milterServerOptions(config.milter, {
          onMessage: milterScanHandler(currentPool, log.child({ component: 'milter' }), metrics),
          onRecipient: async (recipient, { mailFrom }) => {
            const refusal = await dispatcher.check(recipient.address, mailFrom, { mtaDelivers: true })
            return refusal && reply(refusal.code, refusal.status, refusal.text)
          },
          log,
        }),
      )
    : undefined

  /** SIGHUP: the maps (keep-last-good), the hop limit and the resolver. */
  const reloadRouting = (next: LoadedConfig): void => {
    const section = next.config.routing
    const result = reloadRoutingMaps(routing.maps, section.dir)
    const servers = JSON.stringify(section.resolver.servers)
    routing = {
      maps: result.maps,
      hopLimit: section.hopLimit,
      dns: servers === routing.servers ? routing.dns : dnsOf(section.resolver.servers),
      servers,
    }
    if (result.applied) {
      for (const problem of describeProblems(result.problems))
        routingLog.warn({ dir: section.dir, problem }, 'routing map problem')
      routingLog.info(
        { dir: section.dir, maps: presentMaps(result.maps), problems: result.problems.length },
        'routing maps reloaded',
      )
    } else
      routingLog.error(
        {
          dir: section.dir,
          problems: describeProblems(result.fresh),
          running: { dir: result.maps.dir, maps: presentMaps(result.maps) },
        },
        'routing maps not reloaded: keeping the last good maps',
      )
  }

  const adminLog = log.child({ component: 'admin' })
  // One reading at a time, so that two signals in a row never log an action twice.
  const adminJournal = new FreshRun(async () => {
    const { actions, unreadable } = await takeAdminActions(config.spool.dir)
    for (const { action, qid, was, detail, user, cliPid, at } of actions)
      adminLog.info(
        { qid, was, ...detail, user, cliPid, at: new Date(at).toISOString() },
        `${action} by administrator`,
      )
    for (const { file, reason } of unreadable)
      adminLog.warn({ file, reason }, 'admin journal: unreadable entry dropped')
  })
  // A journal that cannot be read is logged; it never stops the mail.
  const logAdminActions = (): Promise<void> =>
    adminJournal
      .request()
      .catch((err: unknown) => adminLog.error({ err: toErrorInfo(err) }, 'admin journal: could not be read'))

  return {
    async start() {
      await spool.init()
      await space?.start()
      await claimSpool(config.spool.dir)
      ownsSpool = true
      // Actions taken while mailscreen was stopped.
      await logAdminActions()
      const requeued = await spool.recover()
      if (requeued.length > 0)
        log.warn({ count: requeued.length, ids: requeued.slice(0, 20) }, 'recovered from processing')
      // No earlier maps to keep: start with what loads, and say what did not.
      const maps = loadRoutingMaps(config.routing.dir)
      routing = { ...routing, maps }
      for (const problem of describeProblems(maps.problems))
        routingLog.warn({ dir: maps.dir, problem }, 'routing map problem')
      const settings = await scanSettings(loaded)
      pool = startPool(settings, loaded)
      await scheduling.use(config.pool.helperScheduling)
      const deliveryQueue = new DeliveryQueue({
        spool,
        dispatcher,
        hopLimit: () => routing.hopLimit,
        log: log.child({ component: 'delivery' }),
        hostname: config.hostname,
        concurrency: config.delivery.maxConnections * 2,
        retry: config.delivery.retry,
        queueLifetimeMs: config.delivery.queueLifetime,
        runIntervalMs: config.delivery.queueRunInterval,
        onRescan: (id, attempts, lastChance) => scheduler?.enqueue(id, { tempfails: attempts, lastChance }),
        metrics,
      })
      delivery = deliveryQueue
      scheduler = new ScanScheduler({
        spool,
        pool: currentPool,
        log: log.child({ component: 'scan' }),
        maxInFlight: config.pool.maxInFlight,
        maxAttempts: config.pool.maxAttempts,
        retry: config.delivery.retry,
        metrics,
        deliverNow: (id, entry) => deliveryQueue.deliverNow(id, entry),
        onScanned: (id, entry) => deliveryQueue.enqueue(id, entry),
        onBounce: async (id, report) =>
          deliveryQueue.refuse(
            id,
            await spool.read('processing', id),
            `550 5.7.1 Message refused by content filter: ${report.verdict.category}${
              report.verdict.reasons.length > 0 ? ` (${report.verdict.reasons.join('; ')})` : ''
            }`,
          ),
      })
      await delivery.start()
      await scheduler.start()
      const bound = []
      for (const address of config.smtp.listen) bound.push(await ingress.listen(address.host, address.port))
      const milterBound = milter ? (await milter.listen()).map(formatMilterAddress) : []
      const metricsBound =
        metricsServer && config.metrics
          ? await metricsServer.listen(config.metrics.listen.host, config.metrics.listen.port)
          : undefined
      log.info(
        {
          listen: bound,
          ...(milter ? { milter: milterBound } : {}),
          ...(metricsBound
            ? { metrics: `http://${formatHop(metricsBound.host, metricsBound.port)}/metrics` }
            : {}),
          relay: config.delivery.relay,
          routing: { dir: routing.maps.dir, maps: presentMaps(routing.maps), problems: maps.problems.length },
          workers: config.pool.workers,
          plugins: config.plugins.map((p) => p.use),
        },
        'started',
      )
      return bound
    },
    async stop() {
      await metricsServer?.close()
      await ingress.close()
      await milter?.close()
      await scheduler?.stop()
      await delivery?.stop()
      await pool?.close()
      await destinations.close()
      space?.stop()
      // Only our own PID file: a start refused for MSC_SPOOL_IN_USE must not remove the other's.
      if (ownsSpool) await removePidFile(config.spool.dir)
      log.info('stopped')
    },
    async reload(next) {
      // The keys named below as restart-only stay as they run in what the reload builds too:
      // the hostname the workers write, the pool's share of maxInFlight.
      const { hostname, pool: running } = config
      const { maxInFlight, maxAttempts } = running
      const effective: LoadedConfig = {
        ...next,
        config: { ...next.config, hostname, pool: { ...next.config.pool, maxInFlight, maxAttempts } },
      }
      // Plugins first: if they fail to load, nothing of the new configuration applies.
      const settings = await scanSettings(effective)
      reloadRouting(next)
      // What the running listener, spool, scheduler and delivery were built with.
      const restartOnly = {
        smtp: (c: Config) => c.smtp,
        spool: (c: Config) => c.spool,
        delivery: (c: Config) => c.delivery,
        metrics: (c: Config) => c.metrics,
        hostname: (c: Config) => c.hostname,
        'pool.maxInFlight': (c: Config) => c.pool.maxInFlight,
        'pool.maxAttempts': (c: Config) => c.pool.maxAttempts,
      }
      for (const [key, of] of Object.entries(restartOnly)) {
        if (JSON.stringify(of(next.config)) !== JSON.stringify(of(config)))
          log.warn({ key }, 'reload: this section changed; restart to apply it')
      }
      // Children follow their parent's level, so the whole main thread logs at the new one.
      if (next.config.log.level !== log.level) log.level = next.config.log.level
      // milter.actions apply now (they are policy); the listener's settings need a restart.
      const listener = (c: LoadedConfig['config']) => JSON.stringify({ ...c.milter, actions: undefined })
      if (listener(next.config) !== listener(config))
        log.warn({ key: 'milter' }, 'reload: this section changed; restart to apply it')
      const old = pool
      pool = startPool(settings, effective)
      await scheduling.use(next.config.pool.helperScheduling)
      await old?.close()
      log.info({ plugins: next.config.plugins.map((p) => p.use) }, 'reloaded')
    },
    async flush() {
      log.info('flush: retrying deferred mail now')
      await delivery?.flush()
    },
    logAdminActions,
  }
}
