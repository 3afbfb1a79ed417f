/**
 * spamassassin — asks spamd (SYMBOLS over TCP or a unix socket) for its score and rule names.
 * The score is reported as `SPAMD_SCORE` with factor = spamd's score (weight 1), so it counts
 * as it is in the verdict. Messages above `maxSize` are not sent (`SPAMD_SKIPPED_TOO_BIG`).
 * spamd errors (EX_* codes), an unreachable spamd and timeouts throw: SPAMASSASSIN_FAIL under
 * the failure policy, by default `continue` (spam scoring is advisory; mail keeps flowing).
 */
import { z } from 'zod'
import { definePlugin, type Hit, type OptionsEnv, serviceOptions } from '../../src/pipeline/plugin.js'
import { check } from './spamc.js'

/** spamd's address (default port 783) or its unix socket (`--socketpath`), and what to ask. */
const options = (env: OptionsEnv) =>
  serviceOptions(env, 783, {
    /** Sent as `User:` (whose preferences spamd applies). Default: none (spamd's own user). */
    user: z
      .string()
      .regex(/^[\x21-\x7e]+$/, 'no spaces or control characters')
      .optional(),
    /** Messages larger than this many bytes are not scanned (spamc's default is 500 KiB). */
    maxSize: z.number().int().min(1).default(512_000),
    /** Milliseconds for the whole exchange with spamd. */
    timeoutMs: z.number().int().min(1).default(30_000),
  })

export default definePlugin({
  name: 'spamassassin',
  description: 'Scores the message with SpamAssassin (spamd, SYMBOLS)',
  options,
  symbols: {
    SPAMD_SCORE: {
      description: "spamd's score (factor = the score; evidence: score/threshold and the rule names)",
      weight: 1,
    },
    SPAMD_SKIPPED_TOO_BIG: {
      description: 'Not scanned: larger than maxSize (evidence: the size)',
      weight: 0,
    },
  },
  timeoutMs: 30_000,
  onError: 'continue',
  setup({ target, user, maxSize, timeoutMs }) {
    return async ({ message, signal }): Promise<Hit[]> => {
      if (message.size > maxSize)
        return [{ symbol: 'SPAMD_SKIPPED_TOO_BIG', evidence: [`${message.size} bytes > maxSize ${maxSize}`] }]
      const verdict = await check(target, message.raw, {
        signal,
        timeoutMs,
        ...(user !== undefined ? { user } : {}),
      })
      return [
        {
          symbol: 'SPAMD_SCORE',
          factor: verdict.score,
          evidence: [`${verdict.score.toFixed(1)}/${verdict.threshold.toFixed(1)}`, ...verdict.symbols],
        },
      ]
    }
  },
})
