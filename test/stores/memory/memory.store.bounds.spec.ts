import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../../lib/core/clock.js';
import { RateLimitPolicy } from '../../../lib/policies/rate-limit/rate-limit.policy.js';
import type { RateLimitAlgorithm } from '../../../lib/policies/rate-limit/rate-limit.options.js';
import { MemoryStore } from '../../../lib/stores/memory/memory.store.js';

/*
 * The bound and the steady state, in entry counts on the fake clock (the memory figures are
 * `npm run bench:memory`'s): a flood of distinct keys never holds more than `maxKeys`, and
 * steady traffic on a fixed key set holds the same entries minute after minute, without a
 * timer anywhere.
 */

const ALGORITHMS: readonly RateLimitAlgorithm[] = ['token-bucket', 'gcra', 'fixed-window', 'sliding-window-counter', 'sliding-window-log'];

function timers(): number {
  return process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length;
}

describe('MemoryStore under a flood of distinct keys', () => {
  it.each(ALGORITHMS)('%s: never more than maxKeys entries, every live eviction counted, no timer', (algorithm) => {
    const clock = new FakeClock();
    const store = new MemoryStore({ maxKeys: 1_000 });
    const policy = new RateLimitPolicy({ algorithm, limit: 100, window: '1m' }, { store, clock });
    const timersBefore = timers();
    let peak = 0;
    for (let i = 0; i < 30_000; i++) {
      expect(policy.decide(`10.0.${i >> 8}.${i & 255}`)).toMatchObject({ allowed: true });
      peak = Math.max(peak, store.stats().keys);
      if (i % 100 === 99) clock.advance(1);
    }
    // Every key was charged within the last minute when it was evicted: each eviction lost state.
    expect(store.stats()).toEqual({ keys: 1_000, evictions: 29_000 });
    expect(peak).toBe(1_000);
    expect(clock.pendingTimers).toBe(0);
    expect(timers()).toBe(timersBefore);
  });
});

describe('MemoryStore under steady traffic', () => {
  it('holds the same entries every simulated minute for ten minutes, every algorithm on one store', () => {
    const clock = new FakeClock();
    const store = new MemoryStore({ maxKeys: 5_000 });
    const policies = ALGORITHMS.map((algorithm) => new RateLimitPolicy({ name: algorithm, algorithm, limit: 50, window: '1m' }, { store, clock }));
    const keys = Array.from({ length: 400 }, (_, i) => `client-${i}`);
    const perMinute: Array<{ keys: number; evictions: number; admitted: number; rejected: number }> = [];
    for (let minute = 0; minute < 10; minute++) {
      for (let second = 0; second < 60; second++) {
        // Each key calls once a second through every limiter: above 50 a minute, so some calls are refused.
        for (const key of keys) for (const policy of policies) policy.decide(`${policy.name}:${key}`);
        clock.advance(1_000);
      }
      const admitted = policies.reduce((sum, policy) => sum + policy.stats().admitted, 0);
      const rejected = policies.reduce((sum, policy) => sum + policy.stats().rejected, 0);
      perMinute.push({ ...store.stats(), admitted, rejected });
    }
    const held = keys.length * policies.length;
    for (const sample of perMinute) expect(sample).toMatchObject({ keys: held, evictions: 0 });
    // The traffic was refused in part every minute (the limiters were at work, not idle).
    for (let minute = 1; minute < perMinute.length; minute++) {
      expect(perMinute[minute]!.rejected).toBeGreaterThan(perMinute[minute - 1]!.rejected);
      expect(perMinute[minute]!.admitted).toBeGreaterThan(perMinute[minute - 1]!.admitted);
    }
    expect(clock.pendingTimers).toBe(0);
  });

  it('drops keys that went quiet and are full again once past half the bound, instead of growing', () => {
    const clock = new FakeClock();
    const store = new MemoryStore({ maxKeys: 1_000 });
    const policy = new RateLimitPolicy({ limit: 10, window: '1s' }, { store, clock });
    // Each simulated second, 300 new clients call once and are never seen again.
    const sizes: number[] = [];
    for (let second = 0; second < 120; second++) {
      for (let i = 0; i < 300; i++) policy.decide(`s${second}-c${i}`);
      sizes.push(store.stats().keys);
      clock.advance(1_000);
    }
    // A key called once in second s is full again at s + 2 (the counter weighs the previous
    // window): past half the bound, new keys take the places of those, so the store holds the
    // last two seconds' clients (600) however long it runs, far below the bound of 1,000.
    expect(sizes.slice(1)).toEqual(sizes.slice(1).map(() => 600));
    expect(store.stats().evictions).toBe(0);
  });
});
