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
})
