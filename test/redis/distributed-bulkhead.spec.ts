import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import { CallContext } from '../../lib/core/context.js';
import { InvalidOptionError } from '../../lib/core/errors.js';
import { isBulkheadRejectedError } from '../../lib/policies/bulkhead/bulkhead.error.js';
import { isStoreUnavailableError } from '../../lib/stores/store.errors.js';
import { DistributedBulkhead, type DistributedBulkheadOptions, type LeaseLostEvent } from '../../lib/stores/redis/distributed-bulkhead.js';
import { useCleanups } from './support/cleanups.js';
import { startRedis } from '../support/redis-server.js';

// Unit-level behaviour of the distributed bulkhead against the run's redis-server: every test uses
// keys under a prefix of its own, and ends with no permit left in Redis.

const { cleanups, client } = useCleanups();

function setup(base: DistributedBulkheadOptions) {
  const prefix = `t-${randomUUID()}:`;
  const key = `{${prefix}bulkhead:${base.name ?? 'default'}}:permits`;
  const admin = client();
  return {
    key,
    admin,
    make(options: Partial<DistributedBulkheadOptions> = {}, redis = client()): DistributedBulkhead {
      const bulkhead = new DistributedBulkhead({ ...base, ...options }, { client: redis, keyPrefix: prefix });
      cleanups.push(() => bulkhead.close());
      return bulkhead;
    },
    /** Permits in Redis, expired or not. */
    held: () => admin.zcard(key),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function deferred(): { promise: Promise<string>; resolve(value: string): void } {
  let resolve!: (value: string) => void;
  const promise = new Promise<string>((res) => {
    resolve = res;
  });
  return { promise, resolve };
}

async function eventually(check: () => Promise<boolean> | boolean, ms = 2000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error('condition not reached');
    await sleep(10);
  }
}

describe('DistributedBulkhead (shared redis-server)', () => {
  it('caps concurrent calls across instances; queued calls get the released permits; none left at the end', async () => {
    const s = setup({ name: 'cap', maxConcurrent: 3, maxQueue: 20, pollInterval: '20ms' });
    const instances = [s.make(), s.make()];
    let running = 0;
    let peak = 0;
    const work = async (): Promise<number> => {
      running++;
      peak = Math.max(peak, running);
      await sleep(15);
      running--;
      return 1;
    };
    const results = await Promise.all(Array.from({ length: 24 }, (_, i) => instances[i % 2]!.execute(work)));
    expect(results).toHaveLength(24);
    expect(peak).toBe(3);
    await eventually(async () => (await s.held()) === 0);
    expect(await instances[0]!.fleetActive()).toBe(0);
    expect(instances.map((bulkhead) => bulkhead.stats())).toEqual([
      expect.objectContaining({ active: 0, queued: 0, rejected: 0 }),
      expect.objectContaining({ active: 0, queued: 0, rejected: 0 }),
    ]);
  });

  it('refuses with BulkheadRejectedError when the fleet and the local queue are full', async () => {
    const s = setup({ name: 'full', maxConcurrent: 2 });
    const [a, b] = [s.make(), s.make()];
    const gate = deferred();
    const held = [a.execute(() => gate.promise), b.execute(() => gate.promise)];
    await eventually(async () => (await s.held()) === 2);
    const rejects: unknown[] = [];
    b.onReject((event) => rejects.push(event));
    const error = await b.execute(() => 'never').catch((caught: unknown) => caught);
    expect(isBulkheadRejectedError(error) && error.reason).toBe('full');
    expect(rejects).toEqual([{ bulkhead: 'full', reason: 'full', active: 2, queued: 0 }]);
    gate.resolve('done');
    expect(await Promise.all(held)).toEqual(['done', 'done']);
    await eventually(async () => (await s.held()) === 0);
  });

  it('a waiter that gives up (queue timeout, abort) leaves the queue at once and never keeps a permit', async () => {
    const s = setup({ name: 'give-up', maxConcurrent: 1, maxQueue: 5, pollInterval: '10ms' });
    const bulkhead = s.make({ queueTimeout: '60ms' });
    const queuedEvents: unknown[] = [];
    bulkhead.onQueue((event) => queuedEvents.push(event));
    const gate = deferred();
    const holder = bulkhead.execute(() => gate.promise);
    await eventually(async () => (await s.held()) === 1);
    const timedOut = bulkhead.execute(() => 'late').catch((error: unknown) => error);
    const controller = new AbortController();
    const ran = vi.fn<() => string>(() => 'aborted one ran');
    const aborted = bulkhead.execute(ran, controller.signal).catch((error: unknown) => error);
    await sleep(5);
    expect(bulkhead.stats().queued).toBe(2);
    expect(queuedEvents).toEqual([
      { bulkhead: 'give-up', active: 1, queued: 1 },
      { bulkhead: 'give-up', active: 1, queued: 2 },
    ]);
    controller.abort(new Error('caller left'));
    expect(bulkhead.stats().queued).toBe(1);
    expect(await aborted).toEqual(new Error('caller left'));
    const timeout = await timedOut;
    expect(isBulkheadRejectedError(timeout) && timeout.reason).toBe('queue-timeout');
    expect(bulkhead.stats()).toMatchObject({ queued: 0, timedOut: 1, aborted: 1, active: 1 });
    gate.resolve('done');
    await holder;
    await sleep(30);
    expect(ran).not.toHaveBeenCalled();
    await eventually(async () => (await s.held()) === 0);
  });

  it('returns the permit when the function throws synchronously or rejects', async () => {
    const s = setup({ name: 'errors', maxConcurrent: 1 });
    const bulkhead = s.make();
    await expect(
      bulkhead.execute(() => {
        throw new Error('sync');
      }),
    ).rejects.toThrow('sync');
    await expect(bulkhead.execute(() => Promise.reject(new Error('async')))).rejects.toThrow('async');
    await eventually(async () => (await s.held()) === 0);
    expect(await bulkhead.execute(() => 'next')).toBe('next');
    await eventually(async () => (await s.held()) === 0);
  });

  it('a lost lease is a typed event; the call completes and nothing rejects unhandled', async () => {
    const s = setup({ name: 'lost', maxConcurrent: 2, leaseTtl: '150ms' });
    const bulkhead = s.make();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    cleanups.push(() => void process.off('unhandledRejection', onUnhandled));
    const lost: LeaseLostEvent[] = [];
    bulkhead.onLeaseLost((event) => lost.push(event));
    const gate = deferred();
    const call = bulkhead.execute(() => gate.promise);
    await eventually(async () => (await s.held()) === 1);
    // Renewals keep it past its TTL...
    await sleep(250);
    expect(await s.held()).toBe(1);
    // ...until it disappears from Redis.
    await s.admin.del(s.key);
    await eventually(() => lost.length === 1);
    expect(lost[0]).toMatchObject({ bulkhead: 'lost', reason: 'expired' });
    expect(lost[0]!.permitId).toMatch(/#\d+$/);
    gate.resolve('finished anyway');
    expect(await call).toBe('finished anyway');
    expect(bulkhead.stats()).toMatchObject({ leasesLost: 1, active: 0 });
    await sleep(20);
    expect(unhandled).toEqual([]);
  });

  it('survives SCRIPT FLUSH: no NOSCRIPT reaches a caller', async () => {
    const s = setup({ name: 'noscript', maxConcurrent: 1, maxQueue: 2, leaseTtl: '90ms' });
    const redis = client();
    const bulkhead = s.make({}, redis);
    const lost: LeaseLostEvent[] = [];
    bulkhead.onLeaseLost((event) => lost.push(event));
    expect(await bulkhead.execute(() => 'before')).toBe('before');
    const evalFallback = vi.spyOn(redis, 'eval');
    await s.admin.script('FLUSH');
    expect(await bulkhead.execute(() => 'after')).toBe('after');
    // Renewal and release after a flush too.
    const gate = deferred();
    const call = bulkhead.execute(() => gate.promise);
    await sleep(5);
    await s.admin.script('FLUSH');
    await sleep(100);
    gate.resolve('renewed');
    expect(await call).toBe('renewed');
    expect(lost).toEqual([]);
    expect(evalFallback.mock.calls.length).toBeGreaterThanOrEqual(2);
    await eventually(async () => (await s.held()) === 0);
  });

  it('close() refuses queued and later calls; running calls finish and return their permits', async () => {
    const s = setup({ name: 'close', maxConcurrent: 1, maxQueue: 3 });
    const bulkhead = s.make();
    const gate = deferred();
    const running = bulkhead.execute(() => gate.promise);
    await eventually(async () => (await s.held()) === 1);
    const queued = bulkhead.execute(() => 'queued').catch((error: unknown) => error);
    await sleep(5);
    await bulkhead.close();
    const error = await queued;
    expect(isBulkheadRejectedError(error) && error.reason).toBe('closed');
    await expect(bulkhead.execute(() => 'later')).rejects.toSatisfy((caught: unknown) => isBulkheadRejectedError(caught) && caught.reason === 'closed');
    gate.resolve('done');
    expect(await running).toBe('done');
    await eventually(async () => (await s.held()) === 0);
  });

  it('applies its failure policy promptly when Redis is gone', async () => {
    const server = await startRedis();
    cleanups.push(() => server.stop());
    const redis = client(server.url);
    await redis.ping();
    const prefix = `t-${randomUUID()}:`;
    const closedPolicy = new DistributedBulkhead({ name: 'down', maxConcurrent: 2, onStoreFailure: 'fail-closed' }, { client: redis, keyPrefix: prefix, commandTimeout: 200 });
    const localPolicy = new DistributedBulkhead({ name: 'down', maxConcurrent: 2, localMaxConcurrent: 1 }, { client: redis, keyPrefix: prefix, commandTimeout: 200 });
    cleanups.push(() => closedPolicy.close(), () => localPolicy.close());
    expect(await closedPolicy.execute(() => 'up')).toBe('up');
    await server.stop();
    await sleep(20);
    const started = performance.now();
    const refused = await closedPolicy.execute(() => 'never').catch((error: unknown) => error);
    expect(isStoreUnavailableError(refused)).toBe(true);
    const gate = deferred();
    const first = localPolicy.execute(() => gate.promise);
    const second = await localPolicy.execute(() => 'second').catch((error: unknown) => error);
    expect(isBulkheadRejectedError(second) && second.reason).toBe('full');
    expect(performance.now() - started).toBeLessThan(450);
    gate.resolve('local');
    expect(await first).toBe('local');
    expect(localPolicy.stats().storeFailures).toBeGreaterThanOrEqual(1);
  });

  it('an aborted running call settles its caller at once; the permit returns when the work ends', async () => {
    const s = setup({ name: 'abort-running', maxConcurrent: 1, maxQueue: 1, pollInterval: '10ms' });
    const bulkhead = s.make();
    const gate = deferred();
    const controller = new AbortController();
    const caller = bulkhead.execute(() => gate.promise, controller.signal).catch((error: unknown) => error);
    await eventually(async () => (await s.held()) === 1);
    controller.abort(new Error('caller left'));
    expect(await caller).toEqual(new Error('caller left'));
    // The work still runs: its permit is held, so the next call waits for it.
    expect(bulkhead.stats().active).toBe(1);
    const next = bulkhead.execute(() => 'next');
    await sleep(30);
    expect(await s.held()).toBe(1);
    gate.resolve('work ended');
    expect(await next).toBe('next');
    await eventually(async () => (await s.held()) === 0);
  });

  it('a permanent Redis error fails the call loudly instead of being taken for an outage', async () => {
    const s = setup({ name: 'wrongtype', maxConcurrent: 1 });
    await s.admin.set(s.key, 'not a sorted set');
    const bulkhead = s.make({ onStoreFailure: 'fail-open' });
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => {
      warnings.push(warning.message);
    };
    process.on('warning', onWarning);
    cleanups.push(() => void process.off('warning', onWarning), () => void s.admin.del(s.key));
    const ran = vi.fn<() => void>();
    await expect(bulkhead.execute(ran)).rejects.toThrow(/WRONGTYPE/);
    expect(ran).not.toHaveBeenCalled();
    expect(bulkhead.stats().storeFailures).toBe(0);
    await sleep(10);
    expect(warnings.some((message) => message.includes('permanent Redis error'))).toBe(true);
  });

  it('runs on a Redis Cluster, notifications included', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nr-cluster-'));
    const server = await startRedis(['--cluster-enabled', 'yes', '--cluster-announce-ip', '127.0.0.1', '--cluster-config-file', join(dir, 'nodes.conf'), '--dir', dir]);
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }), () => server.stop());
    const setupClient = client(server.url);
    await setupClient.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
    for (let i = 0; i < 100 && !(await setupClient.cluster('INFO')).includes('cluster_state:ok'); i++) await sleep(50);
    const cluster = new Cluster([{ host: '127.0.0.1', port: server.port }], { redisOptions: { maxRetriesPerRequest: 1 } });
    cluster.on('error', () => {});
    cleanups.push(() => cluster.disconnect());
    const bulkhead = new DistributedBulkhead({ name: 'pri{cing}', maxConcurrent: 2, maxQueue: 10, pollInterval: '1s' }, { client: cluster as unknown as Redis, keyPrefix: 'c:' });
    cleanups.push(() => bulkhead.close());
    let running = 0;
    let peak = 0;
    const work = async (): Promise<void> => {
      running++;
      peak = Math.max(peak, running);
      await sleep(20);
      running--;
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: 8 }, () => bulkhead.execute(work)));
    // 4 rounds of 20 ms: waiters were woken by release notifications, not by the 1 s poll.
    expect(performance.now() - started).toBeLessThan(900);
    expect(peak).toBe(2);
    expect(bulkhead.stats()).toMatchObject({ storeFailures: 0, active: 0 });
    expect(await bulkhead.fleetActive()).toBe(0);
  });

  it('validates its options', () => {
    const redis = client();
    expect(() => new DistributedBulkhead({ maxConcurrent: 0 }, { client: redis })).toThrow(InvalidOptionError);
    expect(() => new DistributedBulkhead({ leaseTtl: '10ms' }, { client: redis })).toThrow(/leaseTtl/);
    expect(() => new DistributedBulkhead({ onStoreFailure: 'allow' as never }, { client: redis })).toThrow(/onStoreFailure/);
    expect(() => new DistributedBulkhead({ maxConcurent: 3 } as never, { client: redis })).toThrow(/maxConcurent/);
  });

  it('an aborted context never starts the call', async () => {
    const s = setup({ name: 'pre-aborted', maxConcurrent: 1 });
    const bulkhead = s.make();
    const context = new CallContext();
    context.abort(new Error('gone'));
    const ran = vi.fn<() => void>();
    await expect(bulkhead.run(ran, context)).rejects.toThrow('gone');
    expect(ran).not.toHaveBeenCalled();
    expect(await s.held()).toBe(0);
  });
});
