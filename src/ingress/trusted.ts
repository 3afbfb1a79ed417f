import { BlockList } from 'node:net'
import { parseCidr } from '../config/address.js'

/** Normalise an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) to plain IPv4. */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
}

/** Answers remembered per address (then forgotten all at once): a filter's peers are a few MTAs. */
const REMEMBERED = 1024

/**
 * A matcher for `smtp.trusted`: which peers may connect and send XFORWARD/XCLIENT. It is asked
 * twice per connection, and BlockList.check builds a SocketAddress object on every call, so
 * answers are remembered per address.
 */
export function trustedNetworks(networks: readonly string[]): (address: string) => boolean {
  const list = new BlockList()
  for (const network of networks) {
    const cidr = parseCidr(network)
    if (cidr) list.addSubnet(cidr.address, cidr.prefix, cidr.family)
  }
  const answers = new Map<string, boolean>()
  return (address) => {
    let trusted = answers.get(address)
    if (trusted === undefined) {
      const plain = plainAddress(address)
      trusted = list.check(plain, plain.includes(':') ? 'ipv6' : 'ipv4')
      if (answers.size >= REMEMBERED) answers.clear()
      answers.set(address, trusted)
    }
    return trusted
  }
}
