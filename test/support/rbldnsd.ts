/**
 * A private rbldnsd for integration tests of the dnsbl plugin.
 *
 * Everything lives in a fresh temp dir: the zone data (an ip4set and an ip6trie dataset with
 * TXT templates, both served as one zone) and the query log. rbldnsd runs in the foreground
 * (`-n`) on 127.0.0.1 and a free UDP port; readiness = it answers a DNS query. rbldnsd
 * refuses to run as root, so as root it is told to switch to the `rbldns` user (created by
 * the Debian package; `nobody` otherwise), and the dir and files are made readable for it.
 *
 * Needs the Debian rbldnsd package (/usr/sbin/rbldnsd, scripts/install-deps.sh).
 * A missing binary is an error, never a skip.
 */
import dgram from 'node:dgram'
import { Resolver } from 'node:dns/promises'
import { existsSync, readFileSync } from 'node:fs'
import { chmod, mkdtemp, readFile, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { startDaemon } from './daemon.js'

export const RBLDNSD_BINARY = '/usr/sbin/rbldnsd'

/** The zone our rbldnsd serves. */
export const RBL_ZONE = 'bl.example.test'

/** Seconds of TTL on every answer. */
export const RBL_TTL = 300

/** Addresses in the test data and what rbldnsd answers for them. */
export const RBL = {
  /** 127.0.0.2, default TXT template. */
  spam: '192.0.2.2',
  /** 127.0.0.4 and 127.0.0.2 (two entries), two TXT texts. */
  exploited: '192.0.2.4',
  /** 127.0.0.10, a policy listing. */
  policy: '192.0.2.10',
  /** 127.255.255.254: Spamhaus' "query refused" code. */
  refused: '192.0.2.254',
  /** Not in the data: NXDOMAIN. */
  unlisted: '192.0.2.99',
  /** IPv6, 127.0.0.4. */
  v6: '2001:db8::bad',
  /** In a listed IPv6 /48, default IPv6 template (127.0.0.3). */
  v6net: '2001:db8:1:2::3',
} as const

/** The TXT texts rbldnsd gives (its templates with `$` filled in). */
export const RBL_TXT = {
  spam: `Listed: see https://bl.example.test/lookup?ip=${RBL.spam}`,
  exploited: `Exploited host ${RBL.exploited}`,
  exploitedSpam: 'Also a spam source',
  policy: `Policy block ${RBL.policy}`,
  v6: `Bad IPv6 host ${RBL.v6}`,
  v6net: `IPv6 network listed: ${RBL.v6net}`,
} as const

const IP4SET = `# dnsbl integration tests: ip4set
$SOA 0 ns.${RBL_ZONE} hostmaster.example.test 0 1h 1h 1w 60
$TTL ${RBL_TTL}
:127.0.0.2:Listed: see https://${RBL_ZONE}/lookup?ip=$
# RFC 5782 test entry (what the breaker's probe asks for)
127.0.0.2
${RBL.spam}
${RBL.exploited} :127.0.0.4:Exploited host $
${RBL.exploited} :127.0.0.2:${RBL_TXT.exploitedSpam}
${RBL.policy} :127.0.0.10:Policy block $
${RBL.refused} :127.255.255.254:Query refused
`

const IP6TRIE = `# dnsbl integration tests: ip6trie
$TTL ${RBL_TTL}
:127.0.0.3:IPv6 network listed: $
${RBL.v6} :127.0.0.4:Bad IPv6 host $
2001:db8:1::/48
`

export interface RbldnsdInstance {
  readonly dir: string
  readonly host: '127.0.0.1'
  readonly port: number
  /** `127.0.0.1:<port>`, as the plugin's `servers` take it. */
  readonly server: string
  readonly pid: number
  /** Query log lines so far (`<time> <peer> <name> <type> IN: <result>`). */
  queries(): Promise<string[]>
  /** SIGTERM by PID, wait for exit, remove the temp dir unless `keepDir`. */
  stop(keepDir?: boolean): Promise<void>
}

/**
 * A UDP port that was free on 127.0.0.1 a moment ago. rbldnsd speaks UDP only, and a port
 * free for TCP (test/support/ports.ts) may be taken for UDP, so bind a UDP socket instead.
 */
export function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket('udp4')
    socket.once('error', reject)
    socket.bind({ address: '127.0.0.1', port: 0, exclusive: true }, () => {
      const { port } = socket.address()
      socket.close(() => resolve(port))
    })
  })
}

/** The user rbldnsd switches to when we are root. */
function daemonUser(): string {
  const passwd = readFileSync('/etc/passwd', 'utf8')
  return /^rbldns:/m.test(passwd) ? 'rbldns' : 'nobody'
}

/** Start rbldnsd in the foreground on a free loopback UDP port and wait until it answers. */
export async function startRbldnsd(options: { startTimeoutMs?: number } = {}): Promise<RbldnsdInstance> {
  if (!existsSync(RBLDNSD_BINARY))
    throw new Error(`${RBLDNSD_BINARY} not found: install rbldnsd (bash scripts/install-deps.sh)`)
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mailscreen-rbldnsd-'))
  const ip4 = path.join(dir, 'ip4set')
  const ip6 = path.join(dir, 'ip6trie')
  const logPath = path.join(dir, 'queries.log')
  await writeFile(ip4, IP4SET)
  await writeFile(ip6, IP6TRIE)
  // Created here, so that rbldnsd (after dropping root) can append to it.
  await writeFile(logPath, '')
  await chmod(dir, 0o755)
  await Promise.all([chmod(ip4, 0o644), chmod(ip6, 0o644), chmod(logPath, 0o666)])
  const port = await freeUdpPort()
  const user = process.getuid?.() === 0 ? ['-u', daemonUser()] : []

  const ready = async () => {
    const resolver = new Resolver({ timeout: 300, tries: 1 })
    resolver.setServers([`127.0.0.1:${port}`])
    const answer = await resolver.resolve4(`2.0.0.127.${RBL_ZONE}`)
    return answer.includes('127.0.0.2')
  }
  const daemon = await startDaemon({
    name: 'rbldnsd',
    binary: RBLDNSD_BINARY,
    // -n foreground, -l + unbuffered query log, -c 0 no reload checks, -t the TTL of answers.
    args: [
      '-n',
      ...user,
      '-b',
      `127.0.0.1/${port}`,
      '-l',
      `+${logPath}`,
      '-c',
      '0',
      '-t',
      String(RBL_TTL),
      `${RBL_ZONE}:ip4set:${ip4}`,
      `${RBL_ZONE}:ip6trie:${ip6}`,
    ],
    dir,
    logPath,
    ready,
    startTimeoutMs: options.startTimeoutMs ?? 10_000,
    pollMs: 100,
    killAfterMs: 3000,
  })
  return {
    dir,
    host: '127.0.0.1',
    port,
    server: `127.0.0.1:${port}`,
    pid: daemon.pid,
    queries: async () =>
      (await readFile(logPath, 'utf8').catch(() => '')).split('\n').filter((line) => line !== ''),
    stop: daemon.stop,
  }
}
