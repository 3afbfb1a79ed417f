/**
 * The one table of mailscreen's error codes. Tests assert on `code`, never on message text.
 * SMTP-facing errors carry the reply they turn into.
 */
export const ERROR_CODES = {
  MSC_CONFIG_INVALID: 'the configuration file failed validation',
  MSC_CONFIG_UNREADABLE: 'the configuration file could not be read or parsed',
  MSC_RULES_INVALID: 'a rules file (ruleset, scores) could not be read or has a bad line',
  MSC_PLUGIN_NOT_FOUND: 'a configured plugin could not be resolved or imported',
  MSC_PLUGIN_INVALID: 'a plugin module does not export a definePlugin() result',
  MSC_PLUGIN_OPTIONS_INVALID: "a plugin's options failed its schema",
  MSC_PLUGIN_TIMEOUT: 'a check did not answer within its timeout',
  MSC_PLUGIN_FAILED: 'a check threw',
  MSC_SPOOL_WRITE_FAILED: 'the spool could not store a message durably',
  MSC_SPOOL_CORRUPT: 'a spool file could not be read back',
  MSC_SCAN_FAILED: 'the worker pool could not scan a message',
  MSC_POOL_CLOSED: 'the worker pool closed (reload or stop) before the scan was done; it is scanned again',
  MSC_DELIVERY_DEFERRED: 'the next hop did not take the message; it will be retried',
  MSC_DELIVERY_FAILED: 'the next hop refused the message permanently',
  MSC_NOT_FOUND: 'no such message (wrong ID, or not in that queue)',
  MSC_NOT_RUNNING: 'no mailscreen process runs for this spool',
  MSC_SPOOL_IN_USE: 'another mailscreen process runs on this spool',
  MSC_IN_FLIGHT: 'the running mailscreen is scanning or delivering that message now',
  MSC_NOT_FAILED: 'only a message in failed/ can be requeued',
} as const

export type ErrorCode = keyof typeof ERROR_CODES

/** An error with a stable code from {@link ERROR_CODES}. */
export class MailscreenError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
    this.name = 'MailscreenError'
  }
}

/** An error that becomes an SMTP reply: basic code, enhanced status code and text. */
export class SmtpReplyError extends MailscreenError {
  constructor(
    code: ErrorCode,
    readonly responseCode: number,
    readonly enhancedStatus: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options)
    this.name = 'SmtpReplyError'
  }
}

/** Plain data for an error that must cross a thread boundary or land in a log line. */
export interface ErrorInfo {
  readonly code: string
  readonly message: string
}

/** Turn anything thrown into {@link ErrorInfo}. */
export function toErrorInfo(err: unknown): ErrorInfo {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code
    return { code: typeof code === 'string' ? code : err.name, message: err.message }
  }
  return { code: 'UNKNOWN', message: String(err) }
}
