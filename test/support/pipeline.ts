/** Helpers for unit tests of the policy pipeline (rulesets, scores, policy). */
import { expect } from 'vitest'
import { MailscreenError } from '../../src/errors.js'
import type { Envelope } from '../../src/ingress/envelope.js'

/** An envelope from alice@example.org to bob@example.net, client 203.0.113.7, with `over` on top. */
export function envelope(over: Partial<Envelope> = {}): Envelope {
  return {
    mailFrom: 'alice@example.org',
    rcptTo: ['bob@example.net'],
    client: { address: '203.0.113.7' },
    peer: { address: '127.0.0.1' },
    receivedAt: 0,
    ...over,
  }
}

/** The MailscreenError `fn` throws, as code and message (fails the test when it throws anything else or nothing). */
export function failure(fn: () => unknown): { code: string; message: string } {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(MailscreenError)
    return { code: (err as MailscreenError).code, message: (err as Error).message }
  }
  throw new Error('did not throw')
}
