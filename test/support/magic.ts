/** Files that content sniffing recognises, for attachment tests. */

/** A minimal Windows program (PE) of `size` bytes: a DOS header whose e_lfanew (0x3c) points at "PE\0\0". */
export function pe(size = 0x200): Buffer {
  const b = Buffer.alloc(size)
  b.write('MZ', 0, 'latin1')
  b.writeUInt32LE(0x80, 0x3c)
  b.write('PE\0\0', 0x80, 'latin1')
  return b
}
