import net from 'node:net'

/**
 * Returns a TCP port that was free on 127.0.0.1 a moment ago: binds 127.0.0.1:0, reads the
 * port the kernel chose and closes the socket. For daemons that must be told a fixed port in
 * their config (Postfix, clamd, spamd, rbldnsd); servers we start in-process should listen on
 * port 0 themselves instead. There is a small window in which another process may take the
 * port; the kernel hands out ephemeral ports round-robin, so that is rare.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const address = server.address()
      if (address === null || typeof address === 'string') {
        server.close()
        reject(new Error(`freePort: unexpected server address ${String(address)}`))
        return
      }
      const { port } = address
      server.close((err) => (err ? reject(err) : resolve(port)))
    })
  })
}
