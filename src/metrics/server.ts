/**
 * The metrics listener: `GET /metrics` answers the Prometheus text exposition of
 * {@link Metrics}; anything else is 404. It has no authentication: bind it to loopback or a
 * management network (`metrics.listen`).
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Metrics } from './metrics.js'

export interface MetricsServer {
  listen(host: string, port: number): Promise<{ host: string; port: number }>
  close(): Promise<void>
}

export function createMetricsServer(metrics: Metrics, onError: (err: unknown) => void): MetricsServer {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /metrics\n')
      return
    }
    metrics.scrape().then(
      ({ body, contentType }) => res.writeHead(200, { 'content-type': contentType }).end(body),
      (err: unknown) => {
        onError(err)
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics collection failed\n')
      },
    )
  })
  return {
    listen: (host, port) =>
      new Promise((resolve, reject) => {
        server.once('error', reject)
        server.listen(port, host, () => {
          server.off('error', reject)
          const address = server.address() as AddressInfo
          resolve({ host: address.address, port: address.port })
        })
      }),
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}
