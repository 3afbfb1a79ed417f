import { renameSync, unlinkSync } from 'node:fs'
import { mkdir, open, readdir, readFile, stat, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { MailscreenError } from '../errors.js'
import { JOURNAL_DIR } from './admin-journal.js'
import { DirSync } from './dir-sync.js'
import { newQueueId, parseQueueId, type QueueId } from './ids.js'
import { SlotFile, writeAll } from './slot-file.js'
import { decodeSpoolFile, encodeHeader, type RetryState, type SpoolHeader } from './spool-file.js'

/** The states a message can be in; each is a directory, moves are renames. */
export const SPOOL_STATES = [
  'incoming',
  'processing',
  'outgoing',
  'deferred',
  'quarantine',
  'failed',
] as const
export type SpoolState = (typeof SPOOL_STATES)[number]

const TMP = 'tmp'
/** Spent files kept in `tmp/` for reuse. */
const MAX_SLOTS = 1024
/**
 * Errors that may be the slot file's own (permissions, a directory in its place, a bad block):
 * such a slot is not reused. Not ENOSPC: a full disk fails every file alike.
 */
const SLOT_TROUBLE: ReadonlySet<string> = new Set([
  // Gone: dropped when a commit could not be taken back (see commitNew).
  'ENOENT',
  'EACCES',
  'EPERM',
  'EISDIR',
  'EIO',
  'EROFS',
  'ELOOP',
  'ENOTDIR',
  'EFBIG',
  'ETXTBSY',
  'EINVAL',
])

/** How often {@link Spool.removeSoon} tries again. */
const RETIRE_RETRY_MS = 5_000

/** Bytes gathered before a write while receiving. */
const WRITE_BATCH = 256 * 1024
const RETRY_SUFFIX = '.retry'
/** A message an administrator's command has taken (see {@link Spool.claim}). */
const CLAIMED_SUFFIX = '.claimed'
/** The states whose messages an administrator's command takes that way. */
const CLAIMABLE = ['quarantine', 'failed'] as const

/** unlink(2) that treats "already gone" as done (cheaper than rm's lstat + unlink). */
async function unlinkIfExists(path: string): Promise<void> {
  try {
    await unlink(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}

/** Whether an error from reading the spool means the file is not there (it moved on). */
export function isMissing(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string } } | undefined
  return e?.code === 'ENOENT' || e?.cause?.code === 'ENOENT'
}

/** A message taken by an administrator's command (see {@link Spool.claim}). */
export interface Claim {
  readonly entry: SpoolEntry
  /** Remove the claimed message: what the command made of it is safe elsewhere. */
  done(): Promise<void>
  /** Put the message back where it was. */
  undo(): void
  /**
   * Replace the claimed message by its release copy (`header.releasedFrom` must be the claimed
   * ID) and move that into `deferred/`. The copy takes the claim's place before it moves, so a
   * crash leaves either the message claimed or its copy, never both: released once. It writes
   * the copy's retry state (due now) too. A failure before the copy is in place puts the
   * message back.
   */
  release(header: SpoolHeader, message: Buffer): Promise<void>
}

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
  /** Names of spent files in `tmp/`, ready to be overwritten (see {@link takeSlot}). */
  private readonly slots: string[] = []
  private readonly slotPrefix = newQueueId()
  private slotCounter = 0

  constructor(
    readonly dir: string,
    private readonly fsync: boolean = true,
  ) {}

  /**
   * Create the directories; safe to call every start. The admin journal's too: created by the
   * daemon, it is the daemon's user's, also where root keeps the spool directory itself.
   */
  async init(): Promise<void> {
    for (const state of [...SPOOL_STATES, TMP, JOURNAL_DIR])
      await mkdir(join(this.dir, state), { recursive: true })
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
  async receive(header: SpoolHeader, data: Readable): Promise<{ size: number; entry?: SpoolEntry }> {
    const slot = this.takeSlot()
    const tmp = join(this.dir, TMP, slot)
    let file: SlotFile | undefined
    try {
      // Gather chunks and write them in batches: one write for a typical message instead of
      // one per socket chunk, while a large message still streams in bounded memory.
      let batch: Buffer[] = [encodeHeader(header)]
      let batched = 0
      let size = 0
      for await (const chunk of data as AsyncIterable<Buffer>) {
        batch.push(chunk)
        batched += chunk.length
        size += chunk.length
        if (batched >= WRITE_BATCH) {
          file ??= SlotFile.open(tmp)
          await writeAll(file, batch)
          batch = []
          batched = 0
        }
      }
      if (file) {
        await writeAll(file, batch)
        await file.seal(this.fsync)
        file.close()
        await this.commitNew(slot, 'incoming', header.id)
        return { size }
      }
      // The whole message fit in one batch: written in one go, and handed on from memory so
      // the scan need not read it back.
      await SlotFile.write(tmp, batch, this.fsync)
      await this.commitNew(slot, 'incoming', header.id)
      return { size, entry: { header, message: Buffer.concat(batch.slice(1), size) } }
    } catch (err) {
      try {
        file?.close()
      } catch {
        // The write already failed; that error is the one to report.
      }
      this.returnSlot(slot, err)
      if ((err as { responseCode?: number }).responseCode) throw err
      throw new MailscreenError('MSC_SPOOL_WRITE_FAILED', `spool write failed: ${(err as Error).message}`, {
        cause: err,
      })
    }
  }

  /**
   * A file name under `tmp/` to write a new spool file into: a spent file when there is one,
   * else a new name. Overwriting spent files instead of unlinking and creating them keeps
   * inode churn off the filesystem; on ext4 without a journal every create otherwise scans
   * past all recently deleted inodes, which under load cost more CPU than the rest of a
   * message's path together.
   */
  takeSlot(): string {
    return this.slots.pop() ?? this.newSlotName()
  }

  /** A slot name no other file in tmp/ has: this instance's unique prefix and a counter. */
  private newSlotName(): string {
    return `s${this.slotPrefix}-${++this.slotCounter}`
  }

  /**
   * Give back a slot that was taken but not committed (its content is garbage). After a write
   * that failed on the file itself (`failure`: EACCES, EIO, ...) the slot is not taken again:
   * on top of the stack, it would fail every message after it. Its file goes, if it can.
   */
  returnSlot(slot: string, failure?: unknown): void {
    const e = failure as { code?: unknown; cause?: { code?: unknown } } | undefined
    const code = e?.cause?.code ?? e?.code
    if (typeof code === 'string' && SLOT_TROUBLE.has(code)) {
      try {
        unlinkSync(join(this.dir, TMP, slot))
      } catch {
        // Not ours to fix: a new slot name is used instead.
      }
      return
    }
    if (this.slots.length < MAX_SLOTS) this.slots.push(slot)
  }

  /** Retire a spent spool file: rename it into `tmp/` as a slot, or unlink it when enough are kept. */
  private async retire(path: string): Promise<void> {
    if (this.slots.length >= MAX_SLOTS) return unlinkIfExists(path)
    const slot = this.newSlotName()
    try {
      renameSync(path, join(this.dir, TMP, slot))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw err
    }
    this.slots.push(slot)
  }

  /**
   * Write a complete file (via tmp, durably) for an ID that `state` does not hold (a scanned
   * copy, a DSN, a release, a requeue). A failure leaves nothing in `state` (see
   * {@link commitNew}), so that what the caller does about it (scan again, write another DSN)
   * makes no second copy.
   */
  async create(state: SpoolState, header: SpoolHeader, message: Buffer | readonly Buffer[]): Promise<void> {
    const slot = this.takeSlot()
    try {
      await this.stage(slot, header, message)
      await this.commitNew(slot, state, header.id)
    } catch (err) {
      this.returnSlot(slot, err)
      throw err
    }
  }

  /**
   * Write a file into the slot `tmp/<slot>` (from {@link takeSlot}) and fsync it, without
   * making it visible in any state. Worker threads stage their output this way in a slot the
   * main thread gave them; the main thread then {@link commit}s it.
   */
  async stage(slot: string, header: SpoolHeader, message: Buffer | readonly Buffer[]): Promise<void> {
    const parts = [encodeHeader(header), ...(Buffer.isBuffer(message) ? [message] : message)]
    try {
      await SlotFile.write(join(this.dir, TMP, slot), parts, this.fsync)
    } catch (err) {
      throw new MailscreenError('MSC_SPOOL_WRITE_FAILED', `spool write failed: ${(err as Error).message}`, {
        cause: err,
      })
    }
  }

  /**
   * Commit a staged slot as message `id`, new in `state`. No file is replaced, so a rename
   * whose directory fsync fails can be taken back: `incoming/` then never holds a message whose
   * client was told (451) that it was not stored and will send it again, and `outgoing/` no
   * copy that its writer will write again.
   */
  private async commitNew(slot: string, state: SpoolState, id: QueueId): Promise<void> {
    const staged = join(this.dir, TMP, slot)
    const target = this.path(state, id)
    renameSync(staged, target)
    try {
      await this.syncDir(state)
    } catch (err) {
      try {
        renameSync(target, staged)
      } catch {
        try {
          // Dropped rather than kept: the writer was told it failed, and writes it again.
          unlinkSync(target)
        } catch (takeBack) {
          const why = (takeBack as Error).message
          throw new Error(
            `${(err as Error).message}; and ${state}/${id} could not be taken back (${why}): it may go on although its writer was told it failed`,
            { cause: err },
          )
        }
      }
      throw err
    }
  }

  /** Move a staged slot into a state as message `id` (atomic rename, directory fsynced). */
  async commit(slot: string, state: SpoolState, id: QueueId): Promise<void> {
    renameSync(join(this.dir, TMP, slot), this.path(state, id))
    await this.syncDir(state)
  }

  /**
   * Move a message between states (atomic rename). The target directory is fsynced unless
   * `durable` is false: claiming a message for a scan need not survive a crash, since
   * recovery treats `processing/` like `incoming/`.
   */
  async move(id: QueueId, from: SpoolState, to: SpoolState, durable = true): Promise<void> {
    renameSync(this.path(from, id), this.path(to, id))
    if (durable) await this.syncDir(to)
  }

  /** Read a stored message. */
  async read(state: SpoolState, id: QueueId): Promise<SpoolEntry> {
    const file = await readFile(this.path(state, id))
    try {
      return decodeSpoolFile(file)
    } catch (err) {
      throw new MailscreenError('MSC_SPOOL_CORRUPT', `${state}/${id}: ${(err as Error).message}`, {
        cause: err,
      })
    }
  }

  /**
   * Read the header line and the start of the message (enough for its header fields)
   * without loading a large message whole. `size` is the message's full size.
   */
  async peek(
    state: SpoolState,
    id: QueueId,
    bytes = 65_536,
  ): Promise<SpoolEntry & { size: number; mtimeMs: number }> {
    const handle = await open(this.path(state, id), 'r')
    try {
      const info = await handle.stat()
      // The header line holds the whole envelope: read on until it ends (many recipients).
      let buffer = Buffer.alloc(Math.min(info.size, bytes))
      await handle.read(buffer, 0, buffer.length, 0)
      while (buffer.indexOf(0x0a) === -1 && buffer.length < info.size) {
        buffer = Buffer.alloc(Math.min(info.size, buffer.length * 4))
        await handle.read(buffer, 0, buffer.length, 0)
      }
      const entry = decodeSpoolFile(buffer)
      const headerLength = buffer.length - entry.message.length
      return { ...entry, size: info.size - headerLength, mtimeMs: info.mtimeMs }
    } catch (err) {
      throw new MailscreenError('MSC_SPOOL_CORRUPT', `${state}/${id}: ${(err as Error).message}`, {
        cause: err,
      })
    } finally {
      await handle.close()
    }
  }

  /**
   * Remove a message whose copy elsewhere is the message now (an original in `processing/`
   * beside its scanned copy), now or, should that fail, later: tried again every
   * RETIRE_RETRY_MS until it goes. Left there, it would be scanned and sent again after a
   * restart, when the copy may long have been delivered.
   */
  async removeSoon(state: SpoolState, id: QueueId, onFailure: (err: unknown) => void): Promise<void> {
    try {
      await this.remove(state, id)
    } catch (err) {
      onFailure(err)
      const timer = setInterval(() => {
        this.remove(state, id).then(
          () => clearInterval(timer),
          () => undefined,
        )
      }, RETIRE_RETRY_MS)
      timer.unref()
    }
  }

  /** Remove a message (and its retry state). Only after the next hop took it, or on purpose. */
  async remove(state: SpoolState, id: QueueId): Promise<void> {
    await this.retire(this.path(state, id))
    if (state === 'deferred') await this.removeRetry(id)
  }

  /**
   * Delete a message for good from a process that does not own the spool (the CLI): unlinked,
   * not recycled as a slot, with its retry state. False when it was not there.
   */
  async discard(state: SpoolState, id: QueueId): Promise<boolean> {
    try {
      await unlink(this.path(state, id))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw err
    }
    if (state === 'deferred') await this.removeRetry(id)
    // Deleted, whatever follows: a command that said it failed would be run again. Should the
    // deletion not survive a crash, the message is back, as if it had not been deleted yet.
    await this.syncDir(state).catch(() => undefined)
    return true
  }

  /**
   * Take a message for an administrator's command (`quarantine release`, `queue requeue`), so
   * that the same command run twice at once, or a delete, cannot take it too: it is renamed
   * aside in its directory (`<ID>.claimed`, which nothing lists), and start-up recovery puts it
   * back should the command die. `done()` removes it once what the command made of it is safe;
   * `undo()` puts it back. Rejects ENOENT when it is not there (any more).
   */
  async claim(state: (typeof CLAIMABLE)[number], id: QueueId): Promise<Claim> {
    const path = this.path(state, id)
    const claimed = `${path}${CLAIMED_SUFFIX}`
    renameSync(path, claimed)
    const undo = (): void => renameSync(claimed, path)
    let entry: SpoolEntry
    try {
      entry = decodeSpoolFile(await readFile(claimed))
    } catch (err) {
      undo()
      throw err
    }
    return {
      entry,
      undo,
      done: async () => {
        await unlinkIfExists(claimed)
        // Gone, whatever follows; should the removal not survive a crash, start-up recovery
        // finds the claim beside what the command made of it (see unclaim).
        await this.syncDir(state).catch(() => undefined)
      },
      release: async (header, message) => {
        const slot = this.takeSlot()
        try {
          await this.stage(slot, header, message)
        } catch (err) {
          this.returnSlot(slot, err)
          undo()
          throw err
        }
        // The point of no return: the claim now holds the copy, so the quarantined message is
        // gone and a crash from here on is finished at start-up (see unclaim), never undone.
        try {
          renameSync(join(this.dir, TMP, slot), claimed)
        } catch (err) {
          // The claim still holds the original: back into the quarantine, where it is listed.
          this.returnSlot(slot, err)
          undo()
          throw err
        }
        await this.syncDir(state)
        // The retry state before the copy, so that a sweep never sees the copy without it.
        await this.writeReleaseRetry(header)
        renameSync(claimed, this.path('deferred', header.id))
        await this.syncDir('deferred')
      },
    }
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

  /** Whether a message is in a state. */
  async holds(state: SpoolState, id: QueueId): Promise<boolean> {
    return stat(this.path(state, id)).then(
      () => true,
      () => false,
    )
  }

  /** How many messages a state holds (no sort: for figures, scraped while the queue may be long). */
  async count(state: SpoolState): Promise<number> {
    let count = 0
    for (const name of await readdir(join(this.dir, state))) if (parseQueueId(name)) count++
    return count
  }

  /** Which state a message is in, if any. */
  async find(id: QueueId): Promise<SpoolState | undefined> {
    for (const state of SPOOL_STATES) if (await this.holds(state, id)) return state
    return undefined
  }

  private retryPath(id: QueueId): string {
    return join(this.dir, 'deferred', `${id}${RETRY_SUFFIX}`)
  }

  /** Save the retry state of a deferred message (atomic replace). */
  async writeRetry(id: QueueId, state: RetryState): Promise<void> {
    // Written through a slot, like a message: a name of its own (a fixed tmp/<ID>.retry left by a
    // crash is adopted as a slot at start-up and may hold another file when the ID comes back),
    // and durable: a retry state lost in a crash would hide which recipients are done.
    const slot = this.takeSlot()
    const tmp = join(this.dir, TMP, slot)
    try {
      await SlotFile.write(tmp, [Buffer.from(JSON.stringify(state))], this.fsync)
      renameSync(tmp, this.retryPath(id))
    } catch (err) {
      this.returnSlot(slot, err)
      throw err
    }
  }

  /** A released copy's retry state: due now, to all its recipients. */
  private writeReleaseRetry(header: SpoolHeader): Promise<void> {
    return this.writeRetry(header.id, {
      phase: 'deliver',
      attempts: 0,
      nextAttemptAt: 0,
      pending: header.envelope.rcptTo,
    })
  }

  /** Remove a message's retry state (kept beside it in `deferred/`), if there is one. */
  async removeRetry(id: QueueId): Promise<void> {
    await unlinkIfExists(this.retryPath(id))
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
   * A message left in `processing/` (by a crash, or a scan that failed half-way): back to
   * `incoming/` to be scanned again, unless its scanned copy already reached `outgoing/`,
   * `deferred/` or `failed/`, in which case the original is retired. `gone` when it is no
   * longer in `processing/`.
   */
  async reclaim(id: QueueId): Promise<'requeued' | 'retired' | 'gone'> {
    const done = await Promise.all(
      // Not quarantine: a scan that keeps the original there may still owe a delivered copy.
      (['outgoing', 'deferred', 'failed'] as const).map((state) => this.holds(state, id)),
    )
    try {
      if (done.some(Boolean)) {
        await this.retire(this.path('processing', id))
        return 'retired'
      }
      await this.move(id, 'processing', 'incoming')
      return 'requeued'
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      // Never claimed (the move into processing/ failed), or put back before: it waits there.
      return (await this.holds('incoming', id)) ? 'requeued' : 'gone'
    }
  }

  /**
   * A command that died with a message claimed (see {@link claim}). A claim that already holds
   * its release copy (`releasedFrom` is the claimed ID) goes on to `deferred/`, due now: the
   * release is finished, once. Any other goes back where it was, unless a state holds it under
   * its ID (a requeue got as far as `deferred/`).
   */
  private async unclaim(): Promise<void> {
    for (const state of CLAIMABLE) {
      for (const name of await readdir(join(this.dir, state))) {
        if (!name.endsWith(CLAIMED_SUFFIX)) continue
        const id = parseQueueId(name.slice(0, -CLAIMED_SUFFIX.length))
        if (id === undefined) continue
        const claimed = join(this.dir, state, name)
        const header = await readFile(claimed)
          .then((file) => decodeSpoolFile(file).header)
          // Unreadable or corrupt: put back like any claim, for the listings to show as such.
          .catch(() => undefined)
        if (header?.releasedFrom === id) {
          await this.writeReleaseRetry(header)
          renameSync(claimed, this.path('deferred', header.id))
          await this.syncDir('deferred')
        } else if ((await this.find(id)) !== undefined) await unlinkIfExists(claimed)
        else renameSync(claimed, this.path(state, id))
      }
    }
  }

  /**
   * Retry states are written before their message moves into `deferred/`; a crash between
   * leaves one alone there. A delivery's, beside a message still in `outgoing/`, holds that
   * attempt's outcome (which recipients are done): the move is finished. Any other (a scan
   * tempfail whose message went back to the scan) is stale, and removed.
   */
  private async settleRetryStates(): Promise<void> {
    for (const name of await readdir(join(this.dir, 'deferred'))) {
      const id = name.endsWith(RETRY_SUFFIX) ? parseQueueId(name.slice(0, -RETRY_SUFFIX.length)) : undefined
      if (id === undefined || (await this.holds('deferred', id))) continue
      if ((await this.readRetry(id))?.phase === 'deliver' && (await this.holds('outgoing', id))) {
        await this.move(id, 'outgoing', 'deferred')
      } else {
        await this.removeRetry(id)
      }
    }
  }

  /**
   * Crash recovery, run before anything else starts: scans left in `processing/` go back to
   * `incoming/` (at-least-once), unless a finished copy already reached a later state; files
   * in `tmp/` (never acknowledged) become reusable slots. Returns the IDs put back.
   */
  async recover(): Promise<QueueId[]> {
    const requeued: QueueId[] = []
    for (const id of await this.list('processing')) {
      if ((await this.reclaim(id)) === 'requeued') requeued.push(id)
    }
    await this.settleRetryStates()
    await this.unclaim()
    // Nothing in tmp/ was ever acknowledged: every file there is a spent slot.
    this.slots.length = 0
    for (const name of await readdir(join(this.dir, TMP))) {
      if (this.slots.length < MAX_SLOTS) this.slots.push(name)
      else await unlinkIfExists(join(this.dir, TMP, name))
    }
    // Create the rest now, at start-up, rather than one by one under load.
    while (this.slots.length < MAX_SLOTS) {
      const slot = this.newSlotName()
      await writeFile(join(this.dir, TMP, slot), '')
      this.slots.push(slot)
    }
    return requeued
  }
}
