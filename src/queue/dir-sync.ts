import { closeSync, fsync, openSync } from 'node:fs'
import { promisify } from 'node:util'
import { FreshRun } from './fresh-run.js'

const fsyncAsync = promisify(fsync)

/**
 * Fsyncs a directory so renames and creations in it survive a power cut, coalescing callers:
 * everyone who asks while a sync runs shares the next one. At 1,000 msgs/s this turns
 * thousands of directory fsyncs a second into a few dozen without weakening the guarantee
 * (each caller's change happened before the sync it waits for started).
 */
export class DirSync {
  private readonly runs = new FreshRun(() => this.fsync())

  constructor(
    private readonly dir: string,
    private readonly enabled: boolean = true,
  ) {}

  /** Resolves once a directory fsync that started after this call has completed. */
  sync(): Promise<void> {
    return this.enabled ? this.runs.request() : Promise.resolve()
  }

  /** Open and close on this thread (page-cache work, see SlotFile); only the fsync waits on the disk. */
  private async fsync(): Promise<void> {
    const fd = openSync(this.dir, 'r')
    try {
      await fsyncAsync(fd)
    } finally {
      closeSync(fd)
    }
  }
}
