/**
 * Set-up and tear-down for the enclosing suite (or file): each helper registers a beforeAll
 * and an afterAll and returns a getter for what beforeAll made.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll } from 'vitest'

/** Call `make` before the suite's tests, `release` after them; the getter returns what `make` gave. */
function useResource<T>(
  what: string,
  make: () => Promise<T>,
  release: (value: T) => Promise<unknown>,
): () => T {
  let value: { readonly current: T } | undefined
  beforeAll(async () => {
    value = { current: await make() }
  }, 120_000)
  afterAll(async () => {
    if (value) await release(value.current)
  })
  return () => {
    if (value === undefined) throw new Error(`${what} is only there while the suite runs`)
    return value.current
  }
}

/** A fresh temp directory `<prefix>XXXXXX` for the suite, removed after it; the getter returns its path. */
export function useTempDir(prefix: string): () => string {
  return useResource(
    'the temp directory',
    () => mkdtemp(join(tmpdir(), prefix)),
    (dir) => rm(dir, { recursive: true, force: true }),
  )
}

/** A test daemon (clamd, spamd, rbldnsd) started for the suite and stopped after it; the getter returns it. */
export function useDaemon<T extends { stop(): Promise<unknown> }>(start: () => Promise<T>): () => T {
  return useResource('the daemon', start, (daemon) => daemon.stop())
}
