import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { packageRoot } from '../../src/package-root.js'

/** The built CLI, as an administrator runs it. */
export const CLI = join(packageRoot, 'dist', 'src', 'cli', 'main.js')

/** One JSON log line of mailscreen. */
export type LogLine = Record<string, unknown> & { msg: string; level: number }

/** A mailscreen child process with its own temp dir, config and spool. */
export interface MailscreenProcess {
  readonly dir: string
  readonly configFile: string
  readonly spoolDir: string
  readonly port: number
  readonly logs: LogLine[]
  readonly child: ChildProcess
  /** Resolves with the first log line that matches (already seen lines count). */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>
  /** SIGTERM and wait for exit. */
  stop(): Promise<number | null>
  /** SIGKILL and wait for exit (crash test). */
  kill(): Promise<void>
  /** Run a CLI command against this instance's config. */
  cli(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }>
}

/** Run the CLI to completion. */
export function runCli(
  args: readonly string[],
  cwd = packageRoot,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => {
      stdout += d
    })
    child.stderr.on('data', (d) => {
      stderr += d
    })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/**
 * Start `mailscreen start` with a config built from `config` (merged over test defaults:
 * listen on 127.0.0.1:`port`, spool in a temp dir, fast retries). Reuse `dir` to restart an
 * instance on the same spool.
 */
export async function startMailscreen(
  port: number,
  config: Record<string, unknown>,
  reuseDir?: string,
  /** Start it in its directory without `--config`, as `npm start` does: it reads ./mailscreen.yaml. */
  options: { implicitConfig?: boolean } = {},
): Promise<MailscreenProcess> {
  const dir = reuseDir ?? (await mkdtemp(join(tmpdir(), 'mailscreen-it-')))
  const spoolDir = join(dir, 'spool')
  const configFile = join(dir, 'mailscreen.yaml')
  const full = {
    hostname: 'mailscreen.test',
    log: { level: 'info' },
    ...config,
    smtp: { listen: [`127.0.0.1:${port}`], ...(config.smtp as object) },
    spool: { dir: spoolDir, ...(config.spool as object) },
    delivery: { retry: ['1s'], queueRunInterval: '1s', ...(config.delivery as object) },
  }
  await writeFile(configFile, stringify(full))
  const args = options.implicitConfig ? [CLI, 'start'] : [CLI, 'start', '--config', configFile]
  const child = spawn(process.execPath, args, {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const logs: LogLine[] = []
  const watchers: Array<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = []
  let stderr = ''
  let pending = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk
    let eol = pending.indexOf('\n')
    while (eol !== -1) {
      const text = pending.slice(0, eol)
      pending = pending.slice(eol + 1)
      eol = pending.indexOf('\n')
      try {
        const line = JSON.parse(text) as LogLine
        logs.push(line)
        for (const w of [...watchers]) {
          if (w.match(line)) {
            watchers.splice(watchers.indexOf(w), 1)
            w.resolve(line)
          }
        }
      } catch {
        // not JSON: ignore
      }
    }
  })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk
  })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))

  const waitForLog = (match: (line: LogLine) => boolean, timeoutMs = 30_000) => {
    const seen = logs.find(match)
    if (seen) return Promise.resolve(seen)
    return new Promise<LogLine>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new Error(
            `timed out waiting for a log line; stderr: ${stderr.slice(-2000)}; last logs: ${JSON.stringify(logs.slice(-5))}`,
          ),
        )
      }, timeoutMs)
      watchers.push({
        match,
        resolve: (line) => {
          clearTimeout(timer)
          resolve(line)
        },
      })
    })
  }

  const instance: MailscreenProcess = {
    dir,
    configFile,
    spoolDir,
    port,
    logs,
    child,
    waitForLog,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      return exited
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await exited
    },
    cli: (args) => runCli([...args, '--config', configFile], dir),
  }
  try {
    await Promise.race([
      waitForLog((l) => l.msg === 'started'),
      exited.then((code) => {
        throw new Error(`mailscreen exited with ${code} before starting: ${stderr}`)
      }),
    ])
  } catch (err) {
    // The caller never gets the instance, so nothing else would stop it or remove its files.
    await instance.kill()
    if (reuseDir === undefined) await cleanup(dir)
    throw err
  }
  return instance
}

/** Stop a test's mailscreen and sink (either may be absent) and remove the instance's directory. */
export async function stopAll(
  ms: MailscreenProcess | undefined,
  sink: { close(): Promise<void> } | undefined,
): Promise<void> {
  await ms?.stop()
  await sink?.close()
  if (ms) await cleanup(ms.dir)
}

/** Remove a test instance's directory. */
export function cleanup(dir: string): Promise<void> {
  return rm(dir, { recursive: true, force: true })
}
