/** What waiting for a drain needs of a socket: a `net.Socket`, or the milter driver's stand-in. */
export interface Drainable {
  once(event: 'drain' | 'close', listener: () => void): unknown
  removeListener(event: 'drain' | 'close', listener: () => void): unknown
}

/**
 * Resolves once `socket` takes more data ('drain') or never will ('close'): what a writer
 * awaits after `write` returned false, so that it neither floods the buffer nor waits forever
 * on a peer that went away.
 */
export function drainedOrClosed(socket: Drainable): Promise<void> {
  return new Promise<void>((resolve) => {
    const settle = (): void => {
      socket.removeListener('drain', settle)
      socket.removeListener('close', settle)
      resolve()
    }
    socket.once('drain', settle)
    socket.once('close', settle)
  })
}
