import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { InvalidOptionError } from '../../../lib/core/errors.js';
import { MemoryStore } from '../../../lib/stores/memory/index.js';
import type { LimitSpec } from '../../../lib/stores/store.interface.js';

const ONE_PER_SECOND: LimitSpec = { name: 'default', algorithm: 'fixed-window', limit: 1, windowMs: 1000, burst: 1 };
const limits = [ONE_PER_SECOND];

const consume = (store: MemoryStore, key: string, now = 0, specs: readonly LimitSpec[] = limits, cost = 1) => store.consume(key, specs, cost, 'consume', now);
const isCharged = (store: MemoryStore, key: string, now = 0, specs: readonly LimitSpec[] = limits) => !store.consume(key, specs, 1, 'peek', now).allowed;

describe('MemoryStore options', () => {
  it('defaults to 10,000 keys and validates maxKeys', () => {
    expect(new MemoryStore().maxKeys).toBe(10_000);
    expect(new MemoryStore().kind).toBe('memory');
    for (const maxKeys of [0, 1.5, -1, '10']) {
      expect(() => new MemoryStore({ maxKeys: maxKeys as number })).toThrow(InvalidOptionError);
    }
    expect(() => new MemoryStore({ maxKey: 5 } as never)).toThrow(/"maxKey"/);
  });
});

describe('MemoryStore bounds', () => {
  it('evicts the least recently used key, and counts it when its state was live', () => {
    const store = new MemoryStore({ maxKeys: 3 });
    consume(store, 'a');
    consume(store, 'b');
    consume(store, 'c');
    // Touching 'a' (even a refused decision) makes 'b' the least recently used.
    expect(consume(store, 'a').allowed).toBe(false);
    consume(store, 'd');
    expect(store.stats()).toEqual({ keys: 3, evictions: 1 });
    expect(isCharged(store, 'a')).toBe(true);
    expect(isCharged(store, 'c')).toBe(true);
    expect(isCharged(store, 'd')).toBe(true);
    expect(isCharged(store, 'b')).toBe(false);
  });

  it('does not count dropping a key whose limits are full again', () => {
    const store = new MemoryStore({ maxKeys: 2 });
    consume(store, 'a', 0);
    consume(store, 'b', 500);
    // At 1000 'a' is back to full (its window ended): dropping it loses nothing.
    consume(store, 'c', 1000);
    expect(store.stats()).toEqual({ keys: 2, evictions: 0 });
    // 'b' is full again too (window 0 ended), 'c' is not.
    consume(store, 'd', 1500);
    expect(store.stats()).toEqual({ keys: 2, evictions: 0 });
    consume(store, 'e', 1500);
    expect(store.stats()).toEqual({ keys: 2, evictions: 1 });
  });

  it('past half full, drops an expired least recently used key instead of growing', () => {
    const store = new MemoryStore({ maxKeys: 4 });
    consume(store, 'a', 0);
    consume(store, 'b', 0);
    consume(store, 'c', 2000);
    expect(store.stats().keys).toBe(2);
    // Below half full, an expired key stays in place for its owner to come back to.
    const roomy = new MemoryStore({ maxKeys: 100 });
    consume(roomy, 'a', 0);
    consume(roomy, 'b', 2000);
    expect(roomy.stats().keys).toBe(2);
  });

  it('creates no entry for peeks, refunds and refused calls of keys it does not hold', () => {
    const store = new MemoryStore();
    store.consume('a', limits, 1, 'peek', 0);
    store.consume('b', limits, 1, 'refund', 0);
    expect(store.consume('c', limits, 2, 'consume', 0)).toMatchObject({ allowed: false, retryAfterMs: undefined });
    expect(store.stats().keys).toBe(0);
  });

  it('never holds more than maxKeys', () => {
    const store = new MemoryStore({ maxKeys: 50 });
    for (let i = 0; i < 1000; i++) {
      consume(store, `k${i % 120}`, i);
      expect(store.stats().keys).toBeLessThanOrEqual(50);
    }
  });

  it('hands an evicted entry to the next key with fresh state, whatever limits either had', () => {
    const store = new MemoryStore({ maxKeys: 1 });
    const log: LimitSpec = { name: 'log', algorithm: 'sliding-window-log', limit: 3, windowMs: 1000, burst: 3 };
    const bucket: LimitSpec = { name: 'bucket', algorithm: 'token-bucket', limit: 2, windowMs: 1000, burst: 2 };
    consume(store, 'a', 0, [log, bucket], 2);
    consume(store, 'b', 0, [bucket], 2);
    expect(store.consume('b', [bucket], 1, 'peek', 0).allowed).toBe(false);
    consume(store, 'c', 0, [bucket, log], 1);
    expect(store.consume('c', [bucket, log], 1, 'peek', 0)).toMatchObject({ allowed: true, limits: [{ remaining: 1 }, { remaining: 2 }] });
    expect(store.consume('a', [log, bucket], 1, 'peek', 0)).toMatchObject({ limits: [{ remaining: 3 }, { remaining: 2 }] });
  });
});

describe('MemoryStore keys', () => {
  it('stores long keys by hash: distinct long keys stay distinct, the same long key meets its state', () => {
    const store = new MemoryStore();
    const long = 'x'.repeat(1000);
    consume(store, `${long}1`);
    expect(isCharged(store, `${long}1`)).toBe(true);
    expect(isCharged(store, `${long}2`)).toBe(false);
    expect(isCharged(store, long.slice(0, 64))).toBe(false);
  });

  it('never confuses a short key with the stored form of a long one', () => {
    const store = new MemoryStore();
    const long = 'y'.repeat(200);
    const digest = createHash('sha256').update(long).digest();
    digest[0] = 0;
    const storedForm = digest.toString('latin1', 0, 16);
    consume(store, long);
    expect(isCharged(store, storedForm)).toBe(false);
    consume(store, storedForm);
    expect(store.stats().keys).toBe(2);
  });
});

describe('MemoryStore reset and limits', () => {
  it('reset forgets only the named limits, and the key once none is left', () => {
    const store = new MemoryStore();
    const second: LimitSpec = { ...ONE_PER_SECOND, name: 'second' };
    const hour: LimitSpec = { ...ONE_PER_SECOND, name: 'hour', windowMs: 3_600_000 };
    consume(store, 'k', 0, [second, hour]);
    store.reset('k', [second]);
    expect(store.consume('k', [second, hour], 1, 'peek', 0)).toMatchObject({ limits: [{ remaining: 1 }, { remaining: 0 }] });
    expect(store.stats().keys).toBe(1);
    store.reset('k', [hour]);
    expect(store.stats().keys).toBe(0);
    store.reset('absent', [hour]);
  });

  it('reset of the first limit keeps the others', () => {
    const store = new MemoryStore();
    const a: LimitSpec = { ...ONE_PER_SECOND, name: 'a' };
    const b: LimitSpec = { ...ONE_PER_SECOND, name: 'b', limit: 5 };
    const c: LimitSpec = { ...ONE_PER_SECOND, name: 'c', limit: 7 };
    consume(store, 'k', 0, [a, b, c]);
    store.reset('k', [a]);
    expect(store.consume('k', [a, b, c], 1, 'peek', 0)).toMatchObject({ limits: [{ remaining: 1 }, { remaining: 4 }, { remaining: 6 }] });
    consume(store, 'k', 0, [a, b, c]);
    expect(store.consume('k', [a, b, c], 1, 'peek', 0)).toMatchObject({ allowed: false, limits: [{ remaining: 0 }, { remaining: 3 }, { remaining: 5 }] });
  });

  it('a limit whose algorithm changes starts afresh', () => {
    const store = new MemoryStore();
    consume(store, 'k', 0, limits);
    const changed: LimitSpec = { ...ONE_PER_SECOND, algorithm: 'gcra' };
    expect(consume(store, 'k', 0, [changed]).allowed).toBe(true);
    expect(consume(store, 'k', 0, [changed]).allowed).toBe(false);
  });

  it('clear and close forget every key', async () => {
    const store = new MemoryStore();
    consume(store, 'a');
    store.clear();
    expect(store.stats().keys).toBe(0);
    consume(store, 'a');
    consume(store, 'b');
    await store.close();
    expect(store.stats().keys).toBe(0);
    expect(consume(store, 'a').allowed).toBe(true);
  });
});
