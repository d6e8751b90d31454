import { randomUUID } from 'node:crypto';
import { Test } from '@nestjs/testing';
import { Redis } from 'ioredis';
import { describe, expect, inject, it } from 'vitest';
import { InvalidOptionError, ResilienceModule, ResilienceRegistry, type PolicyDefinition } from 'nest-resilience';
import { ResilienceLiveConfig, ResilienceLiveConfigModule, type LiveConfigAppliedEvent, type LiveConfigOptions } from '../../lib/redis.js';
import { useCleanups } from './support/cleanups.js';

// Two Nest applications in this process sharing the run's Redis: the registry hook (what may be
// published, what is refused at the origin) and the module's lifecycle.

const { cleanups, client } = useCleanups();

const fallbackHandler = function cached(): string {
  return 'cached';
};

async function app(live: (names: { channel: string; key: string }) => LiveConfigOptions, names: { channel: string; key: string }, policies: Record<string, PolicyDefinition>) {
  const moduleRef = await Test.createTestingModule({
    imports: [ResilienceModule.forRoot({ isGlobal: true, policies }), ResilienceLiveConfigModule.forRootAsync({ useFactory: () => live(names) })],
  }).compile();
  const nest = moduleRef.createNestApplication();
  await nest.init();
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await nest.close();
  };
  cleanups.push(close);
  return { nest, registry: nest.get(ResilienceRegistry), live: nest.get(ResilienceLiveConfig), close };
}

function nextApplied(live: ResilienceLiveConfig, version: number): Promise<LiveConfigAppliedEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`version ${version} not applied`)), 3_000);
    const subscription = live.onApplied((event) => {
      if (event.version !== version) return;
      clearTimeout(timer);
      subscription.dispose();
      resolve(event);
    });
  });
}

describe('ResilienceLiveConfigModule in two Nest apps', () => {
  it('registry.update publishes; the other app applies; a definition holding a function is refused at the origin and changes nothing', async () => {
    const names = { channel: `lc-nest-${randomUUID()}`, key: `lc-nest-${randomUUID()}` };
    const policies: Record<string, PolicyDefinition> = {
      payments: { retry: { maxAttempts: 2 }, bulkhead: { maxConcurrent: 2 } },
      legacy: { retry: { maxAttempts: 2 }, fallback: fallbackHandler },
    };
    const [a, b] = [await app((n) => ({ redis: inject('redisUrl'), ...n }), names, policies), await app((n) => ({ redis: inject('redisUrl'), ...n }), names, policies)];

    const applied = nextApplied(b.live, 1);
    const entry = await a.live.update('payments', { bulkhead: { maxConcurrent: 7 } });
    expect(entry).toMatchObject({ name: 'payments', version: 1, origin: a.live.instanceId });
    expect(await applied).toMatchObject({ name: 'payments', origin: a.live.instanceId, changed: true });
    expect(b.registry.get('payments')).toEqual({ retry: { maxAttempts: 2 }, bulkhead: { maxConcurrent: 7 } });

    // Through the registry directly: published too, without waiting for it.
    const second = nextApplied(b.live, 2);
    a.registry.update('payments', { retry: { maxAttempts: 3 } });
    await second;
    expect(b.registry.get('payments').retry).toEqual({ maxAttempts: 3 });

    let thrown: unknown;
    try {
      a.registry.update('legacy', { retry: { maxAttempts: 4 } });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(InvalidOptionError);
    expect((thrown as InvalidOptionError).message).toMatch(/ResilienceRegistry\.update\("legacy"\): invalid option "policies\.legacy\.fallback": got function cached; expected JSON data .*use a method name instead of a fallback function/);
    expect(a.registry.get('legacy').retry).toEqual({ maxAttempts: 2 });
    expect(await client().hkeys(`{${names.key}}`)).toEqual(['payments']);

    // Invalid options are still reported as before, by the registry's own validation.
    expect(() => a.registry.update('payments', { bulkhead: { maxConcurrent: 0 } })).toThrow(/invalid option "bulkhead\.maxConcurrent": got 0/);
    expect(Number(await client().get(`{${names.key}}:version`))).toBe(2);
  });

  it('a client passed in is left open, without listeners of ours, after the app closes; an owned one is closed', async () => {
    const names = { channel: `lc-nest-${randomUUID()}`, key: `lc-nest-${randomUUID()}` };
    const redis = new Redis(inject('redisUrl'));
    cleanups.push(() => redis.disconnect());
    const before = redis.listenerCount('error');
    const passed = await app(() => ({ redis, ...names }), names, { payments: { retry: { maxAttempts: 2 } } });
    expect(redis.listenerCount('error')).toBe(before + 1);
    await passed.close();
    expect(redis.listenerCount('error')).toBe(before);
    expect(await redis.ping()).toBe('PONG');

    const owned = await app((n) => ({ redis: inject('redisUrl'), ...n }), names, { payments: { retry: { maxAttempts: 2 } } });
    const subscribers = async (): Promise<number> => ((await redis.pubsub('NUMSUB', names.channel)) as [string, number])[1];
    expect(await subscribers()).toBe(1);
    await owned.close();
    await expect.poll(subscribers).toBe(0);
  });

  it('an update published while Redis is unreachable rejects update() but stays in force locally, and nothing is unhandled', async () => {
    const names = { channel: `lc-nest-${randomUUID()}`, key: `lc-nest-${randomUUID()}` };
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    cleanups.push(() => void process.off('unhandledRejection', onUnhandled));
    // Nothing listens on port 1.
    const down = await app(() => ({ redis: 'redis://127.0.0.1:1', commandTimeout: '200ms', ...names }), names, { payments: { retry: { maxAttempts: 2 } } });
    await expect(down.live.update('payments', { retry: { maxAttempts: 5 } })).rejects.toThrow(/not connected/);
    expect(down.registry.get('payments').retry).toEqual({ maxAttempts: 5 });
    down.registry.update('payments', { retry: { maxAttempts: 6 } });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(unhandled).toEqual([]);
  });
});
