import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  PID_FILE,
  processStartTime,
  recordedOwner,
  spoolOwner,
  writePidFile,
} from '../../src/queue/pid-file.js'

let dir: string
let other: ChildProcess

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailscreen-pid-'))
  // Another live process: what a crashed mailscreen's PID may belong to later.
  other = spawn('sleep', ['30'], { stdio: 'ignore' })
  await once(other, 'spawn')
})

afterEach(async () => {
  other.kill('SIGKILL')
  await rm(dir, { recursive: true, force: true })
})

describe('the spool PID file', () => {
  it('records the PID and the start time of the process that writes it', async () => {
    await writePidFile(dir)
    const start = processStartTime('self')
    expect(start).toMatch(/^\d+$/)
    expect(await recordedOwner(dir)).toEqual({ pid: process.pid, startTime: start })
    // Its writer does not count as another mailscreen on the spool.
    expect(await spoolOwner(dir)).toBeUndefined()
  })

  it('names a live owner whose start time matches, and one recorded without a start time', async () => {
    const pid = other.pid as number
    await writeFile(join(dir, PID_FILE), `${pid}\n${processStartTime(pid)}\n`)
    expect(await spoolOwner(dir)).toBe(pid)
    await writeFile(join(dir, PID_FILE), `${pid}\n`)
    expect(await spoolOwner(dir)).toBe(pid)
  })

  it('does not take a process that got the PID later for the owner', async () => {
    const pid = other.pid as number
    const started = Number(processStartTime(pid))
    await writeFile(join(dir, PID_FILE), `${pid}\n${started - 1}\n`)
    expect(await recordedOwner(dir)).toEqual({ pid, startTime: String(started - 1) })
    expect(await spoolOwner(dir)).toBeUndefined()
  })

  it('has no owner when the recorded process is gone or the file is missing', async () => {
    expect(await spoolOwner(dir)).toBeUndefined()
    const pid = other.pid as number
    await writeFile(join(dir, PID_FILE), `${pid}\n${processStartTime(pid)}\n`)
    other.kill('SIGKILL')
    await once(other, 'exit')
    expect(await spoolOwner(dir)).toBeUndefined()
  })
})
