import { isIP } from 'node:net'
/**
 * From verdict to disposition: pick the category's action list (by ruleset), and turn it
 * into where the message goes and what the delivered copy looks like. Runs in the worker.
 */
import type { Envelope } from '../ingress/envelope.js'
import { rfc5322Date } from '../mail/date.js'
import type { HeaderEdit } from '../mail/edits.js'
import type { QueueId } from '../queue/ids.js'
import { type Action, formatActionList } from './action-list.js'
import { compileRuleset, type Ruleset, type RulesetMatcher } from './ruleset.js'
import type { ListMatch, ScoredHit, Verdict, VerdictCategory, VerdictPolicy } from './verdict.js'

/** The policy as it crosses into workers: plain data, rulesets already parsed. */
export interface PolicySettings {
  readonly verdict: VerdictPolicy
  readonly actions: Readonly<Record<VerdictCategory, Ruleset<Action[]>>>
  readonly definitelyNotSpam: Ruleset<boolean>
  readonly definitelySpam: Ruleset<boolean>
  readonly tags: Readonly<Record<VerdictCategory, string>>
  readonly tagPosition: 'start' | 'end'
  readonly hostname: string
  readonly scannedHeader: string
}

/** What happens to one message after its verdict. Plain data. */
export interface Disposition {
  /** The action list applied, as text. */
  readonly actions: string
  /** Where the list came from: `policy.actions.spam` or `file:line`. */
  readonly rule: string
  /** Recipients of the delivered copy: the envelope's (deliver, strip) and forwards. Empty: none. */
  readonly deliverTo: readonly string[]
  /** Whether the envelope recipients get a copy (`deliver` or `strip`), not only forwards. */
  readonly toRecipients: boolean
  readonly quarantine: boolean
  /** Tell the sender (`bounce`; `reject` in content-filter mode). */
  readonly bounce: boolean
  /** Refuse at the SMTP level where the front end can (milter); see {@link bounce} otherwise. */
  readonly reject: boolean
  /** Parts to remove from the delivered copy (`all`: the whole body), with the notice text. */
  readonly strip?: { readonly parts: readonly string[] | 'all'; readonly notice: string }
  /** Header changes of the delivered copy. */
  readonly edits: readonly HeaderEdit[]
}

/** Fields a sender could forge to fool users' filters; ours replace them. */
export const OWN_FIELDS = [
  'X-mailscreen-Scanned',
  'X-mailscreen-Verdict',
  'X-mailscreen-SpamCheck',
  'X-mailscreen-SpamScore',
  'X-mailscreen-Virus',
  'X-Spam-Flag',
  'X-Spam-Status',
  'X-mailscreen-Released',
]

/** Cap on the `s` characters of `X-mailscreen-SpamScore`. */
const SPAM_SCORE_CAP = 50
/** Symbols shown in `X-mailscreen-SpamCheck`. */
const TOP_SYMBOLS = 10

const LABELS: Readonly<Record<VerdictCategory, string>> = {
  clean: 'not spam',
  spam: 'spam',
  highspam: 'spam, high scoring',
  virus: 'virus',
  banned: 'banned attachment',
  unscannable: 'unscannable',
}

/** The `Received:` field mailscreen adds for its own hop (RFC 5321 §4.4). */
export function receivedHeader(envelope: Envelope, queueId: QueueId, hostname: string): string {
  const client = envelope.client
  // An address literal, for IPv6 with its tag (RFC 5321 §4.1.3), also as the from-domain
  // of a client that gave no HELO.
  const literal = `[${isIP(client.address) === 6 ? 'IPv6:' : ''}${client.address}]`
  const from = `${client.helo ?? literal} (${client.name ? `${client.name} ` : ''}${literal})`
  const rcpt = envelope.rcptTo.length === 1 ? ` for <${envelope.rcptTo[0]}>` : ''
  const protocol = envelope.smtpUtf8 ? 'UTF8SMTP' : 'ESMTP'
  return `from ${from} by ${hostname} (mailscreen) with ${protocol} id ${queueId}${rcpt}; ${rfc5322Date(new Date(envelope.receivedAt))}`
}

/** A one-line summary of a verdict for the `X-mailscreen-Verdict` header and logs. */
export function verdictSummary(verdict: Verdict): string {
  const symbols = verdict.hits.map((h) => (h.score === 0 ? h.symbol : `${h.symbol}=${h.score}`)).join(' ')
  return `${verdict.category}, score=${verdict.score} required=${verdict.required}${symbols ? ` symbols=${symbols}` : ''}`
}

function isSpam(category: VerdictCategory): boolean {
  return category === 'spam' || category === 'highspam'
}

/** The scan headers every delivered copy carries, for people and for their Sieve filters. */
export function scanHeaders(verdict: Verdict, queueId: QueueId, policy: PolicySettings): HeaderEdit[] {
  const prepend = (name: string, value: string): HeaderEdit => ({ op: 'prepend', name, value })
  const top = verdict.hits
    .filter((h) => h.score !== 0)
    .slice(0, TOP_SYMBOLS)
    .map((h) => `${h.symbol} ${h.score}`)
  const listed = verdict.listed ? `, ${verdict.listed.list}` : ''
  const spam = isSpam(verdict.category)
  const edits: HeaderEdit[] = [
    prepend('X-mailscreen-Scanned', `${policy.scannedHeader} on ${policy.hostname} (id ${queueId})`),
    prepend('X-mailscreen-Verdict', verdictSummary(verdict)),
    prepend(
      'X-mailscreen-SpamCheck',
      `${LABELS[verdict.category]}${listed}, score=${verdict.score} required=${verdict.required}${top.length ? ` (${top.join(', ')})` : ''}`,
    ),
    prepend('X-Spam-Flag', spam ? 'YES' : 'NO'),
    prepend(
      'X-Spam-Status',
      `${spam ? 'Yes' : 'No'}, score=${verdict.score.toFixed(1)} required=${verdict.required.toFixed(1)} tests=${[...new Set(verdict.hits.map((h) => h.symbol))].join(',') || 'none'}`,
    ),
  ]
  const points = Math.min(SPAM_SCORE_CAP, Math.floor(verdict.score))
  if (points > 0) edits.push(prepend('X-mailscreen-SpamScore', 's'.repeat(points)))
  const viruses = verdict.hits.filter((h) => h.category === 'virus').flatMap((h) => h.evidence)
  if (viruses.length > 0) edits.push(prepend('X-mailscreen-Virus', viruses.join(', ')))
  return edits
}

/** Where the verdict's action list comes from for this envelope. */
export interface CompiledPolicy {
  readonly settings: PolicySettings
  readonly actions: Readonly<Record<VerdictCategory, RulesetMatcher<Action[]>>>
  /** Which administrator's list the envelope is on, if any (not-spam wins). */
  listed(envelope: Envelope): ListMatch | undefined
}

function where(ruleset: Ruleset<unknown>, line: number): string {
  return line === 0 ? ruleset.source : `${ruleset.source}:${line}`
}

/** Compile the policy's rulesets once per thread. */
export function compilePolicy(settings: PolicySettings): CompiledPolicy {
  const actions = Object.fromEntries(
    Object.entries(settings.actions).map(([category, ruleset]) => [category, compileRuleset(ruleset)]),
  ) as Record<VerdictCategory, RulesetMatcher<Action[]>>
  const notSpam = compileRuleset(settings.definitelyNotSpam)
  const spam = compileRuleset(settings.definitelySpam)
  return {
    settings,
    actions,
    listed(envelope) {
      const a = notSpam(envelope)
      if (a?.value) return { list: 'definitelyNotSpam', rule: where(settings.definitelyNotSpam, a.line) }
      const b = spam(envelope)
      if (b?.value) return { list: 'definitelySpam', rule: where(settings.definitelySpam, b.line) }
      return undefined
    },
  }
}

const CONTENT_CATEGORIES: ReadonlySet<VerdictCategory> = new Set(['virus', 'banned', 'unscannable'])

/**
 * The hits whose parts `strip` removes: every content finding (a virus message's banned
 * attachment goes too), whatever the category the message ended in.
 */
function strippable(verdict: Verdict): readonly ScoredHit[] {
  return verdict.hits.filter((h) => h.category !== undefined)
}

/**
 * What `strip` removes: the parts the content findings name; everything when one names no
 * part, when a check failed, or when the message is in a content category without any
 * finding (unscannable because a scanner kept failing: nothing of it was checked); nothing
 * otherwise.
 */
function stripTarget(verdict: Verdict): readonly string[] | 'all' | undefined {
  // A check failed (a virus found while another scanner was down, or unscannable at the end
  // of the queue lifetime): what no finding names was not checked either.
  if (verdict.tempfail.length > 0) return 'all'
  const hits = strippable(verdict)
  if (hits.length === 0) return CONTENT_CATEGORIES.has(verdict.category) ? 'all' : undefined
  return hits.every((h) => h.parts && h.parts.length > 0)
    ? [...new Set(hits.flatMap((h) => h.parts ?? []))]
    : 'all'
}

/** The text that replaces what `strip` removed: what, why, and where the original is. */
export function stripNotice(
  verdict: Verdict,
  queueId: QueueId,
  hostname: string,
  quarantined: boolean,
): string {
  const found = strippable(verdict).flatMap((h) =>
    (h.evidence.length > 0 ? h.evidence : [h.symbol]).map((e) => `  - ${e} (${h.symbol})`),
  )
  const lines = found.length > 0 ? found : verdict.reasons.map((r) => `  - not checked: ${r}`)
  return [
    `mailscreen on ${hostname} removed content from this message (id ${queueId}):`,
    '',
    ...lines,
    '',
    quarantined
      ? `The original is kept in quarantine. To receive it, ask your mail administrator, quoting id ${queueId}.`
      : 'The removed content was not kept.',
    '',
  ].join('\n')
}

/**
 * Choose and apply the action list for a final verdict: MailScanner's semantics. `deliver`
 * and `strip` send to the envelope recipients, `forward` adds addresses, `quarantine` keeps
 * the original, `bounce` tells the sender; `tag` and `header` shape the delivered copy.
 */
export function plan(
  verdict: Verdict,
  envelope: Envelope,
  queueId: QueueId,
  policy: CompiledPolicy,
): Disposition {
  const { settings } = policy
  const ruleset = settings.actions[verdict.category]
  const chosen = policy.actions[verdict.category](envelope)
  // Action rulesets are checked for a default line at load, so a match always exists.
  const list = chosen?.value ?? [{ kind: 'quarantine' }]
  const has = (kind: Action['kind']) => list.some((a) => a.kind === kind)
  const quarantine = has('quarantine')
  const toRecipients = has('deliver') || has('strip')
  const deliverTo = [
    ...(toRecipients ? envelope.rcptTo : []),
    ...list.flatMap((a) => (a.kind === 'forward' ? [a.address] : [])),
  ]
  const edits: HeaderEdit[] = [
    ...OWN_FIELDS.map((name): HeaderEdit => ({ op: 'remove', name })),
    { op: 'prepend', name: 'Received', value: receivedHeader(envelope, queueId, settings.hostname) },
    ...scanHeaders(verdict, queueId, settings),
  ]
  for (const action of list) {
    if (action.kind === 'header') edits.push({ op: 'prepend', name: action.name, value: action.value })
    if (action.kind === 'tag')
      edits.push({
        op: 'tagSubject',
        tag: action.text ?? settings.tags[verdict.category],
        position: settings.tagPosition,
      })
  }
  const target = has('strip') ? stripTarget(verdict) : undefined
  const strip = target && {
    parts: target,
    notice: stripNotice(verdict, queueId, settings.hostname, quarantine),
  }
  return {
    actions: formatActionList(list),
    rule: where(ruleset, chosen?.line ?? 0),
    deliverTo: [...new Set(deliverTo)],
    toRecipients,
    quarantine,
    bounce: has('bounce') || has('reject'),
    reject: has('reject'),
    ...(strip ? { strip } : {}),
    edits,
  }
}
