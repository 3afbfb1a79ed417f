/** A self-signed certificate for test servers that speak TLS (made by openssl, as a mail host would). */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

export interface TestCertificate {
  /** The files, for a server that reads them (Postfix's smtpd_tls_chain_files). */
  readonly keyFile: string
  readonly certFile: string
  readonly key: Buffer
  readonly cert: Buffer
  remove(): Promise<void>
}

/** A fresh RSA key and a certificate for `name`, valid for a day, in a temp dir of their own. */
export async function selfSignedCertificate(name = 'mx.mailscreen.test'): Promise<TestCertificate> {
  const dir = await mkdtemp(join(tmpdir(), 'mailscreen-tls-'))
  const keyFile = join(dir, 'key.pem')
  const certFile = join(dir, 'cert.pem')
  await promisify(execFile)('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-subj',
    `/CN=${name}`,
    '-days',
    '1',
  ])
  return {
    keyFile,
    certFile,
    key: await readFile(keyFile),
    cert: await readFile(certFile),
    remove: () => rm(dir, { recursive: true, force: true }),
  }
}
