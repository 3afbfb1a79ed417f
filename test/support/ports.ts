import { readFileSync } from 'node:fs'
import net from 'node:net'

/**
 * The kernel's ephemeral range, from which it picks the local port of every outgoing
 * connection. A port picked from it for a daemon to listen on later can be taken in between
 * by any of the thousands of connections the tests make (EADDRINUSE in CI), so ports are
 * picked below it.
 */
function ephemeralLow(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)
    const value = Number(low)
    return Number.isInteger(value) && value > 20_000 ? value : 32_768
  } catch {
    return 32_768
  }
}

/** Below 15,000 are well-known services (and mailscreen's defaults, 10025/10026 and 8891). */
const LOW = 15_000
const HIGH = ephemeralLow() - 1
/** Ports this process handed out: never twice. */
const given = new Set<number>()

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer()
    server.unref()
    server.once('error', () => resolve(false))
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => server.close(() => resolve(true)))
  })
}

/**
 * Returns a TCP port that was free on 127.0.0.1 a moment ago, for daemons that must be told a
 * fixed port in their config (Postfix, clamd, spamd, rbldnsd, mailscreen); servers we start
 * in-process should listen on port 0 themselves instead. Picked at random below the ephemeral
 * range (see {@link ephemeralLow}), so only another test picking the same port at the same
 * moment could take it (test files run in parallel processes).
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW + 1))
    if (given.has(port)) continue
    if (await canListen(port)) {
      given.add(port)
      return port
    }
  }
  throw new Error(`freePort: no free port in ${LOW}-${HIGH} after 200 tries`)
}
