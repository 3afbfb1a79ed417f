import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { BenchResult } from '../../src/bench/run.js'
import { runCli } from '../support/mailscreen.js'

describe('mailscreen bench', () => {
  it('measures mailscreen, the durable relay and the bare sink, with latencies and CPU per message', async () => {
    const out = await runCli([
      'bench',
      '--messages',
      '60',
      '--concurrency',
      '4',
      '--warmup',
      '10',
      '--baseline',
      '--json',
    ])
    expect(out.code, out.stderr).toBe(0)
    const result = JSON.parse(out.stdout) as BenchResult
    for (const run of [result.filter, result.relay, result.ceiling]) {
      expect(run).toBeDefined()
      expect(run?.accepted).toBe(60)
      expect(run?.delivered).toBe(60)
      expect(run?.errors).toBe(0)
      expect(run?.deliveredRate).toBeGreaterThan(0)
      expect(run?.acceptMs.p99).toBeGreaterThanOrEqual(run?.acceptMs.p50 ?? Number.NaN)
      expect(run?.cpuMsPerMessage?.machine).toBeGreaterThan(0)
    }
    expect(result.filter.label).toBe('via mailscreen')
    expect(result.relay?.label).toBe('durable relay')
    // Both servers run as processes of their own, measured from /proc; the sink runs in the bench.
    expect(result.filter.cpuMsPerMessage?.server).toBeGreaterThan(0)
    expect(result.relay?.cpuMsPerMessage?.server).toBeGreaterThan(0)
    // Split by thread: mailscreen's main thread works on every message; the relay has no scan workers.
    expect(result.filter.cpuMsPerMessage?.serverThreads?.main).toBeGreaterThan(0)
    expect(result.relay?.cpuMsPerMessage?.serverThreads?.scan).toBe(0)
    expect(result.relay?.cpuMsPerMessage?.serverThreads?.main).toBeGreaterThan(0)
    expect(result.ceiling.cpuMsPerMessage).toBeDefined()
    expect(result.ceiling.cpuMsPerMessage?.server).toBeUndefined()
  })

  it('offers a fixed rate with --rate and says so, without comparing rates', async () => {
    const out = await runCli([
      'bench',
      '--messages',
      '40',
      '--concurrency',
      '4',
      '--warmup',
      '10',
      '--rate',
      '200',
    ])
    expect(out.code, out.stderr).toBe(0)
    expect(out.stdout).toContain('offered 200 msgs/s (open loop), at most 4 connections')
    expect(out.stdout).toContain('accept = when the message was due')
    // Every run goes at the offered rate if it can: a ratio of their rates would mean nothing.
    expect(out.stdout).not.toContain('ceiling / mailscreen')
    const row = out.stdout.split('\n').find((line) => line.startsWith('via mailscreen'))
    const [accepted, delivered] = (row ?? '').split(/\s+/).slice(2, 4).map(Number)
    // 40 messages due over 195 ms: no faster than offered (one message's latency of slack).
    expect(accepted).toBeLessThanOrEqual(250)
    expect(delivered).toBeGreaterThan(0)
  })
})

describe('mailscreen bench when mail goes missing', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailscreen-bench-test-'))
    // Accepted, never delivered: every clean message goes to quarantine.
    await writeFile(join(dir, 'quarantine.yaml'), 'policy:\n  actions:\n    clean: quarantine\n')
    // A plugin that holds each scan 2.5 s: a run with --timeout 1 gives up on most of its mail.
    await writeFile(
      join(dir, 'slow.mjs'),
      `export default { name: 'slow', description: 'holds each scan', symbols: {}, timeoutMs: 60000, onError: 'continue',
  options: { safeParse: (v) => ({ success: true, data: v ?? {} }) },
  setup() { return async () => { await new Promise((r) => setTimeout(r, 2500)); return [] } } }
`,
    )
    await writeFile(join(dir, 'slow.yaml'), 'plugins:\n  - use: ./slow.mjs\n')
  })
  afterAll(() => rm(dir, { recursive: true, force: true }))

  const bench = (config: string, ...more: string[]) =>
    runCli([
      'bench',
      '-n',
      '20',
      '-C',
      '4',
      '--warmup',
      '0',
      '--timeout',
      '1',
      '--config',
      join(dir, config),
      ...more,
    ])

  it('counts accepted mail that never arrived as lost, in the table and the JSON, and exits 1', async () => {
    const json = await bench('quarantine.yaml', '--json')
    expect(json.code).toBe(1)
    expect(json.stderr).toContain('via mailscreen: 0 sends failed, 20 accepted messages not delivered')
    const result = JSON.parse(json.stdout) as BenchResult
    expect(result.filter).toMatchObject({ accepted: 20, delivered: 0, errors: 0, lost: 20, deliveredRate: 0 })
    // No figure per message when there is no message (JSON writes NaN as null).
    expect(result.filter.cpuMsPerMessage?.server ?? null).toBeNull()
    const table = await bench('quarantine.yaml')
    expect(table.code).toBe(1)
    const row = table.stdout.split('\n').find((line) => line.startsWith('via mailscreen')) ?? ''
    expect(row.trim().split(/\s+/).slice(-2)).toEqual(['0', '20'])
    expect(table.stdout).not.toMatch(/Infinity|NaN/)
    expect(table.stdout).not.toContain('ceiling / mailscreen')
  })

  it('does not count what arrives late from one run as the next run’s mail', async () => {
    const out = await bench('slow.yaml', '--rate', '10', '--json')
    const result = JSON.parse(out.stdout) as BenchResult
    expect(result.filter.lost).toBeGreaterThan(0)
    // The ceiling's messages are its own: all there, none arriving before it was sent.
    expect(result.ceiling).toMatchObject({ accepted: 20, delivered: 20, lost: 0 })
    expect(result.ceiling.endToEndMs.p50).toBeGreaterThan(0)
  })
})
