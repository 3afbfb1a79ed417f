/**
 * Helpers for the routing and delivery tests: sinks that share one port on several loopback
 * addresses (so a mailertable, a relay and MX hosts can each be a distinct 127.x host with
 * the same port, as port 25 would be), an SMTP sender that reports every RCPT reply, and
 * small message and wait helpers. Every address used is loopback.
 */
import { type Sink, type SinkOptions, startSink } from '../../src/bench/sink.js'
import { type Reply, SmtpClient } from '../../src/delivery/smtp-client.js'
import { freePort } from '../support/ports.js'

/** Sinks by host, all on `port`. */
export interface SinkSet {
  readonly port: number
  readonly sinks: ReadonlyMap<string, Sink>
  get(host: string): Sink
  close(): Promise<void>
}

/** Start one sink on each host (127.x.y.z or ::1), all on the same port. */
export async function startSinks(
  hosts: readonly string[],
  options: (host: string) => SinkOptions = () => ({}),
): Promise<SinkSet> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort()
    const sinks = new Map<string, Sink>()
    try {
      for (const host of hosts) {
        if (!/^127\.\d+\.\d+\.\d+$|^::1$/.test(host)) throw new Error(`not a loopback address: ${host}`)
        sinks.set(host, await startSink({ ...options(host), host, port }))
      }
    } catch (err) {
      await Promise.all([...sinks.values()].map((s) => s.close()))
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' && attempt < 5) continue
      throw err
    }
    return {
      port,
      sinks,
      get(host) {
        const sink = sinks.get(host)
        if (!sink) throw new Error(`no sink on ${host}`)
        return sink
      },
      close: async () => {
        await Promise.all([...sinks.values()].map((s) => s.close()))
      },
    }
  }
}

/** What the server said to one message. */
export interface Sent {
  /** Per recipient: the RCPT refusal, or the reply after DATA. */
  readonly replies: readonly (Reply | undefined)[]
  /** The queue ID from `250 2.0.0 Ok: queued as <ID>`, if the message was taken. */
  readonly id?: string
}

/** Send one message over SMTP to 127.0.0.1:`port`, whatever the server says to each RCPT. */
export async function sendMail(
  port: number,
  from: string,
  to: readonly string[],
  message: Buffer,
  options: { readonly smtpUtf8?: boolean } = {},
): Promise<Sent> {
  const opened = await SmtpClient.connect({
    host: '127.0.0.1',
    port,
    lmtp: false,
    name: 'client.test',
    connectTimeoutMs: 5_000,
    socketTimeoutMs: 20_000,
  })
  if (!opened.ok) throw new Error(`connect: ${opened.reply.text}`)
  try {
    const report = await opened.client.transaction({
      mailFrom: from,
      rcptTo: to,
      message,
      size: message.length,
      ...options,
    })
    const id = report.replies
      .map((r) => (r && r.code === 250 ? /queued as ([0-9A-Za-z]{16})\b/.exec(r.text)?.[1] : undefined))
      .find((x) => x !== undefined)
    return id ? { replies: report.replies, id } : { replies: report.replies }
  } finally {
    await opened.client.quit()
  }
}

/** A small complete message whose Subject and Message-ID carry `tag`. */
export function testMessage(tag: string, extraHeaders: readonly string[] = []): Buffer {
  return Buffer.from(
    [
      ...extraHeaders,
      'From: Tester <tester@sender.example>',
      'To: undisclosed-recipients:;',
      `Subject: routing ${tag}`,
      'Date: Mon, 23 Nov 2026 20:00:00 +0000',
      `Message-ID: <${tag}@sender.example>`,
      '',
      `body of ${tag}`,
      '',
    ].join('\r\n'),
  )
}

/** Wait until `ready()` holds, polling; throws with `what` after `timeoutMs`. */
export async function until(ready: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!ready()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(25)
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
