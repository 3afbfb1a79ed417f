import { describe, expect, it } from 'vitest'
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
