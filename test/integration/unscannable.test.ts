/**
 * A message whose scan keeps tempfailing is unscannable once its queue lifetime is over:
 * its last scan applies `policy.actions.unscannable` (default: quarantine), never a silent
 * drop and never delivery as clean.
 */
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { packageRoot } from '../../src/package-root.js'
import { cliJson, send, startFilter, textMessage } from '../support/mail.js'

const THROWS = join(packageRoot, 'test', 'fixtures', 'plugins', 'throws')

const MESSAGE = textMessage({ tag: 'unscannable', subject: 'cannot be checked', date: false })

/** A scanner that always fails with policy tempfail, and a lifetime of two seconds. */
function settings(unscannable?: string) {
  return {
    delivery: {
      retry: ['300ms'],
      queueLifetime: '2s',
      queueRunInterval: '200ms',
    },
    plugins: [{ use: THROWS, onError: 'tempfail' }],
    ...(unscannable ? { policy: { actions: { unscannable } } } : {}),
  }
}

describe('unscannable after the queue lifetime', () => {
  it('is rescanned on backoff, then quarantined as unscannable with the failure as reason', async () => {
    const { ms, sink } = await startFilter(settings())
    const id = await send(ms.port, MESSAGE)
    expect(id).toMatch(/^[0-9A-Za-z]{16}$/)
    const verdict = await ms.waitForLog(
      (l) => l.qid === id && l.msg === 'verdict' && l.verdict === 'unscannable',
      15_000,
    )
    expect(verdict.actions).toBe('quarantine')
    expect(verdict.lastChance).toBe(true)
    // It was scanned more than once before (the backoff rescans), each time deferred.
    expect(ms.logs.filter((l) => l.qid === id && l.msg === 'scan deferred').length).toBeGreaterThanOrEqual(2)
    const listed = await cliJson(ms, ['quarantine', 'list'])
    expect(listed).toEqual([
      expect.objectContaining({ id, verdict: 'unscannable', messageId: '<unscannable@example.org>' }),
    ])
    expect(String(listed[0]?.reason)).toContain('scanner exploded')
    expect(sink.received).toBe(0)
    const queue = await cliJson(ms, ['queue', 'list'])
    expect(queue).toEqual([])
  })

  it('follows policy.actions.unscannable: delivered with a header saying so', async () => {
    const { ms, sink } = await startFilter(settings('deliver header "X-Unscanned: yes" tag'))
    const id = await send(ms.port, MESSAGE)
    await sink.waitFor(1, 15_000)
    const text = sink.messages[0]?.data.toString() ?? ''
    expect(text).toContain('X-Unscanned: yes')
    expect(text).toContain('Subject: {Unscanned} cannot be checked')
    expect(text).toContain(`X-mailscreen-Verdict: unscannable`)
    expect(text).toContain(`(id ${id})`)
    expect((await ms.cli(['quarantine', 'list', '--json'])).stdout.trim()).toBe('[]')
  })
})
