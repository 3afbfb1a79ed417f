import { EventEmitter } from 'node:events'
import { describe, expect, it } from 'vitest'
import { drainedOrClosed } from '../src/socket-drain.js'

describe('drainedOrClosed', () => {
  it.each(['drain', 'close'] as const)('resolves on %s and leaves no listener behind', async (event) => {
    const socket = new EventEmitter()
    let settled = false
    const waiting = drainedOrClosed(socket).then(() => {
      settled = true
    })
    await Promise.resolve()
    expect(settled).toBe(false)
    socket.emit(event)
    await waiting
    expect(settled).toBe(true)
    expect(socket.listenerCount('drain') + socket.listenerCount('close')).toBe(0)
  })
})
