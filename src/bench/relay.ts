/**
 * A minimal durable relay, the baseline of `mailscreen bench --baseline`: the least any
 * store-and-forward filter must do per message. It receives the message over SMTP (mailscreen's
 * own listener), writes it to a file, fsyncs the file and the directory (group-committed, as
 * mailscreen does) before its 250, forwards it over reused SMTP sessions (mailscreen's own
 * client), and deletes the file. No scan, no routing, no queue states, no retries, no logs.
 *
 * Measured in the same run as mailscreen and the bare sink, it separates what durability and
 * two SMTP hops cost on this machine from what mailscreen adds to them. Not for mail: a message
 * whose forwarding fails is only counted (the sink would report it missing).
 */
import { unlinkSync } from 'node:fs'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { SmtpClient } from '../delivery/smtp-client.js'
import { reply } from '../ingress/smtp-reply.js'
import { createSmtpServer, type SmtpServer } from '../ingress/smtp-server.js'
import { DirSync } from '../queue/dir-sync.js'
import { SlotFile } from '../queue/slot-file.js'

export interface RelayOptions {
  /** Where message files live while they wait to be forwarded. */
  readonly dir: string
  readonly nextHop: { readonly host: string; readonly port: number }
  /** SMTP sessions to the next hop (mailscreen's default `delivery.maxConnectionsPerDestination`). */
  readonly sessions?: number
}

interface Held {
  readonly file: string
  readonly mailFrom: string
  readonly rcptTo: readonly string[]
  readonly message: Buffer
}

export interface DurableRelay {
  readonly server: SmtpServer
  /** Messages the next hop did not take. */
  readonly failures: number
  close(): Promise<void>
}

async function collect(data: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of data) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

/** Start the relay; it listens once the caller calls `server.listen`. */
export function createDurableRelay(options: RelayOptions): DurableRelay {
  const dirSync = new DirSync(options.dir)
  const waiting: Held[] = []
  const idle: SmtpClient[] = []
  let sessions = 0
  let failures = 0
  let counter = 0
  const maxSessions = options.sessions ?? 20

  const connect = async (): Promise<SmtpClient | undefined> => {
    const connected = await SmtpClient.connect({
      ...options.nextHop,
      lmtp: false,
      name: 'relay.bench',
      connectTimeoutMs: 10_000,
      socketTimeoutMs: 60_000,
    })
    return connected.ok ? connected.client : undefined
  }

  /** One session's loop: forward what waits, then park the session. */
  const drain = async (first: SmtpClient | undefined): Promise<void> => {
    let client = first ?? (await connect())
    for (let held = waiting.shift(); held; held = waiting.shift()) {
      const report = client
        ? await client.transaction({
            mailFrom: held.mailFrom,
            rcptTo: held.rcptTo,
            message: held.message,
            size: held.message.length,
          })
        : undefined
      const taken = report?.replies.every((r) => r !== undefined && r.code < 300)
      if (!taken || !removed(held.file)) failures++
      if (!report?.reusable) client = await connect()
    }
    if (client) idle.push(client)
    sessions--
  }

  const forward = (held: Held): void => {
    waiting.push(held)
    if (sessions >= maxSessions) return
    sessions++
    void drain(idle.pop())
  }

  const server = createSmtpServer({
    hostname: 'relay.bench',
    maxSize: 52_428_800,
    async onMessage(tx, data) {
      const message = await collect(data)
      const file = join(options.dir, `m${++counter}`)
      // The file calls mailscreen's spool makes for a message that fits in memory.
      await SlotFile.write(file, [message], true)
      await dirSync.sync()
      forward({ file, mailFrom: tx.mailFrom, rcptTo: [...tx.rcptTo], message })
      return reply(250, '2.0.0', `Ok: queued as ${counter}`)
    },
  })
  return {
    server,
    get failures() {
      return failures
    },
    async close() {
      await server.close()
      await Promise.all(idle.splice(0).map((c) => c.quit()))
    },
  }
}

/** unlink(2) on the calling thread, as the spool makes its metadata calls; false when it failed. */
function removed(path: string): boolean {
  try {
    unlinkSync(path)
    return true
  } catch {
    return false
  }
}
