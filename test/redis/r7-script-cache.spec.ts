import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoreFailurePolicy } from '../../lib/policies/rate-limit/rate-limit.options.js';
import { RedisStore } from '../../lib/stores/redis/redis.store.js';
import type { LimitSpec } from '../../lib/stores/store.interface.js';
import { sleep, startManagedRedis, type ManagedRedis } from './support/managed-redis.js';

const LIMITS: LimitSpec[] = [
  { name: 'second', algorithm: 'gcra', limit: 1_000_000, windowMs: 1_000, burst: 1_000_000 },
  { name: 'log', algorithm: 'sliding-window-log', limit: 1_000_000, windowMs: 50, burst: 1_000_000 },
];

interface Run {
  decisions: number;
  fromRedis: number;
  degraded: number;
  errors: unknown[];
}

/** Floods a store with `callers` callers while `during` runs, then `after` ms more. */
async function flood(store: RedisStore, callers: number, during: () => Promise<void>, after: number): Promise<Run> {
  const run: Run = { decisions: 0, fromRedis: 0, degraded: 0, errors: [] };
  const state = { running: true };
  const loop = async (caller: number): Promise<void> => {
    while (state.running) {
      try {
        const decision = await store.consume(`caller-${caller % 5}`, LIMITS, 1, 'consume', performance.now());
        run.decisions++;
        if (decision.degraded === undefined) run.fromRedis++;
        else run.degraded++;
      } catch (error) {
        run.errors.push(error);
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  const loops = Array.from({ length: callers }, (_, caller) => loop(caller));
  await sleep(50);
  await during();
  await sleep(after);
  state.running = false;
  await Promise.all(loops);
  return run;
}

describe('R7 script cache loss', () => {
  let redis: ManagedRedis;

  beforeAll(async () => {
    redis = await startManagedRedis();
  });

  afterAll(async () => {
    await redis?.stop();
  });

  it('SCRIPT FLUSH under load: every decision still comes from Redis, no NOSCRIPT reaches a caller', async () => {
    const store = new RedisStore({ url: redis.url, keyPrefix: `r7:${randomUUID()}:`, commandTimeout: 2_000, onFailure: 'fail-closed' });
    try {
      await store.init();
      const run = await flood(
        store,
        50,
        async () => {
          for (let i = 0; i < 3; i++) {
            await redis.admin('script', 'flush');
            await sleep(80);
          }
        },
        50,
      );
      const stats = store.stats();
      console.log(
        `[R7] SCRIPT FLUSH ×3 under 50 callers: ${run.decisions} decisions, ${run.fromRedis} by Redis, ${run.degraded} degraded, ` +
          `${run.errors.length} errors reaching callers (NOSCRIPT or other); script sent again ${stats.scriptReloads} times`,
      );
      expect(run.errors).toEqual([]);
      expect(run.degraded).toBe(0);
      expect(run.fromRedis).toBe(run.decisions);
      expect(stats.scriptReloads).toBeGreaterThanOrEqual(3);
    } finally {
      await store.close();
    }
  });

  for (const kind of ['store-owned client', 'passed-in client'] as const) {
    it(`restart on the same port (${kind}): the script is sent again transparently, no NOSCRIPT reaches a caller`, async () => {
      const given = kind === 'passed-in client' ? new Redis(redis.url, { lazyConnect: true, retryStrategy: (times) => Math.min(times * 20, 200) }) : undefined;
      given?.on('error', () => undefined);
      await given?.connect();
      const policy: StoreFailurePolicy = 'fail-open';
      const options = { keyPrefix: `r7:${randomUUID()}:`, commandTimeout: 200, onFailure: policy };
      const store = given === undefined ? new RedisStore({ url: redis.url, ...options }) : new RedisStore({ client: given, ...options });
      try {
        await store.init();
        let restartedAt = 0;
        let firstAfter = 0;
        const run = await flood(
          store,
          20,
          async () => {
            await redis.restart();
            restartedAt = performance.now();
            const deadline = restartedAt + 5_000;
            // Until a decision after the restart comes from Redis again.
            const before = store.stats().decisions;
            while (store.stats().decisions === before && performance.now() < deadline) await sleep(5);
            firstAfter = performance.now() - restartedAt;
          },
          100,
        );
        const stats = store.stats();
        console.log(
          `[R7] restart on the same port, ${kind}: ${run.decisions} decisions (${run.fromRedis} by Redis, ${run.degraded} fail-open during the restart), ` +
            `${run.errors.length} errors reaching callers; Redis decides again ${firstAfter.toFixed(0)} ms after the new server is up, script sent again ${stats.scriptReloads} times`,
        );
        expect(run.errors).toEqual([]);
        expect(stats.scriptReloads).toBeGreaterThanOrEqual(1);
        expect(firstAfter).toBeLessThan(5_000);
        expect(stats.permanentErrors).toBe(0);
      } finally {
        await store.close();
        given?.disconnect();
      }
    }, 15_000);
  }
});
