import { BlockList } from 'node:net'
import { parseCidr } from '../config/address.js'

/** Normalise an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) to plain IPv4. */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
}

/** A matcher for `smtp.trusted`: which peers may connect and send XFORWARD/XCLIENT. */
export function trustedNetworks(networks: readonly string[]): (address: string) => boolean {
  const list = new BlockList()
  for (const network of networks) {
    const cidr = parseCidr(network)
    if (cidr) list.addSubnet(cidr.address, cidr.prefix, cidr.family)
  }
  return (address) => {
    const plain = plainAddress(address)
    return list.check(plain, plain.includes(':') ? 'ipv6' : 'ipv4')
  }
}
