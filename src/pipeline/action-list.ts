/**
 * Action lists, MailScanner's vocabulary: what a verdict category does to a message, written
 * as words (`tag header "X-Spam: yes" deliver`). Parsed once at start-up (and on reload), so
 * a typo stops mailscreen instead of misrouting mail.
 */

/** One action. */
export type Action =
  /** Deliver to the envelope recipients (with the scan headers and any tag/header/strip). */
  | { readonly kind: 'deliver' }
  /** Tag the subject; without text, with the category's configured tag. */
  | { readonly kind: 'tag'; readonly text?: string }
  /** Add a header field to the delivered copy. */
  | { readonly kind: 'header'; readonly name: string; readonly value: string }
  /** Keep the original, as received, in the quarantine. */
  | { readonly kind: 'quarantine' }
  /** Remove the offending parts, add a note saying what and why, deliver the rest. */
  | { readonly kind: 'strip' }
  /** Send the (tagged) message to this address too. */
  | { readonly kind: 'forward'; readonly address: string }
  /** Deliver nothing, on purpose. */
  | { readonly kind: 'drop' }
  /** Tell the sender the message was refused (never to `<>`). */
  | { readonly kind: 'bounce' }
  /**
   * Refuse the message: in milter mode with `550 5.7.1` at end of data, so the sending MTA
   * learns at once (no backscatter); in content-filter mode, already accepted, like `bounce`.
   */
  | { readonly kind: 'reject' }

export type ActionKind = Action['kind']

const ACTION_WORDS: readonly ActionKind[] = [
  'deliver',
  'tag',
  'header',
  'quarantine',
  'strip',
  'forward',
  'drop',
  'bounce',
  'reject',
]

/** Actions that decide where the message goes; every list needs at least one. */
const DESTINATIONS: ReadonlySet<ActionKind> = new Set([
  'deliver',
  'strip',
  'forward',
  'quarantine',
  'drop',
  'bounce',
  'reject',
])

const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]+$/
const ADDRESS = /^[^\s@<>]+@[^\s@<>]+$/

interface Word {
  readonly text: string
  readonly quoted: boolean
}

/** Split on blanks, keeping `"double quoted"` words whole (`\"` and `\\` escape inside). */
function words(text: string): Word[] {
  const found: Word[] = []
  for (const match of text.matchAll(/"((?:[^"\\]|\\.)*)"|([^\s"]+)|(")/g)) {
    if (match[3] !== undefined) throw new Error('unbalanced double quote')
    found.push(
      match[1] !== undefined
        ? { text: match[1].replace(/\\(.)/g, '$1'), quoted: true }
        : { text: match[2] as string, quoted: false },
    )
  }
  return found
}

/** The words of an action list, quotes removed. */
export function splitWords(text: string): string[] {
  return words(text).map((w) => w.text)
}

function parseHeader(text: string | undefined): Action {
  const colon = text?.indexOf(':') ?? -1
  if (text === undefined || colon <= 0) throw new Error('header needs "Name: value"')
  const name = text.slice(0, colon).trim()
  const value = text.slice(colon + 1).trim()
  if (!FIELD_NAME.test(name)) throw new Error(`header: ${JSON.stringify(name)} is not a header field name`)
  if (/[\r\n]/.test(value)) throw new Error('header: value must be one line')
  return { kind: 'header', name, value }
}

/**
 * Parse an action list. Throws with the reason: an unknown word, a missing argument, no
 * destination at all, or `drop` together with a delivery.
 */
export function parseActionList(text: string): Action[] {
  const list = words(text)
  const actions: Action[] = []
  for (let i = 0; i < list.length; i++) {
    const word = (list[i] as Word).text.toLowerCase()
    switch (word) {
      case 'deliver':
      case 'quarantine':
      case 'strip':
      case 'drop':
      case 'bounce':
      case 'reject':
        actions.push({ kind: word })
        break
      case 'tag': {
        // Only a quoted word is a tag text, so a misspelt action is an error, not a tag.
        const next = list[i + 1]
        if (next?.quoted) {
          if (next.text === '') throw new Error('tag: the text must not be empty')
          actions.push({ kind: 'tag', text: next.text })
          i++
        } else actions.push({ kind: 'tag' })
        break
      }
      case 'header':
        actions.push(parseHeader(list[++i]?.text))
        break
      case 'forward': {
        const address = list[++i]?.text
        if (address === undefined || !ADDRESS.test(address))
          throw new Error('forward needs an address (user@domain)')
        actions.push({ kind: 'forward', address })
        break
      }
      default:
        throw new Error(`unknown action ${JSON.stringify(list[i]?.text)} (known: ${ACTION_WORDS.join(' ')})`)
    }
  }
  if (!actions.some((a) => DESTINATIONS.has(a.kind)))
    throw new Error(
      `no destination: add one of ${[...DESTINATIONS].join(', ')} (drop, to discard on purpose)`,
    )
  if (
    actions.some((a) => a.kind === 'drop') &&
    actions.some((a) => ['deliver', 'strip', 'forward', 'reject'].includes(a.kind))
  )
    throw new Error('drop cannot be combined with deliver, strip, forward or reject')
  return actions
}

/** An action list as text again, for logs and the spool (round-trips through the parser). */
export function formatActionList(actions: readonly Action[]): string {
  const quote = (s: string) => (/[\s"]/.test(s) ? `"${s.replace(/(["\\])/g, '\\$1')}"` : s)
  return actions
    .map((a) => {
      switch (a.kind) {
        case 'tag':
          return a.text === undefined ? 'tag' : `tag "${a.text.replace(/(["\\])/g, '\\$1')}"`
        case 'header':
          return `header ${quote(`${a.name}: ${a.value}`)}`
        case 'forward':
          return `forward ${a.address}`
        default:
          return a.kind
      }
    })
    .join(' ')
}
