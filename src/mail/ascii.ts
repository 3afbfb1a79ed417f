/** Whether a string holds anything beyond US-ASCII (an address that needs SMTPUTF8, RFC 6531). */
export function isNonAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return true
  return false
}
