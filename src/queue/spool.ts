import { createWriteStream } from 'node:fs'
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { MailscreenError } from '../errors.js'
import { DirSync } from './dir-sync.js'
import { type QueueId, parseQueueId } from './ids.js'
import { decodeSpoolFile, encodeHeader, type RetryState, type SpoolHeader } from './spool-file.js'

/** The states a message can be in; each is a directory, moves are renames. */
export const SPOOL_STATES = ['incoming', 'processing', 'outgoing', 'deferred', 'quarantine', 'failed'] as const
export type SpoolState = (typeof SPOOL_STATES)[number]

const TMP = 'tmp'
const RETRY_SUFFIX = '.retry'

/** One message as stored. */
export interface SpoolEntry {
  readonly header: SpoolHeader
  readonly message: Buffer
}

/**
 * The on-disk queue. Files are written under `tmp/`, fsynced, renamed into a state directory
 * and that directory fsynced; a message changes state by rename(2) only.
 */
export class Spool {
  private readonly dirSyncs = new Map<string, DirSync>()

  constructor(
    readonly dir: string,
    private readonly fsync: boolean = true,
  ) {}

  /** Create the directories; safe to call every start. */
  async init(): Promise<void> {
    for (const state of [...SPOOL_STATES, TMP]) await mkdir(join(this.dir, state), { recursive: true })
  }

  /** Path of a message in a state. */
  path(state: SpoolState, id: QueueId): string {
    return join(this.dir, state, id)
  }

  private syncDir(name: string): Promise<void> {
    let syncer = this.dirSyncs.get(name)
    if (!syncer) {
      syncer = new DirSync(join(this.dir, name), this.fsync)
      this.dirSyncs.set(name, syncer)
    }
    return syncer.sync()
  }

  /**
   * Store a new message durably in `incoming/`: stream to tmp, fsync, rename, fsync the
   * directory. Resolves only when a crash can no longer lose it; on any error the temp file
   * is removed and the error is MSC_SPOOL_WRITE_FAILED (or the stream's own SMTP error).
   */
  async receive(header: SpoolHeader, data: Readable): Promise<{ size: number }> {
    const tmp = join(this.dir, TMP, header.id)
    const headerBytes = encodeHeader(header)
    try {
      const out = createWriteStream(tmp, { flags: 'wx' })
      out.write(headerBytes)
      await pipeline(data, out)
      await this.fsyncFile(tmp)
      await rename(tmp, this.path('incoming', header.id))
      await this.syncDir('incoming')
      return { size: out.bytesWritten - headerBytes.length }
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => undefined)
      if ((err as { responseCode?: number }).responseCode) throw err
      throw new MailscreenError('MSC_SPOOL_WRITE_FAILED', `spool write failed: ${(err as Error).message}`, {
        cause: err,
      })
    }
  }

  /** Write a complete file into a state (via tmp, durably); replaces an older one of the same ID. */
  async write(state: SpoolState, header: SpoolHeader, message: Buffer | readonly Buffer[]): Promise<void> {
    await this.stage(`${header.id}.${state}`, header, message)
    await this.commit(`${header.id}.${state}`, state, header.id)
  }

  /**
   * Write a file under `tmp/` and fsync it, without making it visible in any state. Worker
   * threads stage their output this way; the main thread then {@link commit}s it.
   */
  async stage(name: string, header: SpoolHeader, message: Buffer | readonly Buffer[]): Promise<void> {
    const tmp = join(this.dir, TMP, name)
    const parts = [encodeHeader(header), ...(Buffer.isBuffer(message) ? [message] : message)]
    try {
      const handle = await open(tmp, 'w')
      try {
        await handle.writev(parts)
        if (this.fsync) await handle.sync()
      } finally {
        await handle.close()
      }
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => undefined)
      throw new MailscreenError('MSC_SPOOL_WRITE_FAILED', `spool write failed: ${(err as Error).message}`, {
        cause: err,
      })
    }
  }

  /** Move a staged file into a state as message `id` (atomic rename, directory fsynced). */
  async commit(name: string, state: SpoolState, id: QueueId): Promise<void> {
    await rename(join(this.dir, TMP, name), this.path(state, id))
    await this.syncDir(state)
  }

  /** Drop a staged file that will not be committed. */
  async discardStaged(name: string): Promise<void> {
    await rm(join(this.dir, TMP, name), { force: true })
  }

  private async fsyncFile(path: string): Promise<void> {
    if (!this.fsync) return
    const handle = await open(path, 'r+')
    try {
      await handle.sync()
    } finally {
      await handle.close()
    }
  }

  /** Move a message between states (atomic rename; the target directory is fsynced). */
  async move(id: QueueId, from: SpoolState, to: SpoolState): Promise<void> {
    await rename(this.path(from, id), this.path(to, id))
    await this.syncDir(to)
  }

  /** Read a stored message. */
  async read(state: SpoolState, id: QueueId): Promise<SpoolEntry> {
    const file = await readFile(this.path(state, id))
    try {
      return decodeSpoolFile(file)
    } catch (err) {
      throw new MailscreenError('MSC_SPOOL_CORRUPT', `${state}/${id}: ${(err as Error).message}`, { cause: err })
    }
  }

  /**
   * Read the header line and the start of the message (enough for its header fields)
   * without loading a large message whole. `size` is the message's full size.
   */
  async peek(state: SpoolState, id: QueueId, bytes = 65_536): Promise<SpoolEntry & { size: number; mtimeMs: number }> {
    const handle = await open(this.path(state, id), 'r')
    try {
      const info = await handle.stat()
      const buffer = Buffer.alloc(Math.min(info.size, bytes))
      await handle.read(buffer, 0, buffer.length, 0)
      const entry = decodeSpoolFile(buffer)
      const headerLength = buffer.length - entry.message.length
      return { ...entry, size: info.size - headerLength, mtimeMs: info.mtimeMs }
    } catch (err) {
      throw new MailscreenError('MSC_SPOOL_CORRUPT', `${state}/${id}: ${(err as Error).message}`, { cause: err })
    } finally {
      await handle.close()
    }
  }

  /** Remove a message (and its retry state). Only after the next hop took it, or on purpose. */
  async remove(state: SpoolState, id: QueueId): Promise<void> {
    await rm(this.path(state, id), { force: true })
    if (state === 'deferred') await rm(this.retryPath(id), { force: true })
  }

  /** The IDs in a state, oldest first (IDs sort by creation time). */
  async list(state: SpoolState): Promise<QueueId[]> {
    const names = await readdir(join(this.dir, state))
    const ids: QueueId[] = []
    for (const name of names) {
      const id = parseQueueId(name)
      if (id) ids.push(id)
    }
    return ids.sort()
  }

  /** Which state a message is in, if any. */
  async find(id: QueueId): Promise<SpoolState | undefined> {
    for (const state of SPOOL_STATES) {
      if (await stat(this.path(state, id)).then(
        () => true,
        () => false,
      ))
        return state
    }
    return undefined
  }

  private retryPath(id: QueueId): string {
    return join(this.dir, 'deferred', `${id}${RETRY_SUFFIX}`)
  }

  /** Save the retry state of a deferred message (atomic replace). */
  async writeRetry(id: QueueId, state: RetryState): Promise<void> {
    const tmp = join(this.dir, TMP, `${id}${RETRY_SUFFIX}`)
    await writeFile(tmp, JSON.stringify(state))
    await rename(tmp, this.retryPath(id))
  }

  /** The retry state of a deferred message; undefined if none was saved (retry everything now). */
  async readRetry(id: QueueId): Promise<RetryState | undefined> {
    try {
      return JSON.parse(await readFile(this.retryPath(id), 'utf8')) as RetryState
    } catch {
      return undefined
    }
  }

  /**
   * Crash recovery, run before anything else starts: scans left in `processing/` go back to
   * `incoming/` (at-least-once), unless a finished copy already reached a later state; temp
   * files of unacknowledged writes are removed. Returns the IDs put back.
   */
  async recover(): Promise<QueueId[]> {
    const requeued: QueueId[] = []
    for (const id of await this.list('processing')) {
      const done = await Promise.all(
        (['outgoing', 'deferred', 'quarantine', 'failed'] as const).map((s) =>
          stat(this.path(s, id)).then(
            () => true,
            () => false,
          ),
        ),
      )
      if (done.some(Boolean)) await rm(this.path('processing', id), { force: true })
      else {
        await this.move(id, 'processing', 'incoming')
        requeued.push(id)
      }
    }
    await rm(join(this.dir, TMP), { recursive: true, force: true })
    await mkdir(join(this.dir, TMP), { recursive: true })
    return requeued
  }
}
