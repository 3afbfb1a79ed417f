import { describe, expect, it } from 'vitest'
import example from '../../plugins/example/index.js'
import type { Check, Hit } from '../../src/pipeline/plugin.js'
import { optionsSchema, parseOptions } from '../../src/pipeline/plugin.js'
import { silentLog as log, runCheck as runWith } from '../support/check.js'

async function checkFor(options: unknown): Promise<Check> {
  return example.setup(parseOptions(example, options), { log })
}

async function run(check: Check, raw: string): Promise<readonly Hit[]> {
  return runWith(check, Buffer.from(raw), new AbortController().signal)
}

const COMPLETE =
  'Message-ID: <1@example.org>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: Quarterly report\r\n\r\nhello\r\n'

describe('example options', () => {
  it('defaults subjectWords to an empty list', () => {
    expect(parseOptions(example, {})).toEqual({ subjectWords: [] })
  })

  it('rejects unknown keys, non-lists and empty words', () => {
    expect(optionsSchema(example, process.cwd()).safeParse({ words: [] }).success).toBe(false)
    expect(optionsSchema(example, process.cwd()).safeParse({ subjectWords: 3 }).success).toBe(false)
    expect(optionsSchema(example, process.cwd()).safeParse({ subjectWords: [''] }).success).toBe(false)
  })
})

describe('example check', () => {
  it('finds nothing in a message with Message-ID and Date', async () => {
    expect(await run(await checkFor({}), COMPLETE)).toEqual([])
  })

  it('flags a message without Message-ID and Date', async () => {
    const hits = await run(await checkFor({}), 'Subject: hi\r\n\r\nbody\r\n')
    expect(hits.map((h) => h.symbol)).toEqual(['EXAMPLE_NO_MESSAGE_ID', 'EXAMPLE_NO_DATE'])
  })

  it('flags only the header that is missing', async () => {
    const hits = await run(await checkFor({}), 'Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nbody\r\n')
    expect(hits).toEqual([{ symbol: 'EXAMPLE_NO_MESSAGE_ID' }])
  })

  it('does not count a Message-ID line in the body', async () => {
    const hits = await run(await checkFor({}), 'Date: x\r\n\r\nMessage-ID: <in-body@example.org>\r\n')
    expect(hits.map((h) => h.symbol)).toEqual(['EXAMPLE_NO_MESSAGE_ID'])
  })

  it('matches listed subject words case-insensitively and gives them as evidence', async () => {
    const check = await checkFor({ subjectWords: ['Lottery', 'WINNER', 'viagra'] })
    const hits = await run(
      check,
      'Message-ID: <2@example.org>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: You are a lottery Winner\r\n\r\nbody\r\n',
    )
    expect(hits).toEqual([{ symbol: 'EXAMPLE_SUBJECT_WORD', evidence: ['lottery', 'winner'] }])
  })

  it('matches a word in a folded subject', async () => {
    const check = await checkFor({ subjectWords: ['prize'] })
    const hits = await run(check, 'Message-ID: <3@x>\r\nDate: x\r\nSubject: claim your\r\n PRIZE now\r\n\r\n')
    expect(hits).toEqual([{ symbol: 'EXAMPLE_SUBJECT_WORD', evidence: ['prize'] }])
  })

  it('does not flag a subject without the listed words', async () => {
    const check = await checkFor({ subjectWords: ['lottery'] })
    expect(await run(check, COMPLETE)).toEqual([])
  })

  it('does not flag a message without a subject for subject words', async () => {
    const check = await checkFor({ subjectWords: ['lottery'] })
    expect(await run(check, 'Message-ID: <4@x>\r\nDate: x\r\n\r\nlottery\r\n')).toEqual([])
  })

  it('returns only symbols it declares', async () => {
    const check = await checkFor({ subjectWords: ['hi'] })
    const hits = await run(check, 'Subject: hi\r\n\r\n')
    for (const hit of hits) expect(Object.keys(example.symbols)).toContain(hit.symbol)
    expect(hits).toHaveLength(3)
  })
})
