import { randomUUID } from 'node:crypto';
import { describe, expect, inject, it } from 'vitest';
import { systemClock, type Clock, type TimerHandle } from '../../lib/core/clock.js';
import { RetryPolicy, type RetryBudgetOptions } from '../../lib/policies/retry/index.js';
import { RedisStore } from '../../lib/stores/redis/redis.store.js';
import { RedisRetryBudget, type RetryBudgetStatusEvent } from '../../lib/stores/redis/retry-budget.js';
import { startRedis } from '../support/redis-server.js';
import { useCleanups } from './support/cleanups.js';

// A fleet of RedisStore instances (one per simulated process) sharing one budget per name on the
// run's redis-server, each under a key prefix of its own test. Real time: Redis TIME is the clock.

const { cleanups, client } = useCleanups();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The system clock, counting the timers it holds. */
class CountingClock implements Clock {
  readonly live = new Set<TimerHandle>();
  now(): number {
    return systemClock.now();
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const handle = systemClock.setTimeout(() => {
      this.live.delete(handle);
      fn();
    }, ms);
    this.live.add(handle);
    return handle;
  }
  clearTimeout(handle: TimerHandle): void {
    this.live.delete(handle);
    systemClock.clearTimeout(handle);
  }
}

async function fleet(size: number, options: RetryBudgetOptions, url = inject('redisUrl')) {
  const keyPrefix = `t-${randomUUID()}:`;
  const name = 'payments';
  const stores = Array.from({ length: size }, () => new RedisStore({ url, keyPrefix }));
  await Promise.all(stores.map((store) => store.init()));
  const clock = new CountingClock();
  const budgets = stores.map((store) => store.createRetryBudget({ ...options, name }, clock));
  cleanups.push(async () => {
    await Promise.all(budgets.map((budget) => budget.close()));
    await Promise.all(stores.map((store) => store.close()));
  });
  return { stores, budgets, clock, keyPrefix, name };
}

/**
 * Every instance sends a call every `everyMs` for `durationMs` to a downstream that always fails,
 * through a RetryPolicy drawing on its instance's budget. Returns the fleet's calls and attempts.
 */
async function outage(budgets: readonly RedisRetryBudget[], durationMs: number, everyMs: number) {
  let calls = 0;
  let attempts = 0;
  const failing = (): Promise<never> => {
    attempts++;
    return Promise.reject(new Error('down'));
  };
  const started = performance.now();
  const runs: Array<Promise<unknown>> = [];
  await Promise.all(
    budgets.map(async (budget) => {
      const retry = new RetryPolicy({ maxAttempts: 5, delay: 1, jitter: 'none', budget });
      while (performance.now() - started < durationMs) {
        calls++;
        runs.push(retry.execute(failing).catch(() => undefined));
        await sleep(everyMs);
      }
    }),
  );
  await Promise.all(runs);
  return { calls, attempts, seconds: (performance.now() - started) / 1000 };
}

describe('RedisRetryBudget (a fleet on the shared redis-server)', () => {
  it('holds one floor for the whole fleet: 3 instances share minRetriesPerSecond', async () => {
    const floor = 5;
    const { budgets } = await fleet(3, { ratio: 0, minRetriesPerSecond: floor });
    const { calls, attempts, seconds } = await outage(budgets, 1_500, 10);
    const retries = attempts - calls;
    // Three budgets of their own would allow 3 × (floor × seconds + floor).
    expect(retries).toBeLessThanOrEqual(floor * seconds + floor);
    expect(retries).toBeGreaterThan(floor);
    console.info(`retry budget (redis, floor only): ${retries} retries for ${calls} calls over ${seconds.toFixed(2)} s on 3 instances (fleet bound ${(floor * seconds + floor).toFixed(1)})`);
  });

  it('bounds the fleet attempts by (1 + ratio) × calls + floor × seconds against a downstream failing 100 %', async () => {
    const ratio = 0.2;
    const floor = 2;
    const { budgets } = await fleet(3, { ratio, minRetriesPerSecond: floor, window: '10s' });
    const { calls, attempts, seconds } = await outage(budgets, 2_000, 5);
    const bound = (1 + ratio) * calls + floor * seconds + floor;
    expect(attempts).toBeLessThanOrEqual(bound);
    // The fleet's deposits are spent, not just each instance's own: well above 1 + ratio / 2 per call.
    expect(attempts / calls).toBeGreaterThan(1 + ratio / 2);
    const stats = budgets[0]!.stats();
    expect(stats.source).toBe('redis');
    expect(stats.instances).toBe(3);
    console.info(`retry budget (redis, 3 instances): ${attempts} attempts for ${calls} calls over ${seconds.toFixed(2)} s (${(attempts / calls).toFixed(3)} per call; bound ${bound.toFixed(1)})`);
  });

  it('lets one instance spend the deposits of the others', async () => {
    const { budgets } = await fleet(2, { ratio: 1, minRetriesPerSecond: 0 });
    const [depositor, spender] = budgets as [RedisRetryBudget, RedisRetryBudget];
    await spender.sync();
    for (let i = 0; i < 20; i++) depositor.recordCall();
    await depositor.sync();
    // Two instances exchange: the depositor holds half the balance (10) as its grant, the spender
    // half of the rest.
    await spender.sync();
    let granted = 0;
    while (spender.tryAcquire()) granted++;
    expect(granted).toBe(5);
    expect(depositor.stats().available).toBe(10);
    expect(spender.stats()).toMatchObject({ source: 'redis', fleetCalls: 20 });
  });

  it('gives an unspent grant back on close, and leaves no timer', async () => {
    const { budgets, clock, keyPrefix, name } = await fleet(1, { ratio: 1, minRetriesPerSecond: 0 });
    const budget = budgets[0]!;
    for (let i = 0; i < 10; i++) budget.recordCall();
    await budget.sync();
    expect(budget.stats().available).toBe(10);
    await budget.close();
    expect(clock.live.size).toBe(0);
    const admin = client();
    const fields = await admin.hgetall(`{${keyPrefix}retry-budget:${name}}:slots`);
    const withdrawn = Object.entries(fields)
      .filter(([field]) => field.startsWith('r'))
      .reduce((sum, [, value]) => sum + Number(value), 0);
    expect(withdrawn).toBe(0);
  });
  it('gives back the grant of an exchange still in flight when close() is called', async () => {
    const { budgets, clock, keyPrefix, name } = await fleet(1, { ratio: 1, minRetriesPerSecond: 0 });
    const budget = budgets[0]!;
    // The first call starts an exchange asking for a grant; Redis charges it before close() knows of it.
    for (let i = 0; i < 10; i++) budget.recordCall();
    await budget.close();
    expect(clock.live.size).toBe(0);
    const fields = await client().hgetall(`{${keyPrefix}retry-budget:${name}}:slots`);
    const sum = (prefix: string): number =>
      Object.entries(fields)
        .filter(([field]) => field.startsWith(prefix))
        .reduce((total, [, value]) => total + Number(value), 0);
    expect(sum('c')).toBe(10);
    expect(sum('r')).toBe(0);
  });
});

describe('RedisRetryBudget when Redis fails', () => {
  it('lets its local budget decide, with no unhandled rejection, and comes back to the fleet', async () => {
    const server = await startRedis();
    cleanups.push(() => server.stop());
    const { budgets, clock } = await fleet(1, { ratio: 0, minRetriesPerSecond: 3 }, server.url);
    const budget = budgets[0]!;
    const events: RetryBudgetStatusEvent[] = [];
    budget.onStatusChange((event) => events.push(event));
    budget.recordCall();
    await budget.sync();
    expect(budget.stats().source).toBe('redis');
    await server.stop();
    await sleep(50);
    budget.recordCall();
    await budget.sync();
    expect(budget.stats().source).toBe('local');
    expect(events.map((event) => event.source)).toEqual(['local']);
    // The local budget holds the floor for this instance alone.
    let granted = 0;
    for (let i = 0; i < 10; i++) if (budget.tryAcquire()) granted++;
    expect(granted).toBeLessThanOrEqual(3);
    await budget.close();
    expect(clock.live.size).toBe(0);
  });

  it('uses the local budget with a server that never answered', async () => {
    const keyPrefix = `t-${randomUUID()}:`;
    const store = new RedisStore({ url: 'redis://127.0.0.1:1', keyPrefix, commandTimeout: 50 });
    const clock = new CountingClock();
    const budget = store.createRetryBudget({ name: 'dead', ratio: 0, minRetriesPerSecond: 2 }, clock);
    cleanups.push(async () => {
      await budget.close();
      await store.close();
    });
    budget.recordCall();
    await budget.sync();
    expect(budget.stats().source).toBe('local');
    expect([budget.tryAcquire(), budget.tryAcquire(), budget.tryAcquire()]).toEqual([true, true, false]);
    await budget.close();
    expect(clock.live.size).toBe(0);
  });
});
