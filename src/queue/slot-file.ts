import { closeSync, constants, fsync, ftruncateSync, openSync, writev } from 'node:fs'
import { promisify } from 'node:util'

const writevAsync = promisify(writev)
const fsyncAsync = promisify(fsync)

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
   * the directory's lock exclusively even when the file exists.
   */
  static open(path: string): SlotFile {
    try {
      return new SlotFile(openSync(path, constants.O_WRONLY))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      return new SlotFile(openSync(path, 'w'))
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
