import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, describe, expect, it, vi } from 'vitest'
import attachments, { DEFAULT_RULES, shownName } from '../../plugins/attachments/index.js'
import { detectType as detectOf } from '../../plugins/attachments/magic.js'
import { firstMatch, loadRules, parseRules, RulesError } from '../../plugins/attachments/rules.js'
import { MailscreenError } from '../../src/errors.js'
import { createMessageView } from '../../src/mail/message.js'
import { type Check, declaredSymbols, type Hit, parseOptions } from '../../src/pipeline/plugin.js'
import { validateOptions } from '../../src/pipeline/registry.js'
import { newQueueId } from '../../src/queue/ids.js'
import { runCheck, silentLog, testEnvelope } from '../support/check.js'
import { CORPUS_DIR } from '../support/corpus.js'
import { pe } from '../support/magic.js'
import { buildZip } from '../support/zip.js'

const CORPUS = pathToFileURL(`${CORPUS_DIR}/`)
const dir = mkdtempSync(path.join(os.tmpdir(), 'attachments-test-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

let fileCount = 0
/** Write a rules file into the test's temporary directory and return its path. */
function rulesFile(text: string): string {
  const file = path.join(dir, `r${++fileCount}.rules`)
  writeFileSync(file, text)
  return file
}

async function setup(options: Record<string, unknown> = {}): Promise<Check> {
  const validated = parseOptions(attachments, options)
  return attachments.setup(validated, { log: silentLog })
}

const ELF = Buffer.from('7f454c46020101000000000000000000', 'hex')
const PDF = Buffer.from('%PDF-1.4\n1 0 obj\n<<>>\nendobj\n')
const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex')

interface Attachment {
  readonly filename?: string
  readonly contentType?: string
  readonly disposition?: string
  readonly data: Buffer | string
}

/** multipart/mixed: part 1 a text body, then the attachments as parts 2, 3, ... (base64). */
function eml(files: readonly Attachment[]): Buffer {
  const lines = [
    'From: a@example.org',
    'To: b@example.net',
    'Subject: files',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="XYZ"',
    '',
    '--XYZ',
    'Content-Type: text/plain; charset=utf-8',
    '',
    'Please see the attached files.',
  ]
  for (const file of files) {
    const name = file.filename === undefined ? '' : `; name="${file.filename}"`
    lines.push('--XYZ', `Content-Type: ${file.contentType ?? 'application/octet-stream'}${name}`)
    if (file.disposition !== undefined || file.filename !== undefined)
      lines.push(
        `Content-Disposition: ${file.disposition ?? 'attachment'}${file.filename === undefined ? '' : `; filename="${file.filename}"`}`,
      )
    const data = typeof file.data === 'string' ? Buffer.from(file.data) : file.data
    lines.push('Content-Transfer-Encoding: base64', '', ...(data.toString('base64').match(/.{1,76}/g) ?? []))
  }
  lines.push('--XYZ--', '')
  return Buffer.from(lines.join('\r\n'))
}

function symbols(hits: readonly Hit[]): string[] {
  return hits.map((h) => h.symbol)
}

describe('rules file parsing', () => {
  it('parses the shipped rules file', () => {
    const set = loadRules(DEFAULT_RULES)
    expect(set.rules.length).toBeGreaterThan(10)
    expect(set.readsContent).toBe(true)
    expect(set.rules.every((r) => r.action === 'allow' || r.reason !== '')).toBe(true)
    expect(set.rules[0]?.where).toMatch(/^attachments\.rules:\d+$/)
  })

  it('parses every pattern kind, reasons and log texts', () => {
    const set = parseRules(
      [
        '# comment',
        '',
        'allow  *.TXT',
        'deny   .exe,*.tar.gz   Programs are not allowed   | exe or tarball',
        'deny   /\\.(scr|pif)$/i   Screen savers run code',
        'deny   /a b|c/   A regex with a space and a bar | log',
        'deny   double-extension   Disguised program',
        'deny   type:executable    A program',
        'deny   type:image         No pictures',
        '   deny   mismatch   Not what it says   ',
      ].join('\r\n'),
      '/etc/x/test.rules',
    )
    expect(set.file).toBe('/etc/x/test.rules')
    expect(set.rules.map((r) => [r.action, r.pattern.kind, r.text, r.reason, r.log, r.where])).toEqual([
      ['allow', 'extension', '*.TXT', '', undefined, 'test.rules:3'],
      ['deny', 'extension', '.exe,*.tar.gz', 'Programs are not allowed', 'exe or tarball', 'test.rules:4'],
      ['deny', 'regex', '/\\.(scr|pif)$/i', 'Screen savers run code', undefined, 'test.rules:5'],
      ['deny', 'regex', '/a b|c/', 'A regex with a space and a bar', 'log', 'test.rules:6'],
      ['deny', 'double-extension', 'double-extension', 'Disguised program', undefined, 'test.rules:7'],
      ['deny', 'type', 'type:executable', 'A program', undefined, 'test.rules:8'],
      ['deny', 'type', 'type:image', 'No pictures', undefined, 'test.rules:9'],
      ['deny', 'mismatch', 'mismatch', 'Not what it says', undefined, 'test.rules:10'],
    ])
    expect(set.rules[0]?.pattern).toEqual({ kind: 'extension', extensions: ['.txt'] })
    expect(set.rules[1]?.pattern).toEqual({ kind: 'extension', extensions: ['.exe', '.tar.gz'] })
    expect(set.readsContent).toBe(true)
    expect(parseRules('deny *.exe x', 'f').readsContent).toBe(false)
  })

  it('reports each error as file:line: reason, all of them at once', () => {
    const text = [
      'deny *.exe   fine',
      'block *.exe  Wrong action',
      'deny',
      'deny *.exe',
      'deny /abc    Unterminated',
      'deny /(/     Bad regex',
      'deny /a/g    Stateful flag',
      'deny /a/x    Unknown flag',
      'deny /a/i,bad Junk after flags',
      'deny type:spreadsheet  Unknown type',
      'deny *.      Empty extension',
      'deny exe     Not a pattern',
      'deny //      Empty',
    ].join('\n')
    let error: RulesError | undefined
    try {
      parseRules(text, 'rules/bad.rules')
    } catch (err) {
      error = err as RulesError
    }
    expect(error).toBeInstanceOf(RulesError)
    const problems = error?.problems ?? []
    expect(problems.map((p) => p.split(': ')[0])).toEqual([
      'rules/bad.rules:2',
      'rules/bad.rules:3',
      'rules/bad.rules:4',
      'rules/bad.rules:5',
      'rules/bad.rules:6',
      'rules/bad.rules:7',
      'rules/bad.rules:8',
      'rules/bad.rules:9',
      'rules/bad.rules:10',
      'rules/bad.rules:11',
      'rules/bad.rules:12',
      'rules/bad.rules:13',
    ])
    expect(problems[0]).toBe(
      'rules/bad.rules:2: expected allow or deny at the start of the line, found "block"',
    )
    expect(problems[1]).toBe('rules/bad.rules:3: deny without a pattern')
    expect(problems[2]).toBe(
      'rules/bad.rules:4: a deny rule needs a reason after the pattern (it is shown to the recipient)',
    )
    expect(problems[3]).toContain('unterminated regular expression')
    expect(problems[4]).toContain('bad regular expression')
    expect(problems[5]).toContain('flag "g" is not allowed')
    expect(problems[6]).toContain('flag "x" is not allowed')
    expect(problems[7]).toContain('unexpected ",bad" after the regular expression')
    expect(problems[8]).toContain('unknown file type "spreadsheet"')
    expect(problems[9]).toContain('unknown pattern "*."')
    expect(problems[10]).toContain('unknown pattern "exe"')
    expect(problems[11]).toContain('empty regular expression')
  })

  it('fails option validation (and so start-up) with file:line for a bad rules file', () => {
    const file = rulesFile('deny *.exe ok\ndeny type:nope  x\n')
    let error: unknown
    try {
      validateOptions(attachments, { rules: file }, dir)
    } catch (err) {
      error = err
    }
    expect(error).toBeInstanceOf(MailscreenError)
    expect((error as MailscreenError).code).toBe('MSC_PLUGIN_OPTIONS_INVALID')
    expect((error as Error).message).toContain(`options.rules: ${file}:2: unknown file type "nope"`)
  })

  it('fails option validation for a missing rules file and for unknown options', () => {
    const missing = path.join(dir, 'missing.rules')
    expect(() => validateOptions(attachments, { rules: missing }, dir)).toThrow(
      `${missing}: cannot read the rules file`,
    )
    expect(() => validateOptions(attachments, { rule: 'x' }, dir)).toThrow(/options/)
    expect(() => validateOptions(attachments, { maxZipDepth: 0 }, dir)).toThrow(/maxZipDepth/)
  })

  it("defaults to the shipped rules and resolves a relative path against the config file's directory", () => {
    const defaults = validateOptions(attachments, {}, dir) as { rules: string; maxZipDepth: number }
    expect(defaults.rules).toBe(DEFAULT_RULES)
    expect(defaults.maxZipDepth).toBe(3)
    const file = rulesFile('deny *.exe x\n')
    // Not the working directory: mailscreen started by an init system runs in /.
    expect(process.cwd()).not.toBe(dir)
    expect(
      (validateOptions(attachments, { rules: path.basename(file) }, dir) as { rules: string }).rules,
    ).toBe(file)
  })

  it('declares every symbol with a category', () => {
    const table = declaredSymbols(attachments, {})
    expect(Object.fromEntries(Object.entries(table).map(([k, v]) => [k, v.category]))).toEqual({
      ATTACHMENT_BANNED: 'banned',
      ATTACHMENT_ENCRYPTED: 'banned',
      ATTACHMENT_ZIP_LIMIT: 'unscannable',
      ATTACHMENT_ZIP_UNREADABLE: 'unscannable',
      ATTACHMENT_MIME_LIMIT: 'unscannable',
      ATTACHMENT_TOO_DEEP: 'unscannable',
    })
  })
})

describe('rule matching', () => {
  const set = parseRules(
    [
      'allow /^report\\.exe$/        Our own report tool',
      'deny  *.exe,*.com             Programs',
      'deny  *.tar.gz                Tarballs',
      'deny  /\\.(scr|pif)$/i        Screen savers',
      'deny  double-extension        Disguise',
      'deny  type:executable         Renamed program',
      'deny  mismatch                Lies',
    ].join('\n'),
    'm.rules',
  )
  const which = (name?: string, content?: Buffer, contentType?: string): string | undefined => {
    const detect = content === undefined ? undefined : () => (content.length ? detectOf(content) : undefined)
    const match = firstMatch(set, {
      ...(name === undefined ? {} : { name }),
      ...(contentType === undefined ? {} : { contentType }),
      ...(detect ? { detect } : {}),
    })
    return match && `${match.rule.action} ${match.rule.where}${match.detail ? ` ${match.detail}` : ''}`
  }

  it('matches extensions case-insensitively, ignoring trailing dots and spaces as Windows does', () => {
    expect(which('SETUP.EXE')).toBe('deny m.rules:2')
    expect(which('setup.exe. . ')).toBe('deny m.rules:2')
    expect(which('a.com')).toBe('deny m.rules:2')
    expect(which('src.TAR.GZ')).toBe('deny m.rules:3')
    expect(which('notes.gz')).toBeUndefined()
    expect(which('exe')).toBeUndefined()
    expect(which('a.exe.txt')).toBeUndefined()
  })

  it('matches regular expressions with their flags', () => {
    expect(which('Saver.SCR')).toBe('deny m.rules:4')
    expect(which('x.pif')).toBe('deny m.rules:4')
    expect(which('x.scrx')).toBeUndefined()
  })

  it('lets the first matching rule win: an allow before a deny', () => {
    expect(which('report.exe')).toBe('allow m.rules:1')
    expect(which('Report.exe')).toBe('deny m.rules:2')
    // Content rules below the allow never see it either.
    expect(which('report.exe', pe())).toBe('allow m.rules:1')
  })

  it('catches a document extension followed by a program one', () => {
    expect(which('invoice.pdf.scr')).toBe('deny m.rules:4')
    expect(which('invoice.pdf.js')).toBe('deny m.rules:5')
    expect(which('photo.JPG     .vbs')).toBe('deny m.rules:5')
    expect(which('archive.2024.pdf')).toBeUndefined()
    expect(which('notes.txt.zip')).toBeUndefined()
  })

  it('catches a renamed program by its first bytes, whatever its name', () => {
    expect(which('cute-kitten.jpg', pe())).toBe('deny m.rules:6 the content is a Windows program (MZ/PE)')
    expect(which('readme', ELF)).toBe('deny m.rules:6 the content is a Linux/Unix program (ELF)')
    expect(which(undefined, pe())).toBe('deny m.rules:6 the content is a Windows program (MZ/PE)')
    expect(which('cute-kitten.jpg', PNG)).toBeUndefined()
  })

  it('catches content that contradicts the name or the declared type', () => {
    expect(which('invoice.pdf', PNG)).toBe('deny m.rules:7 named .pdf but the content is a PNG image')
    expect(which('scan', PDF, 'image/png')).toBe(
      'deny m.rules:7 declared image/png but the content is a PDF document',
    )
    expect(which('invoice.pdf', PDF, 'application/pdf')).toBeUndefined()
    expect(which('data.bin', PDF, 'application/octet-stream')).toBeUndefined()
  })

  it('never applies content rules when there is no content to read (names inside archives)', () => {
    expect(which('cute-kitten.jpg')).toBeUndefined()
  })
})

/** Run `check` on `raw` with a spy on each part's content(); the hits and the spied parts. */
async function checkWatchingContent(check: Check, raw: Buffer) {
  const view = createMessageView(raw)
  const parts = view.parts().map((p) => ({ ...p, content: vi.fn(p.content) }))
  const hits = await check({
    queueId: newQueueId(),
    envelope: testEnvelope,
    message: { ...view, parts: () => parts },
    log: silentLog,
    signal: AbortSignal.timeout(5000),
    deadline: Date.now() + 5000,
  })
  return { hits, parts }
}

describe('the check', () => {
  it('finds nothing in a message without attachments and never decodes a body', async () => {
    const check = await setup()
    const raw = Buffer.from('Subject: hi\r\nContent-Type: text/plain\r\n\r\nhello\r\n')
    const { hits, parts } = await checkWatchingContent(check, raw)
    expect(hits).toEqual([])
    for (const part of parts) expect(part.content).not.toHaveBeenCalled()
  })

  it('reads only the first bytes of a base64 attachment that is not a zip', async () => {
    const check = await setup()
    const raw = eml([
      {
        filename: 'report.pdf',
        contentType: 'application/pdf',
        data: Buffer.concat([PDF, Buffer.alloc(100_000)]),
      },
    ])
    const { hits, parts } = await checkWatchingContent(check, raw)
    expect(hits).toEqual([])
    for (const part of parts) expect(part.content).not.toHaveBeenCalled()
  })

  it('bans by name with the part id and a human evidence line naming file, reason and rule', async () => {
    const check = await setup()
    const hits = await runCheck(
      check,
      eml([
        { filename: 'a.pdf', contentType: 'application/pdf', data: PDF },
        { filename: 'setup.exe', data: 'x' },
      ]),
    )
    expect(hits).toHaveLength(1)
    expect(hits[0]?.symbol).toBe('ATTACHMENT_BANNED')
    expect(hits[0]?.parts).toEqual(['3'])
    expect(hits[0]?.evidence?.[0]).toMatch(
      /^setup\.exe: Programs can harm your computer and are not accepted by email \(attachments\.rules:\d+\)$/,
    )
  })

  it('bans a double extension, a renamed program and a declared-type mismatch, one hit per part', async () => {
    const check = await setup()
    const hits = await runCheck(
      check,
      eml([
        { filename: 'invoice.pdf.exe', data: 'x' },
        { filename: 'holiday.jpg', contentType: 'image/jpeg', data: pe() },
        { filename: 'scan.pdf', contentType: 'application/pdf', data: PNG },
        { filename: 'fine.png', contentType: 'image/png', data: PNG },
      ]),
    )
    expect(hits.map((h) => [h.symbol, h.parts])).toEqual([
      ['ATTACHMENT_BANNED', ['2']],
      ['ATTACHMENT_BANNED', ['3']],
      ['ATTACHMENT_BANNED', ['4']],
    ])
    expect(hits[0]?.evidence?.[0]).toContain(
      'invoice.pdf.exe: The file pretends to be a document or picture but is a program',
    )
    expect(hits[1]?.evidence?.[0]).toMatch(
      /^holiday\.jpg: The file is a program, .*: the content is a Windows program \(MZ\/PE\)\)$/,
    )
    expect(hits[2]?.evidence?.[0]).toMatch(
      /^scan\.pdf: The file is not what .*: named \.pdf but the content is a PNG image\)$/,
    )
  })

  it('sees a mismatch behind a name with trailing dots or spaces', async () => {
    const check = await setup()
    for (const filename of ['scan.pdf.', 'scan.pdf ', 'scan.pdf. ']) {
      const hits = await runCheck(check, eml([{ filename, contentType: 'application/pdf', data: PNG }]))
      expect(
        hits.map((h) => h.evidence?.[0]),
        filename,
      ).toEqual([expect.stringMatching(/named \.pdf but the content is a PNG image/)])
    }
  })

  it('checks an application/* part without a name by magic only', async () => {
    const check = await setup()
    const raw = eml([
      { contentType: 'application/octet-stream', data: pe() },
      { contentType: 'application/octet-stream', data: 'just bytes' },
    ])
    const hits = await runCheck(check, raw)
    expect(hits.map((h) => h.parts)).toEqual([['2']])
    expect(hits[0]?.evidence?.[0]).toMatch(/^unnamed application\/octet-stream part 2: The file is a program/)
  })

  it('checks the names inside a zip and charges the zip part', async () => {
    const check = await setup()
    const zip = buildZip([
      { name: 'docs/readme.txt', data: 'hi' },
      { name: 'docs/payroll.xls.exe', data: pe() },
    ])
    const hits = await runCheck(
      check,
      eml([{ filename: 'docs.zip', contentType: 'application/zip', data: zip }]),
    )
    expect(hits.map((h) => [h.symbol, h.parts])).toEqual([['ATTACHMENT_BANNED', ['2']]])
    expect(hits[0]?.evidence?.[0]).toMatch(
      /^docs\/payroll\.xls\.exe \(in docs\.zip\): The file pretends to be a document or picture but is a program \(attachments\.rules:\d+\)$/,
    )
  })

  it('bans a zip entry by its name cut at a NUL, as unzip saves it', async () => {
    const check = await setup()
    const zip = buildZip([{ name: Buffer.from('evil.exe\0.txt'), data: 'MZ' }])
    const hits = await runCheck(
      check,
      eml([{ filename: 'a.zip', contentType: 'application/zip', data: zip }]),
    )
    expect(symbols(hits)).toEqual(['ATTACHMENT_BANNED'])
    expect(hits[0]?.evidence?.[0]).toMatch(/^evil\.exe\\u\{0\}\.txt \(in a\.zip\): also named evil\.exe: /)
  })

  it('bans a zip entry by its stored name when an Info-ZIP Unicode Path names it otherwise', async () => {
    const check = await setup()
    const zip = buildZip([{ name: Buffer.from('evil.exe'), data: 'MZ', unicodePath: 'readme.txt' }])
    const hits = await runCheck(
      check,
      eml([{ filename: 'a.zip', contentType: 'application/zip', data: zip }]),
    )
    expect(symbols(hits)).toEqual(['ATTACHMENT_BANNED'])
    expect(hits[0]?.evidence?.[0]).toMatch(/^readme\.txt \(in a\.zip\): also named evil\.exe: /)
  })

  it("bans a part by Content-Type's name= when Content-Disposition's filename= says otherwise", async () => {
    const check = await setup()
    const raw = Buffer.from(
      [
        'From: a@example.org',
        'To: b@example.net',
        'Subject: report',
        'MIME-Version: 1.0',
        'Content-Type: multipart/mixed; boundary="XYZ"',
        '',
        '--XYZ',
        'Content-Type: text/plain',
        '',
        'See the report.',
        '--XYZ',
        'Content-Type: application/octet-stream; name="evil.exe"',
        'Content-Disposition: attachment; filename="report.pdf"',
        'Content-Transfer-Encoding: base64',
        '',
        Buffer.from('just text').toString('base64'),
        '--XYZ--',
        '',
      ].join('\r\n'),
    )
    const hits = await runCheck(check, raw)
    expect(hits.map((h) => [h.symbol, h.parts])).toEqual([['ATTACHMENT_BANNED', ['2']]])
    expect(hits[0]?.evidence?.[0]).toMatch(/^report\.pdf: also named evil\.exe: /)
  })

  it('bans a program uuencoded in a plain-text body, in any transfer encoding, and passes a harmless one', async () => {
    const check = await setup()
    const text = (encoding: string, body: string) =>
      Buffer.from(
        [
          'From: a@example.org',
          'To: b@example.net',
          'Subject: invoice',
          'Content-Type: text/plain; charset=us-ascii',
          `Content-Transfer-Encoding: ${encoding}`,
          '',
          encoding === 'base64' ? Buffer.from(body).toString('base64') : body,
          '',
        ].join('\r\n'),
      )
    const block = (name: string) => `Your invoice:\r\n\r\nbegin 644 ${name}\r\nM5%I0\r\n\`\r\nend\r\n`
    const qp = 'Your invoice:\r\n\r\n=62egin 644 invoice.e=\r\nxe\r\nM5%I0\r\n`\r\nend\r\n'
    const hidden = await runCheck(check, text('quoted-printable', qp))
    expect(hidden.map((h) => h.symbol)).toEqual(['ATTACHMENT_BANNED'])
    for (const encoding of ['7bit', 'base64']) {
      const hits = await runCheck(check, text(encoding, block('invoice.exe')))
      expect(
        hits.map((h) => [h.symbol, h.parts]),
        encoding,
      ).toEqual([['ATTACHMENT_BANNED', ['1']]])
      expect(hits[0]?.evidence?.[0]).toMatch(/^invoice\.exe \(uuencoded in part 1\): /)
    }
    expect(await runCheck(check, text('7bit', block('notes.txt')))).toEqual([])
    expect(await runCheck(check, text('7bit', 'We begin 644 days from now.'))).toEqual([])
  })

  it('finds a zip by its magic whatever its name, and names nested archives in the evidence', async () => {
    const check = await setup()
    const inner = buildZip([{ name: 'run.bat', data: '@echo off' }])
    const outer = buildZip([{ name: 'inner.zip', data: inner }])
    const hits = await runCheck(check, eml([{ filename: 'data.bin', data: outer }]))
    expect(hits[0]?.evidence?.[0]).toMatch(/^run\.bat \(in inner\.zip in data\.bin\): Scripts can harm/)
    expect(hits[0]?.parts).toEqual(['2'])
  })

  it('bans password-protected archives unless allowEncrypted', async () => {
    const zip = buildZip([{ name: 'contract.doc', data: 'x', encrypted: true }, { name: 'readme.txt' }])
    const raw = eml([{ filename: 'contract.zip', contentType: 'application/zip', data: zip }])
    const hits = await runCheck(await setup(), raw)
    expect(hits).toEqual([
      {
        symbol: 'ATTACHMENT_ENCRYPTED',
        parts: ['2'],
        evidence: [
          'contract.zip: password-protected archive (contract.doc); its content cannot be checked for viruses',
        ],
      },
    ])
    expect(await runCheck(await setup({ allowEncrypted: true }), raw)).toEqual([])
  })

  it('reports a zip bomb as unscannable (ZIP_LIMIT) without inflating it', async () => {
    const bomb = buildZip([{ name: 'inner.zip', data: Buffer.alloc(2048), declaredSize: 3 * 1024 ** 3 }], {
      zip64: true,
    })
    const started = performance.now()
    const hits = await runCheck(
      await setup(),
      eml([{ filename: 'bomb.zip', contentType: 'application/zip', data: bomb }]),
    )
    expect(performance.now() - started).toBeLessThan(500)
    expect(symbols(hits)).toEqual(['ATTACHMENT_ZIP_LIMIT'])
    expect(hits[0]?.parts).toEqual(['2'])
    expect(hits[0]?.evidence).toEqual([
      expect.stringMatching(
        /^bomb\.zip: inner\.zip: compression ratio \d+:1 is over 100:1 \(3 GiB declared\)$/,
      ),
      'bomb.zip: declared uncompressed size is over 100 MiB',
    ])
  })

  it('applies the zip limits from the options', async () => {
    const zip = buildZip(Array.from({ length: 5 }, (_, i) => ({ name: `f${i}.txt`, data: 'x' })))
    const raw = eml([{ filename: 'five.zip', data: zip }])
    expect(await runCheck(await setup(), raw)).toEqual([])
    const hits = await runCheck(await setup({ maxZipEntries: 3 }), raw)
    expect(hits).toEqual([
      {
        symbol: 'ATTACHMENT_ZIP_LIMIT',
        parts: ['2'],
        evidence: ['five.zip: more than 3 entries; the rest were not listed'],
      },
    ])
    expect(await runCheck(await setup({ listZip: false, maxZipEntries: 3 }), raw)).toEqual([])
  })

  it('shares one inflate budget between all zips of a message', async () => {
    // Each attachment nests a ~600 KB zip (declared ~1.2 MB with its contents, within the
    // limit); a 1.5 MB budget inflates two of them, not the third.
    const inner = buildZip([
      { name: 'x.bat', data: 'x' },
      { name: 'pad.bin', data: Buffer.alloc(600_000, 7), method: 'store' },
    ])
    const outer = buildZip([{ name: 'inner.zip', data: inner, method: 'store' }])
    const options = { maxZipBytes: 1_500_000 }
    const three = eml(['one.zip', 'two.zip', 'three.zip'].map((filename) => ({ filename, data: outer })))
    const hits = await runCheck(await setup(options), three)
    expect(hits.map((h) => [h.symbol, h.parts])).toEqual([
      ['ATTACHMENT_BANNED', ['2']],
      ['ATTACHMENT_BANNED', ['3']],
      ['ATTACHMENT_ZIP_LIMIT', ['4']],
    ])
    expect(hits[2]?.evidence?.[0]).toMatch(
      /^three\.zip: inner\.zip: not opened, nested archives in this message already inflated/,
    )
    // Alone, the third is within the limits.
    const alone = await runCheck(await setup(options), eml([{ filename: 'three.zip', data: outer }]))
    expect(symbols(alone)).toEqual(['ATTACHMENT_BANNED'])
  })

  it('reports a zip it cannot read as ZIP_UNREADABLE, but not a non-zip that merely claims the name', async () => {
    const check = await setup()
    const truncated = buildZip([{ name: 'a.txt', data: 'a' }]).subarray(0, 40)
    const hits = await runCheck(check, eml([{ filename: 'cut.zip', data: truncated }]))
    expect(hits).toEqual([
      {
        symbol: 'ATTACHMENT_ZIP_UNREADABLE',
        parts: ['2'],
        evidence: ['cut.zip: no end-of-central-directory record (not a zip, or truncated)'],
      },
    ])
    expect(
      await runCheck(check, eml([{ filename: 'fake.zip', contentType: 'application/zip', data: 'hello' }])),
    ).toEqual([])
  })

  it('lists a zip behind a stub when the name says zip', async () => {
    const zip = buildZip([{ name: 'evil.vbs', data: 'x' }], {
      prefix: Buffer.from('junk before the archive'),
    })
    const hits = await runCheck(await setup(), eml([{ filename: 'photos.zip', data: zip }]))
    expect(hits[0]?.evidence?.[0]).toMatch(/^evil\.vbs \(in photos\.zip\): Scripts/)
  })

  it('uses the rules option, and allow lines inside archives too', async () => {
    const file = rulesFile('allow *.exe\ndeny *.txt  No text files please\n')
    const check = await setup({ rules: file })
    const zip = buildZip([
      { name: 'tool.exe', data: pe() },
      { name: 'notes.txt', data: 'x' },
    ])
    const hits = await runCheck(
      check,
      eml([
        { filename: 'a.exe', data: pe() },
        { filename: 'b.zip', data: zip },
      ]),
    )
    expect(hits).toEqual([
      {
        symbol: 'ATTACHMENT_BANNED',
        parts: ['3'],
        evidence: [`notes.txt (in b.zip): No text files please (${path.basename(file)}:2)`],
      },
    ])
  })

  it('caps evidence at 10 lines per hit and counts the rest', async () => {
    const zip = buildZip(Array.from({ length: 25 }, (_, i) => ({ name: `virus${i}.exe`, data: 'x' })))
    const hits = await runCheck(await setup(), eml([{ filename: 'many.zip', data: zip }]))
    expect(hits).toHaveLength(1)
    expect(hits[0]?.evidence).toHaveLength(10)
    expect(hits[0]?.evidence?.[9]).toBe('… and 16 more')
  })

  it('shows hostile names safely: control and direction characters escaped, long names shortened', async () => {
    expect(shownName('a\r\nX-Injected: 1.exe')).toBe('a\\u{d}\\u{a}X-Injected: 1.exe')
    expect(shownName('photo\u202Egpj.exe')).toBe('photo\\u{202e}gpj.exe')
    expect(shownName('x'.repeat(300))).toHaveLength(150)
    const zip = buildZip([{ name: 'evil\u202Etxt.exe', data: 'x' }])
    const hits = await runCheck(await setup(), eml([{ filename: 'z.zip', data: zip }]))
    expect(hits[0]?.evidence?.[0]).toMatch(
      /^evil\\u\{202e\}txt\.exe \(in z\.zip\): The file name contains hidden characters/,
    )
  })

  it('looks into attached messages and charges the part that carries them', async () => {
    const inner = eml([{ filename: 'trojan.scr', data: pe() }])
    const raw = Buffer.from(
      [
        'Subject: fwd',
        'Content-Type: multipart/mixed; boundary=OUT',
        '',
        '--OUT',
        'Content-Type: text/plain',
        '',
        'see below',
        '--OUT',
        'Content-Type: message/rfc822',
        '',
        inner.toString('latin1'),
        '--OUT--',
        '',
      ].join('\r\n'),
      'latin1',
    )
    const hits = await runCheck(await setup(), raw)
    expect(hits.map((h) => [h.symbol, h.parts])).toEqual([['ATTACHMENT_BANNED', ['2']]])
    expect(hits[0]?.evidence?.[0]).toMatch(/^trojan\.scr in attached message 2: Programs/)
  })

  it('reports attached messages nested deeper than maxMessageDepth as ATTACHMENT_TOO_DEEP', async () => {
    let message = eml([{ filename: 'deep.exe', data: 'x' }])
    for (let i = 0; i < 3; i++)
      message = Buffer.from(
        `Content-Type: multipart/mixed; boundary=L${i}\r\n\r\n--L${i}\r\nContent-Type: message/rfc822\r\n\r\n${message.toString('latin1')}\r\n--L${i}--\r\n`,
        'latin1',
      )
    // The .exe sits four messages deep: level 5.
    expect(symbols(await runCheck(await setup(), message))).toEqual(['ATTACHMENT_BANNED'])
    const hits = await runCheck(await setup({ maxMessageDepth: 3 }), message)
    expect(hits.map((h) => [h.symbol, h.parts])).toEqual([['ATTACHMENT_TOO_DEEP', ['1']]])
  })
})

describe('the corpus', () => {
  const read = (name: string) => readFileSync(new URL(name, CORPUS))

  it('bans rspamd__exe_attm.eml (an ELF named .exe) in part 2', async () => {
    const hits = await runCheck(await setup(), read('attachments/rspamd__exe_attm.eml'))
    expect(hits).toEqual([
      {
        symbol: 'ATTACHMENT_BANNED',
        parts: ['2'],
        evidence: [expect.stringMatching(/^hello_world\.exe: Programs can harm your computer/)],
      },
    ])
  })

  it('bans rspamd__bad_ext.dotted_file_name.eml', async () => {
    const hits = await runCheck(await setup(), read('attachments/rspamd__bad_ext.dotted_file_name.eml'))
    expect(symbols(hits)).toEqual(['ATTACHMENT_BANNED'])
    expect(hits[0]?.evidence?.[0]).toMatch(/^bad_ext\.dotted_file_name\.exe: Programs/)
    expect(hits[0]?.parts).toEqual(['1'])
  })

  it('lets every other message of attachments/ through (documents, images, text, a RAR)', async () => {
    const check = await setup()
    const banned = ['rspamd__exe_attm.eml', 'rspamd__bad_ext.dotted_file_name.eml']
    const files = readdirSync(new URL('attachments/', CORPUS)).filter(
      (f) => f.endsWith('.eml') && !banned.includes(f),
    )
    expect(files.length).toBeGreaterThanOrEqual(14)
    for (const file of files) expect(await runCheck(check, read(`attachments/${file}`)), file).toEqual([])
  })

  it('finds the programs inside the zip-in-zip messages of virus-test/', async () => {
    const check = await setup()
    const zipzip = await runCheck(check, read('virus-test/clamav__wrap-zipzip__clam.exe.eml'))
    expect(zipzip[0]?.evidence?.[0]).toMatch(
      /^clam\.exe \(in clam\.exe\.zip in clam\.exe\.zip\.zip\): Programs/,
    )
    const eicar = await runCheck(check, read('virus-test/gen__eicar-zipzip.eml'))
    expect(eicar[0]?.evidence?.[0]).toMatch(
      /^eicar\.com \(in eicar\.com\.zip in eicar\.com\.zip\.zip\): Programs/,
    )
    // deflate64 (method 9) entries are listed by name; nothing is inflated.
    const d64 = await runCheck(check, read('virus-test/clamav__wrap__clam.d64.zip.eml'))
    expect(d64.map((h) => h.symbol)).toEqual(['ATTACHMENT_BANNED'])
  })

  it('runs over all 346 corpus messages without throwing, quickly, and flags exactly the programs', async () => {
    const check = await setup()
    const flagged: Record<string, string[]> = {}
    let messages = 0
    const started = performance.now()
    for (const entry of readdirSync(CORPUS, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue
      for (const file of readdirSync(new URL(`${entry.name}/`, CORPUS))) {
        if (!file.endsWith('.eml')) continue
        const one = performance.now()
        const hits = await runCheck(check, read(`${entry.name}/${file}`))
        expect(performance.now() - one, file).toBeLessThan(2000)
        for (const hit of hits) {
          // A structure past the walker's limits is the message's, not a part's.
          expect(hit.parts?.length, file).toBe(hit.symbol === 'ATTACHMENT_MIME_LIMIT' ? undefined : 1)
          expect(hit.evidence?.length, file).toBeGreaterThan(0)
        }
        if (hits.length > 0) flagged[`${entry.name}/${file}`] = hits.map((h) => h.symbol)
        messages++
      }
    }
    expect(messages).toBe(346)
    expect(performance.now() - started).toBeLessThan(15_000)
    const banned = ['ATTACHMENT_BANNED']
    expect(flagged).toEqual({
      // 20,000 parts: those past the first 2,000 are not walked, so their names go unchecked.
      'huge/gen__huge-many-parts-20000.eml': ['ATTACHMENT_MIME_LIMIT'],
      'attachments/rspamd__bad_ext.dotted_file_name.eml': banned,
      'attachments/rspamd__exe_attm.eml': banned,
      // файл.scr.xz: a compressed screen saver.
      'encoded-words/rspamd__next2last-doublebad.eml': banned,
      'virus-test/clamav__clam.mail.eml': banned,
      'virus-test/clamav__wrap-qp__clam.exe.eml': banned,
      'virus-test/clamav__wrap-zipzip__clam.exe.eml': banned,
      'virus-test/clamav__wrap__clam-upx.exe.eml': banned,
      'virus-test/clamav__wrap__clam.bz2.zip.eml': banned,
      'virus-test/clamav__wrap__clam.chm.eml': banned,
      'virus-test/clamav__wrap__clam.d64.zip.eml': banned,
      'virus-test/clamav__wrap__clam.ea05.exe.eml': banned,
      'virus-test/clamav__wrap__clam.ea06.exe.eml': banned,
      'virus-test/clamav__wrap__clam.exe.bz2.eml': banned,
      'virus-test/clamav__wrap__clam_IScab_int.exe.eml': banned,
      'virus-test/clamav__wrap__clam_ISmsi_ext.exe.eml': banned,
      'virus-test/gen__eicar-b64-junk.eml': banned,
      'virus-test/gen__eicar-crlf.eml': banned,
      'virus-test/gen__eicar-no-ctype.eml': banned,
      'virus-test/gen__eicar-zipzip.eml': banned,
    })
  })
})

describe('a MIME structure past what is walked', () => {
  function many(count: number): Buffer {
    const lines = ['From: a@example.org', 'Content-Type: multipart/mixed; boundary=b', '']
    for (let i = 0; i < count; i++) lines.push('--b', 'Content-Type: text/plain', '', `part ${i}`)
    lines.push(
      '--b',
      'Content-Type: application/octet-stream',
      'Content-Disposition: attachment; filename="evil.exe"',
      '',
    )
    lines.push(ELF.toString('base64'), '--b--', '')
    return Buffer.from(lines.join('\r\n'))
  }

  function deep(levels: number): Buffer {
    const lines = ['From: a@example.org']
    for (let i = 0; i < levels; i++)
      lines.push(`Content-Type: multipart/mixed; boundary=b${i}`, '', `--b${i}`)
    lines.push(
      'Content-Type: application/octet-stream',
      'Content-Disposition: attachment; filename="evil.exe"',
      '',
    )
    lines.push('x', '')
    return Buffer.from(lines.join('\r\n'))
  }

  it('is unscannable: a banned name beyond the limits would go unchecked', async () => {
    const check = await setup()
    expect(symbols(await runCheck(check, many(1998)))).toEqual(['ATTACHMENT_BANNED'])
    const past = await runCheck(check, many(2000))
    expect(past).toEqual([{ symbol: 'ATTACHMENT_MIME_LIMIT', evidence: ['more than 2000 MIME parts'] }])
    expect(symbols(await runCheck(check, deep(15)))).toEqual(['ATTACHMENT_BANNED'])
    expect(symbols(await runCheck(check, deep(22)))).toEqual(['ATTACHMENT_MIME_LIMIT'])
  })
})
