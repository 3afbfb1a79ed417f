import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { listQuarantine, releaseFromQuarantine } from '../../src/cli/quarantine.js'
import { formatQueue, listQueue } from '../../src/cli/queue.js'
import { newQueueId, type QueueId } from '../../src/queue/ids.js'
import { PID_FILE, processStartTime } from '../../src/queue/pid-file.js'
import { Spool } from '../../src/queue/spool.js'
import { cleanup, runCli } from '../support/mailscreen.js'

let dir: string
let configFile: string
let spool: Spool

function message(tag: string): Buffer {
  return Buffer.from(
    `From: a@example.org\r\nTo: b@example.net\r\nSubject: ${tag}\r\nDate: Mon, 23 Nov 2026 20:00:00 +0000\r\nMessage-ID: <${tag}@example.org>\r\n\r\nhello\r\n`,
  )
}

async function queue(
  state: 'incoming' | 'deferred',
  from: string,
  to: string[],
  tag: string,
  id: QueueId = newQueueId(),
): Promise<QueueId> {
  const client = { address: '127.0.0.1' }
  await spool.create(
    state,
    {
      v: 1,
      id,
      envelope: { mailFrom: from, rcptTo: to, client, peer: client, receivedAt: Date.now() - 90_000 },
    },
    message(tag),
  )
  return id
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailscreen-cli-queue-'))
  configFile = join(dir, 'mailscreen.yaml')
  await writeFile(configFile, stringify({ spool: { dir: './spool' } }))
  spool = new Spool(join(dir, 'spool'), false)
  await spool.init()
})

afterAll(async () => {
  await cleanup(dir)
})

describe('listQueue with files that are not what their names say', () => {
  it('shows an unreadable file as such and the rest of the queue as usual', async () => {
    const good = await queue('incoming', 'x@example.org', ['y@example.net'], 'readable')
    const broken = newQueueId()
    await writeFile(spool.path('incoming', broken), '')
    const rows = await listQueue(spool)
    expect(rows.find((r) => r.id === good)).toMatchObject({ state: 'incoming', from: 'x@example.org' })
    expect(rows.find((r) => r.id === broken)).toMatchObject({
      state: 'incoming',
      size: 0,
      problem: expect.stringContaining(`incoming/${broken}`),
    })
    expect(formatQueue(rows)).toContain(`(unreadable: incoming/${broken}`)
    await rm(spool.path('incoming', broken))
    await rm(spool.path('incoming', good))
  })

  it('shows an unreadable quarantined file as such beside the others', async () => {
    const held = await queue('incoming', 'x@example.org', ['y@example.net'], 'held')
    await spool.move(held, 'incoming', 'quarantine')
    const broken = newQueueId()
    await writeFile(spool.path('quarantine', broken), 'not a spool file')
    const rows = await listQuarantine(spool)
    expect(rows.find((r) => r.id === held)).toMatchObject({ from: 'x@example.org' })
    expect(rows.find((r) => r.id === broken)).toMatchObject({ verdict: 'unreadable' })
    await rm(spool.path('quarantine', broken))
    await rm(spool.path('quarantine', held))
  })

  it('releases a quarantined message once when two releases race: the other is told it is gone', async () => {
    const held = await queue('incoming', 'x@example.org', ['y@example.net'], 'raced')
    await spool.move(held, 'incoming', 'quarantine')
    const before = await spool.list('deferred')
    const outcomes = await Promise.allSettled([
      releaseFromQuarantine(spool, held),
      releaseFromQuarantine(spool, held),
    ])
    expect(outcomes.map((o) => o.status).sort()).toEqual(['fulfilled', 'rejected'])
    expect(outcomes.find((o) => o.status === 'rejected')).toMatchObject({
      reason: { code: 'MSC_NOT_FOUND' },
    })
    const released = (await spool.list('deferred')).filter((id) => !before.includes(id))
    expect(released).toHaveLength(1)
    expect(await spool.list('quarantine')).not.toContain(held)
    for (const id of released) await spool.discard('deferred', id)
  })

  it('releases the original less the verdict fields a sender could forge, and says where it came from', async () => {
    const id = newQueueId()
    const client = { address: '127.0.0.1' }
    const body = 'hello\r\nX-Spam-Flag: YES in the body stays\r\n'
    const forgedRelease =
      'X-mailscreen-Released: from quarantine id 0000000000000000; Mon, 1 Jan 2024 00:00:00 +0000'
    const original = `X-Spam-Flag: YES\r\n${forgedRelease}\r\nX-mailscreen-Verdict: spam, forged\r\nSubject: wanted\r\n\r\n${body}`
    await spool.create(
      'quarantine',
      {
        v: 1,
        id,
        envelope: {
          mailFrom: 'x@example.org',
          rcptTo: ['y@example.net'],
          client,
          peer: client,
          receivedAt: 0,
        },
      },
      Buffer.from(original),
    )
    const releasedId = await releaseFromQuarantine(spool, id)
    const { message } = await spool.read('deferred', releasedId)
    const text = message.toString()
    expect(text).toMatch(
      new RegExp(`^X-mailscreen-Released: from quarantine id ${id}; [\\s\\S]*?\r\nSubject: wanted\r\n\r\n`),
    )
    expect(text.endsWith(`\r\n\r\n${body}`)).toBe(true)
    // Ours only: the sender's own "released" field went with the other forged ones.
    expect(text.match(/^X-mailscreen-Released:/gm)).toHaveLength(1)
    expect(text).not.toContain('0000000000000000')
    await spool.discard('deferred', releasedId)
  })

  it('puts a message back in quarantine when its release cannot be written', async () => {
    const held = await queue('incoming', 'x@example.org', ['y@example.net'], 'unwritten')
    await spool.move(held, 'incoming', 'quarantine')
    const deferredBefore = await spool.list('deferred')
    const stage = spool.stage.bind(spool)
    spool.stage = () => Promise.reject(Object.assign(new Error('ENOSPC: no space left'), { code: 'ENOSPC' }))
    try {
      await expect(releaseFromQuarantine(spool, held)).rejects.toThrow(/ENOSPC/)
    } finally {
      spool.stage = stage
    }
    expect(await spool.list('quarantine')).toContain(held)
    expect(await spool.list('deferred')).toEqual(deferredBefore)
    await spool.discard('quarantine', held)
  })

  it('skips a file that holds another message (a spent file reused as it was read)', async () => {
    const real = await queue('incoming', 'x@example.org', ['y@example.net'], 'real')
    const stale = newQueueId()
    await copyFile(spool.path('incoming', real), spool.path('incoming', stale))
    const ids = (await listQueue(spool)).map((r) => r.id)
    expect(ids).toContain(real)
    expect(ids).not.toContain(stale)
    await rm(spool.path('incoming', stale))
    await rm(spool.path('incoming', real))
  })
})

describe('mailscreen queue list', () => {
  it('says so when the queue is empty', async () => {
    const out = await runCli(['queue', 'list', '--config', configFile], dir)
    expect(out.code, out.stderr).toBe(0)
    expect(out.stdout).toBe('Mail queue is empty\n')
    const json = await runCli(['queue', 'list', '--json', '--config', configFile], dir)
    expect(JSON.parse(json.stdout)).toEqual([])
  })

  it('lists ID, state, sender, recipients and the last error; --json has the same as objects', async () => {
    const waiting = await queue('incoming', 'alice@example.org', ['bob@example.net'], 'waiting')
    const deferred = await queue(
      'deferred',
      'carol@example.org',
      ['dave@example.net', 'erin@example.net', 'done@example.net'],
      'deferred',
    )
    const next = Date.now() + 3_600_000
    // done@ already had its final answer: only the pending recipients are listed.
    await spool.writeRetry(deferred, {
      phase: 'deliver',
      attempts: 2,
      nextAttemptAt: next,
      pending: ['dave@example.net', 'erin@example.net'],
      lastError: '451 4.3.0 try again later',
    })

    const out = await runCli(['queue', 'list', '--config', configFile], dir)
    expect(out.code, out.stderr).toBe(0)
    const lines = out.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^ID\s+STATE\s+AGE\s+SIZE\s+SENDER$/)
    // Oldest first: the incoming message was queued first.
    expect(lines[1]).toMatch(new RegExp(`^${waiting} +incoming +(8\\d|9\\d)s +\\d+ +<alice@example\\.org>$`))
    expect(lines[2]).toBe('    bob@example.net')
    expect(lines[3]).toMatch(new RegExp(`^${deferred} +deferred +\\d+s +\\d+ +<carol@example\\.org>$`))
    expect(lines[4]).toBe(
      `    (delivery: 451 4.3.0 try again later; attempts 2, next ${new Date(next).toISOString()})`,
    )
    expect(lines.slice(5, 7)).toEqual(['    dave@example.net', '    erin@example.net'])
    expect(out.stdout).not.toContain('done@example.net')
    expect(lines[7]).toMatch(/^-- \d+ Kbytes in 2 Requests\.$/)
    expect(lines).toHaveLength(8)

    const json = await runCli(['queue', 'list', '--json', '--config', configFile], dir)
    expect(json.code, json.stderr).toBe(0)
    const rows = JSON.parse(json.stdout) as Array<Record<string, unknown>>
    expect(rows).toHaveLength(2)
    expect(rows[0]).toMatchObject({
      id: waiting,
      state: 'incoming',
      messageId: '<waiting@example.org>',
      from: 'alice@example.org',
      to: ['bob@example.net'],
      attempts: 0,
      lastError: null,
      nextAttempt: null,
      phase: null,
    })
    expect(rows[1]).toMatchObject({
      id: deferred,
      state: 'deferred',
      messageId: '<deferred@example.org>',
      from: 'carol@example.org',
      to: ['dave@example.net', 'erin@example.net'],
      attempts: 2,
      lastError: '451 4.3.0 try again later',
      nextAttempt: new Date(next).toISOString(),
      phase: 'deliver',
    })
    for (const row of rows) {
      expect(typeof row.size).toBe('number')
      expect(row.size).toBeGreaterThan(0)
      expect(row.ageSeconds).toBeGreaterThanOrEqual(90)
    }
  })

  it('lists oldest first by queue ID in byte order, where "Z" comes before "d"', async () => {
    // The first 7 characters are the arrival time: ...DYZ... was queued before ...DYd....
    const older = 'VcufDYZ0004xv5LL' as QueueId
    const newer = 'VcufDYd000fi4QhP' as QueueId
    await queue('incoming', 'x@example.org', ['y@example.net'], 'newer', newer)
    await queue('incoming', 'x@example.org', ['y@example.net'], 'older', older)
    const json = await runCli(['queue', 'list', '--json', '--config', configFile], dir)
    const ids = (JSON.parse(json.stdout) as Array<{ id: string }>).map((r) => r.id)
    expect(ids.filter((id) => id === older || id === newer)).toEqual([older, newer])
  })

  it('queue flush without a running mailscreen exits non-zero with MSC_NOT_RUNNING', async () => {
    const out = await runCli(['queue', 'flush', '--config', configFile], dir)
    expect(out.code).not.toBe(0)
    expect(out.code).not.toBeNull()
    expect(out.stderr).toContain('MSC_NOT_RUNNING')
  })

  it('queue flush never signals a process that got a crashed mailscreen’s PID', async () => {
    const other = spawn('sleep', ['30'], { stdio: 'ignore' })
    await once(other, 'spawn')
    const pid = other.pid as number
    try {
      // The PID of a crashed mailscreen, now another process's: its start time tells them apart.
      await writeFile(
        join(dir, 'spool', PID_FILE),
        `${pid}
${Number(processStartTime(pid)) - 1}
`,
      )
      const out = await runCli(['queue', 'flush', '--config', configFile], dir)
      expect(out.code).not.toBe(0)
      expect(out.stderr).toContain(`stale ${PID_FILE}: pid ${pid}`)
      // SIGUSR1 would have ended it.
      const ended = await Promise.race([
        once(other, 'exit').then(() => true),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 500)),
      ])
      expect(ended).toBe(false)
    } finally {
      other.kill('SIGKILL')
      await rm(join(dir, 'spool', PID_FILE), { force: true })
    }
  })
})
