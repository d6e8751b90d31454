import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { InvalidOptionError } from '../../lib/core/errors.js';
import type { RateLimitAlgorithm } from '../../lib/policies/rate-limit/rate-limit.options.js';
import * as entry from '../../lib/redis.js';
import { RedisStore, SCRIPT_CLOCK, type RedisStoreFailureEvent, type RedisStoreOptions } from '../../lib/stores/redis/redis.store.js';
import { isStoreUnavailableError } from '../../lib/stores/store.errors.js';
import type { LimitSpec } from '../../lib/stores/store.interface.js';
import { freePort } from '../support/redis-server.js';
import { sleep } from './support/managed-redis.js';

const ALGORITHMS: readonly RateLimitAlgorithm[] = ['token-bucket', 'gcra', 'fixed-window', 'sliding-window-counter', 'sliding-window-log'];
const root = fileURLToPath(new URL('../..', import.meta.url));
/** A script-clock reading in the middle of every aligned window of these tests (30 s into a minute). */
const MID_WINDOW = 1_767_225_630_000;
/** A timeout no loaded machine reaches, for tests whose decisions must come from Redis. */
const SLACK = 2_000;

function spec(algorithm: RateLimitAlgorithm, limit: number, windowMs: number, name = 'default'): LimitSpec {
  return { name, algorithm, limit, windowMs, burst: limit };
}

describe('RedisStore', () => {
  let admin: Redis;
  const url = inject('redisUrl');

  beforeAll(async () => {
    admin = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    await admin.connect();
  });

  afterAll(async () => {
    await admin?.quit();
  });

  describe.each(ALGORITHMS)('%s against a standalone redis-server', (algorithm) => {
    it('admits the limit, refuses the next call with a Retry-After that is honoured, and lets its keys expire', async () => {
      const prefix = `s:${randomUUID()}:`;
      const store = new RedisStore({ url, commandTimeout: SLACK, keyPrefix: prefix });
      const limits = [spec(algorithm, 3, 150)];
      try {
        // Start just after an aligned window boundary (Redis TIME is this machine's clock), so the
        // first four calls fall in one window.
        await sleep(150 - (Date.now() % 150) + 2);
        for (let i = 0; i < 3; i++) {
          const decision = await store.consume('client', limits, 1, 'consume', 0);
          expect(decision).toMatchObject({ allowed: true, retryAfterMs: 0 });
          expect(decision.limits[0]!.remaining).toBe(2 - i);
        }
        const refused = await store.consume('client', limits, 1, 'consume', 0);
        expect(refused.allowed).toBe(false);
        expect(refused.limits[0]).toMatchObject({ name: 'default', limit: 3, windowMs: 150, remaining: 0 });
        expect(refused.retryAfterMs).toBeGreaterThan(0);
        expect(refused.retryAfterMs).toBeLessThanOrEqual(300);
        // A cost above capacity never passes: no Retry-After.
        expect((await store.consume('client', limits, 4, 'consume', 0)).retryAfterMs).toBeUndefined();
        const key = `{${prefix}client}:default`;
        const ttl = await admin.pttl(key);
        expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(300 + 2);
        await sleep(Math.ceil(refused.retryAfterMs!) + 2);
        expect((await store.consume('client', limits, 1, 'consume', 0)).allowed).toBe(true);
        // Once the limit is full again, its key is gone: no state outlives its use.
        const full = Math.ceil((await store.consume('client', limits, 1, 'peek', 0)).limits[0]!.resetMs);
        await sleep(full + 5);
        expect(await admin.exists(key)).toBe(0);
      } finally {
        await store.close();
      }
    });
  });

  it('keeps every key of a call under one hash tag, escaping braces and percent signs', async () => {
    const prefix = `tag:${randomUUID()}:`;
    const store = new RedisStore({ url, commandTimeout: SLACK, keyPrefix: prefix });
    try {
      await store.consume('u.{a}%b', [spec('fixed-window', 5, 10_000, 'second'), spec('sliding-window-log', 5, 10_000, 'hour')], 1, 'consume', 0);
      const keys = (await admin.keys(`*${prefix}*`)).toSorted();
      expect(keys).toEqual([`{${prefix}u.%7Ba%7D%25b}:hour`, `{${prefix}u.%7Ba%7D%25b}:second`]);
      expect(await admin.type(keys[0]!)).toBe('list');
      expect(await admin.type(keys[1]!)).toBe('string');
      // An escaped key never collides with a key that already looked escaped.
      await store.consume('u.%7Ba%7D%25b', [spec('fixed-window', 5, 10_000, 'second')], 1, 'consume', 0);
      expect(await admin.exists(`{${prefix}u.%257Ba%257D%2525b}:second`)).toBe(1);
    } finally {
      await store.close();
    }
  });

  it('a limit that changes algorithm at run time starts afresh, between the sliding log and the others too', async () => {
    const store = new RedisStore({ url, commandTimeout: SLACK, keyPrefix: `switch:${randomUUID()}:` });
    store[SCRIPT_CLOCK] = () => MID_WINDOW;
    try {
      for (const algorithm of ['fixed-window', 'sliding-window-log', 'gcra', 'sliding-window-log', 'token-bucket'] as const) {
        const limits = [spec(algorithm, 2, 60_000)];
        expect((await store.consume('client', limits, 2, 'consume', 0)).allowed).toBe(true);
        expect((await store.consume('client', limits, 1, 'consume', 0)).allowed).toBe(false);
      }
    } finally {
      await store.close();
    }
  });

  it('peek charges nothing, refund gives units back, reset forgets the key', async () => {
    const store = new RedisStore({ url, commandTimeout: SLACK, keyPrefix: `modes:${randomUUID()}:` });
    const limits = [spec('sliding-window-counter', 2, 60_000), spec('gcra', 4, 60_000, 'other')];
    store[SCRIPT_CLOCK] = () => MID_WINDOW;
    try {
      expect((await store.consume('client', limits, 2, 'peek', 0)).limits.map((state) => state.remaining)).toEqual([2, 4]);
      expect((await store.consume('client', limits, 2, 'consume', 0)).limits.map((state) => state.remaining)).toEqual([0, 2]);
      expect((await store.consume('client', limits, 1, 'peek', 0)).allowed).toBe(false);
      const refund = await store.consume('client', limits, 1, 'refund', 0);
      expect(refund.allowed).toBe(true);
      expect(refund.limits.map((state) => state.remaining)).toEqual([1, 3]);
      await store.reset('client', limits);
      expect((await store.consume('client', limits, 1, 'peek', 0)).limits.map((state) => state.remaining)).toEqual([2, 4]);
    } finally {
      await store.close();
    }
  });

  it('decides on first use without init(), waiting for the connection within the timeout', async () => {
    const store = new RedisStore({ url, commandTimeout: SLACK, keyPrefix: `lazy:${randomUUID()}:` });
    try {
      const decision = await store.consume('client', [spec('gcra', 1, 1_000)], 1, 'consume', 0);
      expect(decision).toMatchObject({ allowed: true });
      expect(decision.degraded).toBeUndefined();
    } finally {
      await store.close();
    }
  });

  describe('block cache', () => {
    it('refuses a blocked key in process until its Retry-After, without a round trip; a refund lifts it', async () => {
      const store = new RedisStore({ url, commandTimeout: SLACK, keyPrefix: `block:${randomUUID()}:`, blockCache: { maxKeys: 2 } });
      store[SCRIPT_CLOCK] = () => MID_WINDOW;
      const limits = [spec('fixed-window', 1, 10_000)];
      try {
        expect((await store.consume('hot', limits, 1, 'consume', 1_000)).allowed).toBe(true);
        const refused = await store.consume('hot', limits, 1, 'consume', 1_000);
        expect(refused.allowed).toBe(false);
        const before = store.stats().decisions;
        const blocked = store.consume('hot', limits, 1, 'consume', 1_500);
        // Answered synchronously: no promise, no round trip.
        expect(blocked).not.toBeInstanceOf(Promise);
        expect(blocked).toMatchObject({ allowed: false, retryAfterMs: refused.retryAfterMs! - 500 });
        expect(store.stats()).toMatchObject({ decisions: before, blocked: 1 });
        // A refund through this store lifts the block.
        await store.consume('hot', limits, 1, 'refund', 1_600);
        expect((await store.consume('hot', limits, 1, 'consume', 1_700)).allowed).toBe(true);
        expect(store.stats().blocked).toBe(1);
        // Past the block's end, Redis decides again.
        await store.consume('hot', limits, 1, 'consume', 1_800);
        await store.consume('hot', limits, 1, 'consume', 1_800 + refused.retryAfterMs! + 10_000);
        expect(store.stats().decisions).toBe(before + 4);
      } finally {
        await store.close();
      }
    });

    it('holds at most maxKeys keys', async () => {
      const store = new RedisStore({ url, commandTimeout: SLACK, keyPrefix: `block:${randomUUID()}:`, blockCache: { maxKeys: 2 } });
      store[SCRIPT_CLOCK] = () => MID_WINDOW;
      const limits = [spec('fixed-window', 1, 60_000)];
      try {
        for (const key of ['a', 'b', 'c']) {
          await store.consume(key, limits, 1, 'consume', 0);
          await store.consume(key, limits, 1, 'consume', 0);
        }
        const before = store.stats().decisions;
        await store.consume('a', limits, 1, 'consume', 1);
        await store.consume('c', limits, 1, 'consume', 1);
        // 'a' was dropped to make room for 'c': one round trip.
        expect(store.stats().decisions - before).toBe(1);
      } finally {
        await store.close();
      }
    });
  });

  describe('clients and lifecycle', () => {
    it('closes the client it created (idempotently) and then decides by the failure policy', async () => {
      const store = new RedisStore({ url, onFailure: 'fail-closed' });
      await store.init();
      expect(store.ownsClient).toBe(true);
      await store.close();
      await store.close();
      expect(store.client.status).toBe('end');
      const error = await Promise.resolve(store.consume('client', [spec('gcra', 1, 1_000)], 1, 'consume', 0)).catch((caught: unknown) => caught);
      expect(isStoreUnavailableError(error)).toBe(true);
      expect(store.stats().failures.closed).toBe(1);
    });

    it('never closes a client passed in, and connects one still waiting (lazyConnect)', async () => {
      const client = new Redis(url, { lazyConnect: true });
      const store = new RedisStore({ client, commandTimeout: SLACK, keyPrefix: `given:${randomUUID()}:` });
      try {
        expect(client.status).toBe('wait');
        await store.init();
        expect(client.status).toBe('ready');
        expect((await store.consume('client', [spec('gcra', 1, 1_000)], 1, 'consume', 0)).degraded).toBeUndefined();
        await store.close();
        expect(client.status).toBe('ready');
        expect(await client.ping()).toBe('PONG');
      } finally {
        await client.quit();
      }
    });

    it('a passed-in client that is not ready is an outage at once: no wait in its offline queue', async () => {
      const port = await freePort();
      const client = new Redis(port, '127.0.0.1', { retryStrategy: () => 100 });
      client.on('error', () => undefined);
      const events: RedisStoreFailureEvent[] = [];
      const store = new RedisStore({ client, onFailure: 'local' });
      store.onFailure((event) => events.push(event));
      try {
        await store.init();
        const started = performance.now();
        const decision = await store.consume('client', [spec('fixed-window', 1, 60_000)], 1, 'consume', 0);
        expect(performance.now() - started).toBeLessThan(50);
        expect(decision).toMatchObject({ allowed: true, degraded: 'local' });
        expect((await store.consume('client', [spec('fixed-window', 1, 60_000)], 1, 'consume', 0)).allowed).toBe(false);
        expect(events.map((event) => [event.kind, event.policy, event.key])).toEqual([
          ['offline', 'local', 'client'],
          ['offline', 'local', 'client'],
        ]);
        expect(store.stats()).toMatchObject({ local: 2, available: false });
      } finally {
        await store.close();
        client.disconnect();
      }
    });

    it('a rate limiter’s own failure policy wins over the store’s; a refund never throws', async () => {
      const port = await freePort();
      const store = new RedisStore({ url: `redis://127.0.0.1:${port}`, onFailure: 'fail-closed', commandTimeout: 50 });
      const limits = [spec('gcra', 5, 1_000)];
      try {
        await store.init();
        await expect(Promise.resolve(store.consume('client', limits, 1, 'consume', 0))).rejects.toSatisfy(isStoreUnavailableError);
        expect(await store.consume('client', limits, 1, 'consume', 0, 'fail-open')).toEqual({
          allowed: true,
          retryAfterMs: 0,
          limits: [{ name: 'default', limit: 5, windowMs: 1_000, remaining: 5, resetMs: 0 }],
          degraded: 'fail-open',
        });
        expect(await store.consume('client', limits, 1, 'refund', 0)).toMatchObject({ allowed: true, degraded: 'fail-open' });
        await expect(store.reset('client', limits)).rejects.toSatisfy(isStoreUnavailableError);
      } finally {
        await store.close();
      }
    });
  });

  describe('options', () => {
    const invalid: Array<[string, unknown]> = [
      ['nothing to connect to', {}],
      ['two sources', { url, redis: {}, cluster: { nodes: [{ host: '127.0.0.1', port: 1 }] } }],
      ['a client that is not ioredis', { client: {} }],
      ['a URL that is not Redis', { url: 'http://localhost' }],
      ['braces in the prefix', { url, keyPrefix: 'a{b}' }],
      ['a zero timeout', { url, commandTimeout: 0 }],
      ['a malformed timeout', { url, commandTimeout: 'soon' }],
      ['an unknown policy', { url, onFailure: 'ignore' }],
      ['a block cache of no keys', { url, blockCache: { maxKeys: 0 } }],
      ['an unknown option', { url, keyprefix: 'x' }],
      ['a logger that is not a function', { url, logger: 'console' }],
    ];
    it.each(invalid)('rejects %s with InvalidOptionError', (_, options) => {
      expect(() => new RedisStore(options as RedisStoreOptions)).toThrow(InvalidOptionError);
    });

    it('accepts a URL with ioredis options, and states its defaults', async () => {
      const store = new RedisStore({ url, redis: { connectionName: 'nr-test' } });
      expect(store).toMatchObject({ keyPrefix: 'nr:', commandTimeoutMs: 100, onFailurePolicy: 'fail-open', ownsClient: true, kind: 'redis' });
      await store.init();
      expect(String(await admin.client('LIST'))).toContain('name=nr-test');
      await store.close();
    });
  });

  it('the test clock is reachable only through a symbol the entry point does not export', () => {
    expect(Object.keys(entry).toSorted()).toEqual([
      'DistributedBulkhead',
      'LiveConfigChannel',
      'RedisRetryBudget',
      'RedisStore',
      'ResilienceLiveConfig',
      'ResilienceLiveConfigModule',
      'SharedCircuitBreaker',
      'StoreUnavailableError',
      'isStoreUnavailableError',
    ]);
    expect(Object.values(entry)).not.toContain(SCRIPT_CLOCK);
  });

  it('the root entry point never reaches ioredis nor the Redis store', () => {
    const seen = new Set<string>();
    const visit = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      const source = readFileSync(file, 'utf8');
      expect({ file, ioredis: /from ['"]ioredis['"]|import\(['"]ioredis['"]\)/.test(source) }).toEqual({ file, ioredis: false });
      for (const match of source.matchAll(/(?:import|export)[^'"]*?from\s+['"](\.[^'"]+)['"]/g)) {
        visit(resolve(dirname(file), match[1]!.replace(/\.js$/, '.ts')));
      }
    };
    visit(join(root, 'lib', 'index.ts'));
    expect([...seen].some((file) => file.includes(join('stores', 'redis')))).toBe(false);
    expect(seen.size).toBeGreaterThan(20);
  });

  it('decides at the script clock when a test sets one', async () => {
    const store = new RedisStore({ url, commandTimeout: SLACK, keyPrefix: `clock:${randomUUID()}:` });
    store[SCRIPT_CLOCK] = () => 60_000 * 1000 + 999;
    try {
      const decision = await store.consume('client', [spec('fixed-window', 2, 60_000)], 1, 'consume', 0);
      // The window ends at the next whole minute of the script clock: 1 ms away.
      expect(decision.limits[0]!.resetMs).toBe(60_000 - 999);
    } finally {
      await store.close();
    }
  });
});
