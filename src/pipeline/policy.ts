/**
 * Load the `policy:` section into {@link PolicySettings}: parse inline action lists, read
 * ruleset files (paths relative to the config file), and check them, so a bad line stops
 * start-up (or a reload) with `file:line: reason` instead of misrouting mail later.
 */
import { isAbsolute, resolve } from 'node:path'
import type { ActionSetting, ListSetting, PolicyConfig } from '../config/schema.js'
import { MailscreenError } from '../errors.js'
import { type Action, parseActionList } from './action-list.js'
import type { PolicySettings } from './actions.js'
import { hasDefault, loadRuleset, parseRuleset, type Ruleset } from './ruleset.js'
import { VERDICT_CATEGORIES, type VerdictCategory } from './verdict.js'

function inPlace(path: string, baseDir: string): string {
  return isAbsolute(path) ? path : resolve(baseDir, path)
}

/** One rule matching everything: how an inline setting becomes a ruleset. */
function always<T>(source: string, value: T): Ruleset<T> {
  return { source, rules: [{ line: 0, conditions: [{ direction: 'fromorto', pattern: 'default' }], value }] }
}

function actionRuleset(setting: ActionSetting, key: string, baseDir: string): Ruleset<Action[]> {
  if (typeof setting === 'string') {
    try {
      return always(key, parseActionList(setting))
    } catch (err) {
      throw new MailscreenError('MSC_RULES_INVALID', `${key}: ${(err as Error).message}`)
    }
  }
  const ruleset = loadRuleset(inPlace(setting.ruleset, baseDir), parseActionList)
  if (!hasDefault(ruleset))
    throw new MailscreenError(
      'MSC_RULES_INVALID',
      `${ruleset.source}: no default rule; end it with e.g. "FromOrTo: default deliver" (${key})`,
    )
  return ruleset
}

function yesNo(text: string): boolean {
  const word = text.trim().toLowerCase()
  if (word === 'yes') return true
  if (word === 'no') return false
  throw new Error(`expected yes or no, not ${JSON.stringify(text)}`)
}

function listRuleset(setting: ListSetting, key: string, baseDir: string): Ruleset<boolean> {
  if (!Array.isArray(setting)) return loadRuleset(inPlace(setting.ruleset, baseDir), yesNo)
  // Inline patterns match the sender, or the client for an address/network.
  const text = setting.map((pattern) => `From: ${pattern} yes`).join('\n')
  return parseRuleset(text, key, yesNo)
}

/** Action settings of one front end that replace `policy.actions` (e.g. `milter.actions`). */
export interface ActionOverrides {
  /** Where they come from, for messages: `milter.actions`. */
  readonly key: string
  readonly actions: Partial<Record<VerdictCategory, ActionSetting>>
}

/**
 * Build the policy workers get, from the validated config. With `overrides`, those
 * categories take the front end's own action lists.
 */
export function loadPolicy(
  policy: PolicyConfig,
  baseDir: string,
  hostname: string,
  overrides?: ActionOverrides,
): PolicySettings {
  const actions = {} as Record<VerdictCategory, Ruleset<Action[]>>
  for (const category of VERDICT_CATEGORIES) {
    const own = overrides?.actions[category]
    actions[category] =
      own === undefined
        ? actionRuleset(policy.actions[category], `policy.actions.${category}`, baseDir)
        : actionRuleset(own, `${overrides?.key}.${category}`, baseDir)
  }
  const { position, ...tags } = policy.tags
  if (policy.highSpamThreshold < policy.spamThreshold)
    throw new MailscreenError(
      'MSC_CONFIG_INVALID',
      `policy.highSpamThreshold (${policy.highSpamThreshold}) is below policy.spamThreshold (${policy.spamThreshold})`,
    )
  return {
    verdict: {
      spamThreshold: policy.spamThreshold,
      highSpamThreshold: policy.highSpamThreshold,
      definiteSpamIsHighScoring: policy.definiteSpamIsHighScoring,
    },
    actions,
    definitelyNotSpam: listRuleset(policy.definitelyNotSpam, 'policy.definitelyNotSpam', baseDir),
    definitelySpam: listRuleset(policy.definitelySpam, 'policy.definitelySpam', baseDir),
    tags,
    tagPosition: position,
    hostname,
    scannedHeader: policy.scannedHeader,
  }
}
