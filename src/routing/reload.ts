/**
 * Keep-last-good reloading of the routing maps (SIGHUP). The parsers load the good lines of a
 * file and report the bad ones, so "broken" cannot mean "does not load": a half-saved
 * `aliases` still loads, minus the entries after the cut. Here a reload is refused when the
 * new maps have a problem the running maps do not have; the running maps then stay in force
 * and every problem is reported. A problem the running maps already had (a bad line that was
 * there at start-up) does not block a reload, so other edits still take effect.
 */
import { type BuildOptions, loadRoutingMaps, MAP_FILES, type RoutingMaps } from './maps.js'
import type { MapProblem } from './text.js'

/** What a reload did. */
export interface MapsReload {
  /** The maps now in force: the new ones if applied, else the running ones. */
  readonly maps: RoutingMaps
  readonly applied: boolean
  /** Every problem of the new files. */
  readonly problems: readonly MapProblem[]
  /** The problems the running maps did not have: why the reload was refused. */
  readonly fresh: readonly MapProblem[]
}

/**
 * A problem's identity across edits: file and reason, not the line (lines move when an
 * administrator edits above a bad line).
 */
function problemKey(problem: MapProblem): string {
  // Reasons may name lines too ("duplicate alias sales (first on line 2)").
  return `${problem.file}\u0000${problem.reason.replace(/\bline \d+/g, 'line N')}`
}

/**
 * Map files the running maps had and the new folder lacks: reported as problems, since a
 * missing file is an empty map and an `aliases` moved aside while it is edited would
 * otherwise refuse every alias.
 */
function vanished(running: RoutingMaps, next: RoutingMaps): MapProblem[] {
  return MAP_FILES.flatMap((name) => {
    const file = running.files[name]
    return file !== undefined && next.files[name] === undefined
      ? [
          {
            file,
            line: 0,
            reason: `${name} is gone (it was loaded before); restore it, or restart to run without it`,
          },
        ]
      : []
  })
}

/** The problems of `next` beyond those of `running` (as a multiset: the same bad line twice counts twice). */
export function newProblems(running: readonly MapProblem[], next: readonly MapProblem[]): MapProblem[] {
  const known = new Map<string, number>()
  for (const p of running) known.set(problemKey(p), (known.get(problemKey(p)) ?? 0) + 1)
  const fresh: MapProblem[] = []
  for (const p of next) {
    const left = known.get(problemKey(p)) ?? 0
    if (left > 0) known.set(problemKey(p), left - 1)
    else fresh.push(p)
  }
  return fresh
}

/**
 * Load the maps of `dir` and decide whether they replace `running`: yes, unless they have a
 * problem `running` does not have.
 */
export function reloadRoutingMaps(running: RoutingMaps, dir: string, options: BuildOptions = {}): MapsReload {
  const next = loadRoutingMaps(dir, options)
  const fresh = [...newProblems(running.problems, next.problems), ...vanished(running, next)]
  return fresh.length === 0
    ? { maps: next, applied: true, problems: next.problems, fresh }
    : { maps: running, applied: false, problems: next.problems, fresh }
}
