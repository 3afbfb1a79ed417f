import { open } from 'node:fs/promises'

/**
 * Fsyncs a directory so renames and creations in it survive a power cut, coalescing callers:
 * everyone who asks while a sync runs shares the next one. At 1,000 msgs/s this turns
 * thousands of directory fsyncs a second into a few dozen without weakening the guarantee
 * (each caller's change happened before the sync it waits for started).
 */
export class DirSync {
  private running: Promise<void> | undefined
  private next: Promise<void> | undefined

  constructor(
    private readonly dir: string,
    private readonly enabled: boolean = true,
  ) {}

  /** Resolves once a directory fsync that started after this call has completed. */
  sync(): Promise<void> {
    if (!this.enabled) return Promise.resolve()
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
      const handle = await open(this.dir, 'r')
      try {
        await handle.sync()
      } finally {
        await handle.close()
      }
    } finally {
      // Only the current run clears itself; a queued next run replaces it in startNext.
      if (!this.next) this.running = undefined
    }
  }
}
