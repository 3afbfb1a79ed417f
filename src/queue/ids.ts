import { randomFillSync } from 'node:crypto'

/** A queue ID: short, sortable by creation time, only `[0-9A-Za-z]`, so it can never name a path. */
export type QueueId = string & { readonly __brand: 'QueueId' }

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
const ID_PATTERN = /^[0-9A-Za-z]{16}$/

let lastMs = 0
let counter = 0

/**
 * Random bytes drawn in bulk, one call into the CSPRNG per ~680 IDs: one call per ID was 1 %
 * of the main thread's time under load (`node --cpu-prof`, benchmarks/RESULTS.md).
 */
const randomPool = Buffer.alloc(4096)
let randomAt = randomPool.length

function randomByte(): number {
  if (randomAt === randomPool.length) {
    randomFillSync(randomPool)
    randomAt = 0
  }
  return randomPool[randomAt++] as number
}

function base62(value: number, width: number): string {
  let out = ''
  let rest = value
  for (let i = 0; i < width; i++) {
    out = ALPHABET[rest % 62] + out
    rest = Math.floor(rest / 62)
  }
  return out
}

/**
 * A new queue ID: 7 chars of milliseconds, 3 of a per-millisecond counter (so IDs made in
 * one process sort in creation order), 6 random (so two processes never collide).
 */
export function newQueueId(now: number = Date.now()): QueueId {
  if (now === lastMs) counter++
  else {
    lastMs = now
    counter = 0
  }
  let tail = ''
  for (let i = 0; i < 6; i++) tail += ALPHABET[randomByte() % 62]
  return `${base62(now, 7)}${base62(counter, 3)}${tail}` as QueueId
}

/** Check untrusted text (a CLI argument, a file name) before it is used as a queue ID. */
export function parseQueueId(text: string): QueueId | undefined {
  return ID_PATTERN.test(text) ? (text as QueueId) : undefined
}
