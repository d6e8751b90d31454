import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RateLimitPolicy } from '../../lib/policies/rate-limit/rate-limit.policy.js';
import { RedisStore } from '../../lib/stores/redis/redis.store.js';
import { isStoreUnavailableError, StoreUnavailableError } from '../../lib/stores/store.errors.js';
import type { LimitSpec } from '../../lib/stores/store.interface.js';
import { startManagedRedis, type ManagedRedis } from './support/managed-redis.js';

const LIMITS: LimitSpec[] = [{ name: 'default', algorithm: 'token-bucket', limit: 100, windowMs: 1_000, burst: 100 }];

describe('R8 eviction', () => {
  const servers: ManagedRedis[] = [];
  const start = async (args: string[]): Promise<ManagedRedis> => {
    const server = await startManagedRedis(args);
    servers.push(server);
    return server;
  };
  let lru: ManagedRedis;
  let noEviction: ManagedRedis;

  beforeAll(async () => {
    [lru, noEviction] = await Promise.all([start(['--maxmemory', '100mb', '--maxmemory-policy', 'allkeys-lru']), start([])]);
  });

  afterAll(async () => {
    await Promise.all(servers.map((server) => server.stop()));
  });

  it('warns at startup, naming the setting, when maxmemory-policy is allkeys-lru; stays quiet under noeviction', async () => {
    const messages: string[] = [];
    const store = new RedisStore({ url: lru.url, logger: (message) => messages.push(message) });
    const quiet: string[] = [];
    const safe = new RedisStore({ url: noEviction.url, logger: (message) => quiet.push(message) });
    try {
      await Promise.all([store.init(), safe.init()]);
      expect(messages).toHaveLength(1);
      expect(messages[0]).toContain("maxmemory-policy is 'allkeys-lru'");
      expect(await store.checkEviction()).toBe('allkeys-lru');
      expect(messages).toHaveLength(1);
      expect(await safe.checkEviction()).toBe('noeviction');
      expect(quiet).toEqual([]);
      console.log(`[R8] allkeys-lru: warned once at startup: "${messages[0]!.slice(0, 90)}…"; noeviction: no warning`);
    } finally {
      await Promise.all([store.close(), safe.close()]);
    }
  });

  it('warns through process.emitWarning by default', async () => {
    const store = new RedisStore({ url: lru.url });
    const warning = new Promise<Error>((resolve) => process.once('warning', resolve));
    try {
      await store.init();
      const emitted = await warning;
      expect(emitted.message).toContain('allkeys-lru');
      expect((emitted as Error & { code?: string }).code).toBe('NEST_RESILIENCE_REDIS');
    } finally {
      await store.close();
    }
  });

  it('tolerates CONFIG being disabled: no warning, no error, decisions work', async () => {
    const locked = await start(['--rename-command', 'CONFIG', '']);
    const messages: string[] = [];
    const store = new RedisStore({ url: locked.url, commandTimeout: 2_000, logger: (message) => messages.push(message) });
    try {
      await store.init();
      expect(await store.checkEviction()).toBeUndefined();
      expect(messages).toEqual([]);
      const decision = await store.consume('client', LIMITS, 1, 'consume', 0);
      expect(decision.degraded).toBeUndefined();
      expect(decision.allowed).toBe(true);
    } finally {
      await store.close();
    }
  });

  it('a script OOM reply (maxmemory reached under noeviction) is a store failure, never an error of its own', async () => {
    const prefix = `r8:${randomUUID()}:`;
    const open = new RedisStore({ url: noEviction.url, keyPrefix: prefix, onFailure: 'fail-open', commandTimeout: 2_000 });
    const closed = new RedisStore({ url: noEviction.url, keyPrefix: prefix, onFailure: 'fail-closed', commandTimeout: 2_000 });
    const limiter = new RateLimitPolicy({ name: 'oom', algorithm: 'token-bucket', limit: 100, window: 1_000 }, { store: closed });
    try {
      await Promise.all([open.init(), closed.init()]);
      expect((await open.consume('before', LIMITS, 1, 'consume', 0)).degraded).toBeUndefined();
      await noEviction.admin('config', 'set', 'maxmemory', '1');
      const admitted = await open.consume('client', LIMITS, 1, 'consume', 0);
      expect(admitted).toMatchObject({ allowed: true, degraded: 'fail-open' });
      const refused = await limiter.execute(() => Promise.resolve('ran')).catch((error: unknown) => error);
      expect(isStoreUnavailableError(refused)).toBe(true);
      expect((refused as StoreUnavailableError).retryAfterMs).toBeGreaterThan(0);
      const cause = (refused as StoreUnavailableError).cause as Error;
      expect(cause.message).toMatch(/OOM/);
      expect(open.stats().failures.oom).toBe(1);
      expect(closed.stats().failures.oom).toBe(1);
      console.log(
        `[R8] maxmemory reached (noeviction): OOM reply → fail-open admitted (degraded), fail-closed refused with StoreUnavailableError (503, Retry-After ${
          (refused as StoreUnavailableError).retryAfterMs / 1000
        } s); incidents counted as 'oom': ${open.stats().failures.oom} + ${closed.stats().failures.oom}; permanent errors: ${open.stats().permanentErrors + closed.stats().permanentErrors}`,
      );
      await noEviction.admin('config', 'set', 'maxmemory', '0');
      // Recovery: the next decision probes Redis, the one after is back to normal.
      await open.consume('client', LIMITS, 1, 'consume', 0);
      expect((await open.consume('client', LIMITS, 1, 'consume', 0)).degraded).toBeUndefined();
      expect(open.stats().permanentErrors + closed.stats().permanentErrors).toBe(0);
    } finally {
      await noEviction.admin('config', 'set', 'maxmemory', '0').catch(() => undefined);
      await Promise.all([open.close(), closed.close()]);
    }
  });
});
