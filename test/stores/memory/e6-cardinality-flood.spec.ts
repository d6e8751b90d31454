import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../../lib/stores/memory/memory.store.js';
import type { LimitSpec } from '../../../lib/stores/store.interface.js';

/*
 * E6 — cardinality flood: a million distinct keys through a store bounded to 10,000. Entries
 * never pass the bound, the heap stays flat, a 1 KB key costs what a short one does, and every
 * key evicted while its state was live is counted.
 */

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const MAX_KEYS = 10_000;
const FLOOD = 1_000_000;
// 10 per minute: one call leaves a key 6 s from full, so every key is live during the flood.
const LIMITS: readonly LimitSpec[] = [{ name: 'default', algorithm: 'token-bucket', limit: 10, windowMs: 60_000, burst: 10 }];

/** The JavaScript heap and the typed arrays' buffers (the store's records live outside the heap). */
function heapUsed(): number {
  gc();
  gc();
  const { heapUsed: heap, arrayBuffers } = process.memoryUsage();
  return heap + arrayBuffers;
}

/** Heap held by a store filled with `count` keys made by `keyOf`, per key. */
function bytesPerKey(keyOf: (i: number) => string, count: number): number {
  let store: MemoryStore | undefined = new MemoryStore({ maxKeys: count });
  const before = heapUsed();
  for (let i = 0; i < count; i++) store.consume(keyOf(i), LIMITS, 1, 'consume', 0);
  const after = heapUsed();
  expect(store.stats().keys).toBe(count);
  store = undefined;
  return (after - before) / count;
}

describe('E6 cardinality flood', () => {
  it('a million distinct keys: bounded entries and heap, live evictions counted', () => {
    const store = new MemoryStore({ maxKeys: MAX_KEYS });
    const heapBefore = heapUsed();
    let peak = 0;
    const started = performance.now();
    for (let i = 0; i < FLOOD; i++) {
      store.consume(`client-${i}`, LIMITS, 1, 'consume', 0);
      if ((i & 1023) === 0) peak = Math.max(peak, store.stats().keys);
    }
    const seconds = (performance.now() - started) / 1000;
    const heapGrowth = heapUsed() - heapBefore;
    const { keys, evictions } = store.stats();
    expect(Math.max(peak, keys)).toBe(MAX_KEYS);
    // Every key was live when evicted: all but the last MAX_KEYS.
    expect(evictions).toBe(FLOOD - MAX_KEYS);
    // The store keeps ~MAX_KEYS entries' worth; a million retained entries would need ~100× more.
    expect(heapGrowth).toBeLessThan(MAX_KEYS * 1024);

    // Later, with every key full again, the next flood evicts without counting.
    for (let i = 0; i < MAX_KEYS; i++) store.consume(`late-${i}`, LIMITS, 1, 'consume', 3_600_000);
    expect(store.stats()).toEqual({ keys: MAX_KEYS, evictions: FLOOD - MAX_KEYS });

    const short = bytesPerKey((i) => `client-${i}`, MAX_KEYS);
    const prefix = 'k'.repeat(1024);
    const long = bytesPerKey((i) => `${prefix}${i}`, MAX_KEYS);
    // Hashed, a 1 KB key costs what a short one does (unhashed it would add ≥ 1 KB).
    expect(long).toBeLessThan(short + 64);
    console.log(
      `[E6] ${FLOOD.toLocaleString('en')} keys through maxKeys ${MAX_KEYS.toLocaleString('en')}: ` +
        `${Math.round(FLOOD / seconds).toLocaleString('en')} keys/s, entries ≤ ${Math.max(peak, keys)}, ` +
        `heap growth ${(heapGrowth / 1024 / 1024).toFixed(2)} MB, ${Math.round(short)} B/key (short keys), ` +
        `${Math.round(long)} B/key (1 KB keys, hashed), live evictions ${evictions.toLocaleString('en')}`,
    );
  });
});
