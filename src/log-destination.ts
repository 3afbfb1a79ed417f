import { writeSync } from 'node:fs'

/** How long a log line may wait to be written together with the next ones. */
export const LOG_FLUSH_MS = 100
/** Characters of log lines that are written at once, without waiting. */
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
 * itself writes to files and pipes on Linux, but batched: a line waits at most
 * {@link LOG_FLUSH_MS}, or until 4 KiB have gathered. Under load that is one write(2) for a
 * dozen lines, where pino's default (a threadpool write for every line or two) cost more in
 * thread wake-ups than the writing. A kill -9 loses at most the last 100 ms of lines; any other
 * exit writes them out. Our own rather than sonic-boom's buffered mode: its flushSync also
 * fsyncs the log, and its buffered sync mode can hold a remainder back until the next line.
 */
export class BatchedDestination {
  private pending = ''
  private timer: NodeJS.Timeout | undefined
  private failed = false

  constructor(private readonly fd = 1) {
    process.on('exit', () => this.flush())
  }

  write(line: string): void {
    this.pending += line
    if (this.pending.length >= LOG_BATCH_CHARS) this.flush()
    else this.timer ??= setTimeout(() => this.flush(), LOG_FLUSH_MS).unref()
  }

  /** Write what is held back now (pino's `logger.flush()` calls this). */
  flush(done?: () => void): void {
    clearTimeout(this.timer)
    this.timer = undefined
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
