import { setTimeout as sleep } from 'node:timers/promises'
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
  /**
   * Open loop: message `seq` is due `seq / rate` seconds after the start, whether or not the
   * earlier ones were answered, and its latency counts from then. Without it, a closed loop:
   * each client sends its next message as soon as the last one was answered.
   */
  readonly rate?: number
  /** Called after each 250 with the message's sequence number. */
  readonly onAccepted?: (seq: number) => void
  /** Which run the messages belong to (see `benchMessage`). Default 0. */
  readonly run?: number
  /** The envelope recipient of message `seq` (default: every message to `sink@example.test`). */
  readonly recipient?: (seq: number) => string
}

/** What a load run measured. */
export interface LoadResult {
  /**
   * Per message: ms from connecting (or MAIL, when reusing) to the 250 after DATA; with a
   * `rate`, from when the message was due, so time spent waiting for a free client counts.
   */
  readonly acceptMs: number[]
  /** Per sequence number: when sending started, or with a `rate` was due (performance.now()). */
  readonly startedAt: Float64Array
  readonly errors: string[]
  readonly elapsedMs: number
}

/** Wait until `performance.now()` reaches `due`: timers count whole ms and may fire up to one early. */
async function sleepUntil(due: number): Promise<void> {
  for (let wait = due - performance.now(); wait > 0; wait = due - performance.now()) await sleep(wait)
}

/**
 * Push `messages` messages at `concurrency` over SMTP. Each client loop takes the next
 * sequence number until all are sent; failures are counted, not retried.
 *
 * With a `rate`, a loop that takes a message before it is due waits for its time, and one that
 * takes it late (every client was busy) measures from the due time all the same: a server that
 * falls behind the offered rate shows as queueing, as it would to an MTA, instead of slowing the
 * load down to what it can take (the closed loop's "coordinated omission").
 */
export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  // Built before the clock starts: the generator should not compete with what it measures.
  const messages = Array.from({ length: opts.messages }, (_, seq) => benchMessage(seq, opts.size, opts.run))
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
      const due = opts.rate === undefined ? undefined : t0 + (seq * 1000) / opts.rate
      if (due !== undefined) await sleepUntil(due)
      const started = due ?? performance.now()
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
