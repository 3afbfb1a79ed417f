import { connect, type Socket } from 'node:net'

/**
 * A deliberately minimal SMTP client for load generation. The benchmark's load generator
 * shares the machine's two cores with the filter it measures, so it must cost as little
 * CPU per message as possible: one socket, PIPELINING, no parsing beyond reply codes.
 * (nodemailer's client is the right tool for delivery, where features matter more.)
 */
export class BenchClient {
  private buffer = ''
  private waiting: Array<{ resolve: (line: string) => void; reject: (err: Error) => void }> = []
  private replies: string[] = []
  private failure: Error | undefined

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('latin1')
    socket.setNoDelay(true)
    socket.on('data', (chunk: string) => this.onData(chunk))
    socket.on('error', (err) => this.fail(err))
    socket.on('close', () => this.fail(new Error('connection closed')))
  }

  /** Connect and read the greeting; resolves after EHLO. */
  static async open(host: string, port: number): Promise<BenchClient> {
    const socket = connect({ host, port })
    const client = new BenchClient(socket)
    await client.expect(2)
    client.socket.write('EHLO bench.mailscreen.test\r\n')
    await client.expect(2)
    return client
  }

  private onData(chunk: string): void {
    this.buffer += chunk
    let eol = this.buffer.indexOf('\r\n')
    while (eol !== -1) {
      const line = this.buffer.slice(0, eol)
      this.buffer = this.buffer.slice(eol + 2)
      // Only the last line of a multi-line reply ("250 " not "250-") completes it.
      if (line[3] !== '-') {
        const waiter = this.waiting.shift()
        if (waiter) waiter.resolve(line)
        else this.replies.push(line)
      }
      eol = this.buffer.indexOf('\r\n')
    }
  }

  private fail(err: Error): void {
    this.failure ??= err
    for (const waiter of this.waiting.splice(0)) waiter.reject(err)
  }

  private next(): Promise<string> {
    const ready = this.replies.shift()
    if (ready !== undefined) return Promise.resolve(ready)
    if (this.failure) return Promise.reject(this.failure)
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }))
  }

  private async expect(klass: number): Promise<string> {
    const line = await this.next()
    if (line[0] !== String(klass)) throw new Error(`unexpected reply: ${line}`)
    return line
  }

  /**
   * Send one message with MAIL, RCPT and DATA pipelined; `data` must already be
   * dot-stuffed and CRLF-terminated. Resolves with the final reply line.
   */
  async send(from: string, to: readonly string[], data: Buffer): Promise<string> {
    const commands = [`MAIL FROM:<${from}>`, ...to.map((rcpt) => `RCPT TO:<${rcpt}>`), 'DATA'].join('\r\n')
    this.socket.write(`${commands}\r\n`)
    for (let i = 0; i < to.length + 1; i++) await this.expect(2)
    await this.expect(3)
    // One write (writev) for the message and its terminator, as an MTA's buffered stream sends it.
    this.socket.cork()
    this.socket.write(data)
    this.socket.write('.\r\n')
    this.socket.uncork()
    return this.expect(2)
  }

  /** QUIT and close. */
  async close(): Promise<void> {
    if (this.failure) {
      this.socket.destroy()
      return
    }
    this.socket.write('QUIT\r\n')
    await this.next().catch(() => undefined)
    this.socket.destroy()
  }
}
