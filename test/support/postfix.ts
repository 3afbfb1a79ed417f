/**
 * A private Postfix instance for integration tests.
 *
 * Everything lives in a fresh temp dir (config, queue, data, maillog); the system-wide Postfix
 * (/etc/postfix, /var/spool/postfix) is never read, written, started or stopped. Several
 * instances can run at once. Every listener and every delivery target is on 127.0.0.1.
 *
 *   smtpd        127.0.0.1:smtpPort       the MTA's front door (content_filter applies here)
 *   scan         smtp transport           content_filter = scan:[host]:port, with XFORWARD
 *   reinject     127.0.0.1:reinjectPort   where the filter hands mail back (no content_filter)
 *   relayhost    [relay.host]:relay.port  where everything is finally delivered (a test sink)
 *
 * Needs root (Postfix's master must start as root) and the Debian postfix package
 * (scripts/install-deps.sh). A missing piece is an error, never a skip.
 */
import { execFile } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

export interface PostfixOptions {
  /** Port of the main smtpd on 127.0.0.1 (use freePort()). */
  smtpPort: number
  /** Final destination of all mail: `relayhost = [host]:port`. Loopback only. */
  relay: { host: string; port: number }
  /** After-queue content filter: `content_filter = scan:[host]:port`. Loopback only. */
  contentFilter?: { host: string; port: number }
  /** Second smtpd on 127.0.0.1 for re-injection from the filter (no content_filter, trusts XFORWARD). */
  reinjectPort?: number
  /** Value for `smtpd_milters` on the main smtpd, e.g. `inet:127.0.0.1:PORT`. Loopback only. */
  milter?: string
  /** Extra or overriding main.cf parameters, written last. */
  extraMain?: Record<string, string>
  /** myhostname; appears in Received: headers as `by HOSTNAME (Postfix)`. */
  hostname?: string
  /** How long start may take before it fails (default 30 s). */
  startTimeoutMs?: number
}

export interface PostfixQueueRecipient {
  address: string
  orig_rcpt?: string
  delay_reason?: string
}

/** One line of `postqueue -j` (see postqueue(1)). */
export interface PostfixQueueEntry {
  queue_name: 'maildrop' | 'incoming' | 'active' | 'deferred' | 'hold' | (string & {})
  queue_id: string
  arrival_time: number
  message_size: number
  forced_expire?: boolean
  sender: string
  recipients: PostfixQueueRecipient[]
}

export interface PostfixInstance {
  /** Temp dir holding etc/ (config_directory), spool/ (queue_directory), data/ and maillog. */
  readonly dir: string
  readonly configDir: string
  readonly queueDir: string
  readonly maillogPath: string
  readonly smtpPort: number
  readonly reinjectPort: number | undefined
  readonly hostname: string
  /** PID of this instance's master(8) daemon. */
  readonly masterPid: number
  /** The whole maillog so far ('' before anything was logged). */
  maillog(): Promise<string>
  /** Polls the maillog until a line matches; resolves with that line, rejects (with the log tail) on timeout. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>
  /** `postqueue -j`: every message in the queue. */
  mailq(): Promise<PostfixQueueEntry[]>
  /** Queue IDs of every message in the queue. */
  queueIds(): Promise<string[]>
  /** `postqueue -f`: retry all deferred mail now. */
  flush(): Promise<void>
  /** `postconf -h NAME` for this instance. */
  postconf(name: string): Promise<string>
  /** Stops master and all its children, waits until they are gone, removes the temp dir. Idempotent. */
  stop(): Promise<void>
}

const DEFAULT_HOSTNAME = 'mta.mailscreen.test'
const SBIN_DIRS = ['/usr/sbin', '/usr/local/sbin', '/sbin']

/** Masters started by this process and not yet stopped: killed if the test process exits early. */
const liveMasters = new Set<number>()
let exitHookInstalled = false

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.once('exit', () => {
    for (const pid of liveMasters) {
      try {
        process.kill(pid, 'SIGTERM')
      } catch {
        // already gone
      }
    }
  })
}

interface RunResult {
  code: number
  stdout: string
  stderr: string
}

function run(file: string, args: string[], timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, env: postfixEnv() },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') {
          reject(new Error(`${file} ${args.join(' ')}: ${err.message}\n${stderr}`, { cause: err }))
          return
        }
        resolve({ code: err ? Number(err.code) : 0, stdout, stderr })
      },
    )
  })
}

function postfixEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env }
  delete env.MAIL_CONFIG // -c decides, never an inherited value
  env.PATH = [...(env.PATH ?? '/usr/bin:/bin').split(':'), ...SBIN_DIRS].join(':')
  return env
}

function findBinary(name: string): string | undefined {
  const dirs = [...SBIN_DIRS, ...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/bin']
  for (const dir of dirs) {
    const candidate = path.join(dir, name)
    if (existsSync(candidate)) return candidate
  }
  return undefined
}

interface Binaries {
  postfix: string
  postqueue: string
  postconf: string
}

async function locateBinaries(): Promise<Binaries> {
  const postfix = findBinary('postfix')
  const postqueue = findBinary('postqueue')
  const postconf = findBinary('postconf')
  if (!postfix || !postqueue || !postconf) {
    throw new Error(
      'Postfix is not installed (need postfix, postqueue and postconf in /usr/sbin): run scripts/install-deps.sh',
    )
  }
  const daemonDir = (await run(postconf, ['-d', '-h', 'daemon_directory'])).stdout.trim()
  const master = path.join(daemonDir || '/usr/lib/postfix/sbin', 'master')
  if (!existsSync(master)) {
    throw new Error(`Postfix master daemon not found at ${master}: run scripts/install-deps.sh`)
  }
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new Error('a private Postfix instance must be started as root (its master daemon needs root)')
  }
  return { postfix, postqueue, postconf }
}

function assertPort(name: string, port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new Error(`startPostfix: bad ${name} ${port}`)
}

function assertLoopback(name: string, host: string): void {
  if (net.isIPv4(host) && host.startsWith('127.')) return
  throw new Error(
    `startPostfix: ${name} must be a 127.0.0.0/8 address (loopback only), got ${JSON.stringify(host)}`,
  )
}

function assertLoopbackMilter(milter: string): void {
  if (milter.startsWith('unix:')) return
  const m = /^inet:(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(milter)
  if (!m) throw new Error(`startPostfix: milter must be inet:127.x.x.x:PORT or unix:/path, got ${milter}`)
  assertLoopback('milter host', m[1] ?? m[2] ?? '')
}

function assertParamValue(name: string, value: string): void {
  if (!/^[a-z0-9_]+$/.test(name))
    throw new Error(`startPostfix: bad main.cf parameter name ${JSON.stringify(name)}`)
  if (/[\r\n]/.test(value)) throw new Error(`startPostfix: main.cf value for ${name} contains a newline`)
}

function mainCf(
  dirs: { dir: string; etc: string; spool: string; data: string; maillog: string },
  opts: PostfixOptions,
) {
  const hostname = opts.hostname ?? DEFAULT_HOSTNAME
  const p: Record<string, string> = {
    compatibility_level: '3.6',
    config_directory: dirs.etc,
    queue_directory: dirs.spool,
    data_directory: dirs.data,
    // Postfix >= 3.4 logs to a file through postlogd (there is no syslog here). The file must lie
    // under one of maillog_file_prefixes, and master.cf needs the postlog unix-dgram service.
    maillog_file: dirs.maillog,
    maillog_file_prefixes: `${dirs.dir}, /var, /dev/stdout`,
    myhostname: hostname,
    myorigin: '$myhostname',
    mydestination: '',
    relay_domains: '',
    local_recipient_maps: '',
    alias_maps: '',
    alias_database: '',
    biff: 'no',
    append_dot_mydomain: 'no',
    readme_directory: 'no',
    inet_interfaces: '127.0.0.1',
    inet_protocols: 'ipv4',
    mynetworks: '127.0.0.0/8',
    smtpd_relay_restrictions: 'permit_mynetworks, reject',
    smtpd_banner: '$myhostname ESMTP Postfix (mailscreen test instance)',
    relayhost: `[${opts.relay.host}]:${opts.relay.port}`,
    smtp_dns_support_level: 'disabled',
    smtp_host_lookup: 'native',
    smtp_tls_security_level: 'none',
    smtpd_tls_security_level: 'none',
    // Retry deferred mail within seconds, not minutes.
    queue_run_delay: '1s',
    minimal_backoff_time: '1s',
    maximal_backoff_time: '2s',
    smtp_connect_timeout: '5s',
    // Tests should not wait on Postfix's politeness delays.
    in_flow_delay: '0',
    smtpd_error_sleep_time: '0',
    delay_warning_time: '0h',
  }
  if (opts.contentFilter) p.content_filter = `scan:[${opts.contentFilter.host}]:${opts.contentFilter.port}`
  if (opts.milter) {
    p.smtpd_milters = opts.milter
    p.milter_protocol = '6'
    p.milter_default_action = 'tempfail'
  }
  for (const [k, v] of Object.entries(opts.extraMain ?? {})) {
    assertParamValue(k, v)
    p[k] = v
  }
  return `# Generated by test/support/postfix.ts for a private test instance\n${Object.entries(p)
    .map(([k, v]) => (v === '' ? `${k} =` : `${k} = ${v}`))
    .join('\n')}\n`
}

function masterCf(opts: PostfixOptions): string {
  // chroot is "n" everywhere: nothing to copy into the queue dir, and paths stay absolute.
  const lines = [
    '# service type  private unpriv  chroot  wakeup  maxproc command + args',
    `127.0.0.1:${opts.smtpPort} inet n - n - - smtpd`,
    'pickup    unix  n       -       n       60      1       pickup',
    'cleanup   unix  n       -       n       -       0       cleanup',
    'qmgr      unix  n       -       n       300     1       qmgr',
    'tlsmgr    unix  -       -       n       1000?   1       tlsmgr',
    'rewrite   unix  -       -       n       -       -       trivial-rewrite',
    'bounce    unix  -       -       n       -       0       bounce',
    'defer     unix  -       -       n       -       0       bounce',
    'trace     unix  -       -       n       -       0       bounce',
    'verify    unix  -       -       n       -       1       verify',
    'flush     unix  n       -       n       1000?   0       flush',
    'proxymap  unix  -       -       n       -       -       proxymap',
    'proxywrite unix -       -       n       -       1       proxymap',
    'smtp      unix  -       -       n       -       -       smtp',
    'relay     unix  -       -       n       -       -       smtp',
    'showq     unix  n       -       n       -       -       showq',
    'error     unix  -       -       n       -       -       error',
    'retry     unix  -       -       n       -       -       error',
    'discard   unix  -       -       n       -       -       discard',
    'local     unix  -       n       n       -       -       local',
    'lmtp      unix  -       -       n       -       -       lmtp',
    'anvil     unix  -       -       n       -       1       anvil',
    'scache    unix  -       -       n       -       1       scache',
    'postlog   unix-dgram n  -       n       -       1       postlogd',
  ]
  if (opts.contentFilter) {
    // amavisd-new's README.postfix: the after-queue filter transport.
    lines.push(
      'scan      unix  -       -       n       -       10      smtp',
      '  -o smtp_send_xforward_command=yes',
      '  -o disable_mime_output_conversion=yes',
      '  -o smtp_generic_maps=',
      '  -o smtp_data_done_timeout=1200s',
      '  -o max_use=20',
    )
  }
  if (opts.reinjectPort !== undefined) {
    lines.push(
      `127.0.0.1:${opts.reinjectPort} inet n - n - - smtpd`,
      '  -o content_filter=',
      '  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters',
      '  -o smtpd_milters=',
      '  -o smtpd_helo_restrictions=',
      '  -o smtpd_client_restrictions=',
      '  -o smtpd_sender_restrictions=',
      '  -o smtpd_data_restrictions=',
      '  -o smtpd_end_of_data_restrictions=',
      '  -o smtpd_recipient_restrictions=permit_mynetworks,reject',
      '  -o smtpd_relay_restrictions=permit_mynetworks,reject',
      '  -o mynetworks=127.0.0.0/8',
      '  -o smtpd_authorized_xforward_hosts=127.0.0.0/8',
      '  -o local_header_rewrite_clients=',
      '  -o smtpd_error_sleep_time=0',
      '  -o smtpd_soft_error_limit=1001',
      '  -o smtpd_hard_error_limit=1000',
      '  -o smtpd_client_connection_count_limit=0',
      '  -o smtpd_client_connection_rate_limit=0',
    )
  }
  return `${lines.join('\n')}\n`
}

/** Connects, reads the 220 greeting, says QUIT. Throws when nothing answers 220. */
function probeSmtp(port: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    let buf = ''
    let greeted = false
    let done = false
    const finish = (err?: Error) => {
      if (done) return
      done = true
      socket.destroy()
      if (err) reject(err)
      else resolve()
    }
    socket.setTimeout(timeoutMs, () => finish(new Error(`no SMTP greeting on 127.0.0.1:${port}`)))
    socket.on('error', (err) => finish(greeted ? undefined : err))
    socket.on('close', () =>
      finish(greeted ? undefined : new Error(`connection to 127.0.0.1:${port} closed before a 220 greeting`)),
    )
    socket.on('data', (chunk: Buffer) => {
      if (greeted) return // the 221 reply to QUIT
      buf += chunk.toString('latin1')
      const lines = buf.split('\r\n')
      for (const line of lines.slice(0, -1)) {
        if (line.startsWith('220 ')) {
          greeted = true
          socket.end('QUIT\r\n')
          setTimeout(() => finish(), 500).unref()
          return
        }
        if (!line.startsWith('220-')) {
          finish(new Error(`unexpected greeting on 127.0.0.1:${port}: ${line}`))
          return
        }
      }
    })
  })
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Process state from /proc/PID/stat; undefined when the PID does not exist. */
function procStat(pid: number): { state: string; pgrp: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { state: rest[0] ?? '?', pgrp: Number(rest[2]) }
  } catch {
    return undefined
  }
}

/** A zombie has exited; only its parent (here PID 1, which reaps lazily) still has to collect it. */
export function isProcessAlive(pid: number): boolean {
  const stat = procStat(pid)
  return stat !== undefined && stat.state !== 'Z' && stat.state !== 'X'
}

/** Live (non-zombie) processes in a process group; master(8) runs its children in its own group. */
function processGroupMembers(pgrp: number): number[] {
  const pids: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const pid = Number(entry)
    const stat = procStat(pid)
    if (stat && stat.pgrp === pgrp && stat.state !== 'Z' && stat.state !== 'X') pids.push(pid)
  }
  return pids
}

async function waitUntil(cond: () => boolean, timeoutMs: number, intervalMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (cond()) return true
    await sleep(intervalMs)
  }
  return cond()
}

async function readMaillog(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return ''
    throw err
  }
}

function tail(text: string, lines = 40): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n')
}

async function readMasterPid(spool: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(path.join(spool, 'pid', 'master.pid'), 'latin1')).trim())
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

async function killInstance(bin: Binaries, etc: string, spool: string, knownPid?: number): Promise<void> {
  const pid = knownPid ?? (await readMasterPid(spool))
  await run(bin.postfix, ['-c', etc, 'stop'], 30_000).catch(() => undefined)
  if (pid === undefined) return
  if (!(await waitUntil(() => !isProcessAlive(pid), 10_000))) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone meanwhile
    }
    await waitUntil(() => !isProcessAlive(pid), 5_000)
  }
  // master's children (smtpd, qmgr, ...) share its process group and get SIGTERM from it.
  if (!(await waitUntil(() => processGroupMembers(pid).length === 0, 5_000))) {
    for (const child of processGroupMembers(pid)) {
      try {
        process.kill(child, 'SIGKILL')
      } catch {
        // gone meanwhile
      }
    }
    await waitUntil(() => processGroupMembers(pid).length === 0, 5_000)
  }
  liveMasters.delete(pid)
  if (isProcessAlive(pid)) throw new Error(`Postfix master ${pid} for ${etc} did not exit`)
}

export async function startPostfix(opts: PostfixOptions): Promise<PostfixInstance> {
  assertPort('smtpPort', opts.smtpPort)
  assertPort('relay.port', opts.relay.port)
  assertLoopback('relay.host', opts.relay.host)
  if (opts.contentFilter) {
    assertPort('contentFilter.port', opts.contentFilter.port)
    assertLoopback('contentFilter.host', opts.contentFilter.host)
  }
  if (opts.reinjectPort !== undefined) assertPort('reinjectPort', opts.reinjectPort)
  if (opts.milter !== undefined) assertLoopbackMilter(opts.milter)
  const bin = await locateBinaries()

  // Short path: unix sockets live under spool/private and spool/public (sun_path is 108 bytes).
  const dir = await mkdtemp(path.join(os.tmpdir(), 'msc-pfx-'))
  // Postfix daemons drop to the postfix user and must be able to traverse to their dirs.
  await chmod(dir, 0o755)
  const etc = path.join(dir, 'etc')
  const spool = path.join(dir, 'spool')
  const data = path.join(dir, 'data')
  const maillogPath = path.join(dir, 'maillog')
  const startTimeoutMs = opts.startTimeoutMs ?? 30_000
  let masterPid: number | undefined

  try {
    await mkdir(etc, { mode: 0o755 })
    await mkdir(spool, { mode: 0o755 })
    await mkdir(data, { mode: 0o700 })
    await chmod(etc, 0o755)
    await chmod(spool, 0o755)
    // master(8) takes its lock in data_directory as the mail_owner: it must own it.
    const chown = await run('chown', ['postfix', data])
    if (chown.code !== 0) throw new Error(`chown postfix ${data} failed: ${chown.stderr}`)
    await writeFile(
      path.join(etc, 'main.cf'),
      mainCf({ dir, etc, spool, data, maillog: maillogPath }, opts),
      {
        mode: 0o644,
      },
    )
    await writeFile(path.join(etc, 'master.cf'), masterCf(opts), { mode: 0o644 })
    // Postfix re-reads a config file every 300 ms until its mtime is in the past (a guard against
    // reading a file that is still being written): a fresh main.cf costs ~2 s per command.
    const past = new Date(Date.now() - 60_000)
    await utimes(path.join(etc, 'main.cf'), past, past)
    await utimes(path.join(etc, 'master.cf'), past, past)

    // `postfix check` creates the queue subdirectories with the right owners (postfix, postdrop).
    const check = await run(bin.postfix, ['-c', etc, 'check'], startTimeoutMs)
    if (check.code !== 0) {
      throw new Error(`postfix -c ${etc} check failed (exit ${check.code}):\n${check.stderr}${check.stdout}`)
    }
    installExitHook()
    const start = await run(bin.postfix, ['-c', etc, 'start'], startTimeoutMs)
    masterPid = await readMasterPid(spool)
    if (masterPid !== undefined) liveMasters.add(masterPid)
    if (start.code !== 0 || masterPid === undefined) {
      throw new Error(
        `postfix -c ${etc} start failed (exit ${start.code}):\n${start.stderr}${start.stdout}\n` +
          `maillog tail:\n${tail(await readMaillog(maillogPath))}`,
      )
    }

    const ports = [opts.smtpPort, ...(opts.reinjectPort !== undefined ? [opts.reinjectPort] : [])]
    for (const port of ports) {
      const deadline = Date.now() + startTimeoutMs
      for (;;) {
        try {
          await probeSmtp(port, 2_000)
          break
        } catch (err) {
          if (Date.now() > deadline || !isProcessAlive(masterPid)) {
            throw new Error(
              `Postfix smtpd on 127.0.0.1:${port} did not answer within ${startTimeoutMs} ms ` +
                `(${(err as Error).message}); master ${isProcessAlive(masterPid) ? 'running' : 'gone'}.\n` +
                `maillog tail:\n${tail(await readMaillog(maillogPath))}`,
              { cause: err },
            )
          }
          await sleep(100)
        }
      }
    }
  } catch (err) {
    await killInstance(bin, etc, spool, masterPid).catch(() => undefined)
    if (process.env.MAILSCREEN_KEEP_POSTFIX !== '1') await rm(dir, { recursive: true, force: true })
    throw err
  }

  const pid = masterPid
  let stopping: Promise<void> | undefined
  const instance: PostfixInstance = {
    dir,
    configDir: etc,
    queueDir: spool,
    maillogPath,
    smtpPort: opts.smtpPort,
    reinjectPort: opts.reinjectPort,
    hostname: opts.hostname ?? DEFAULT_HOSTNAME,
    masterPid: pid,
    maillog: () => readMaillog(maillogPath),
    async waitForLog(pattern, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const text = await readMaillog(maillogPath)
        const line = text.split('\n').find((l) => pattern.test(l))
        if (line !== undefined) return line
        if (Date.now() > deadline) {
          throw new Error(`no maillog line matched ${pattern} within ${timeoutMs} ms; tail:\n${tail(text)}`)
        }
        await sleep(100)
      }
    },
    async mailq() {
      const res = await run(bin.postqueue, ['-c', etc, '-j'])
      if (res.code !== 0) throw new Error(`postqueue -c ${etc} -j failed (exit ${res.code}): ${res.stderr}`)
      return res.stdout
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => JSON.parse(line) as PostfixQueueEntry)
    },
    async queueIds() {
      return (await instance.mailq()).map((entry) => entry.queue_id)
    },
    async flush() {
      const res = await run(bin.postqueue, ['-c', etc, '-f'])
      if (res.code !== 0) throw new Error(`postqueue -c ${etc} -f failed (exit ${res.code}): ${res.stderr}`)
    },
    async postconf(name) {
      const res = await run(bin.postconf, ['-c', etc, '-h', name])
      if (res.code !== 0) throw new Error(`postconf -c ${etc} -h ${name} failed: ${res.stderr}`)
      return res.stdout.trim()
    },
    stop() {
      stopping ??= (async () => {
        await killInstance(bin, etc, spool, pid)
        if (process.env.MAILSCREEN_KEEP_POSTFIX !== '1') await rm(dir, { recursive: true, force: true })
      })()
      return stopping
    },
  }
  return instance
}
