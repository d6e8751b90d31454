import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { MemoryStore } from '../../lib/stores/memory/memory.store.js';
import { RedisStore, SCRIPT_CLOCK } from '../../lib/stores/redis/redis.store.js';
import type { LimitSpec } from '../../lib/stores/store.interface.js';

const ALGORITHMS = ['token-bucket', 'gcra', 'fixed-window', 'sliding-window-counter', 'sliding-window-log'] as const;

/** Script calls Redis has run (commandstats). */
async function scriptCalls(admin: Redis): Promise<number> {
  const stats = String(await admin.info('commandstats'));
  let calls = 0;
  for (const match of stats.matchAll(/cmdstat_eval(?:sha)?:calls=(\d+)/g)) calls += Number(match[1]);
  return calls;
}

describe('RedisStore sends the decisions of one tick in one script call', () => {
  const url = inject('redisUrl');
  let admin: Redis;

  beforeAll(async () => {
    admin = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    await admin.connect();
  });

  afterAll(async () => {
    await admin?.quit();
  });

  it.each(ALGORITHMS)('%s: concurrent decisions, on one key and on many, equal the memory store deciding them one by one', async (algorithm) => {
    const store = new RedisStore({ url, commandTimeout: 2_000, keyPrefix: `batch:${randomUUID()}:` });
    const memory = new MemoryStore();
    const now = 1_767_225_600_000.123;
    store[SCRIPT_CLOCK] = () => now;
    const limits: LimitSpec[] = [
      { name: 'minute', algorithm, limit: 7, windowMs: 60_000, burst: 9 },
      { name: 'hour', algorithm: 'fixed-window', limit: 150, windowMs: 3_600_000, burst: 150 },
    ];
    try {
      await store.init();
      const keys = Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? 'hot' : `k${i % 7}`));
      const before = await scriptCalls(admin);
      // 200 decisions, 2 keys each: more than one batch of 64 keys, sent within the same tick.
      const decisions = await Promise.all(keys.map((key, i) => store.consume(key, limits, 1 + (i % 3), 'consume', 0)));
      const calls = (await scriptCalls(admin)) - before;
      expect(calls).toBeGreaterThanOrEqual(Math.ceil((keys.length * limits.length) / 64));
      expect(calls).toBeLessThan(keys.length / 4);
      keys.forEach((key, i) => expect(decisions[i]).toEqual(memory.consume(key, limits, 1 + (i % 3), 'consume', now)));
      expect(decisions.filter((decision) => decision.allowed).length).toBeGreaterThan(0);
      expect(decisions.filter((decision) => !decision.allowed).length).toBeGreaterThan(0);
      expect(store.stats()).toMatchObject({ decisions: keys.length, permanentErrors: 0, failOpen: 0 });
    } finally {
      await store.close();
    }
  });

  it('a key of another type fails its own decision with WRONGTYPE, not the others of its call', async () => {
    const prefix = `batch:${randomUUID()}:`;
    await admin.hset(`{${prefix}victim}:default`, 'field', 'not a limiter');
    const store = new RedisStore({ url, commandTimeout: 2_000, keyPrefix: prefix, onFailure: 'fail-closed' });
    const limits: LimitSpec[] = [{ name: 'default', algorithm: 'gcra', limit: 5, windowMs: 1_000, burst: 5 }];
    try {
      await store.init();
      const before = await scriptCalls(admin);
      const results = await Promise.allSettled(['a', 'victim', 'b', 'victim', 'a'].map((key) => store.consume(key, limits, 1, 'consume', 0)));
      expect((await scriptCalls(admin)) - before).toBe(1);
      expect(results.map((result) => result.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled']);
      const errors = results.filter((result) => result.status === 'rejected').map((result) => (result as PromiseRejectedResult).reason as Error);
      expect(errors.map((error) => [error.name, error.message.slice(0, 9)])).toEqual([
        ['ReplyError', 'WRONGTYPE'],
        ['ReplyError', 'WRONGTYPE'],
      ]);
      const remaining = results.filter((result) => result.status === 'fulfilled').map((result) => (result as PromiseFulfilledResult<{ limits: Array<{ remaining: number }> }>).value.limits[0]!.remaining);
      expect(remaining).toEqual([4, 4, 3]);
      expect(store.stats()).toMatchObject({ decisions: 3, permanentErrors: 2, failClosed: 0, available: true });
      expect(await admin.type(`{${prefix}victim}:default`)).toBe('hash');
    } finally {
      await store.close();
    }
  });

  it('a reset asked for after decisions of the same tick reaches Redis after them', async () => {
    const store = new RedisStore({ url, commandTimeout: 2_000, keyPrefix: `batch:${randomUUID()}:` });
    const limits: LimitSpec[] = [{ name: 'default', algorithm: 'fixed-window', limit: 5, windowMs: 60_000, burst: 5 }];
    try {
      await store.init();
      const consumed = Promise.all([store.consume('client', limits, 2, 'consume', 0), store.consume('client', limits, 1, 'consume', 0)]);
      const reset = store.reset('client', limits);
      expect((await consumed).map((decision) => decision.limits[0]!.remaining)).toEqual([3, 2]);
      await reset;
      expect((await store.consume('client', limits, 1, 'peek', 0)).limits[0]!.remaining).toBe(5);
    } finally {
      await store.close();
    }
  });
});
