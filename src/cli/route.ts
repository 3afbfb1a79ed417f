import { isAbsolute, relative, resolve } from 'node:path'
import type { Command } from 'commander'
import type { HostPort } from '../config/address.js'
import type { LoadedConfig } from '../config/load.js'
import { loadRoutingMaps, type RoutingMaps } from '../routing/maps.js'
import { formatNextHop, type RouteDecision, route } from '../routing/router.js'
import { parseAddress, type SourceRef } from '../routing/text.js'
import { configOrExit, withConfig } from './common.js'

/** Exit status of `mailscreen route` when the address is refused (0 = accepted, 1 = error). */
export const EXIT_REFUSED = 2

/**
 * The routing maps folder: `routing.dir` from the config if present, else `./rules`;
 * relative to the config file's directory.
 */
export function routingDir(loaded: LoadedConfig): string {
  const section = (loaded.config as unknown as { routing?: { dir?: unknown } }).routing
  const dir = typeof section?.dir === 'string' && section.dir !== '' ? section.dir : './rules'
  return isAbsolute(dir) ? dir : resolve(loaded.baseDir, dir)
}

/** The default relay for foreign domains: `delivery.relay` when the config has one. */
function defaultRelay(loaded: LoadedConfig): HostPort | undefined {
  return (loaded.config.delivery as { relay?: HostPort } | undefined)?.relay
}

/** A map line as `mailertable:4` when the file is in the maps folder, else its full path. */
function shortSource(source: SourceRef, maps: RoutingMaps): string {
  const rel = maps.dir ? relative(maps.dir, source.file) : source.file
  const file = rel === '' || rel.startsWith('..') || isAbsolute(rel) ? source.file : rel
  return source.line > 0 ? `${file}:${source.line}` : file
}

const sender = (from: string): string => (from === '' ? '<>' : from)

/** The decision as text: the trace, indented per nesting level, then the recipients. */
export function formatDecision(decision: RouteDecision, maps: RoutingMaps): string {
  const present = Object.entries(maps.files)
    .filter(([, file]) => file !== undefined)
    .map(([name]) => name)
  const out = [
    `route ${decision.address} (from ${sender(decision.from)})`,
    `maps  ${maps.dir || '(in memory)'}: ${present.length ? present.join(', ') : 'none'}${
      maps.problems.length ? `; ${maps.problems.length} problem(s), see stderr` : ''
    }`,
    '',
  ]
  let current: string | undefined
  for (const step of decision.steps) {
    const indent = '  '.repeat(step.depth)
    if (step.address !== current) {
      out.push(`${indent}${step.address}`)
      current = step.address
    }
    const source = step.source ? `  [${shortSource(step.source, maps)}]` : ''
    const result = step.map === 'route' ? '' : `${step.result.padEnd(5)} `
    out.push(`${indent}  ${step.map.padEnd(17)} ${result}${step.detail}${source}`)
  }
  out.push('', `recipients (${decision.recipients.length}):`)
  for (const r of decision.recipients) {
    const hop =
      r.nextHop.kind === 'error' ? `${formatNextHop(r.nextHop)} ${r.nextHop.text}` : formatNextHop(r.nextHop)
    out.push(`  ${r.address}  ${hop}`)
    out.push(`      why: ${r.why}${r.source ? `  [${shortSource(r.source, maps)}]` : ''}`)
    if (r.via.length) out.push(`      via: ${r.via.join(' → ')}`)
    if (r.from !== decision.from) out.push(`      envelope sender: ${sender(r.from)}`)
  }
  out.push(
    '',
    decision.refusal
      ? `refused: ${decision.refusal.code} ${decision.refusal.status} ${decision.refusal.text}`
      : 'accepted',
  )
  return `${out.join('\n')}\n`
}

/** The decision as one JSON object: the final `recipients` and their `nextHop`s, the trace and the maps' problems. */
export function decisionJson(decision: RouteDecision, maps: RoutingMaps): Record<string, unknown> {
  return {
    address: decision.address,
    from: decision.from,
    accepted: decision.accepted,
    refusal: decision.refusal ?? null,
    recipients: decision.recipients,
    steps: decision.steps,
    maps: { dir: maps.dir, files: maps.files, problems: maps.problems },
  }
}

/**
 * `mailscreen route ADDRESS [--from ADDR] [--json]`: how an address is routed — every map
 * consulted, every expansion, the final recipients with their next hops and why.
 * Exit status 0 when accepted, {@link EXIT_REFUSED} when refused, 1 on a config error.
 */
export function registerRoute(program: Command): void {
  withConfig(program.command('route'))
    .description(
      'show how an address is routed: each map consulted, each expansion, the final recipients and their next hops, and why',
    )
    .argument('<address>', 'the recipient address, user@domain')
    .option('--from <addr>', 'envelope sender (default <>, the null sender)')
    .option('--json', 'print the decision as JSON')
    .action(
      async (
        address: string,
        options: { config?: string; from?: string; json?: boolean },
        command: Command,
      ) => {
        const from = options.from ?? ''
        if (from !== '' && from !== '<>' && !parseAddress(from)?.domain)
          command.error(
            `mailscreen route: --from ${JSON.stringify(from)} is not an address (user@domain or <>)`,
          )
        const loaded = configOrExit(options)
        const maps = loadRoutingMaps(routingDir(loaded))
        const relay = defaultRelay(loaded)
        const decision = await route(address, maps, { from, ...(relay ? { defaultRelay: relay } : {}) })
        if (options.json) {
          process.stdout.write(`${JSON.stringify(decisionJson(decision, maps), null, 2)}\n`)
        } else {
          for (const p of maps.problems)
            process.stderr.write(`mailscreen: ${shortSource(p, maps)}: ${p.reason}\n`)
          process.stdout.write(formatDecision(decision, maps))
        }
        if (!decision.accepted) process.exitCode = EXIT_REFUSED
      },
    )
}
