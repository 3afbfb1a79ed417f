/**
 * A private spamd for integration tests.
 *
 * spamd runs in the foreground on 127.0.0.1:<free port>, local tests only (`--local`: no DNS
 * blocklists, Razor, Pyzor), with its own site config dir in a temp dir: the system's `.pre`
 * files (they load the plugins, including Check, without which spamd cannot scan) plus a
 * local.cf that turns Bayes, auto-whitelisting and network checks off. Rules come from
 * /var/lib/spamassassin/<version> when sa-update has put some there, else from the
 * Debian package's /usr/share/spamassassin. The system-wide spamd is never touched.
 *
 * Needs the Debian spamd package (/usr/sbin/spamd, scripts/install-deps.sh). A missing
 * binary is an error, never a skip.
 */
import { existsSync, readdirSync } from 'node:fs'
import { chmod, copyFile, mkdir, mkdtemp, readdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { ping } from '../../plugins/spamassassin/spamc.js'
import { startDaemon } from './daemon.js'
import { freePort } from './ports.js'

export const SPAMD_BINARY = '/usr/sbin/spamd'
/** Where the Debian package keeps the system `.pre` files and local.cf. */
export const SYSTEM_SITE_CONFIG = '/etc/spamassassin'
/** Rules shipped with the package. */
export const PACKAGE_RULES = '/usr/share/spamassassin'
/** Where sa-update writes updated rules (one directory per version, e.g. 4.000001). */
export const UPDATED_RULES = '/var/lib/spamassassin'

export const LOCAL_CF = `# mailscreen test spamd: local, deterministic checks only
use_bayes 0
bayes_auto_learn 0
skip_rbl_checks 1
ifplugin Mail::SpamAssassin::Plugin::Razor2
use_razor2 0
endif
ifplugin Mail::SpamAssassin::Plugin::Pyzor
use_pyzor 0
endif
ifplugin Mail::SpamAssassin::Plugin::AWL
use_auto_whitelist 0
endif
ifplugin Mail::SpamAssassin::Plugin::TxRep
use_txrep 0
endif
`

export interface SpamdOptions {
  /** How long start may take before failing (default 90 s; spamd usually needs 1-30 s). */
  startTimeoutMs?: number
}

export interface SpamdInstance {
  readonly dir: string
  readonly host: '127.0.0.1'
  readonly port: number
  readonly pid: number
  readonly logPath: string
  /** The log so far ('' if none yet). */
  log(): Promise<string>
  /** `PING` → true when spamd answered PONG. */
  ping(timeoutMs?: number): Promise<boolean>
  /** SIGTERM by PID, wait for exit (SIGKILL after 10 s), remove the temp dir unless `keepDir`. */
  stop(keepDir?: boolean): Promise<void>
}

/** The rules directory to use: the newest sa-update version dir with rules, else the package's. */
export function rulesDir(): string {
  if (existsSync(UPDATED_RULES)) {
    const versions = readdirSync(UPDATED_RULES)
      .filter((d) => /^\d+\.\d+$/.test(d))
      .sort()
      .reverse()
    for (const v of versions) {
      const dir = path.join(UPDATED_RULES, v)
      try {
        // sa-update writes <version>/updates_spamassassin_org.cf plus the channel's directory.
        if (readdirSync(dir).some((f) => f.endsWith('.cf'))) return dir
      } catch {
        // unreadable: ignore
      }
    }
  }
  return PACKAGE_RULES
}

/** Start spamd in the foreground on a free loopback port and wait until it answers PING. */
export async function startSpamd(options: SpamdOptions = {}): Promise<SpamdInstance> {
  if (!existsSync(SPAMD_BINARY))
    throw new Error(`${SPAMD_BINARY} not found: install spamd (bash scripts/install-deps.sh)`)
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mailscreen-spamd-'))
  // Started as root, spamd reads its configuration as `nobody` (it drops privileges for its
  // start-up self-check and per request): mkdtemp's 0700 would hide the .pre files from it.
  await chmod(dir, 0o755)
  const siteDir = path.join(dir, 'site')
  const logPath = path.join(dir, 'spamd.log')
  const pidPath = path.join(dir, 'spamd.pid')
  const port = await freePort()

  // Site config: the system .pre files (plugin loading) and our local.cf, nothing else.
  await mkdir(siteDir, { recursive: true })
  if (existsSync(SYSTEM_SITE_CONFIG)) {
    for (const f of await readdir(SYSTEM_SITE_CONFIG)) {
      if (f.endsWith('.pre')) await copyFile(path.join(SYSTEM_SITE_CONFIG, f), path.join(siteDir, f))
    }
  }
  await writeFile(path.join(siteDir, 'local.cf'), LOCAL_CF)

  const args = [
    '--local',
    `--listen=127.0.0.1:${port}`,
    '--allowed-ips=127.0.0.1',
    '--max-children=2',
    '--min-children=1',
    `--pidfile=${pidPath}`,
    `--siteconfigpath=${siteDir}`,
    `--configpath=${rulesDir()}`,
    `--syslog=${logPath}`,
    '--nouser-config',
  ]
  // No -u: as root spamd setuids per request to the User: sent (or nobody); as another user it
  // simply runs as that user. Both work with the world-readable temp dir above.

  const target = { host: '127.0.0.1', port }
  const daemon = await startDaemon({
    name: 'spamd',
    binary: SPAMD_BINARY,
    args,
    dir,
    logPath,
    ready: () => ping(target, { timeoutMs: 2000 }),
    startTimeoutMs: options.startTimeoutMs ?? 90_000,
    pollMs: 250,
    killAfterMs: 10_000,
  })
  return {
    dir,
    host: '127.0.0.1',
    port,
    pid: daemon.pid,
    logPath,
    log: daemon.log,
    ping: (t = 1000) => ping(target, { timeoutMs: t }),
    stop: daemon.stop,
  }
}
