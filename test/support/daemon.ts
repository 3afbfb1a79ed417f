import { type ChildProcess, spawn } from 'node:child_process'
import { readFile, rm } from 'node:fs/promises'

/** How to run one test daemon (clamd, spamd, ...) in the foreground. */
export interface DaemonSpec {
  /** Names it in errors. */
  readonly name: string
  readonly binary: string
  readonly args: readonly string[]
  /** Its temp dir: removed when start fails, and by stop() unless kept. */
  readonly dir: string
  readonly logPath: string
  /** Resolves true once the daemon answers (a PING); false or a throw means "not yet". */
  readonly ready: () => Promise<boolean>
  readonly startTimeoutMs: number
  readonly pollMs: number
  /** SIGKILL if SIGTERM has not ended it after this long. */
  readonly killAfterMs: number
}

/** A started daemon. */
export interface Daemon {
  readonly pid: number
  /** The log so far ('' if none yet). */
  log(): Promise<string>
  /** SIGTERM by PID, wait for exit (SIGKILL after `killAfterMs`), remove the dir unless `keepDir`. */
  stop(keepDir?: boolean): Promise<void>
}

async function tail(file: string, lines = 40): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

/**
 * Spawn a daemon and wait until `ready()`; on failure (spawn error, early exit, no answer in
 * time) kill it, remove its dir and throw with its arguments, stderr and log tail, so a test
 * fails with the reason instead of skipping.
 */
export async function startDaemon(spec: DaemonSpec): Promise<Daemon> {
  const child: ChildProcess = spawn(spec.binary, spec.args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString('utf8')
  })
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined
  const exit = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal }
      resolve()
    })
  })
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve))
  const pid = child.pid
  const fail = async (why: string): Promise<never> => {
    if (exited === undefined && child.pid !== undefined) {
      child.kill('SIGKILL')
      await exit
    }
    const log = await tail(spec.logPath)
    await rm(spec.dir, { recursive: true, force: true })
    throw new Error(
      `${spec.name}: ${why}\nargs: ${spec.args.join(' ')}\n--- stderr ---\n${stderr.trim().split('\n').slice(-20).join('\n')}\n--- log (tail) ---\n${log}`,
    )
  }
  if (pid === undefined) return fail(`spawn failed: ${(await spawnError).message}`)

  const deadline = Date.now() + spec.startTimeoutMs
  for (;;) {
    if (exited !== undefined)
      return fail(`exited during start (code ${exited.code}, signal ${exited.signal})`)
    if (await spec.ready().catch(() => false)) break
    if (Date.now() > deadline) return fail(`not ready within ${spec.startTimeoutMs} ms`)
    await new Promise((r) => setTimeout(r, spec.pollMs))
  }

  let stopped = false
  return {
    pid,
    log: () => readFile(spec.logPath, 'utf8').catch(() => ''),
    async stop(keepDir = false) {
      if (!stopped) {
        stopped = true
        if (exited === undefined) {
          process.kill(pid, 'SIGTERM')
          const killer = setTimeout(() => {
            if (exited === undefined) process.kill(pid, 'SIGKILL')
          }, spec.killAfterMs)
          await exit
          clearTimeout(killer)
        }
      }
      if (!keepDir) await rm(spec.dir, { recursive: true, force: true })
    },
  }
}
