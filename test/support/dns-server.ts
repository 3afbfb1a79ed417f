/**
 * A fake DNS server for unit tests: UDP on 127.0.0.1, port chosen by the kernel. Each query
 * is answered from a function (A and TXT records with a TTL, NXDOMAIN, SERVFAIL, REFUSED) or
 * not at all (`'silent'`, a server that swallows queries), and every query is recorded.
 * One question per query, answers to that question. The dnsbl tests use A and TXT; the
 * routing tests MX (a null MX is `{ preference: 0, exchange: '.' }`) and AAAA.
 */
import dgram from 'node:dgram'

/** One query as the server saw it. */
export interface FakeQuery {
  /** Lower-case, without the trailing dot. */
  readonly name: string
  /** `A`, `TXT`, `MX`, `AAAA`, or the numeric type for anything else. */
  readonly type: string
}

/** How to answer one query. Records of the other type are left out of the answer. */
export type FakeReply =
  | 'silent'
  | {
      readonly rcode?: 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL' | 'REFUSED'
      readonly a?: readonly string[]
      readonly txt?: readonly string[]
      /** MX records; `exchange: '.'` is the root (RFC 7505 null MX). */
      readonly mx?: readonly { readonly preference: number; readonly exchange: string }[]
      /** IPv6 addresses, e.g. `::1`. */
      readonly aaaa?: readonly string[]
      /** Seconds (default 300). */
      readonly ttl?: number
    }

export interface FakeDns {
  readonly port: number
  /** `127.0.0.1:<port>`, as the plugin's `servers` take it. */
  readonly server: string
  /** Every query received, oldest first. */
  readonly queries: FakeQuery[]
  close(): Promise<void>
}

const RCODES = { NOERROR: 0, NXDOMAIN: 3, SERVFAIL: 2, REFUSED: 5 } as const
const TYPES: Record<number, string> = { 1: 'A', 15: 'MX', 16: 'TXT', 28: 'AAAA' }

function parseQuestion(packet: Buffer): { name: string; type: number; end: number } | undefined {
  const labels: string[] = []
  let offset = 12
  while (offset < packet.length) {
    const length = packet[offset] as number
    offset++
    if (length === 0) {
      if (offset + 4 > packet.length) return undefined
      return { name: labels.join('.').toLowerCase(), type: packet.readUInt16BE(offset), end: offset + 4 }
    }
    labels.push(packet.toString('latin1', offset, offset + length))
    offset += length
  }
  return undefined
}

function record(type: number, ttl: number, data: Buffer): Buffer {
  const head = Buffer.alloc(12)
  head.writeUInt16BE(0xc00c, 0) // name: pointer to the question's name
  head.writeUInt16BE(type, 2)
  head.writeUInt16BE(1, 4) // class IN
  head.writeUInt32BE(ttl, 6)
  head.writeUInt16BE(data.length, 10)
  return Buffer.concat([head, data])
}

function txtData(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8')
  const chunks: Buffer[] = []
  for (let i = 0; i === 0 || i < bytes.length; i += 255) {
    const chunk = bytes.subarray(i, i + 255)
    chunks.push(Buffer.from([chunk.length]), chunk)
  }
  return Buffer.concat(chunks)
}

/** A domain name in wire format, uncompressed (`.` or `` is the root). */
function nameData(name: string): Buffer {
  const labels = name
    .replace(/\.$/, '')
    .split('.')
    .filter((label) => label !== '')
  return Buffer.concat([
    ...labels.map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label, 'latin1')])),
    Buffer.from([0]),
  ])
}

function mxData(preference: number, exchange: string): Buffer {
  const head = Buffer.alloc(2)
  head.writeUInt16BE(preference, 0)
  return Buffer.concat([head, nameData(exchange)])
}

/** 16 bytes of an IPv6 address (`::` shorthand allowed, no embedded IPv4). */
function ipv6Data(address: string): Buffer {
  const [head = '', tail] = address.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === undefined || tail === '' ? [] : tail.split(':')
  const groups = [...left, ...Array(8 - left.length - right.length).fill('0'), ...right]
  const out = Buffer.alloc(16)
  groups.forEach((group, i) => {
    out.writeUInt16BE(Number.parseInt(group, 16), i * 2)
  })
  return out
}

function respond(
  query: Buffer,
  question: { type: number; end: number },
  reply: Exclude<FakeReply, 'silent'>,
) {
  const ttl = reply.ttl ?? 300
  const records: Buffer[] = []
  if (question.type === 1)
    for (const a of reply.a ?? []) records.push(record(1, ttl, Buffer.from(a.split('.').map(Number))))
  if (question.type === 16) for (const t of reply.txt ?? []) records.push(record(16, ttl, txtData(t)))
  if (question.type === 15)
    for (const m of reply.mx ?? []) records.push(record(15, ttl, mxData(m.preference, m.exchange)))
  if (question.type === 28) for (const a of reply.aaaa ?? []) records.push(record(28, ttl, ipv6Data(a)))
  const header = Buffer.alloc(12)
  header.writeUInt16BE(query.readUInt16BE(0), 0)
  // QR, the query's opcode and RD, AA, RA, rcode.
  const flags = 0x8000 | (query.readUInt16BE(2) & 0x7900) | 0x0400 | 0x0080 | RCODES[reply.rcode ?? 'NOERROR']
  header.writeUInt16BE(flags, 2)
  header.writeUInt16BE(1, 4)
  header.writeUInt16BE(records.length, 6)
  return Buffer.concat([header, query.subarray(12, question.end), ...records])
}

/** Start a fake DNS server that answers every query with `answer(query)`. */
export async function startFakeDns(answer: (query: FakeQuery) => FakeReply): Promise<FakeDns> {
  const socket = dgram.createSocket('udp4')
  const queries: FakeQuery[] = []
  socket.on('message', (packet, from) => {
    const question = packet.length >= 12 ? parseQuestion(packet) : undefined
    if (question === undefined) return
    const query = { name: question.name, type: TYPES[question.type] ?? String(question.type) }
    queries.push(query)
    const reply = answer(query)
    if (reply === 'silent') return
    socket.send(respond(packet, question, reply), from.port, from.address)
  })
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(0, '127.0.0.1', () => {
      socket.off('error', reject)
      resolve()
    })
  })
  const { port } = socket.address()
  return {
    port,
    server: `127.0.0.1:${port}`,
    queries,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  }
}
