/**
 * STARTTLS on delivery against a real Postfix that offers it (a certificate made by openssl):
 * to the relay at `delivery.tls.relay: encrypt`, and to a mailertable host at the default
 * `delivery.tls.mx: may`, the message reaches Postfix over TLS (its Received: field says so)
 * and mailscreen logs the session's TLS; `encrypt` to a next hop without STARTTLS defers.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Sink, startSink } from '../../src/bench/sink.js'
import { fields, send, startFilter, textMessage } from '../support/mail.js'
import { type MailscreenProcess, startMailscreen, stopAll } from '../support/mailscreen.js'
import { freePort } from '../support/ports.js'
import { type PostfixInstance, startPostfix } from '../support/postfix.js'
import { selfSignedCertificate, type TestCertificate } from '../support/tls.js'

describe('STARTTLS to a real Postfix', () => {
  let certificate: TestCertificate
  let sink: Sink
  let postfix: PostfixInstance
  let ms: MailscreenProcess | undefined
  let rules: string

  beforeAll(async () => {
    certificate = await selfSignedCertificate('mta.mailscreen.test')
    sink = await startSink()
    postfix = await startPostfix({
      smtpPort: await freePort(),
      relay: { host: '127.0.0.1', port: sink.port },
      extraMain: {
        smtpd_tls_security_level: 'may',
        smtpd_tls_chain_files: `${certificate.keyFile}, ${certificate.certFile}`,
        smtpd_tls_received_header: 'yes',
        smtpd_tls_loglevel: '1',
      },
    })
    rules = await mkdtemp(join(tmpdir(), 'mailscreen-tls-rules-'))
    await writeFile(join(rules, 'mailertable'), `tls.example smtp:[127.0.0.1]:${postfix.smtpPort}\n`)
    ms = await startMailscreen(await freePort(), {
      routing: { dir: rules },
      delivery: { relay: `127.0.0.1:${postfix.smtpPort}`, tls: { relay: 'encrypt' } },
    })
  }, 120_000)

  afterAll(async () => {
    await stopAll(ms, sink)
    await postfix?.stop()
    await certificate?.remove()
    if (rules) await rm(rules, { recursive: true, force: true })
  })

  /** Send one message to `to` through mailscreen; the copy the sink got behind Postfix, and mailscreen's log line. */
  async function deliver(tag: string, to: string) {
    const running = ms as MailscreenProcess
    const id = await send(running.port, textMessage({ tag, to }), { to: [to] })
    const logged = await running.waitForLog((l) => l.msg === 'delivered' && l.qid === id)
    const arrived = await new Promise<Buffer>((resolve) => {
      const found = () => sink.messages.find((m) => m.data.includes(`<${tag}@example.org>`))
      const poll = setInterval(() => {
        const m = found()
        if (m) {
          clearInterval(poll)
          resolve(m.data)
        }
      }, 50)
    })
    return { logged, arrived }
  }

  it('sends to the relay over TLS at encrypt, and logs the TLS version and cipher', async () => {
    const { logged, arrived } = await deliver('tls-relay', 'b@example.net')
    expect(logged.tls).toMatch(/^TLSv1\.[23] TLS_/)
    // Postfix's smtpd_tls_received_header: "(using TLSv1.3 with cipher ...)" in the field it adds.
    const postfixReceived = fields({ data: arrived }, 'received').find((f) => f.includes('(Postfix)'))
    expect(postfixReceived).toMatch(/using TLSv1\.[23] with cipher/)
    await postfix.waitForLog(/Anonymous TLS connection established from localhost\[127\.0\.0\.1\]/)
  })

  it('sends to a mailertable host over TLS at the default may', async () => {
    const { logged, arrived } = await deliver('tls-mailertable', 'c@tls.example')
    expect(logged.relay).toBe(`127.0.0.1:${postfix.smtpPort}`)
    expect(logged.tls).toMatch(/^TLSv1\.[23] TLS_/)
    const postfixReceived = fields({ data: arrived }, 'received').find((f) => f.includes('(Postfix)'))
    expect(postfixReceived).toMatch(/using TLSv1\.[23] with cipher/)
  })
})

describe('STARTTLS required of a next hop that does not offer it', () => {
  it('defers the message, saying why, and sends nothing', async () => {
    const { ms, sink } = await startFilter({ delivery: { tls: { relay: 'encrypt' } } })
    const id = await send(ms.port, textMessage({ tag: 'tls-required' }))
    const deferred = await ms.waitForLog((l) => l.msg === 'deferred' && l.qid === id)
    expect(String(deferred.reply)).toContain(`TLS is required, but was not offered by 127.0.0.1:${sink.port}`)
    expect(sink.messages).toHaveLength(0)
  })
})
