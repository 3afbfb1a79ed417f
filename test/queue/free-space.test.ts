import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { type SpaceEvent, SpoolSpace } from '../../src/queue/free-space.js'

/** A SpoolSpace over a free-space figure the test sets, with the events it reported. */
function fakeSpace(reserve: number) {
  const disk: { free: number | Error } = { free: 10_000 }
  const events: SpaceEvent[] = []
  const space = new SpoolSpace({
    dir: '/spool',
    reserve,
    freeBytes: async () => {
      if (disk.free instanceof Error) throw disk.free
      return disk.free
    },
    onChange: (e) => events.push(e),
  })
  return { disk, events, space }
}

describe('SpoolSpace', () => {
  it('has room while free space minus the declared size stays at or above the reserve', async () => {
    const { space } = fakeSpace(4_000)
    await space.measure()
    expect(space.freeNow).toBe(10_000)
    expect(space.hasRoomFor()).toBe(true)
    expect(space.hasRoomFor(6_000)).toBe(true)
    expect(space.hasRoomFor(6_001)).toBe(false)
  })

  it('reports going short of space and recovering once each, not on every measurement', async () => {
    const { disk, events, space } = fakeSpace(4_000)
    await space.measure()
    disk.free = 3_000
    await space.measure()
    await space.measure()
    expect(space.hasRoomFor()).toBe(false)
    disk.free = 5_000
    await space.measure()
    expect(space.hasRoomFor()).toBe(true)
    expect(events).toEqual([
      { kind: 'low', free: 3_000, reserve: 4_000 },
      { kind: 'recovered', free: 5_000, reserve: 4_000 },
    ])
  })

  it('counts a spool it cannot measure as having room (the writes decide), and says so once', async () => {
    const { disk, events, space } = fakeSpace(4_000)
    disk.free = 1_000
    await space.measure()
    expect(space.hasRoomFor()).toBe(false)
    disk.free = new Error('EIO')
    await space.measure()
    await space.measure()
    expect(space.hasRoomFor()).toBe(true)
    disk.free = 1_000
    await space.measure()
    expect(space.hasRoomFor()).toBe(false)
    expect(events.map((e) => e.kind)).toEqual(['low', 'unmeasurable', 'low'])
  })

  it('measures again after a running measurement for callers that came during it, sharing that one', async () => {
    const figures = [100, 5]
    let calls = 0
    const space = new SpoolSpace({
      dir: '/spool',
      reserve: 10,
      freeBytes: async () => {
        await new Promise((resolve) => setTimeout(resolve, 10))
        return figures[calls++] as number
      },
    })
    const first = space.measure()
    // A write failed with ENOSPC after the first statfs started: these must see a later figure.
    const later = [space.measure(), space.measure()]
    await first
    expect(space.hasRoomFor()).toBe(true)
    await Promise.all(later)
    expect(calls).toBe(2)
    expect(space.hasRoomFor()).toBe(false)
  })

  it('measures a real directory with statfs at start(), and a missing one as unmeasurable', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'free-space-'))
    try {
      const space = new SpoolSpace({ dir, reserve: 1, intervalMs: 20 })
      expect(space.freeNow).toBe(Number.POSITIVE_INFINITY)
      await space.start()
      expect(Number.isFinite(space.freeNow)).toBe(true)
      expect(space.freeNow).toBeGreaterThan(0)
      space.stop()
      const events: SpaceEvent[] = []
      const missing = new SpoolSpace({ dir: join(dir, 'gone'), reserve: 1, onChange: (e) => events.push(e) })
      await missing.measure()
      expect(missing.hasRoomFor()).toBe(true)
      expect(events[0]?.kind).toBe('unmeasurable')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
