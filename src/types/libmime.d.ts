// libmime and libqp ship no types; these declare the few functions mailscreen calls.
declare module 'libmime' {
  const libmime: {
    /** Parse `value; key=param; ...` (RFC 2045), joining and decoding RFC 2231 continuations. */
    parseHeaderValue(value: string): { value: string; params: Record<string, string> }
    /** Decode RFC 2047 encoded words. */
    decodeWords(value: string): string
  }
  export default libmime
}

declare module 'libqp' {
  const libqp: {
    /** Decode quoted-printable text. */
    decode(text: string): Buffer
    /** Encode bytes as quoted-printable (one long line; see wrap). */
    encode(data: Buffer): string
    /** Break quoted-printable text into soft-wrapped lines of at most `lineLength`. */
    wrap(text: string, lineLength: number): string
  }
  export default libqp
}
