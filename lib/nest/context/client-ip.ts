import { isIPv6 } from 'node:net';

/**
 * Normalises a client address into a rate-limit key part: IPv4-mapped IPv6 becomes plain IPv4,
 * and IPv6 is cut to its `/prefix` network (a single host usually owns a whole /64, so per-address
 * keys would let it mint 2⁶⁴ identities). Returns `undefined` for anything that is not an IP.
 */
export function normalizeIp(address: string | undefined, ipv6Prefix = 64): string | undefined {
  if (address === undefined || address === '') return undefined;
  if (address.indexOf(':') === -1) return isPlausibleIPv4(address) ? address : undefined;
  let candidate = address;
  if (candidate.startsWith('[') && candidate.endsWith(']')) candidate = candidate.slice(1, -1);
  const zone = candidate.indexOf('%');
  if (zone !== -1) candidate = candidate.slice(0, zone);
  const lower = candidate.toLowerCase();
  if (lower.startsWith('::ffff:') && isPlausibleIPv4(lower.slice(7))) return lower.slice(7);
  if (!isIPv6(candidate)) return undefined;
  const groups = expandIPv6(lower);
  if (ipv6Prefix >= 128) return groups.join(':');
  // Keep the first `ipv6Prefix` bits, zero the rest.
  const bits = Math.max(0, Math.min(128, ipv6Prefix));
  const kept = groups.map((group, index) => {
    const start = index * 16;
    if (start + 16 <= bits) return group;
    if (start >= bits) return '0';
    const mask = (0xffff << (16 - (bits - start))) & 0xffff;
    return (parseInt(group, 16) & mask).toString(16);
  });
  return `${kept.join(':')}/${bits}`;
}

function isPlausibleIPv4(address: string): boolean {
  // A character scan: this runs on every rate-limited request, and split/Number cost 3× more.
  let parts = 0;
  let digits = 0;
  let value = 0;
  for (let i = 0; i <= address.length; i++) {
    const code = i === address.length ? 46 : address.charCodeAt(i);
    if (code === 46) {
      if (digits === 0 || value > 255) return false;
      parts++;
      digits = 0;
      value = 0;
    } else if (code >= 48 && code <= 57 && digits < 3) {
      value = value * 10 + (code - 48);
      digits++;
    } else {
      return false;
    }
  }
  return parts === 4;
}

function expandIPv6(address: string): string[] {
  let head = address;
  let tail = '';
  const gap = address.indexOf('::');
  if (gap !== -1) {
    head = address.slice(0, gap);
    tail = address.slice(gap + 2);
  }
  const headGroups = head === '' ? [] : head.split(':');
  let tailGroups = tail === '' ? [] : tail.split(':');
  // An embedded IPv4 tail (::1.2.3.4) is two groups.
  const last = tailGroups.length ? tailGroups[tailGroups.length - 1]! : (headGroups[headGroups.length - 1] ?? '');
  if (last.includes('.')) {
    const octets = last.split('.').map(Number);
    const embedded = [((octets[0]! << 8) | octets[1]!).toString(16), ((octets[2]! << 8) | octets[3]!).toString(16)];
    if (tailGroups.length) tailGroups = [...tailGroups.slice(0, -1), ...embedded];
    else headGroups.splice(headGroups.length - 1, 1, ...embedded);
  }
  const missing = 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(Math.max(0, missing)).fill('0'), ...tailGroups];
  return groups.map((group) => (parseInt(group, 16) || 0).toString(16));
}
