import { execFileSync } from 'node:child_process'
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { newQueueId } from '../../src/queue/ids.js'
import { Spool } from '../../src/queue/spool.js'
import { SPOOL_FORMAT } from '../../src/queue/spool-file.js'
import { runCli } from '../support/mailscreen.js'

/** The account a spool belongs to here: not root, so that root's CLI has to step down to it. */
const NOBODY = { uid: 65534, gid: 65534 }

let dir: string

beforeEach(async () => {
  if (process.getuid?.() !== 0) throw new Error('this test runs the CLI as root (CI does): run it as root')
  dir = await mkdtemp(join(tmpdir(), 'mailscreen-owner-'))
  // The spool's owner must be able to reach it.
  await chmod(dir, 0o755)
})

afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** A spool (root's) in the temp dir holding one message in failed/, and a config naming it. */
async function failedMessage(): Promise<{ spoolDir: string; id: string; configFile: string }> {
  const spoolDir = join(dir, 'spool')
  const spool = new Spool(spoolDir)
  await spool.init()
  const id = newQueueId()
  const envelope = {
    mailFrom: 'a@example.org',
    rcptTo: ['b@example.net'],
    client: { address: '192.0.2.1' },
    peer: { address: '127.0.0.1' },
    receivedAt: Date.now(),
  }
  await spool.create('failed', { v: SPOOL_FORMAT, id, envelope }, Buffer.from('Subject: x\r\n\r\nbody\r\n'))
  const configFile = join(dir, 'mailscreen.yaml')
  await writeFile(configFile, stringify({ spool: { dir: spoolDir } }))
  return { spoolDir, id, configFile }
}

describe('a spool-changing command run as root', () => {
  it("writes what it leaves in another user's spool as that user", async () => {
    const { spoolDir, id, configFile } = await failedMessage()
    execFileSync('chown', ['-R', `${NOBODY.uid}:${NOBODY.gid}`, spoolDir])

    const out = await runCli(['queue', 'requeue', id, '--config', configFile])
    expect(out.code, out.stderr).toBe(0)
    expect(out.stdout).toContain(`${id} requeued for a new scan`)

    // The retry state it wrote, the message it moved and its admin journal entry: all nobody's.
    const retry = await stat(join(spoolDir, 'deferred', `${id}.retry`))
    expect([retry.uid, retry.gid]).toEqual([NOBODY.uid, NOBODY.gid])
    expect((await stat(join(spoolDir, 'deferred', id))).uid).toBe(NOBODY.uid)
    const journal = await readdir(join(spoolDir, 'admin'))
    expect(journal).toHaveLength(1)
    const entry = await stat(join(spoolDir, 'admin', journal[0] as string))
    expect([entry.uid, entry.gid]).toEqual([NOBODY.uid, NOBODY.gid])
    expect((await stat(join(spoolDir, 'admin'))).uid).toBe(NOBODY.uid)
    // Who did it is the one who ran it (root), not the account it went on as.
    const recorded = JSON.parse(await readFile(join(spoolDir, 'admin', journal[0] as string), 'utf8'))
    expect(recorded.user).toMatch(/^root( \(sudo: .+\))?$/)
  })

  it("steps down to the daemon's user also when the spool directory itself is root's (Postfix's layout)", async () => {
    const { spoolDir, id, configFile } = await failedMessage()
    // Root keeps the top directory; the daemon owns what is inside, where it writes.
    for (const name of await readdir(spoolDir))
      execFileSync('chown', ['-R', `${NOBODY.uid}:${NOBODY.gid}`, join(spoolDir, name)])
    const out = await runCli(['queue', 'requeue', id, '--config', configFile])
    expect(out.code, out.stderr).toBe(0)
    expect((await stat(join(spoolDir, 'deferred', `${id}.retry`))).uid).toBe(NOBODY.uid)
    expect((await stat(join(spoolDir, 'deferred', id))).uid).toBe(NOBODY.uid)
  })

  it("stays root in root's own spool", async () => {
    const { spoolDir, id, configFile } = await failedMessage()
    const out = await runCli(['queue', 'requeue', id, '--config', configFile])
    expect(out.code, out.stderr).toBe(0)
    expect((await stat(join(spoolDir, 'deferred', `${id}.retry`))).uid).toBe(0)
  })
})
