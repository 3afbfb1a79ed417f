import { closeSync, constants, fsync, ftruncateSync, openSync, writev } from 'node:fs'
import { promisify } from 'node:util'

const writevAsync = promisify(writev)
const fsyncAsync = promisify(fsync)

/**
 * Write all of `buffers`. writev(2) on a regular file may write only part when the disk fills
 * up meanwhile (the next call then fails with ENOSPC), and Node's writev does not retry: a
 * short write taken as complete would spool a truncated message and still answer 250.
 */
export async function writeAll(
  handle: { writev(buffers: Buffer[]): Promise<{ bytesWritten: number }> },
  buffers: readonly Buffer[],
): Promise<void> {
  let rest = buffers.filter((b) => b.length > 0)
  while (rest.length > 0) {
    let written = (await handle.writev(rest)).bytesWritten
    if (written === 0) throw new Error('write made no progress')
    const next: Buffer[] = []
    for (const b of rest) {
      if (written >= b.length) written -= b.length
      else {
        next.push(b.subarray(written))
        written = 0
      }
    }
    rest = next
  }
}

/**
 * A spool slot (a file under `tmp/`) open for overwriting. The metadata calls (open,
 * ftruncate, close) are made synchronously on the calling thread: each takes a few
 * microseconds of page-cache work, while handing it to libuv's threadpool costs three to
 * five times that here in thread wake-ups (see benchmarks/RESULTS.md). The calls that can
 * wait on the disk, writev and fsync, stay asynchronous.
 */
export class SlotFile {
  /** Bytes written so far: where the file ends once sealed. */
  private written = 0

  private constructor(private fd: number | undefined) {}

  /**
   * Open `path` to overwrite it from its start. Not O_TRUNC: truncating frees the spent
   * file's blocks only for the write to allocate them again; {@link seal} cuts off the older
   * content's tail instead. An existing slot is opened without O_CREAT: a creating open takes
   * the directory's lock exclusively even when the file exists. `flags` are added to both.
   */
  static open(path: string, flags = 0): SlotFile {
    try {
      return new SlotFile(openSync(path, constants.O_WRONLY | flags))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      return new SlotFile(openSync(path, constants.O_WRONLY | constants.O_CREAT | flags, 0o666))
    }
  }

  /**
   * Make `buffers` the whole content of the slot at `path`; with `durable`, on disk when this
   * resolves. The content is known up front, so the file is cut to its final length first and
   * written with O_DSYNC: the write returns once the data and the metadata needed to read it
   * back (the new length among them) are on disk, as write(2) then fdatasync(2) would, but in
   * one threadpool job instead of two (PostgreSQL's `open_datasync`).
   */
  static async write(path: string, buffers: readonly Buffer[], durable: boolean): Promise<void> {
    const length = buffers.reduce((sum, b) => sum + b.length, 0)
    const file = SlotFile.open(path, durable ? constants.O_DSYNC : 0)
    try {
      ftruncateSync(file.descriptor(), length)
      await writeAll(file, buffers)
    } finally {
      file.close()
    }
  }

  /** writev(2) at the current position; may write only part (see writeAll). */
  async writev(buffers: readonly Buffer[]): Promise<{ bytesWritten: number }> {
    const result = await writevAsync(this.descriptor(), buffers as Buffer[])
    this.written += result.bytesWritten
    return result
  }

  /** End the file at the bytes written through it and, with `durable`, fsync it. */
  async seal(durable: boolean): Promise<void> {
    ftruncateSync(this.descriptor(), this.written)
    if (durable) await fsyncAsync(this.descriptor())
  }

  /** Close the file; safe to call twice. */
  close(): void {
    if (this.fd === undefined) return
    const fd = this.fd
    this.fd = undefined
    closeSync(fd)
  }

  private descriptor(): number {
    if (this.fd === undefined) throw new Error('slot file is closed')
    return this.fd
  }
}
