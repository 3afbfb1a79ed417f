/**
 * From a scan report to the milter's answer: the verdict's actions become what the MTA can
 * do with a message it still holds: accept with header edits (and a new body for `strip`),
 * reject with a real SMTP reply, tempfail, discard, or its hold queue for `quarantine`.
 */
import type { HeaderEdit } from '../../mail/edits.js'
import { asHeaderText, taggedSubject } from '../../mail/edits.js'
import { headerEnd, parseHeaderBlock } from '../../mail/message.js'
import type { ScanReport } from '../../pipeline/scan.js'
import type { SmtpReply } from '../smtp-reply.js'
import type { MilterDecision, MilterHeader, MilterHeaderEdit } from './session.js'

/** The reply while a scanner that must answer (policy tempfail) cannot. */
export const SCAN_TEMPFAIL: SmtpReply = {
  code: 451,
  status: '4.7.1',
  text: 'Message could not be scanned now, try again later',
}

/** Reply text stays short: the reasons can be long lists of file names. */
const MAX_REASON = 200

/** The top-level fields that describe the body; `strip` changes them. */
const BODY_FIELDS = ['MIME-Version', 'Content-Type', 'Content-Transfer-Encoding', 'Content-Disposition']

function sameName(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase()
}

function reasons(report: ScanReport): string {
  const text = report.verdict.reasons.join('; ')
  return text.length > MAX_REASON ? `${text.slice(0, MAX_REASON - 3)}...` : text
}

/** `remove`, `prepend` and `tagSubject` as milter header edits on the MTA's copy. */
export function milterHeaderEdits(
  edits: readonly HeaderEdit[],
  headers: readonly MilterHeader[],
): MilterHeaderEdit[] {
  const out: MilterHeaderEdit[] = []
  for (const edit of edits.filter((e) => e.op === 'remove')) {
    const count = headers.filter((h) => sameName(h.name, edit.name)).length
    // Highest index first, so the indices of the ones still to delete do not move.
    for (let index = count; index >= 1; index--)
      out.push({ op: 'chgheader', name: edit.name, index, value: '' })
  }
  // Index 0 is above the MTA's own Received: field (Postfix counts it though milters never see
  // it): from 1, our fields go right under it, where a reader expects this hop's notes.
  let position = 1
  for (const edit of edits) {
    // The MTA writes its own Received: for this hop; ours belongs to the content-filter path.
    if (edit.op === 'prepend' && !sameName(edit.name, 'Received'))
      out.push({ op: 'insheader', index: position++, name: edit.name, value: asHeaderText(edit.value) })
  }
  for (const edit of edits) {
    if (edit.op !== 'tagSubject') continue
    const subject = headers.find((h) => sameName(h.name, 'Subject'))
    if (subject === undefined) {
      out.push({ op: 'addheader', name: 'Subject', value: asHeaderText(edit.tag) })
      continue
    }
    const tagged = taggedSubject(
      subject.value.replace(/\r?\n[ \t]+/g, ' ').trim(),
      edit.tag,
      edit.position ?? 'start',
    )
    if (tagged !== undefined) out.push({ op: 'chgheader', name: 'Subject', index: 1, value: tagged })
  }
  return out
}

/** The edits and body that turn the MTA's copy into the stripped message. */
function stripEdits(
  stripped: Buffer,
  headers: readonly MilterHeader[],
): { edits: MilterHeaderEdit[]; body: Buffer } {
  const end = headerEnd(stripped)
  const fields = parseHeaderBlock(stripped.subarray(0, end).toString('latin1'))
  const edits: MilterHeaderEdit[] = []
  for (const name of BODY_FIELDS) {
    const now = fields.find(([n]) => sameName(n, name))?.[1]
    const before = headers.some((h) => sameName(h.name, name))
    if (before) edits.push({ op: 'chgheader', name, index: 1, value: now ?? '' })
    else if (now !== undefined) edits.push({ op: 'addheader', name, value: now })
  }
  return { edits, body: stripped.subarray(end) }
}

/** The milter's answer to a scan report of message `headers`; `stripped` when the actions strip. */
export function toMilterDecision(
  report: ScanReport,
  headers: readonly MilterHeader[],
  stripped?: Buffer,
): MilterDecision {
  const { disposition, verdict } = report
  if (disposition === undefined) return { action: 'tempfail', reply: SCAN_TEMPFAIL }
  // The sender's MTA is still on the line: refusing tells it, and nothing bounces later.
  if (disposition.reject || disposition.bounce) {
    const why = reasons(report)
    return {
      action: 'reject',
      reply: {
        code: 550,
        status: '5.7.1',
        text: `Message refused: ${verdict.category}${why ? ` (${why})` : ''}`,
      },
    }
  }
  const headerEdits = milterHeaderEdits(disposition.edits, headers)
  const changes = stripped ? stripEdits(stripped, headers) : undefined
  const modifications = {
    headers: [...headerEdits, ...(changes?.edits ?? [])],
    ...(changes ? { body: changes.body } : {}),
  }
  // The hold queue keeps the message as it came (plus our header fields): a `strip` there
  // would leave nothing to release but the stripped copy.
  if (disposition.quarantine)
    return {
      action: 'quarantine',
      reason: `mailscreen: ${verdict.category}${reasons(report) ? `: ${reasons(report)}` : ''}`,
      headers: headerEdits,
    }
  // `forward` would need the envelope changed, which a milter does not do here: rather than
  // deliver to the recipients the list meant to skip, the MTA holds the message for a person.
  if (!disposition.toRecipients && disposition.deliverTo.length > 0)
    return {
      action: 'quarantine',
      reason: `mailscreen: ${verdict.category}: forward is not possible in milter mode (${disposition.actions})`,
      ...modifications,
    }
  if (disposition.deliverTo.length === 0) return { action: 'discard' }
  return { action: 'accept', ...modifications }
}
