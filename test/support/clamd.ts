/**
 * A private clamd for integration tests.
 *
 * Everything lives in a fresh temp dir: clamd.conf, db/ (signatures), clamd.log, clamd.pid.
 * clamd listens on 127.0.0.1:<port> only (no LocalSocket); the system-wide clamd and its
 * /etc/clamav config are never touched. No signature download is possible here, so the
 * database is written at start: an EICAR hash signature computed at run time (test.hdb),
 * plus the corpus' `clamav-test-sigs.hdb` (../shared/corpus/).
 *
 * Needs the Debian clamav-daemon package (/usr/sbin/clamd, scripts/install-deps.sh).
 * A missing binary is an error, never a skip.
 */
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { copyFile, mkdir, mkdtemp, writeFile } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { CORPUS_DIR } from './corpus.js'
import { startDaemon } from './daemon.js'
import { freePort } from './ports.js'

/** The 68-byte EICAR anti-virus test string. */
export const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
/** The name our test.hdb gives EICAR. */
export const EICAR_NAME = 'Eicar-Test-Signature'

export const CLAMD_BINARY = '/usr/sbin/clamd'
export const CORPUS_SIGS = path.join(CORPUS_DIR, 'clamav-test-sigs.hdb')

export interface ClamdOptions {
  /** How long start may take before failing (default 60 s; loading a tiny DB takes ~1-5 s). */
  startTimeoutMs?: number
  /** Extra clamd.conf lines (`Key value`), written last. */
  extraConfig?: Record<string, string>
  /**
   * The loopback port to listen on (default: a free one). Give a stopped instance's port to
   * bring clamd back where a running client expects it.
   */
  port?: number
}

export interface ClamdInstance {
  readonly dir: string
  readonly host: '127.0.0.1'
  readonly port: number
  readonly pid: number
  readonly logPath: string
  /** The log so far ('' if none yet). */
  log(): Promise<string>
  /** `zPING` → true when clamd answered PONG. */
  ping(timeoutMs?: number): Promise<boolean>
  /** SIGTERM by PID, wait for exit (SIGKILL after 5 s), remove the temp dir unless `keepDir`. */
  stop(keepDir?: boolean): Promise<void>
}

/** Send `z<cmd>\0` and return the reply (without NUL), or reject on any socket error / timeout. */
function clamdCommand(port: number, cmd: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ host: '127.0.0.1', port })
    const chunks: Buffer[] = []
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`clamd ${cmd}: no reply within ${timeoutMs} ms`))
    }, timeoutMs)
    socket.on('connect', () => socket.write(`z${cmd}\0`))
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    socket.on('close', () => {
      clearTimeout(timer)
      resolve(Buffer.concat(chunks).toString('utf8').replace(/\0+$/, '').trim())
    })
  })
}

/** Write the signature DB: EICAR by md5:size, plus the corpus' hash signatures. */
export async function writeSignatures(dbDir: string): Promise<void> {
  await mkdir(dbDir, { recursive: true })
  const eicar = Buffer.from(EICAR, 'latin1')
  const md5 = createHash('md5').update(eicar).digest('hex')
  await writeFile(path.join(dbDir, 'test.hdb'), `${md5}:${eicar.length}:${EICAR_NAME}\n`)
  if (!existsSync(CORPUS_SIGS)) throw new Error(`clamd: corpus signatures missing: ${CORPUS_SIGS}`)
  await copyFile(CORPUS_SIGS, path.join(dbDir, 'clamav-test-sigs.hdb'))
}

/** Start clamd in the foreground on a free loopback port and wait until it answers PING. */
export async function startClamd(options: ClamdOptions = {}): Promise<ClamdInstance> {
  if (!existsSync(CLAMD_BINARY))
    throw new Error(`${CLAMD_BINARY} not found: install clamav-daemon (bash scripts/install-deps.sh)`)
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mailscreen-clamd-'))
  const dbDir = path.join(dir, 'db')
  const logPath = path.join(dir, 'clamd.log')
  const pidPath = path.join(dir, 'clamd.pid')
  const port = options.port ?? (await freePort())
  await writeSignatures(dbDir)
  const user = os.userInfo().username
  const config: Record<string, string> = {
    Foreground: 'yes',
    TCPSocket: String(port),
    TCPAddr: '127.0.0.1',
    DatabaseDirectory: dbDir,
    LogFile: logPath,
    LogTime: 'yes',
    LogVerbose: 'yes',
    PidFile: pidPath,
    TemporaryDirectory: dir,
    User: user,
    MaxThreads: '4',
    ReadTimeout: '30',
    CommandReadTimeout: '10',
    SelfCheck: '0',
    Bytecode: 'no',
    StreamMaxLength: '25M',
    ...options.extraConfig,
  }
  const confPath = path.join(dir, 'clamd.conf')
  await writeFile(
    confPath,
    `${Object.entries(config)
      .map(([k, v]) => `${k} ${v}`)
      .join('\n')}\n`,
  )

  const ping = async (timeoutMs: number) => (await clamdCommand(port, 'PING', timeoutMs)) === 'PONG'
  const daemon = await startDaemon({
    name: 'clamd',
    binary: CLAMD_BINARY,
    args: ['--config-file', confPath],
    dir,
    logPath,
    ready: () => ping(1000),
    startTimeoutMs: options.startTimeoutMs ?? 60_000,
    pollMs: 200,
    killAfterMs: 5000,
  })
  return {
    dir,
    host: '127.0.0.1',
    port,
    pid: daemon.pid,
    logPath,
    log: daemon.log,
    ping: (t = 1000) => ping(t).catch(() => false),
    stop: daemon.stop,
  }
}
