import { randomUUID } from 'node:crypto';
import { Redis, ReplyError } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoreFailurePolicy } from '../../lib/policies/rate-limit/rate-limit.options.js';
import { isRateLimitExceededError } from '../../lib/policies/rate-limit/rate-limit.error.js';
import { RateLimitPolicy } from '../../lib/policies/rate-limit/rate-limit.policy.js';
import { isStoreUnavailableError } from '../../lib/stores/store.errors.js';
import { classify, RedisStore } from '../../lib/stores/redis/redis.store.js';
import type { LimitSpec } from '../../lib/stores/store.interface.js';
import { sleep, startManagedRedis, type ManagedRedis } from './support/managed-redis.js';

const TIMEOUT_MS = 100;
/** Allowed lateness of a decision past the timeout: timers on a loaded 2-core machine. */
const MARGIN_MS = 75;
const FAULT_MS = 400;
const CALLERS = 10;
const LOCAL_LIMIT = 5;
const LOCAL_WINDOW_MS = 200;
const POLICIES: readonly StoreFailurePolicy[] = ['fail-open', 'fail-closed', 'local'];
const EXPECTED: Record<StoreFailurePolicy, { outcomes: ReadonlyArray<Sample['outcome']>; counter: 'failOpen' | 'failClosed' | 'local' }> = {
  'fail-open': { outcomes: ['redis-allowed', 'fail-open'], counter: 'failOpen' },
  'fail-closed': { outcomes: ['redis-allowed', 'unavailable'], counter: 'failClosed' },
  local: { outcomes: ['redis-allowed', 'redis-refused', 'local-allowed', 'local-refused'], counter: 'local' },
};

function reply(message: string): Error {
  return new (ReplyError as new (text: string) => Error)(message);
}

interface Sample {
  readonly at: number;
  readonly key: string;
  readonly latency: number;
  readonly outcome: 'redis-allowed' | 'redis-refused' | 'fail-open' | 'local-allowed' | 'local-refused' | 'unavailable' | 'rate-limited' | 'error';
}

interface Driver {
  readonly policy: StoreFailurePolicy;
  readonly store: RedisStore;
  readonly samples: Sample[];
  stop(): Promise<void>;
}

/** Drives `CALLERS` concurrent callers through a store with the given failure policy until stopped. */
function drive(url: string, policy: StoreFailurePolicy): Driver {
  const store = new RedisStore({ url, keyPrefix: `r5:${randomUUID()}:`, commandTimeout: TIMEOUT_MS, onFailure: policy });
  const samples: Sample[] = [];
  const state = { running: true };
  // fail-open / fail-closed: a limit nobody reaches, so any refusal would be the store's doing.
  const generous = new RateLimitPolicy({ name: 'generous', algorithm: 'fixed-window', limit: 1_000_000, window: 1_000 }, { store });
  const tight: LimitSpec[] = [{ name: 'tight', algorithm: 'fixed-window', limit: LOCAL_LIMIT, windowMs: LOCAL_WINDOW_MS, burst: LOCAL_LIMIT }];
  const loop = async (caller: number): Promise<void> => {
    const key = `caller-${caller % 2}`;
    while (state.running) {
      const start = performance.now();
      let outcome: Sample['outcome'];
      try {
        if (policy === 'local') {
          const decision = await store.consume(key, tight, 1, 'consume', start);
          outcome = decision.degraded === 'local' ? (decision.allowed ? 'local-allowed' : 'local-refused') : decision.allowed ? 'redis-allowed' : 'redis-refused';
        } else if (policy === 'fail-closed') {
          await generous.execute(() => Promise.resolve('ran'));
          outcome = 'redis-allowed';
        } else {
          const decision = await generous.decide('caller');
          outcome = decision.degraded === 'fail-open' ? 'fail-open' : decision.allowed ? 'redis-allowed' : 'redis-refused';
        }
      } catch (error) {
        outcome = isStoreUnavailableError(error) ? 'unavailable' : isRateLimitExceededError(error) ? 'rate-limited' : 'error';
      }
      samples.push({ at: start, key, latency: performance.now() - start, outcome });
      // Degraded decisions answer synchronously: let timers and I/O run between calls.
      await sleep(3);
    }
  };
  const loops = Array.from({ length: CALLERS }, (_, caller) => loop(caller));
  return {
    policy,
    store,
    samples,
    stop: async () => {
      state.running = false;
      await Promise.all(loops);
      await store.close();
    },
  };
}

const FAULTS: ReadonlyArray<{ name: string; inject: (redis: ManagedRedis) => Promise<() => Promise<void>> }> = [
  {
    name: 'kill -9, restart on the same port',
    inject: async (redis) => {
      await redis.kill();
      return () => redis.restart();
    },
  },
  {
    name: 'SIGSTOP (a hang), then SIGCONT',
    inject: async (redis) => {
      redis.freeze();
      return async () => redis.thaw();
    },
  },
  {
    name: 'CLIENT PAUSE ALL',
    inject: async (redis) => {
      await redis.admin('client', 'pause', FAULT_MS, 'ALL');
      return async () => undefined;
    },
  },
  {
    name: 'connection reset (CLIENT KILL every 50 ms)',
    inject: async (redis) => {
      const state = { active: true };
      const killer = (async () => {
        while (state.active) {
          await redis.admin('client', 'kill', 'type', 'normal').catch(() => undefined);
          await sleep(50);
        }
      })();
      return async () => {
        state.active = false;
        await killer;
      };
    },
  },
];

describe('R5 outage policies × faults', () => {
  let redis: ManagedRedis;

  beforeAll(async () => {
    redis = await startManagedRedis();
  });

  afterAll(async () => {
    await redis?.stop();
  });

  for (const fault of FAULTS) {
    it(`${fault.name}: no decision waits past the timeout; fail-open admits, fail-closed refuses with StoreUnavailableError, local keeps the limit; Redis resumes`, async () => {
      const drivers = POLICIES.map((policy) => drive(redis.url, policy));
      try {
        // Before the fault, every store decides through Redis.
        const ready = performance.now() + 3_000;
        const fromRedis = (driver: Driver): boolean => driver.samples.some((sample) => sample.outcome.startsWith('redis-'));
        while (!drivers.every(fromRedis) && performance.now() < ready) await sleep(20);
        await sleep(50);
        expect(drivers.map(fromRedis)).toEqual([true, true, true]);
        const faultStart = performance.now();
        const end = await fault.inject(redis);
        await sleep(FAULT_MS);
        await end();
        const faultEnd = performance.now();
        // Recovery: every store decides through Redis again.
        const deadline = faultEnd + 5_000;
        const recovered = (driver: Driver): boolean => driver.samples.some((sample) => sample.at > faultEnd && sample.outcome.startsWith('redis-'));
        while (!drivers.every(recovered) && performance.now() < deadline) await sleep(20);
        await sleep(50);
        for (const driver of drivers) {
          const samples = driver.samples;
          const during = samples.filter((sample) => sample.at >= faultStart && sample.at < faultEnd);
          const counts = new Map<string, number>();
          for (const sample of during) counts.set(sample.outcome, (counts.get(sample.outcome) ?? 0) + 1);
          const maxLatency = Math.max(...samples.map((sample) => sample.latency));
          const firstBack = samples.find((sample) => sample.at > faultEnd && sample.outcome.startsWith('redis-'));
          const stats = driver.store.stats();
          // The in-process limiter decides on the time each call was given, and a key's state never
          // goes back in time: a call that waited for the timeout counts at the latest time its key
          // has seen. Replay that view, in the order of the decisions, to bucket its admissions.
          const localWorst = new Map<string, number>();
          const latestSeen = new Map<string, number>();
          for (const sample of samples) {
            if (sample.outcome !== 'local-allowed' && sample.outcome !== 'local-refused') continue;
            const at = Math.max(latestSeen.get(sample.key) ?? 0, sample.at);
            latestSeen.set(sample.key, at);
            if (sample.outcome !== 'local-allowed') continue;
            const bucket = `${sample.key}:${Math.floor(at / LOCAL_WINDOW_MS)}`;
            localWorst.set(bucket, (localWorst.get(bucket) ?? 0) + 1);
          }
          const failures = Object.entries(stats.failures).filter(([, count]) => count > 0).map(([kind, count]) => `${kind} ${count}`).join(', ');
          console.log(
            `[R5] ${fault.name} × ${driver.policy}: ${samples.length} decisions, longest ${maxLatency.toFixed(0)} ms (timeout ${TIMEOUT_MS} ms); ` +
              `during the fault ${[...counts].map(([outcome, count]) => `${outcome} ${count}`).join(', ')}; incidents: ${failures}; ` +
              (driver.policy === 'local' ? `local admitted ≤ ${Math.max(0, ...localWorst.values())} / limit ${LOCAL_LIMIT} per window and key; ` : '') +
              `Redis decides again ${firstBack === undefined ? 'never' : `${(firstBack.at + firstBack.latency - faultEnd).toFixed(0)} ms`} after the fault ends`,
          );
          expect(maxLatency).toBeLessThanOrEqual(TIMEOUT_MS + MARGIN_MS);
          expect(firstBack).toBeDefined();
          expect(samples.filter((sample) => sample.outcome === 'error' || sample.outcome === 'rate-limited')).toEqual([]);
          const degradedDuring = during.filter((sample) => !sample.outcome.startsWith('redis-'));
          expect(degradedDuring.length).toBeGreaterThan(0);
          const incidents = Object.values(stats.failures).reduce((sum, count) => sum + count, 0);
          expect(incidents).toBe(stats.failOpen + stats.failClosed + stats.local);
          // fail-open admits, fail-closed refuses with StoreUnavailableError, local decides in process.
          const expected = EXPECTED[driver.policy];
          expect(samples.filter((sample) => !expected.outcomes.includes(sample.outcome))).toEqual([]);
          expect(stats[expected.counter]).toBeGreaterThan(0);
          // The in-process limiter keeps the same limit per (aligned) window and key.
          expect(Math.max(0, ...localWorst.values())).toBeLessThanOrEqual(LOCAL_LIMIT);
        }
      } finally {
        await Promise.all(drivers.map((driver) => driver.stop()));
      }
    }, 20_000);
  }

  it('a permanent error (WRONGTYPE, a script error) is thrown under every policy, never treated as an outage', async () => {
    const prefix = `r5:${randomUUID()}:`;
    const admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    await admin.connect();
    await admin.hset(`{${prefix}victim}:default`, 'field', 'not a limiter');
    const limits: LimitSpec[] = [{ name: 'default', algorithm: 'token-bucket', limit: 5, windowMs: 1_000, burst: 5 }];
    const bogus = [{ ...limits[0]!, algorithm: 'bogus' }] as unknown as LimitSpec[];
    try {
      for (const policy of POLICIES) {
        const store = new RedisStore({ url: redis.url, keyPrefix: prefix, commandTimeout: 2_000, onFailure: policy });
        try {
          await expect(Promise.resolve(store.consume('victim', limits, 1, 'consume', 0))).rejects.toThrow(/^WRONGTYPE/);
          await expect(Promise.resolve(store.consume('other', bogus, 1, 'consume', 0))).rejects.toThrow(/unknown algorithm/);
          const stats = store.stats();
          expect(stats.permanentErrors).toBe(2);
          expect(stats.failOpen + stats.failClosed + stats.local).toBe(0);
          expect(stats.available).toBe(true);
          console.log(`[R5] permanent errors × ${policy}: WRONGTYPE and a script error thrown as they are (2 of 2), 0 decisions left to the failure policy`);
        } finally {
          await store.close();
        }
      }
    } finally {
      await admin.quit();
    }
  });

  it('classifies CROSSSLOT and script errors as permanent, passing server states as failures', () => {
    expect(classify(reply("CROSSSLOT Keys in request don't hash to the same slot"))).toBeUndefined();
    expect(classify(reply('ERR user_script:1: Script attempted to access nonexistent global variable'))).toBeUndefined();
    expect(classify(reply('WRONGTYPE Operation against a key holding the wrong kind of value'))).toBeUndefined();
    expect(classify(reply('NOSCRIPT No matching script. Please use EVAL.'))).toBeUndefined();
    expect(classify(reply("OOM command not allowed when used memory > 'maxmemory'."))).toBe('oom');
    expect(classify(reply('ERR Error running script (call to f_1): @user_script:9: -OOM command not allowed'))).toBe('oom');
    expect(classify(reply('BUSY Redis is busy running a script.'))).toBe('busy');
    expect(classify(reply('LOADING Redis is loading the dataset in memory'))).toBe('loading');
    expect(classify(reply('TRYAGAIN Multiple keys request during rehashing of slot'))).toBe('cluster');
    expect(classify(reply('CLUSTERDOWN The cluster is down'))).toBe('cluster');
    expect(classify(reply('MOVED 3999 127.0.0.1:6381'))).toBe('cluster');
    expect(classify(new Error('Command timed out'))).toBe('timeout');
    expect(classify(new Error('Connection is closed.'))).toBe('connection');
  });
});
