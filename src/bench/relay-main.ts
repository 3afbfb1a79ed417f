/**
 * The durable relay as a process of its own, as mailscreen runs under `mailscreen bench`:
 * `node relay-main.js <port> <dir> <next-hop-port>`; SIGTERM stops it.
 */
import { HelperScheduling } from '../thread-scheduling.js'
import { createDurableRelay } from './relay.js'

const [port, dir, nextHopPort] = process.argv.slice(2)
if (port === undefined || dir === undefined || nextHopPort === undefined) {
  process.stderr.write('usage: relay-main.js <port> <dir> <next-hop-port>\n')
  process.exit(2)
}
const relay = createDurableRelay({ dir, nextHop: { host: '127.0.0.1', port: Number(nextHopPort) } })
await relay.server.listen('127.0.0.1', Number(port))
// Scheduled as mailscreen's threads are by default, so that the two compare like with like.
await new HelperScheduling((reason) => process.stderr.write(`durable relay: ${reason}\n`)).use('batch')
process.once('SIGTERM', () => {
  void relay.close().then(() => {
    if (relay.failures > 0) process.stderr.write(`durable relay: ${relay.failures} messages not forwarded\n`)
    process.exit(0)
  })
})
