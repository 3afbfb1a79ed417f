import { readFileSync } from 'node:fs'
import { Worker } from 'node:worker_threads'
import { describe, expect, it } from 'vitest'
import { threadsCpuMs } from '../../src/bench/cpu.js'
import { nameThisThread } from '../../src/pipeline/thread-name.js'

// The worker names itself the way scan workers do, burns CPU, then waits to be terminated.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads')
const { readFileSync, writeFileSync } = require('node:fs')
writeFileSync('/proc/thread-self/comm', workerData)
parentPort.postMessage('named')
// Until this thread itself has used 30 ticks (300 ms) of CPU, however loaded the machine is.
const ticks = () => {
  const stat = readFileSync('/proc/thread-self/stat', 'latin1')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12])
}
while (ticks() < 30) for (let i = 0; i < 1e6; i++);
parentPort.postMessage('done')
// Stay alive (a listening port keeps the thread) until terminated: a thread that has exited
// is gone from /proc, and its CPU time with it.
parentPort.on('message', () => undefined)
`

describe('thread names', () => {
  it('a named thread is told apart from the process’s others, with its own CPU time', async () => {
    const worker = new Worker(WORKER, { eval: true, workerData: 'ms-test' })
    const messages: string[] = []
    await new Promise<void>((resolve, reject) => {
      worker.on('message', (m: string) => {
        messages.push(m)
        if (m === 'done') resolve()
      })
      worker.on('error', reject)
    })
    const named = threadsCpuMs(process.pid, (_, name) => name === 'ms-test')
    const none = threadsCpuMs(process.pid, (_, name) => name === 'no-such-thread')
    await worker.terminate()
    expect(messages).toEqual(['named', 'done'])
    // The worker stopped at 300 ms of its own CPU time.
    expect(named).toBeGreaterThanOrEqual(300)
    expect(none).toBe(0)
    expect(threadsCpuMs(process.pid, (tid) => tid === process.pid)).toBeGreaterThan(0)
  })

  it('nameThisThread names the calling thread, and never throws for a name too long', () => {
    const own = readFileSync('/proc/thread-self/comm', 'latin1').trim()
    try {
      nameThisThread('ms-test-self')
      expect(readFileSync('/proc/thread-self/comm', 'latin1')).toBe('ms-test-self\n')
      expect(() => nameThisThread('x'.repeat(64))).not.toThrow()
      // The kernel keeps the first 15 bytes.
      expect(readFileSync('/proc/thread-self/comm', 'latin1')).toBe(`${'x'.repeat(15)}\n`)
    } finally {
      nameThisThread(own)
    }
  })
})
