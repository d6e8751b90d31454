import { randomUUID } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { RateLimitAlgorithm } from '../../lib/policies/rate-limit/rate-limit.options.js';
import { RedisStore, SCRIPT_CLOCK } from '../../lib/stores/redis/redis.store.js';
import type { LimitSpec } from '../../lib/stores/store.interface.js';
import { startRedisCluster, type RedisCluster } from '../support/redis-cluster.js';
import { fixedWindowCount } from './support/state.js';

const ALGORITHMS: readonly RateLimitAlgorithm[] = ['token-bucket', 'gcra', 'fixed-window', 'sliding-window-counter', 'sliding-window-log'];
/** Caller keys as the Nest layer could produce them, including characters that matter to Cluster slots. */
const KEYS = ['10.0.0.1', '2001:db8::/64', 'u.{alice}', 'k.a:b*c{', 'u.}{bob}'];
const FLOOD_MS = 1_300;
const CALLERS = 30;

function limitsFor(algorithm: RateLimitAlgorithm, index: number): LimitSpec[] {
  const hour: RateLimitAlgorithm = index % 2 === 0 ? 'fixed-window' : 'sliding-window-log';
  return [
    { name: 'second', algorithm, limit: 10, windowMs: 1_000, burst: 10 },
    { name: 'hour', algorithm: hour, limit: 1_000, windowMs: 3_600_000, burst: 1_000 },
  ];
}

/** The hour counter as Redis holds it: the fixed window's count, or the sliding log's length. */
async function hourCounter(client: Redis | Cluster, key: string, algorithm: RateLimitAlgorithm): Promise<number> {
  if (algorithm === 'sliding-window-log') return client.llen(key);
  return fixedWindowCount(await client.getBuffer(key));
}

async function flood(store: RedisStore, prefix: string, reader: Redis | Cluster, target: string): Promise<void> {
  const results = await Promise.all(
    ALGORITHMS.map(async (algorithm, index) => {
      const key = `${KEYS[index]}`;
      const limits = limitsFor(algorithm, index);
      let admittedCost = 0;
      let admittedCalls = 0;
      let refused = 0;
      let call = 0;
      const errors: unknown[] = [];
      const end = Date.now() + FLOOD_MS;
      const loop = async (): Promise<void> => {
        while (Date.now() < end) {
          const cost = call++ % 4 === 0 ? 3 : 1;
          try {
            const decision = await store.consume(key, limits, cost, 'consume', Date.now());
            expect(decision.degraded).toBeUndefined();
            if (decision.allowed) {
              admittedCost += cost;
              admittedCalls++;
            } else {
              refused++;
            }
          } catch (error) {
            errors.push(error);
          }
        }
      };
      await Promise.all(Array.from({ length: CALLERS }, loop));
      const escaped = key.replace(/[%{}]/g, (char) => (char === '%' ? '%25' : char === '{' ? '%7B' : '%7D'));
      const counter = await hourCounter(reader, `{${prefix}${escaped}}:hour`, limits[1]!.algorithm);
      return { algorithm, hour: limits[1]!.algorithm, admittedCost, admittedCalls, refused, counter, errors };
    }),
  );
  for (const result of results) {
    console.log(
      `[R3] ${target}, 10/s ${result.algorithm} + 1000/h ${result.hour}, ${CALLERS} callers, costs 1 and 3, ${FLOOD_MS} ms: ` +
        `hour counter ${result.counter} = sum of admitted costs ${result.admittedCost} (${result.admittedCalls} calls admitted, ${result.refused} refused), ${result.errors.length} errors (CROSSSLOT or other)`,
    );
    expect(result.errors).toEqual([]);
    expect(result.refused).toBeGreaterThan(0);
    expect(result.admittedCost).toBeGreaterThanOrEqual(10);
    expect(result.counter).toBe(result.admittedCost);
  }
}

describe('R3 multi-limit atomicity', () => {
  let cluster: RedisCluster;

  beforeAll(async () => {
    cluster = await startRedisCluster(3);
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('standalone: the hour counter equals the sum of admitted costs (a refused call consumes nothing)', async () => {
    const prefix = `r3:${randomUUID()}:`;
    const store = new RedisStore({ url: inject('redisUrl'), keyPrefix: prefix, commandTimeout: 2_000 });
    const reader = new Redis(inject('redisUrl'), { lazyConnect: true });
    await reader.connect();
    try {
      await flood(store, prefix, reader, 'standalone');
      expect(store.stats()).toMatchObject({ permanentErrors: 0, failOpen: 0 });
    } finally {
      await store.close();
      await reader.quit();
    }
  });

  it('Redis Cluster (3 primaries): the same, with no CROSSSLOT for keys holding { } : *', async () => {
    const prefix = `r3:${randomUUID()}:`;
    const store = new RedisStore({ cluster: { nodes: cluster.startupNodes }, keyPrefix: prefix, commandTimeout: 2_000 });
    const reader = new Cluster(cluster.startupNodes, { lazyConnect: true });
    await reader.connect();
    try {
      await store.init();
      await flood(store, prefix, reader, 'cluster');
      expect(store.stats().permanentErrors).toBe(0);
    } finally {
      await store.close();
      await reader.quit();
    }
  }, 20_000);

  it('a call refused by one limit charges none: neither the hour (second full) nor the second (hour full)', async () => {
    const store = new RedisStore({ url: inject('redisUrl'), keyPrefix: `r3:${randomUUID()}:`, commandTimeout: 2_000 });
    let now = 1_767_225_600_000;
    store[SCRIPT_CLOCK] = () => now;
    const limits: LimitSpec[] = [
      { name: 'second', algorithm: 'sliding-window-log', limit: 10, windowMs: 1_000, burst: 10 },
      { name: 'hour', algorithm: 'fixed-window', limit: 12, windowMs: 3_600_000, burst: 12 },
    ];
    try {
      for (let i = 0; i < 10; i++) expect((await store.consume('client', limits, 1, 'consume', 0)).allowed).toBe(true);
      // The second is full, the hour has room: refused, and the hour is not charged.
      const bySecond = await store.consume('client', limits, 1, 'consume', 0);
      expect(bySecond.allowed).toBe(false);
      expect(bySecond.limits.map((state) => state.remaining)).toEqual([0, 2]);
      now += 1_000;
      expect((await store.consume('client', limits, 2, 'consume', 0)).allowed).toBe(true);
      // The hour is full, the second has room: refused, and the second is not charged.
      const byHour = await store.consume('client', limits, 3, 'consume', 0);
      expect(byHour.allowed).toBe(false);
      expect(byHour.limits.map((state) => state.remaining)).toEqual([8, 0]);
      const peek = await store.consume('client', limits, 1, 'peek', 0);
      expect(peek.limits.map((state) => state.remaining)).toEqual([8, 0]);
      console.log(`[R3] refused by the second limit: hour remaining stays ${bySecond.limits[1]!.remaining}; refused by the hour limit: second remaining stays ${peek.limits[0]!.remaining}`);
    } finally {
      await store.close();
    }
  });
});
