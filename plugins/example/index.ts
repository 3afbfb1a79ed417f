/**
 * example — a small header check that shows the plugin contract: flags messages without a
 * Message-ID or Date (RFC 5322 requires Date; bulk senders often omit both) and subjects
 * containing words the administrator lists.
 */
import { z } from 'zod'
import { definePlugin, type Hit } from '../../src/pipeline/plugin.js'

const options = z
  .object({
    /** Case-insensitive words that mark a subject as suspicious. */
    subjectWords: z.array(z.string().min(1)).default([]),
  })
  .strict()

export default definePlugin({
  name: 'example',
  description: 'Flags missing Message-ID / Date headers and listed subject words',
  options,
  symbols: {
    EXAMPLE_NO_MESSAGE_ID: { description: 'No Message-ID header', weight: 1 },
    EXAMPLE_NO_DATE: { description: 'No Date header', weight: 1 },
    EXAMPLE_SUBJECT_WORD: { description: 'Subject contains a listed word', weight: 3 },
  },
  timeoutMs: 1000,
  onError: 'continue',
  setup({ subjectWords }) {
    // Compile once per worker; run() is the hot path.
    const words = subjectWords.map((w) => w.toLowerCase())
    return async ({ message }) => {
      const hits: Hit[] = []
      if (message.header('message-id').length === 0) hits.push({ symbol: 'EXAMPLE_NO_MESSAGE_ID' })
      if (message.header('date').length === 0) hits.push({ symbol: 'EXAMPLE_NO_DATE' })
      const subject = (message.header('subject')[0] ?? '').toLowerCase()
      const found = words.filter((w) => subject.includes(w))
      if (found.length > 0) hits.push({ symbol: 'EXAMPLE_SUBJECT_WORD', evidence: found })
      return hits
    }
  },
})
