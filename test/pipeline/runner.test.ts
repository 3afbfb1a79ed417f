import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { MailscreenError } from '../../src/errors.js'
import type { Envelope } from '../../src/ingress/envelope.js'
import { createMessageView } from '../../src/mail/message.js'
import type { Check, CheckContext, FailurePolicy } from '../../src/pipeline/plugin.js'
import { type ReadyPlugin, type RunInput, runChecks } from '../../src/pipeline/runner.js'
import { newQueueId } from '../../src/queue/ids.js'

const envelope: Envelope = {
  mailFrom: 'sender@example.org',
  rcptTo: ['rcpt@example.net'],
  client: { address: '192.0.2.1' },
  peer: { address: '127.0.0.1' },
  receivedAt: 0,
}

function input(): RunInput {
  return {
    queueId: newQueueId(),
    envelope,
    message: createMessageView(Buffer.from('Subject: hi\r\n\r\nbody\r\n')),
    log: pino({ level: 'silent' }),
  }
}

function plugin(name: string, check: Check, extra: Partial<ReadyPlugin> = {}): ReadyPlugin {
  return {
    name,
    check,
    timeoutMs: 10_000,
    onError: 'tempfail',
    symbols: { HIT: { description: 'a hit', weight: 1 } },
    ...extra,
  }
}

function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

describe('runChecks', () => {
  it('returns one outcome per plugin, in plugin order, with the hits each check returned', async () => {
    const outcomes = await runChecks(
      [plugin('one', async () => [{ symbol: 'HIT', evidence: ['x'] }]), plugin('two', async () => [])],
      input(),
    )
    expect(outcomes.map((o) => o.plugin)).toEqual(['one', 'two'])
    expect(outcomes[0]?.hits).toEqual([{ symbol: 'HIT', evidence: ['x'] }])
    expect(outcomes[1]?.hits).toEqual([])
    expect(outcomes.every((o) => o.failure === undefined)).toBe(true)
    expect(outcomes.every((o) => o.durationMs >= 0)).toBe(true)
  })

  it('gives each check the message, envelope and queue ID of the run, and its deadline', async () => {
    const run = input()
    let seen: CheckContext | undefined
    const before = Date.now()
    await runChecks(
      [
        plugin('spy', async (ctx) => {
          seen = ctx
          return []
        }),
      ],
      run,
    )
    expect(seen?.queueId).toBe(run.queueId)
    expect(seen?.envelope).toBe(run.envelope)
    expect(seen?.message).toBe(run.message)
    expect(seen?.signal.aborted).toBe(false)
    // When the signal will abort: the plugin's timeout (10 s here) from the start of the check.
    expect(seen?.deadline).toBeGreaterThanOrEqual(before + 10_000)
    expect(seen?.deadline).toBeLessThanOrEqual(Date.now() + 10_000)
  })

  it('runs checks concurrently: two checks that each wait for the other to start both finish', async () => {
    const aStarted = deferred()
    const bStarted = deferred()
    const outcomes = await runChecks(
      [
        plugin('a', async () => {
          aStarted.resolve()
          await bStarted.promise
          return [{ symbol: 'HIT' }]
        }),
        plugin('b', async () => {
          bStarted.resolve()
          await aStarted.promise
          return [{ symbol: 'HIT' }]
        }),
      ],
      input(),
    )
    expect(outcomes.map((o) => o.failure)).toEqual([undefined, undefined])
    expect(outcomes.map((o) => o.hits.length)).toEqual([1, 1])
  })

  it('turns a throwing check into a <NAME>_FAIL hit and a failure with its policy and MSC_PLUGIN_FAILED', async () => {
    const outcomes = await runChecks(
      [
        plugin(
          'my-check',
          async () => {
            throw Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' })
          },
          { onError: 'continue' },
        ),
      ],
      input(),
    )
    const [outcome] = outcomes
    expect(outcome?.hits).toEqual([{ symbol: 'MY_CHECK_FAIL', evidence: ['connection refused'] }])
    expect(outcome?.failure).toEqual({
      code: 'MSC_PLUGIN_FAILED',
      message: 'connection refused',
      policy: 'continue',
    })
  })

  it('treats a check that throws synchronously like one that rejects', async () => {
    const check = (() => {
      throw new Error('sync boom')
    }) as unknown as Check
    const [outcome] = await runChecks([plugin('sync', check)], input())
    expect(outcome?.failure).toMatchObject({
      code: 'MSC_PLUGIN_FAILED',
      message: 'sync boom',
      policy: 'tempfail',
    })
    expect(outcome?.hits.map((h) => h.symbol)).toEqual(['SYNC_FAIL'])
  })

  it('disarms the timeout of a check that throws synchronously, so no rejection goes unhandled later', async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown) => unhandled.push(reason)
    process.on('unhandledRejection', onUnhandled)
    try {
      let signal: AbortSignal | undefined
      const check = ((ctx: CheckContext) => {
        signal = ctx.signal
        throw new Error('sync boom')
      }) as unknown as Check
      const [outcome] = await runChecks([plugin('sync', check, { timeoutMs: 20 })], input())
      expect(outcome?.failure?.code).toBe('MSC_PLUGIN_FAILED')
      // Let well over the check's 20 ms timeout pass: a timer left armed would fire by then.
      await new Promise((resolve) => setTimeout(resolve, 200))
      expect(signal?.aborted).toBe(false)
      expect(unhandled).toEqual([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })

  it('handles a thrown non-Error value', async () => {
    const [outcome] = await runChecks(
      [
        plugin('odd', async () => {
          throw 'just a string'
        }),
      ],
      input(),
    )
    expect(outcome?.failure).toMatchObject({ code: 'MSC_PLUGIN_FAILED', message: 'just a string' })
  })

  it.each<FailurePolicy>(['tempfail', 'continue'])(
    'carries the %s policy of a failed check',
    async (policy) => {
      const [outcome] = await runChecks(
        [
          plugin(
            'p',
            async () => {
              throw new Error('x')
            },
            { onError: policy },
          ),
        ],
        input(),
      )
      expect(outcome?.failure?.policy).toBe(policy)
    },
  )

  it('times out a check that never answers with MSC_PLUGIN_TIMEOUT and aborts its signal', async () => {
    let signal: AbortSignal | undefined
    const [outcome] = await runChecks(
      [
        plugin(
          'slow',
          (ctx) => {
            signal = ctx.signal
            return new Promise(() => undefined)
          },
          { timeoutMs: 50 },
        ),
      ],
      input(),
    )
    expect(outcome?.failure?.code).toBe('MSC_PLUGIN_TIMEOUT')
    expect(outcome?.failure?.policy).toBe('tempfail')
    expect(outcome?.hits.map((h) => h.symbol)).toEqual(['SLOW_FAIL'])
    expect(signal?.aborted).toBe(true)
    expect(signal?.reason).toBeInstanceOf(MailscreenError)
    expect(signal?.reason).toMatchObject({ code: 'MSC_PLUGIN_TIMEOUT' })
  })

  it('lets the other checks finish when one times out', async () => {
    const outcomes = await runChecks(
      [
        plugin('slow', () => new Promise(() => undefined), { timeoutMs: 50 }),
        plugin('fast', async () => [{ symbol: 'HIT' }]),
      ],
      input(),
    )
    expect(outcomes[0]?.failure?.code).toBe('MSC_PLUGIN_TIMEOUT')
    expect(outcomes[1]?.failure).toBeUndefined()
    expect(outcomes[1]?.hits).toEqual([{ symbol: 'HIT' }])
  })

  it('does not abort the signal of a check that answered in time', async () => {
    let signal: AbortSignal | undefined
    await runChecks(
      [
        plugin('quick', async (ctx) => {
          signal = ctx.signal
          return []
        }),
      ],
      input(),
    )
    expect(signal?.aborted).toBe(false)
  })

  it('counts a hit with an undeclared symbol as a failure and drops that hit', async () => {
    const [outcome] = await runChecks(
      [plugin('liar', async () => [{ symbol: 'HIT' }, { symbol: 'NOT_DECLARED' }], { onError: 'continue' })],
      input(),
    )
    expect(outcome?.failure?.code).toBe('MSC_PLUGIN_FAILED')
    expect(outcome?.failure?.message).toContain('NOT_DECLARED')
    expect(outcome?.failure?.policy).toBe('continue')
    expect(outcome?.hits.map((h) => h.symbol)).toEqual(['LIAR_FAIL'])
  })

  it('counts a hit whose factor is not a finite number, or whose evidence or parts are not strings, as a failure', async () => {
    const bad = [
      { symbol: 'HIT', factor: Number.NaN },
      { symbol: 'HIT', factor: Number.POSITIVE_INFINITY },
      { symbol: 'HIT', factor: '2' },
      { symbol: 'HIT', evidence: 'a string' },
      { symbol: 'HIT', parts: [2] },
    ]
    for (const hit of bad) {
      const check = (async () => [hit]) as unknown as Check
      const [outcome] = await runChecks([plugin('sloppy', check, { onError: 'continue' })], input())
      expect(outcome?.failure?.code, JSON.stringify(hit)).toBe('MSC_PLUGIN_FAILED')
      expect(outcome?.hits.map((h) => h.symbol)).toEqual(['SLOPPY_FAIL'])
    }
    const [good] = await runChecks([plugin('fine', async () => [{ symbol: 'HIT', factor: 2.5 }])], input())
    expect(good?.failure).toBeUndefined()
  })

  it('does not accept inherited object properties as declared symbols', async () => {
    const [outcome] = await runChecks([plugin('proto', async () => [{ symbol: 'toString' }])], input())
    expect(outcome?.failure?.code).toBe('MSC_PLUGIN_FAILED')
  })

  it('resolves with an empty list for no plugins', async () => {
    await expect(runChecks([], input())).resolves.toEqual([])
  })
})
