import { rfc5322Date } from '../mail/date.js'

const WORDS =
  'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore'.split(
    ' ',
  )

/** The header the benchmark uses to match a delivered message to the one it sent. */
export const BENCH_ID_HEADER = 'X-Bench-Id'

/**
 * A plain text message of about `size` bytes, CRLF line ends, no line starting with a dot
 * (so it needs no dot-stuffing), tagged with its run and sequence number (`X-Bench-Id: 3.41`):
 * a late arrival from one run is not taken for a message of the next.
 */
export function benchMessage(seq: number, size: number, run = 0): Buffer {
  const head =
    `From: Bench <bench@example.test>\r\nTo: Sink <sink@example.test>\r\nSubject: benchmark message ${seq}\r\n` +
    `Date: ${rfc5322Date(new Date())}\r\nMessage-ID: <bench.${seq}.${Date.now()}@example.test>\r\n` +
    `${BENCH_ID_HEADER}: ${run}.${seq}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n`
  const lines: string[] = []
  let length = head.length
  let i = seq
  while (length < size) {
    let line = ''
    while (line.length < 70) line += `${WORDS[i++ % WORDS.length]} `
    lines.push(line.trimEnd())
    length += line.length + 1
  }
  return Buffer.from(`${head}${lines.join('\r\n')}\r\n`, 'latin1')
}

/** Read the sequence number back from a delivered message of run `run`; undefined for any other. */
export function benchIdOf(data: Buffer, run = 0): number | undefined {
  const match = /\r?\nX-Bench-Id: (\d+)\.(\d+)\r?\n/.exec(data.subarray(0, 4096).toString('latin1'))
  return match && Number(match[1]) === run ? Number(match[2]) : undefined
}
