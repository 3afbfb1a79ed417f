/** A one-line progress bar on stderr (redrawn on a TTY, a line every few seconds otherwise). */
export class Progress {
  private timer: NodeJS.Timeout | undefined
  private lastLine = 0

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly counts: () => { accepted: number; delivered: number },
  ) {}

  start(): void {
    const started = performance.now()
    this.timer = setInterval(() => this.draw(started), 200)
    this.timer.unref()
  }

  private draw(started: number): void {
    const { accepted, delivered } = this.counts()
    const seconds = (performance.now() - started) / 1000
    const width = 30
    const filled = Math.round((delivered / this.total) * width)
    const bar = `${'#'.repeat(filled)}${'-'.repeat(width - filled)}`
    const rate = seconds > 0 ? Math.round(delivered / seconds) : 0
    const line = `${this.label.padEnd(16)} [${bar}] accepted ${accepted}/${this.total} delivered ${delivered} ${rate} msg/s`
    if (process.stderr.isTTY) process.stderr.write(`\r${line}`)
    else if (performance.now() - this.lastLine > 5000) {
      this.lastLine = performance.now()
      process.stderr.write(`${line}\n`)
    }
  }

  stop(): void {
    clearInterval(this.timer)
    if (process.stderr.isTTY) process.stderr.write('\n')
  }
}
