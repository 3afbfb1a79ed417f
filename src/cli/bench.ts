import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { type Command, InvalidArgumentError } from 'commander'
import { parse as parseYaml } from 'yaml'
import { formatBench, runBench } from '../bench/run.js'
import { DEFAULT_CONFIG_FILE } from '../config/load.js'
import { packageRoot } from '../package-root.js'
import { fail, withConfig } from './common.js'

function positiveInt(value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive integer')
  return n
}

interface BenchCliOptions {
  config?: string
  messages: number
  concurrency: number
  size: number
  reuse?: boolean
  rate?: number
  json?: boolean
  timeout: number
  warmup: number
  baseline?: boolean
}

/** `mailscreen bench`: load through a mailscreen it starts into a sink it starts, vs the sink alone. */
export function registerBench(program: Command): void {
  withConfig(program.command('bench'))
    .description(
      'start a sink and a mailscreen relaying to it (plugins etc. from --config), push mail through it over SMTP, then straight into the sink; print msgs/s and latency percentiles',
    )
    .option('-n, --messages <n>', 'messages per run', positiveInt, 2000)
    .option('-C, --concurrency <n>', 'concurrent SMTP clients', positiveInt, 50)
    .option('-s, --size <bytes>', 'message size', positiveInt, 10_240)
    .option(
      '--reuse',
      'send all of a client’s messages over one connection (default: one message per connection)',
    )
    .option(
      '--rate <msgs/s>',
      'open loop: offer this many messages a second, each sent when due whether or not earlier ones were answered (at most --concurrency at once), latencies counted from when it was due (default: a closed loop, each client sending its next message once its last was answered)',
      positiveInt,
    )
    .option(
      '--warmup <n>',
      'messages sent through each server first and not counted: a fresh process spends the first several thousand compiling its hot code (see benchmarks/RESULTS.md)',
      (v) => (v === '0' ? 0 : positiveInt(v)),
      10_000,
    )
    .option('--timeout <seconds>', 'how long to wait for deliveries after the last send', positiveInt, 120)
    .option(
      '--baseline',
      'also measure a minimal durable relay (fsync each message, forward it, nothing else): what any durable filter pays on this machine',
    )
    .option('--json', 'print the figures as JSON')
    .action(async (options: BenchCliOptions) => {
      try {
        // The same file `mailscreen start` would read: --config, else ./mailscreen.yaml if present.
        const file = options.config ?? (existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : undefined)
        const config = file
          ? ((parseYaml(await readFile(file, 'utf8')) ?? {}) as Record<string, unknown>)
          : {}
        const benchOptions = {
          ...(file ? { configDir: dirname(resolve(file)) } : {}),
          messages: options.messages,
          concurrency: options.concurrency,
          size: options.size,
          reuse: options.reuse === true,
          ...(options.rate !== undefined ? { rate: options.rate } : {}),
          config,
          cli: join(packageRoot, 'dist', 'src', 'cli', 'main.js'),
          timeoutMs: options.timeout * 1000,
          warmup: options.warmup,
          baseline: options.baseline === true,
        }
        const result = await runBench(benchOptions)
        process.stdout.write(
          options.json ? `${JSON.stringify(result, null, 2)}\n` : formatBench(result, benchOptions),
        )
        // Figures from a run that failed sends or lost mail are not figures: say so, and exit 1.
        const failed = [result.filter, result.relay, result.ceiling].filter(
          (run) => run !== undefined && (run.errors > 0 || run.lost > 0),
        )
        for (const run of failed)
          process.stderr.write(
            `mailscreen bench: ${run?.label}: ${run?.errors} sends failed, ${run?.lost} accepted messages not delivered\n`,
          )
        if (failed.length > 0) process.exitCode = 1
      } catch (err) {
        fail(err)
      }
    })
}
