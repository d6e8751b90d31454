/**
 * Reads a fixed-window limit's count from the value the Redis store keeps for it: the code `f`,
 * then the window index and the count as little-endian doubles. 0 for an absent key.
 */
export function fixedWindowCount(value: Buffer | null): number {
  if (value === null) return 0;
  if (value.length !== 17 || value[0] !== 'f'.charCodeAt(0)) throw new Error(`not a fixed-window state: ${value.toString('hex')}`);
  return value.readDoubleLE(9);
}
