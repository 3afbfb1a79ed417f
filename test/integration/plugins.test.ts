import { existsSync } from 'node:fs'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { type Sink, startSink } from '../../src/bench/sink.js'
import { packageRoot } from '../../src/package-root.js'
import { byTag, cliJson, field, send, sleep, startFilter, textMessage } from '../support/mail.js'
import { cleanup, runCli } from '../support/mailscreen.js'

const EXAMPLE = join(packageRoot, 'plugins', 'example')
const THROWS = join(packageRoot, 'test', 'fixtures', 'plugins', 'throws')
const HANGS = join(packageRoot, 'test', 'fixtures', 'plugins', 'hangs')

describe('plugins in the running filter', () => {
  it('loads the example plugin by path and tags a matching subject as spam', async () => {
    const { ms, sink } = await startFilter({
      policy: { spamThreshold: 3 },
      plugins: [{ use: EXAMPLE, options: { subjectWords: ['lottery', 'wire transfer'] } }],
    })
    const spamId = await send(ms.port, textMessage({ tag: 'spam', subject: 'You won the LOTTERY today' }))
    const hamId = await send(ms.port, textMessage({ tag: 'ham', subject: 'Quarterly report' }))
    await sink.waitFor(2, 15_000)

    const spam = byTag(sink, 'spam')[0]
    const verdict = field(spam, 'X-mailscreen-Verdict')
    expect(verdict).toMatch(/^spam, score=3 required=3 symbols=.*\bEXAMPLE_SUBJECT_WORD=3\b/)
    expect(field(spam, 'Subject')).toBe('{Spam?} You won the LOTTERY today')
    expect(field(spam, 'X-mailscreen-Scanned')).toBe(`mailscreen on mailscreen.test (id ${spamId})`)

    const ham = byTag(sink, 'ham')[0]
    expect(field(ham, 'X-mailscreen-Verdict')).toBe('clean, score=0 required=3')
    expect(field(ham, 'Subject')).toBe('Quarterly report')

    const spamVerdict = await ms.waitForLog((l) => l.qid === spamId && l.msg === 'verdict')
    expect(spamVerdict).toMatchObject({ verdict: 'spam', score: 3, symbols: ['EXAMPLE_SUBJECT_WORD'] })
    expect(spamVerdict.timings).toHaveProperty('example')
    const hamVerdict = await ms.waitForLog((l) => l.qid === hamId && l.msg === 'verdict')
    expect(hamVerdict).toMatchObject({ verdict: 'clean', score: 0, symbols: [] })
  })

  it('a throwing check with onError continue: delivered with THROWS_FAIL and a "check failed" log line', async () => {
    const { ms, sink } = await startFilter({
      plugins: [{ use: 'example' }, { use: THROWS, onError: 'continue' }],
    })
    const id = await send(ms.port, textMessage({ tag: 'throws-continue', subject: 'Quarterly report' }))
    await sink.waitFor(1, 15_000)
    const delivered = byTag(sink, 'throws-continue')[0]
    expect(field(delivered, 'X-mailscreen-Verdict')).toMatch(
      /^clean, score=0 required=5 symbols=THROWS_FAIL$/,
    )
    expect(field(delivered, 'Subject')).toBe('Quarterly report')

    const failed = await ms.waitForLog((l) => l.qid === id && l.msg === 'check failed')
    expect(failed).toMatchObject({ plugin: 'throws', policy: 'continue' })
    expect(JSON.stringify(failed.err)).toContain('scanner exploded')
    const verdict = await ms.waitForLog((l) => l.qid === id && l.msg === 'verdict')
    expect(verdict.symbols).toEqual(['THROWS_FAIL'])
    await ms.waitForLog((l) => l.qid === id && l.msg === 'delivered')
  })

  it('a throwing check with onError tempfail: not delivered, parked in deferred/ for a later scan', async () => {
    const { ms, sink } = await startFilter({
      delivery: { retry: ['1h'] },
      plugins: [{ use: THROWS, onError: 'tempfail' }],
    })
    const id = await send(ms.port, textMessage({ tag: 'throws-tempfail', subject: 'Quarterly report' }))
    const deferred = await ms.waitForLog((l) => l.qid === id && l.msg === 'scan deferred')
    expect(String(deferred.reason)).toContain('scanner exploded')
    expect(deferred.attempts).toBe(1)

    // The retry state is written before the move into deferred/; poll until the move is done.
    let rows: Array<Record<string, unknown>> = []
    for (let i = 0; i < 50; i++) {
      rows = await cliJson(ms, ['queue', 'list'])
      if (rows[0]?.state === 'deferred') break
      await sleep(100)
    }
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({
      id,
      state: 'deferred',
      from: 'a@example.org',
      to: ['b@example.net'],
      messageId: '<throws-tempfail@example.org>',
      attempts: 1,
    })
    expect(String(rows[0]?.lastError)).toContain('throws: scanner exploded')
    // `queue list` does not show the phase; the retry file beside the message does.
    const retry = JSON.parse(await readFile(join(ms.spoolDir, 'deferred', `${id}.retry`), 'utf8'))
    expect(retry).toMatchObject({ phase: 'scan', attempts: 1, pending: ['b@example.net'] })
    // The deferred copy is the message as received: never scanned, so no verdict header.
    const spooled = await readFile(join(ms.spoolDir, 'deferred', id), 'latin1')
    expect(spooled).not.toContain('X-mailscreen-Verdict')

    await sleep(2_000)
    expect(sink.received).toBe(0)
    expect(ms.logs.some((l) => l.qid === id && l.msg === 'delivered')).toBe(false)
  })

  it('a hanging check (timeout 300 ms, continue): delivered with HANGS_FAIL; the failure names the timeout', async () => {
    const { ms, sink } = await startFilter({
      plugins: [{ use: HANGS, timeout: '300ms', onError: 'continue' }],
    })
    const id = await send(ms.port, textMessage({ tag: 'hangs', subject: 'Quarterly report' }))
    await sink.waitFor(1, 15_000)
    expect(field(byTag(sink, 'hangs')[0], 'X-mailscreen-Verdict')).toMatch(/\bsymbols=HANGS_FAIL$/)
    const failed = await ms.waitForLog((l) => l.qid === id && l.msg === 'check failed')
    expect(failed).toMatchObject({
      plugin: 'hangs',
      policy: 'continue',
      err: { code: 'MSC_PLUGIN_TIMEOUT', message: 'hangs did not answer within 300 ms' },
    })
    const verdict = await ms.waitForLog((l) => l.qid === id && l.msg === 'verdict')
    expect(verdict.symbols).toEqual(['HANGS_FAIL'])
    expect((verdict.timings as Record<string, number>).hangs).toBeGreaterThanOrEqual(290)
  })
})

describe('mailscreen scan', () => {
  let dir: string | undefined
  let sink: Sink | undefined
  afterEach(async () => {
    await sink?.close()
    if (dir) await cleanup(dir)
    dir = undefined
    sink = undefined
  })

  it('prints a JSON report with verdict and timings and delivers nothing', async () => {
    sink = await startSink()
    dir = await mkdtemp(join(tmpdir(), 'mailscreen-scan-'))
    const configFile = join(dir, 'mailscreen.yaml')
    const spoolDir = join(dir, 'spool')
    await writeFile(
      configFile,
      stringify({
        hostname: 'mailscreen.test',
        spool: { dir: spoolDir },
        delivery: { relay: `127.0.0.1:${sink.port}` },
        policy: { spamThreshold: 3 },
        plugins: [
          { use: EXAMPLE, options: { subjectWords: ['lottery'] } },
          { use: HANGS, timeout: '200ms', onError: 'continue' },
        ],
      }),
    )
    const eml = join(dir, 'message.eml')
    await writeFile(eml, textMessage({ tag: 'scan-me', subject: 'Lottery results' }))

    const out = await runCli(['scan', eml, '--config', configFile, '--json'], dir)
    expect(out.code, out.stderr).toBe(0)
    // stdout is the report alone (parseable); the hang's warning goes to stderr.
    const report = JSON.parse(out.stdout)
    expect(out.stderr).toContain('check failed')
    expect(report.verdict).toMatchObject({
      category: 'spam',
      final: true,
      score: 3,
      required: 3,
      tempfail: [],
    })
    expect(report.disposition).toMatchObject({
      actions: 'tag deliver',
      rule: 'policy.actions.spam',
      deliverTo: ['recipient@example.test'],
      quarantine: false,
    })
    const symbols = (report.verdict.hits as Array<{ symbol: string; evidence: string[] }>).map(
      (h) => h.symbol,
    )
    expect(symbols.sort()).toEqual(['EXAMPLE_SUBJECT_WORD', 'HANGS_FAIL'])
    const word = report.verdict.hits.find((h: { symbol: string }) => h.symbol === 'EXAMPLE_SUBJECT_WORD')
    expect(word.evidence).toEqual(['lottery'])
    const hang = report.verdict.hits.find((h: { symbol: string }) => h.symbol === 'HANGS_FAIL')
    expect(hang.evidence.join(' ')).toMatch(/did not answer within 200 ms/)
    expect(Object.keys(report.timings).sort()).toEqual(['example', 'hangs'])
    expect(typeof report.timings.example).toBe('number')
    expect(report.messageId).toBe('<scan-me@example.org>')

    // Human output too, and still nothing delivered or spooled.
    const human = await runCli(['scan', eml, '--config', configFile], dir)
    expect(human.code, human.stderr).toBe(0)
    expect(human.stdout).toContain(`${eml}: spam, score=3 required=3`)
    expect(human.stdout).toContain('actions: tag deliver (policy.actions.spam)')
    expect(human.stdout).toMatch(/^timings \(ms\): example=[\d.]+ hangs=[\d.]+$/m)

    await sleep(500)
    expect(sink.received).toBe(0)
    expect(existsSync(spoolDir)).toBe(false)
  })
})
