/**
 * Bytes of message content the delivery stage may hold read from disk at once. Without it the
 * stage's places (twice `delivery.maxConnections`) times `smtp.maxSize` bounds memory: 200
 * messages of 50 MB after a restart would be 10 GB. A message larger than the whole budget
 * still goes, alone. Waiters are served in order, so a large message is not starved by small ones.
 */
export class ByteBudget {
  private used = 0
  private readonly waiting: Array<{ readonly bytes: number; readonly grant: () => void }> = []

  constructor(readonly limit: number) {
    if (!(limit >= 1)) throw new RangeError('a byte budget needs at least one byte')
  }

  /** Bytes held now. */
  get inUse(): number {
    return this.used
  }

  /** Callers waiting for bytes. */
  get queued(): number {
    return this.waiting.length
  }

  /** Resolves once `bytes` are held; give them back with {@link release}. */
  acquire(bytes: number): Promise<void> {
    if (this.waiting.length === 0 && this.fits(bytes)) {
      this.used += bytes
      return Promise.resolve()
    }
    return new Promise((grant) => this.waiting.push({ bytes, grant }))
  }

  release(bytes: number): void {
    if (bytes > this.used) throw new RangeError(`releasing ${bytes} bytes, ${this.used} held`)
    this.used -= bytes
    while (this.waiting.length > 0 && this.fits((this.waiting[0] as { bytes: number }).bytes)) {
      const next = this.waiting.shift() as { bytes: number; grant: () => void }
      this.used += next.bytes
      next.grant()
    }
  }

  private fits(bytes: number): boolean {
    return this.used === 0 || this.used + bytes <= this.limit
  }
}
