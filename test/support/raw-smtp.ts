import { once } from 'node:events'
import { connect, type Socket } from 'node:net'

/** A raw SMTP client: sends bytes, reads whole (multi-line) replies. */
export class RawSmtpClient {
  readonly closed: Promise<void>
  private buffer = ''
  private lines: string[] = []
  private readonly replies: string[] = []
  private waiter: (() => void) | undefined

  private constructor(readonly socket: Socket) {
    socket.setEncoding('utf8')
    socket.on('data', (text: string) => this.onData(text))
    socket.on('error', () => undefined)
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()))
  }

  static async open(port: number): Promise<RawSmtpClient> {
    const socket = connect(port, '127.0.0.1')
    await once(socket, 'connect')
    return new RawSmtpClient(socket)
  }

  send(text: string): void {
    this.socket.write(text)
  }

  /** The next reply, its lines joined with `\n`. */
  async next(timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs
    while (this.replies.length === 0) {
      if (Date.now() > deadline) throw new Error(`no reply; buffered ${JSON.stringify(this.buffer)}`)
      await new Promise<void>((resolve) => {
        this.waiter = resolve
        setTimeout(resolve, 50)
      })
    }
    return this.replies.shift() as string
  }

  async command(line: string): Promise<string> {
    this.send(`${line}\r\n`)
    return this.next()
  }

  /** Read `count` replies. */
  async take(count: number): Promise<string[]> {
    const out: string[] = []
    for (let i = 0; i < count; i++) out.push(await this.next())
    return out
  }

  private onData(text: string): void {
    this.buffer += text
    let end = this.buffer.indexOf('\r\n')
    while (end !== -1) {
      const line = this.buffer.slice(0, end)
      this.buffer = this.buffer.slice(end + 2)
      this.lines.push(line)
      if (line[3] !== '-') {
        this.replies.push(this.lines.join('\n'))
        this.lines = []
      }
      end = this.buffer.indexOf('\r\n')
    }
    this.waiter?.()
  }
}
