import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { JOURNAL_DIR, recordAdminAction, takeAdminActions } from '../../src/queue/admin-journal.js'

let dir: string

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailscreen-journal-'))
})

afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('the admin journal', () => {
  it('gives back what was recorded, oldest first, with who and when, once', async () => {
    const before = Date.now()
    await recordAdminAction(dir, { action: 'deleted', qid: 'Q1', was: ['deferred'] })
    await recordAdminAction(dir, { action: 'requeued', qid: 'Q2', was: ['failed'] })
    await recordAdminAction(dir, {
      action: 'released',
      qid: 'Q3',
      was: ['quarantine'],
      detail: { as: 'Q4', to: ['x@example.net'] },
    })
    const { actions, unreadable } = await takeAdminActions(dir)
    expect(unreadable).toEqual([])
    expect(actions.map((a) => [a.action, a.qid, a.was])).toEqual([
      ['deleted', 'Q1', ['deferred']],
      ['requeued', 'Q2', ['failed']],
      ['released', 'Q3', ['quarantine']],
    ])
    expect(actions[2]?.detail).toEqual({ as: 'Q4', to: ['x@example.net'] })
    for (const action of actions) {
      expect(action.user).toBe(userInfo().username)
      expect(action.cliPid).toBe(process.pid)
      expect(action.at).toBeGreaterThanOrEqual(before)
    }
    expect(await readdir(join(dir, JOURNAL_DIR))).toEqual([])
    expect((await takeAdminActions(dir)).actions).toEqual([])
  })

  it('has nothing to give when no action was ever recorded', async () => {
    await expect(takeAdminActions(dir)).resolves.toEqual({ actions: [], unreadable: [] })
  })

  it('names and drops an entry that does not parse, and ignores files still being written', async () => {
    await mkdir(join(dir, JOURNAL_DIR))
    await writeFile(join(dir, JOURNAL_DIR, '000000000000001-1-1.json'), '{"action":"burned","qid":"Q"}')
    await writeFile(join(dir, JOURNAL_DIR, '000000000000002-1-2.json'), 'not json')
    await writeFile(join(dir, JOURNAL_DIR, '.000000000000003-1-3'), '{"action":"deleted"')
    await recordAdminAction(dir, { action: 'deleted', qid: 'Q9', was: ['failed'] })
    const { actions, unreadable } = await takeAdminActions(dir)
    expect(actions.map((a) => a.qid)).toEqual(['Q9'])
    expect(unreadable).toEqual([
      { file: '000000000000001-1-1.json', reason: 'not a journal entry' },
      { file: '000000000000002-1-2.json', reason: 'not a journal entry' },
    ])
    expect(await readdir(join(dir, JOURNAL_DIR))).toEqual(['.000000000000003-1-3'])
  })

  it('names an entry it cannot read and still takes the ones before and after it', async () => {
    await mkdir(join(dir, JOURNAL_DIR, '000000000000002-1-2.json'), { recursive: true })
    const entry = { action: 'deleted', qid: 'Q1', was: ['deferred'], user: 'root', cliPid: 1, at: 1 }
    await writeFile(join(dir, JOURNAL_DIR, '000000000000001-1-1.json'), JSON.stringify(entry))
    await recordAdminAction(dir, { action: 'requeued', qid: 'Q9', was: ['failed'] })
    const { actions, unreadable } = await takeAdminActions(dir)
    expect(actions.map((a) => a.qid)).toEqual(['Q1', 'Q9'])
    expect(unreadable).toEqual([
      { file: '000000000000002-1-2.json', reason: expect.stringMatching(/EISDIR/) },
    ])
  })

  it('keeps the order of actions recorded within one millisecond', async () => {
    const now = vi.spyOn(Date, 'now').mockReturnValue(1_800_000_000_000)
    try {
      const qids = Array.from({ length: 25 }, (_, i) => `Q${i}`)
      for (const qid of qids) await recordAdminAction(dir, { action: 'deleted', qid, was: ['deferred'] })
      expect((await takeAdminActions(dir)).actions.map((a) => a.qid)).toEqual(qids)
    } finally {
      now.mockRestore()
    }
  })
})
