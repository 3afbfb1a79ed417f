import { writeSync } from 'node:fs'

/** Characters of log lines that are written at once, without waiting for the end of the turn. */
const LOG_BATCH_CHARS = 4096

const pause = new Int32Array(new SharedArrayBuffer(4))

/** write(2) all of `text`, waiting out EAGAIN from a non-blocking pipe whose reader is behind. */
function writeFully(fd: number, text: string): void {
  let rest = Buffer.from(text)
  while (rest.length > 0) {
    try {
      rest = rest.subarray(writeSync(fd, rest))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err
      Atomics.wait(pause, 0, 0, 10)
    }
  }
}

/**
 * The daemon's log destination: lines go to `fd` (stdout) in synchronous writes, as Node
 * itself writes to files and pipes on Linux, gathered per turn of the event loop: what the
 * handlers of one turn log goes out in one write(2) when the turn ends (or at 4 KiB), so no
 * line waits for anything but the code already running. pino's default instead hands every
 * line or two to the threadpool, whose wake-ups cost more than the writing. Our own rather
 * than sonic-boom's buffered mode: that one waits for a size or an explicit flush, and its
 * flushSync also fsyncs the log.
 */
export class BatchedDestination {
  private pending = ''
  private scheduled = false
  private failed = false

  constructor(private readonly fd = 1) {
    process.on('exit', () => this.flush())
  }

  write(line: string): void {
    this.pending += line
    if (this.pending.length >= LOG_BATCH_CHARS) this.flush()
    else if (!this.scheduled) {
      this.scheduled = true
      setImmediate(() => this.flush()).unref()
    }
  }

  /** Write what is held back now (pino's `logger.flush()` calls this). */
  flush(done?: () => void): void {
    this.scheduled = false
    const text = this.pending
    this.pending = ''
    try {
      if (text) writeFully(this.fd, text)
    } catch (err) {
      // A log that cannot be written (EPIPE, a full disk) must not stop the mail: these lines
      // are dropped, said once on stderr, and later ones tried again.
      if (!this.failed) process.stderr.write(`mailscreen: log lines dropped: ${(err as Error).message}\n`)
      this.failed = true
    }
    done?.()
  }
}
