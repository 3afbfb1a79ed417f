/**
 * A piece of work that callers ask for and may share, where each caller needs a run that
 * started after it asked (a directory fsync must cover the caller's rename; a free-space figure
 * must be newer than the caller's failed write). Whoever asks while a run is under way gets the
 * next one, shared with everyone else who asks meanwhile: at most one run at a time, and at
 * most one more waiting.
 */
export class FreshRun {
  private running: Promise<void> | undefined
  private next: Promise<void> | undefined

  constructor(private readonly work: () => Promise<void>) {}

  /** Resolves once a run that started after this call has completed (rejects if it failed). */
  request(): Promise<void> {
    if (!this.running) {
      this.running = this.run()
      return this.running
    }
    this.next ??= this.running.then(
      () => this.startNext(),
      () => this.startNext(),
    )
    return this.next
  }

  private startNext(): Promise<void> {
    this.next = undefined
    this.running = this.run()
    return this.running
  }

  private async run(): Promise<void> {
    try {
      await this.work()
    } finally {
      // Only the current run clears itself; a queued next run replaces it in startNext.
      if (!this.next) this.running = undefined
    }
  }
}
