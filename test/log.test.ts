import { Writable } from 'node:stream'
import { describe, expect, it, vi } from 'vitest'
import { createLogger, isoTime, lazyChild } from '../src/log.js'

/** A logger whose JSON lines land in `lines`. */
function capture() {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line))
      done()
    },
  })
  return { log: createLogger({ level: 'info' }, stream), lines }
}

describe('lazyChild', () => {
  it('does not create the child until it is used', () => {
    const { log } = capture()
    const child = vi.spyOn(log, 'child')
    lazyChild(log, { qid: 'Q1' })
    expect(child).not.toHaveBeenCalled()
  })

  it('logs with its bindings once used, and creates the child only once', () => {
    const { log, lines } = capture()
    const child = vi.spyOn(log, 'child')
    const lazy = lazyChild(log, { qid: 'Q1' })
    lazy.info({ n: 1 }, 'first')
    lazy.warn('second')
    expect(child).toHaveBeenCalledTimes(1)
    expect(lines).toMatchObject([
      { qid: 'Q1', n: 1, msg: 'first', level: 30 },
      { qid: 'Q1', msg: 'second', level: 40 },
    ])
  })

  it('nests: a lazy child of a lazy child carries both bindings', () => {
    const { log, lines } = capture()
    const inner = lazyChild(lazyChild(log, { qid: 'Q2' }), { plugin: 'example' })
    inner.error('check failed')
    expect(lines).toMatchObject([{ qid: 'Q2', plugin: 'example', msg: 'check failed' }])
  })

  it('follows the level of the logger it came from', () => {
    const { log, lines } = capture()
    const lazy = lazyChild(log, { qid: 'Q3' })
    expect(lazy.level).toBe('info')
    expect(lazy.isLevelEnabled('debug')).toBe(false)
    lazy.debug('hidden')
    expect(lines).toEqual([])
  })
})

describe('isoTime', () => {
  it("gives pino's time field for now, as pino's own isoTime does", () => {
    vi.useFakeTimers({ now: new Date('2026-12-07T06:00:00.123Z') })
    try {
      expect(isoTime()).toBe(',"time":"2026-12-07T06:00:00.123Z"')
      vi.setSystemTime(new Date('2026-12-07T06:00:00.124Z'))
      expect(isoTime()).toBe(',"time":"2026-12-07T06:00:00.124Z"')
      expect(isoTime()).toBe(',"time":"2026-12-07T06:00:00.124Z"')
    } finally {
      vi.useRealTimers()
    }
  })

  it('stamps the logged lines', () => {
    const { log, lines } = capture()
    log.info('stamped')
    expect(Math.abs(Date.parse(String(lines[0]?.time)) - Date.now())).toBeLessThan(5_000)
  })
})
