import { hostname } from 'node:os'
import { z } from 'zod'
import { milterSection } from '../ingress/milter/server.js'
import { routingSection } from '../routing/maps.js'
import { cidr, hostPort } from './address.js'
import { duration, longDuration, positiveDuration } from './duration.js'

/** `smtp:` — the after-queue content-filter listener. */
const smtp = z
  .object({
    /** Addresses to listen on, `host:port`. */
    listen: z.array(hostPort).min(1).prefault(['127.0.0.1:10025']),
    /** Only these networks may connect (others get 554), and only they may send XFORWARD/XCLIENT. */
    trusted: z.array(cidr).default(['127.0.0.0/8', '::1/128']),
    /** Largest message accepted, in bytes; checked on the real stream, not only on SIZE=. */
    maxSize: z.number().int().positive().default(52_428_800),
    maxRecipients: z.number().int().positive().default(1000),
    /** Speak LMTP instead of SMTP (per-recipient replies after DATA). */
    lmtp: z.boolean().default(false),
    idleTimeout: positiveDuration.prefault(300),
    /**
     * Accepted messages waiting for a scan or a delivery place above which a new MAIL FROM is
     * paced (see `inFlowDelay`).
     */
    maxBacklog: z.number().int().min(1).default(1000),
    /**
     * How long a MAIL FROM waits for the backlog to fall to `maxBacklog` before it goes on
     * anyway, like Postfix's in_flow_delay (default 1s, at most 10s as there; 0 turns pacing
     * off). Longer would run into the MTA's own reply timeouts.
     */
    inFlowDelay: duration.prefault(1).refine((ms) => ms <= 10_000, { message: 'at most 10s' }),
  })
  .strict()

/** `spool:` — where accepted mail lives until the next hop has it. */
const spool = z
  .object({
    dir: z.string().min(1).default('./var/spool'),
    /** Fsync every file and directory change before acknowledging. Turn off only for benchmarks of the rest. */
    fsync: z.boolean().default(true),
    /**
     * Bytes that must stay free on the spool's filesystem: a MAIL FROM (plus its SIZE=) that
     * would leave less is answered `452 4.3.1 Insufficient system storage`, like Postfix's
     * queue_minfree. Default: 1.5 × `smtp.maxSize`, Postfix's own minimum. 0 turns it off.
     */
    minFree: z.number().int().min(0).optional(),
  })
  .strict()

/** `pool:` — the worker threads that run the checks. */
const pool = z
  .object({
    workers: z.number().int().min(1).max(64).default(2),
    /**
     * A scan that takes longer than this, from when its worker began it, hung the worker: the
     * worker thread is replaced, and the scans it was running are retried, each alone. So is a
     * thread whose event loop is stuck this long outside any scan (a plugin's timer).
     */
    taskTimeout: duration
      .refine((ms) => ms >= 1000, { message: 'at least 1s: scans and heartbeats are watched against it' })
      .prefault(120),
    /**
     * Scans of one message that crashed or hung a worker before it goes to `failed`; the last
     * of them had a worker to itself, so a message that only shared a worker with the culprit
     * never goes there.
     */
    maxAttempts: z.number().int().min(1).default(3),
    /** Messages in flight through the pool at once. */
    maxInFlight: z.number().int().min(1).default(64),
    /**
     * `batch`: every thread but the main one (scan workers, the file-system threadpool, V8's
     * helpers) runs under Linux's SCHED_BATCH, so that their wake-ups do not preempt the
     * thread that answers SMTP; they keep their share of the CPU. Processes a plugin spawns
     * inherit it. `normal`: threads run as started (a reload to it gives back the threads
     * mailscreen had changed). Needs chrt(1) from util-linux; without it, a warning and no change.
     */
    helperScheduling: z.enum(['batch', 'normal']).default('batch'),
  })
  .strict()

/** An action list written inline (`"tag deliver"`), or a ruleset file that picks one per envelope. */
const actionSetting = z.union([z.string().min(1), z.object({ ruleset: z.string().min(1) }).strict()])

/**
 * An administrator's list (MailScanner's `Is Definitely (Not) Spam`): patterns matched
 * against the sender address (`user@domain`, `*@domain`, `domain`, `/regex/`) or the client
 * address (`192.0.2.0/24`), or a ruleset file answering `yes`/`no` per envelope.
 */
const listSetting = z.union([z.array(z.string().min(1)), z.object({ ruleset: z.string().min(1) }).strict()])

/** `policy:` — how findings become a verdict and what each verdict does to the message. */
const policy = z
  .object({
    /** Score at or above which a message is spam (SpamAssassin's own default). */
    spamThreshold: z.number().default(5),
    /** Score at or above which spam is high-scoring spam. */
    highSpamThreshold: z.number().default(10),
    /** A file under `rules/` overriding symbols' default weights: `SYMBOL weight` per line. */
    scores: z.string().min(1).optional(),
    /** Never spam, whatever the score (viruses and banned attachments still count). */
    definitelyNotSpam: listSetting.default([]),
    /** Always spam, whatever the score. */
    definitelySpam: listSetting.default([]),
    /** Treat `definitelySpam` senders as high-scoring spam instead of spam. */
    definiteSpamIsHighScoring: z.boolean().default(false),
    /** The action list of each category (see docs/policy.md). */
    actions: z
      .object({
        clean: actionSetting.default('deliver'),
        spam: actionSetting.default('tag deliver'),
        highspam: actionSetting.default('quarantine'),
        virus: actionSetting.default('quarantine strip'),
        banned: actionSetting.default('strip'),
        unscannable: actionSetting.default('quarantine'),
      })
      .strict()
      .prefault({}),
    /** Subject text the `tag` action adds, per category. */
    tags: z
      .object({
        spam: z.string().min(1).default('{Spam?}'),
        highspam: z.string().min(1).default('{Spam?}'),
        virus: z.string().min(1).default('{Virus?}'),
        banned: z.string().min(1).default('{Blocked}'),
        unscannable: z.string().min(1).default('{Unscanned}'),
        clean: z.string().min(1).default('{Scanned}'),
        /** Where tags go: at the `start` or the `end` of the subject. */
        position: z.enum(['start', 'end']).default('start'),
      })
      .strict()
      .prefault({}),
    /** Shown in the `X-mailscreen-Scanned` header. */
    scannedHeader: z.string().default('mailscreen'),
  })
  .strict()

/**
 * A next hop that may be switched off: `host:port`, or `null` / `mx` for none (an empty YAML
 * value is `null` too).
 */
const optionalHop = z.union([z.null(), z.literal('mx').transform(() => null), hostPort])

const tlsLevel = z.enum(['none', 'may', 'encrypt'])

/** `delivery:` — the output queue (docs/routing.md, "Delivery"). */
const delivery = z
  .object({
    /**
     * The default relay: mail for a domain that is neither ours nor in the mailertable goes
     * here (by default the MTA's re-injection listener). `null` or `mx`: to the domain's MX hosts.
     */
    relay: optionalHop.prefault('127.0.0.1:10026'),
    /** Where `local` next hops go (the local MTA); default: the relay. */
    local: optionalHop.optional(),
    /** Speak LMTP to the relay and the local MTA (never to MX hosts or mailertable hosts). */
    lmtp: z.boolean().default(false),
    /**
     * STARTTLS on delivery (Postfix's `smtp_tls_security_level`): `none`, `may` (when offered;
     * clear text when not, or when the handshake fails) or `encrypt` (no TLS, no delivery:
     * deferred). `mx` for MX hosts and mailertable hosts, `relay` for the relay and the local
     * MTA (on the same host as a rule, where TLS costs CPU and protects nothing). Certificates
     * are not verified (as at Postfix's `may` and `encrypt`).
     */
    tls: z
      .object({ mx: tlsLevel.default('may'), relay: tlsLevel.default('none') })
      .strict()
      .prefault({}),
    /**
     * Sessions in flight at once, all destinations together (Postfix's `default_process_limit`);
     * up to twice as many messages are in the delivery stage at once.
     */
    maxConnections: z.number().int().min(1).default(100),
    /**
     * Sessions in flight at once to one destination (host:port), below `maxConnections` so one
     * slow destination cannot hold them all (Postfix's `default_destination_concurrency_limit`).
     */
    maxConnectionsPerDestination: z.number().int().min(1).default(20),
    /**
     * How long a message waits for a session to a destination whose sessions are all busy
     * before, if other mail is waiting for a place in the delivery stage, its recipients there
     * are deferred (`4.4.5 ... busy`) and its place goes to that mail. Such a deferral does not
     * move the `retry` schedule on. 0: wait as long as it takes.
     */
    destinationWait: duration.prefault('60s'),
    maxMessagesPerConnection: z.number().int().min(1).default(100),
    /**
     * Recipients per transaction to the relay and the local MTA (Postfix's
     * `smtpd_recipient_limit` is 1000); MX and mailertable hosts get 100 (RFC 5321's minimum).
     */
    maxRecipientsPerTransaction: z.number().int().min(1).default(1000),
    connectTimeout: positiveDuration.prefault(30),
    /** The SMTP port of MX hosts (and of A/AAAA hosts for a domain with no MX). */
    mxPort: z.number().int().min(1).max(65_535).default(25),
    /**
     * A destination that failed this many connections in a row (refused, timed out, no
     * greeting) is left alone for `backoffMin`, doubling up to `backoffMax` while it keeps failing.
     */
    backoffAfter: z.number().int().min(1).default(3),
    backoffMin: duration.prefault('30s'),
    backoffMax: duration.prefault('10m'),
    /** Waits between delivery attempts; the last one repeats. */
    retry: z.array(duration).min(1).prefault(['1m', '5m', '15m', '1h']),
    /**
     * Mail still undelivered after this long is bounced to its sender. Counted from arrival,
     * or from `queue requeue` / `quarantine release`, which start it again.
     */
    queueLifetime: longDuration.prefault('5d'),
    /** How often the deferred queue is scanned for mail that is due. */
    queueRunInterval: positiveDuration.prefault('10s'),
  })
  .strict()

/** One entry of `plugins:`. */
const pluginEntry = z
  .object({
    /** A built-in plugin's name, a path (relative to this file), or an npm package name. */
    use: z.string().min(1),
    options: z.record(z.string(), z.unknown()).default({}),
    /** Overrides the plugin's own timeout. */
    timeout: positiveDuration.optional(),
    /** Overrides the plugin's own failure policy. */
    onError: z.enum(['tempfail', 'continue']).optional(),
  })
  .strict()

/**
 * `milter:` — the pre-queue milter front end (docs/milter.md). Absent: no milter listener.
 * `actions` replaces `policy.actions` per category for mail scanned through the milter; by
 * default high-scoring spam, viruses and banned attachments are refused at end of DATA, and
 * the other categories follow `policy.actions`.
 */
const milter = milterSection.extend({
  actions: z
    .object({
      clean: actionSetting.optional(),
      spam: actionSetting.optional(),
      highspam: actionSetting.default('reject'),
      virus: actionSetting.default('reject'),
      banned: actionSetting.default('reject'),
      unscannable: actionSetting.optional(),
    })
    .strict()
    .prefault({}),
})

/** The whole `mailscreen.yaml`. Every key has its default here and nowhere else. */
export const configSchema = z
  .object({
    /** Our name in greetings, `Received:` headers and DSNs. */
    hostname: z.string().min(1).default(hostname()),
    log: z
      .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info') })
      .strict()
      .prefault({}),
    smtp: smtp.prefault({}),
    spool: spool.prefault({}),
    pool: pool.prefault({}),
    policy: policy.prefault({}),
    delivery: delivery.prefault({}),
    /** Routing maps, hop limit and resolver (docs/routing.md). */
    routing: routingSection.prefault({}),
    milter: milter.optional(),
    /**
     * Prometheus metrics on `http://<listen>/metrics`; off when absent. No authentication:
     * keep it on loopback or a management network.
     */
    metrics: z.object({ listen: hostPort }).strict().optional(),
    plugins: z.array(pluginEntry).default([{ use: 'example', options: {} }]),
  })
  .strict()

/** The validated, defaulted, frozen configuration. */
export type Config = z.output<typeof configSchema>
export type PluginEntry = z.output<typeof pluginEntry>
export type PolicyConfig = z.output<typeof policy>
export type ActionSetting = z.output<typeof actionSetting>
export type ListSetting = z.output<typeof listSetting>
