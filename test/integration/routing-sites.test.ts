/**
 * The three example sites of issue #4 (test/fixtures/sites/<name>/), checked through the
 * running filter: SMTP in, one sink per next hop on its own loopback address. Each site's
 * maps are copied to a temp folder with every mailertable port (2525, or 25 implied) rewritten
 * to the sinks' port; the hosts stay as they are (127.0.x.y), so the sink that receives a
 * recipient tells the next hop. MX next hops are answered by a fake DNS server with 127.0.x.y
 * records, and `delivery.mxPort` is the sinks' port.
 */

import { readFileSync } from 'node:fs'
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SinkSet, sendMail, startSinks, testMessage } from '../delivery/harness.js'
import { type FakeDns, type FakeReply, startFakeDns } from '../support/dns-server.js'
import { type MailscreenProcess, startMailscreen, stopAll } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'
import { type Case, cases, SITES } from '../support/sites.js'

/** DNS of the sites whose next hops need MX lookups, and the sink each such next hop reaches. */
const DNS: Record<
  string,
  { zone: Record<string, Partial<Record<string, FakeReply>>>; hops: Record<string, string> }
> = {
  hub: {
    zone: {
      // smtp:marie-mx.example.org: an MX lookup of the host, which has none: its A record.
      'marie-mx.example.org': { A: { a: ['127.0.20.2'] } },
      'pierre.example.org': { MX: { mx: [{ preference: 10, exchange: 'mx.pierre.example.org' }] } },
      'mx.pierre.example.org': { A: { a: ['127.0.20.4'] } },
      'elsewhere.example': { MX: { mx: [{ preference: 10, exchange: 'mx.elsewhere.example' }] } },
      'mx.elsewhere.example': { A: { a: ['127.0.20.5'] } },
    },
    hops: {
      'smtp:marie-mx.example.org:25': '127.0.20.2',
      'mx:pierre.example.org': '127.0.20.4',
      'mx:elsewhere.example': '127.0.20.5',
    },
  },
}

/** The loopback host that receives a next hop's mail. */
function sinkHost(site: string, nextHop: string): string {
  const literal = /^(?:smtp|relay):\[(127\.[\d.]+)\]:\d+$/.exec(nextHop)?.[1]
  const host = literal ?? DNS[site]?.hops[nextHop]
  if (!host) throw new Error(`${site}: no sink for next hop ${nextHop}`)
  return host
}

/** Every `smtp:` value of a mailertable with its port set to `port`. */
function rewriteMailertable(text: string, port: number): string {
  return text
    .split('\n')
    .map((line) =>
      line.replace(
        /^(\S+\s+(?:e?smtp8?|dsmtp|relay):)(\[[^\]]+\]|[^:\s#[]+)(?::\d+)?/,
        (_all, head: string, host: string) => `${head}${host}:${port}`,
      ),
    )
    .join('\n')
}

for (const site of ['university', 'hub', 'organisation']) {
  describe(`site ${site} through the running filter`, () => {
    const meta = JSON.parse(readFileSync(join(SITES, site, 'site.json'), 'utf8')) as {
      defaultRelay: string | null
    }
    const table = cases(site)
    const byAddress = new Map<string, Case[]>()
    for (const row of table) byAddress.set(row.address, [...(byAddress.get(row.address) ?? []), row])
    const hosts = [
      ...new Set(table.filter((c) => !c.nextHop.startsWith('error:')).map((c) => sinkHost(site, c.nextHop))),
    ]
    let sinks: SinkSet
    let dns: FakeDns
    let ms: MailscreenProcess | undefined
    let rules: string
    let expectedMessages = 0

    beforeAll(async () => {
      sinks = await startSinks(hosts)
      const zone = DNS[site]?.zone ?? {}
      dns = await startFakeDns(({ name, type }) => {
        const entry = zone[name]
        return entry ? (entry[type] ?? {}) : { rcode: 'NXDOMAIN' }
      })
      rules = await mkdtemp(join(tmpdir(), `mailscreen-site-${site}-`))
      await cp(join(SITES, site, 'rules'), rules, { recursive: true })
      const mailertable = join(rules, 'mailertable')
      await writeFile(mailertable, rewriteMailertable(await readFile(mailertable, 'utf8'), sinks.port))
      const relay = meta.defaultRelay ? `${meta.defaultRelay.replace(/:\d+$/, '')}:${sinks.port}` : null
      ms = await startMailscreen(await freePort(), {
        routing: { dir: rules, resolver: { servers: [dns.server] } },
        delivery: { relay, mxPort: sinks.port },
      })
      expect(ms.logs.filter((l) => l.msg === 'routing map problem')).toEqual([])
    })
    afterAll(async () => {
      await stopAll(ms, sinks)
      await dns.close()
      await rm(rules, { recursive: true, force: true })
    })

    for (const [address, rows] of byAddress) {
      const shown = rows.map((r) => `${r.recipient} ${r.nextHop}`).join(', ')
      it(`${address} → ${shown}`, async () => {
        const tag = `${site}-${rows[0]?.line}`
        const sent = await sendMail(ms?.port as number, 'tester@sender.example', [address], testMessage(tag))
        const refusals = rows.filter((r) => r.nextHop.startsWith('error:'))
        if (refusals.length === rows.length) {
          // Refused at RCPT time with the reply the maps give.
          const [, status, code] = /^error:([\d.]+):(\d{3})$/.exec(rows[0]?.nextHop ?? '') ?? []
          const answer = sent.replies[0]
          expect(answer?.code, answer?.text).toBe(Number(code))
          expect(answer?.text).toMatch(new RegExp(`^${code} ${status?.replaceAll('.', '\\.')} `))
          expect(sent.id).toBeUndefined()
          return
        }
        expect(sent.id, sent.replies[0]?.text).toBeDefined()
        for (const row of rows)
          await ms?.waitForLog(
            (l) => l.msg === 'delivered' && l.qid === sent.id && l.to === row.recipient,
            10_000,
          )
        expectedMessages += new Set(rows.map((r) => sinkHost(site, r.nextHop))).size
        // Each recipient reached the sink of its next hop, rewritten; nothing went anywhere else.
        const got = [...sinks.sinks].flatMap(([host, sink]) =>
          sink.messages
            .filter((m) => m.data.toString('latin1').includes(`<${tag}@sender.example>`))
            .flatMap((m) => m.rcptTo.map((rcpt) => `${rcpt} @${host}`)),
        )
        expect(got.sort()).toEqual(rows.map((r) => `${r.recipient} @${sinkHost(site, r.nextHop)}`).sort())
        const copy = [...sinks.sinks.values()]
          .flatMap((s) => s.messages)
          .find((m) => m.data.toString('latin1').includes(`<${tag}@sender.example>`))
        expect(copy?.data.toString('latin1')).toMatch(
          /^Received: from .* by mailscreen\.test \(mailscreen\)/m,
        )
      })
    }

    it('sent nothing else: one copy per next hop, no bounces', async () => {
      const total = [...sinks.sinks.values()].reduce((n, s) => n + s.received, 0)
      expect(total).toBe(expectedMessages)
      expect(ms?.logs.filter((l) => l.msg === 'bounced' || l.msg === 'deferred')).toEqual([])
    })
  })
}

describe('site details through the running filter', () => {
  it('university: the staff list goes out with owner-staff as the envelope sender', async () => {
    const sinks = await startSinks(['127.0.10.2', '127.0.10.3', '127.0.10.4'])
    const rules = await mkdtemp(join(tmpdir(), 'mailscreen-site-owner-'))
    let ms: MailscreenProcess | undefined
    try {
      await cp(join(SITES, 'university', 'rules'), rules, { recursive: true })
      const mailertable = join(rules, 'mailertable')
      await writeFile(mailertable, rewriteMailertable(await readFile(mailertable, 'utf8'), sinks.port))
      ms = await startMailscreen(await freePort(), { routing: { dir: rules }, delivery: { relay: null } })
      const sent = await sendMail(ms.port, 'dean@example.edu', ['staff@example.edu'], testMessage('owner'))
      expect(sent.id).toBeDefined()
      for (const host of ['127.0.10.2', '127.0.10.3', '127.0.10.4']) await sinks.get(host).waitFor(1)
      const senders = [...sinks.sinks.values()].flatMap((s) => s.messages.map((m) => m.mailFrom))
      expect(new Set(senders)).toEqual(new Set(['owner-staff@example.edu']))
    } finally {
      await stopAll(ms, sinks)
      await rm(rules, { recursive: true, force: true })
    }
  })
})
