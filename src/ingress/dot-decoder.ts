const CR = 0x0d
const LF = 0x0a
const DOT = 0x2e
const CRLF_DOT = Buffer.from('\r\n.')
const CR_BYTE = Buffer.from('\r')

// Scanner states. Only a dot at the start of a line (after CRLF) is special, so mid-line we
// jump from one CRLF-dot to the next with indexOf and never look at single bytes.
const TEXT = 0 // inside a line, the previous byte was not CR
const SAW_CR = 1 // the previous byte was CR
const LINE_START = 2 // right after CRLF
const LEADING_DOT = 3 // the line began with a dot, which is held back
const DOT_CR = 4 // the line began with ".\r", both held back

/**
 * Decodes the SMTP DATA phase (RFC 5321 4.5.2): removes the dot-stuffing and finds the end
 * of data, `CRLF.CRLF` only (a dot line ended by a bare LF is content, against smuggling),
 * across any chunk boundaries. Decoded bytes go to `onData` as slices of the input.
 */
export class DotDecoder {
  private state = LINE_START
  private finished = false

  constructor(private readonly onData: (data: Buffer) => void) {}

  /** Whether the end-of-data line has been seen. */
  get done(): boolean {
    return this.finished
  }

  /**
   * Feed the next chunk. Returns `undefined` while the data goes on; once the terminator is
   * found, returns the bytes after it (possibly empty), which belong to the next command.
   */
  feed(chunk: Buffer): Buffer | undefined {
    if (this.finished) return chunk
    const end = chunk.length
    let start = 0 // first byte not yet passed to onData
    let i = 0
    while (i < end) {
      switch (this.state) {
        case TEXT: {
          const at = chunk.indexOf(CRLF_DOT, i)
          if (at === -1) {
            i = end
            this.state = tailState(chunk)
          } else {
            this.emit(chunk, start, at + 2)
            start = i = at + 3
            this.state = LEADING_DOT
          }
          break
        }
        case SAW_CR: {
          const byte = chunk[i++]
          this.state = byte === LF ? LINE_START : byte === CR ? SAW_CR : TEXT
          break
        }
        case LINE_START: {
          const byte = chunk[i]
          if (byte === DOT) {
            this.emit(chunk, start, i)
            start = i + 1
            this.state = LEADING_DOT
          } else {
            this.state = byte === CR ? SAW_CR : TEXT
          }
          i++
          break
        }
        case LEADING_DOT: {
          // The held dot is dropped either way: stuffing, or part of the terminator.
          start = i
          this.state = chunk[i++] === CR ? DOT_CR : TEXT
          break
        }
        case DOT_CR: {
          if (chunk[i] === LF) {
            this.finished = true
            return chunk.subarray(i + 1)
          }
          // ".\r" + something else: the dot was stuffing and the CR is content.
          if (i === 0) this.emit(CR_BYTE, 0, 1)
          this.state = SAW_CR
          break
        }
      }
    }
    if (this.state !== DOT_CR) this.emit(chunk, start, end)
    return undefined
  }

  private emit(chunk: Buffer, from: number, to: number): void {
    if (to <= from) return
    this.onData(chunk.subarray(from, to))
  }
}

/** The state after a chunk whose rest holds no CRLF-dot: only its last two bytes matter. */
function tailState(chunk: Buffer): number {
  const last = chunk.length - 1
  if (chunk[last] === CR) return SAW_CR
  if (chunk[last] === LF && last > 0 && chunk[last - 1] === CR) return LINE_START
  return TEXT
}
