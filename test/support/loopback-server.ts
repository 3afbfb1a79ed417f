/** Raw test servers on loopback: listen on an ephemeral port, and stop with every socket closed. */
import type net from 'node:net'

export interface Listening {
  readonly port: number
  /** Destroy every connection still open, then close the server. */
  close(): Promise<void>
}

/** Listen on 127.0.0.1, an ephemeral port; the connections are tracked for close(). */
export async function listenOnLoopback(server: net.Server): Promise<Listening> {
  const sockets = new Set<net.Socket>()
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}
