import { BenchClient } from './client.js'
import { benchMessage } from './message.js'

export interface LoadOptions {
  readonly host: string
  readonly port: number
  readonly messages: number
  readonly concurrency: number
  readonly size: number
  /** Send every message of a client over one connection instead of one connection each. */
  readonly reuse: boolean
  /** Called after each 250 with the message's sequence number. */
  readonly onAccepted?: (seq: number) => void
  /** The envelope recipient of message `seq` (default: every message to `sink@example.test`). */
  readonly recipient?: (seq: number) => string
}

/** What a load run measured. */
export interface LoadResult {
  /** Per message: ms from connecting (or MAIL, when reusing) to the 250 after DATA. */
  readonly acceptMs: number[]
  /** Per sequence number: when sending started (performance.now()). */
  readonly startedAt: Float64Array
  readonly errors: string[]
  readonly elapsedMs: number
}

/**
 * Push `messages` messages at `concurrency` over SMTP. Each client loop takes the next
 * sequence number until all are sent; failures are counted, not retried.
 */
export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  // Built before the clock starts: the generator should not compete with what it measures.
  const messages = Array.from({ length: opts.messages }, (_, seq) => benchMessage(seq, opts.size))
  const acceptMs: number[] = []
  const startedAt = new Float64Array(opts.messages)
  const errors: string[] = []
  let next = 0
  const t0 = performance.now()

  async function loop(): Promise<void> {
    let client: BenchClient | undefined
    while (next < opts.messages) {
      const seq = next++
      const message = messages[seq] as Buffer
      const started = performance.now()
      startedAt[seq] = started
      try {
        client ??= await BenchClient.open(opts.host, opts.port)
        await client.send('bench@example.test', [opts.recipient?.(seq) ?? 'sink@example.test'], message)
        acceptMs.push(performance.now() - started)
        opts.onAccepted?.(seq)
      } catch (err) {
        errors.push((err as Error).message)
        // Close it: a server (Postfix's smtpd) would otherwise hold a process for the dead session.
        await client?.close()
        client = undefined
      }
      if (!opts.reuse && client) {
        await client.close()
        client = undefined
      }
    }
    await client?.close()
  }

  await Promise.all(Array.from({ length: Math.min(opts.concurrency, opts.messages) }, loop))
  return { acceptMs, startedAt, errors, elapsedMs: performance.now() - t0 }
}
