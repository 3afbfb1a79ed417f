import { rfc5322Date } from '../mail/date.js'

const WORDS =
  'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore'.split(
    ' ',
  )

/** The header the benchmark uses to match a delivered message to the one it sent. */
export const BENCH_ID_HEADER = 'X-Bench-Id'

/**
 * A plain text message of about `size` bytes, CRLF line ends, no line starting with a dot
 * (so it needs no dot-stuffing), tagged with its sequence number.
 */
export function benchMessage(seq: number, size: number): Buffer {
  const head =
    `From: Bench <bench@example.test>\r\nTo: Sink <sink@example.test>\r\nSubject: benchmark message ${seq}\r\n` +
    `Date: ${rfc5322Date(new Date())}\r\nMessage-ID: <bench.${seq}.${Date.now()}@example.test>\r\n` +
    `${BENCH_ID_HEADER}: ${seq}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n`
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

/** Read the sequence number back from a delivered message. */
export function benchIdOf(data: Buffer): number | undefined {
  const match = /\r?\nX-Bench-Id: (\d+)\r?\n/.exec(data.subarray(0, 4096).toString('latin1'))
  return match ? Number(match[1]) : undefined
}
