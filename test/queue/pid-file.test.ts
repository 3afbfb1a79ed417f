import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { packageRoot } from '../../src/package-root.js'
import {
  claimPidFile,
  PID_FILE,
  processStartTime,
  recordedOwner,
  spoolOwner,
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
    expect(await claimPidFile(dir)).toBeUndefined()
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
  it('is not taken from a live owner, and is taken over from a crashed one', async () => {
    const pid = other.pid as number
    const live = `${pid}\n${processStartTime(pid)}\n`
    await writeFile(join(dir, PID_FILE), live)
    expect(await claimPidFile(dir)).toBe(pid)
    expect(await readFile(join(dir, PID_FILE), 'utf8')).toBe(live)
    other.kill('SIGKILL')
    await once(other, 'exit')
    expect(await claimPidFile(dir)).toBeUndefined()
    expect((await recordedOwner(dir))?.pid).toBe(process.pid)
    // Nothing of the claim is left beside it.
    expect((await readdir(dir)).sort()).toEqual([PID_FILE])
  })

  it('goes to exactly one of several processes that start at the same moment', async () => {
    // A crashed owner's file too: the takeover must be as exclusive as the first claim.
    await writeFile(join(dir, PID_FILE), '999999999\n1\n')
    const claimer = join(dir, 'claim.mjs')
    const module = pathToFileURL(join(packageRoot, 'dist/src/queue/pid-file.js')).href
    await writeFile(
      claimer,
      `import { claimPidFile } from '${module}'
const at = Number(process.argv[2])
while (Date.now() < at);
const other = await claimPidFile(process.argv[3])
process.stdout.write(other === undefined ? 'won' : 'lost')
setTimeout(() => {}, 1500)
`,
    )
    const at = Date.now() + 1_000
    const outcomes = await Promise.all(
      Array.from({ length: 6 }, async () => {
        const child = spawn(process.execPath, [claimer, String(at), dir], {
          stdio: ['ignore', 'pipe', 'inherit'],
        })
        let out = ''
        child.stdout?.on('data', (chunk: Buffer) => {
          out += chunk.toString()
        })
        await once(child, 'exit')
        return out
      }),
    )
    expect(outcomes.filter((o) => o === 'won')).toHaveLength(1)
    expect(outcomes.filter((o) => o === 'lost')).toHaveLength(5)
  })
})
