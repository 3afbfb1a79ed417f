/**
 * The mailscreen under test as a child process, for the benchmark scripts (benchmarks/*.ts):
 * `node dist/src/cli/main.js start --config FILE`, the built CLI as an administrator runs it,
 * with its config file and working directory in a temp dir of its own (`os.tmpdir()`).
 *
 * Unlike test/support/mailscreen.ts, it is handed to the caller's `register` by PID as soon as
 * it runs, before it is ready, so that a start that fails or hangs is stopped too; stopping is
 * by PID, SIGTERM and SIGKILL if it still runs 15 s later, and removes the temp dir. Only the
 * last 4000 characters of its stderr are kept (for errors), and its stdout (the JSON log) is
 * only split into lines, for the caller to pick what it needs: parsing every line would cost
 * the load generator CPU that the benchmarks measure.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { stringify } from 'yaml'
import { waitForGreeting } from '../../src/bench/run.js'
import { CLI } from '../../test/support/mailscreen.js'

const START_TIMEOUT_MS = 60_000
const KILL_AFTER_MS = 15_000
const STDERR_TAIL = 4000

export interface MailscreenChild {
  readonly pid: number
  /** The temp dir: config file (mailscreen.yaml) and working directory. */
  readonly dir: string
  /**
   * SIGTERM by PID, SIGKILL if it still runs 15 s later; resolves once it has exited and its
   * temp dir is removed. Calls after the first get the same promise.
   */
  stop(): Promise<void>
}

export interface MailscreenStart {
  /** The temp dir's name under os.tmpdir(), before the six random characters. */
  readonly tmpPrefix: string
  /** The config to write as DIR/mailscreen.yaml; may also write files of its own into DIR. */
  readonly config: (dir: string) => Record<string, unknown> | Promise<Record<string, unknown>>
  /** The child's environment (default: this process's). */
  readonly env?: NodeJS.ProcessEnv
  /** Every complete line of its stdout (a JSON log line), as text. Without it stdout is not read. */
  readonly onLogLine?: (text: string) => void
  /**
   * When the start is over: once 127.0.0.1:`greeting` greets (the SMTP listener), or once a
   * log line's `msg` is `logged` (e.g. `started`); within 60 s, or it throws.
   */
  readonly ready: { readonly greeting: number } | { readonly logged: string }
  /** Given the child as soon as it runs, before it is ready, so that the caller stops it in any case. */
  readonly register: (child: MailscreenChild) => void
}

/**
 * Start mailscreen as `start` says and wait until it is ready. On an error before it runs
 * the temp dir is removed here; from then on the registered `stop` does that.
 */
export async function startMailscreen(start: MailscreenStart): Promise<MailscreenChild> {
  const dir = await mkdtemp(path.join(os.tmpdir(), start.tmpPrefix))
  const removeDir = () => rm(dir, { recursive: true, force: true })
  const configFile = path.join(dir, 'mailscreen.yaml')
  try {
    await writeFile(configFile, stringify(await start.config(dir)))
  } catch (err) {
    await removeDir()
    throw err
  }
  const awaited = 'logged' in start.ready ? start.ready.logged : undefined
  const readStdout = start.onLogLine !== undefined || awaited !== undefined
  const child = spawn(process.execPath, [CLI, 'start', '--config', configFile], {
    cwd: dir,
    env: start.env,
    stdio: ['ignore', readStdout ? 'pipe' : 'ignore', 'pipe'],
  })
  const pid = child.pid
  if (pid === undefined) {
    // The spawn failed; its 'error' event follows on the next tick and is answered here.
    const failed = new Promise<unknown>((resolve) => child.once('error', resolve))
    await removeDir()
    throw new Error(`mailscreen did not start: ${String(await failed)}`)
  }
  const running = () => child.exitCode === null && child.signalCode === null
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (running()) {
        process.kill(pid, 'SIGTERM')
        const killer = setTimeout(() => {
          if (running()) process.kill(pid, 'SIGKILL')
        }, KILL_AFTER_MS)
        await exited
        clearTimeout(killer)
      }
      await removeDir()
    })()
    return stopping
  }
  const handle: MailscreenChild = { pid, dir, stop }
  start.register(handle)

  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_TAIL)
  })
  let logged = false
  let partial = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n')
    partial = lines.pop() ?? ''
    for (const text of lines) {
      if (awaited !== undefined && !logged && text.includes(`"msg":"${awaited}"`))
        logged = isLogLine(text, awaited)
      start.onLogLine?.(text)
    }
  })

  if ('greeting' in start.ready) {
    await waitForGreeting(start.ready.greeting, START_TIMEOUT_MS, running, (why) =>
      why === 'exited'
        ? new Error(`mailscreen exited during start-up: ${stderr}`)
        : new Error(`mailscreen did not listen within 60 s: ${stderr}`),
    )
    return handle
  }
  const deadline = performance.now() + START_TIMEOUT_MS
  while (!logged) {
    if (!running()) throw new Error(`mailscreen exited during start-up: ${stderr}`)
    if (performance.now() > deadline) throw new Error(`mailscreen did not start within 60 s: ${stderr}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  return handle
}

/** Whether `text` is a JSON log line whose `msg` is `msg`. */
function isLogLine(text: string, msg: string): boolean {
  try {
    return (JSON.parse(text) as { msg?: unknown }).msg === msg
  } catch {
    return false
  }
}
