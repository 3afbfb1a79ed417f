/**
 * dnsbl — looks the connecting client's address (the one the MTA in front forwarded with
 * XFORWARD/XCLIENT, never the MTA's own) up in DNS blocklists. Each zone brings its own
 * symbols and weights from the config: one for any listing, or one per return-code range.
 * Evidence: the zone, the return codes and the TXT text. Answers are cached per worker
 * thread by their TTL; a zone that keeps failing is paused by a circuit breaker.
 * A failed lookup throws (DNSBL_FAIL) unless another zone listed the client (see check.ts);
 * the default policy is `continue`: blocklists are advisory and must not hold mail.
 */
import { Resolver } from 'node:dns'
import { definePlugin } from '../../src/pipeline/plugin.js'
import { createCheck } from './check.js'
import { options, symbolTable } from './options.js'

export default definePlugin({
  name: 'dnsbl',
  description: "Looks the client's IP address up in DNS blocklists (RFC 5782)",
  options,
  symbols: symbolTable,
  // Room for a probe, the A query and the TXT query at the default 2 s each.
  timeoutMs: 10_000,
  onError: 'continue',
  setup(opts, { log }) {
    // Fail at start-up, not on the first message, if c-ares rejects a server.
    if (opts.servers !== undefined) new Resolver().setServers([...opts.servers])
    return createCheck(opts, { log })
  },
})
