import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { describe, expect, inject, it } from 'vitest';
import { InvalidOptionError } from '../../lib/core/errors.js';
import type { Event } from '../../lib/core/events.js';
import { LiveConfigChannel, type LiveConfigEntry, type LiveConfigOptions, type LiveConfigRefusedEvent } from '../../lib/stores/redis/live-config.js';
import { startRedis } from '../support/redis-server.js';
import { useCleanups } from './support/cleanups.js';

// The framework-free channel against real Redis. Each test uses keys and a channel of its own. An
// instance is modelled by a map of definitions and an `apply` that validates like the registry
// would: a known name, and a `limit` that is an integer ≥ 1.

const { cleanups, client } = useCleanups();

const handler = function recover(): string {
  return 'cached';
};

interface Instance {
  channel: LiveConfigChannel;
  definitions: Map<string, Record<string, unknown>>;
  applied: number[];
  refused: LiveConfigRefusedEvent[];
}

function freshNames(): Pick<LiveConfigOptions, 'channel' | 'key'> {
  const id = randomUUID();
  return { channel: `lc-test-${id}`, key: `lc-test-${id}` };
}

function validatingApply(definitions: Map<string, Record<string, unknown>>) {
  return (entry: LiveConfigEntry): void => {
    if (!definitions.has(entry.name)) throw new InvalidOptionError('policy', entry.name, `one of the named policies: ${[...definitions.keys()].join(', ')}`);
    const limit = entry.definition.limit;
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1) throw new InvalidOptionError('limit', limit, 'an integer ≥ 1');
    definitions.set(entry.name, entry.definition);
  };
}

async function instance(options: Omit<LiveConfigOptions, 'redis'>, redis: LiveConfigOptions['redis'] = client()): Promise<Instance> {
  const channel = new LiveConfigChannel({ redis, commandTimeout: '1s', ...options });
  cleanups.push(() => channel.close());
  const definitions = new Map<string, Record<string, unknown>>([['payments', { limit: 1 }]]);
  const applied: number[] = [];
  const refused: LiveConfigRefusedEvent[] = [];
  channel.onApplied((event) => applied.push(event.version));
  channel.onRefused((event) => refused.push(event));
  await channel.start(validatingApply(definitions));
  return { channel, definitions, applied, refused };
}

/** The next event matching `predicate`, or a failure after `ms`. */
function next<T>(event: Event<T>, predicate: (value: T) => boolean = () => true, ms = 3_000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      subscription.dispose();
      reject(new Error('event not received'));
    }, ms);
    const subscription = event((value) => {
      if (!predicate(value)) return;
      clearTimeout(timer);
      subscription.dispose();
      resolve(value);
    });
  });
}

/** What an operator's script does by hand (docs/live-config.md): INCR, HSET, PUBLISH. */
async function operatorPublish(target: Pick<LiveConfigOptions, 'channel' | 'key'>, name: string, definition: unknown, version?: number): Promise<{ version: number; raw: string }> {
  const admin = client();
  const v = version ?? (await admin.incr(`{${target.key}}:version`));
  const raw = JSON.stringify({ version: v, name, origin: 'ops-script', definition });
  await admin.hset(`{${target.key}}`, name, raw);
  await admin.publish(target.channel!, raw);
  return { version: v, raw };
}

describe('LiveConfigChannel (real Redis)', () => {
  it('a change published by one instance is applied by every instance, under one version in the hash', async () => {
    const n = freshNames();
    const [a, b] = [await instance(n), await instance(n)];
    const seen = Promise.all([a, b].map((i) => next(i.channel.onApplied, (event) => event.name === 'payments')));
    const entry = await a.channel.publish('payments', { limit: 7 });
    const events = await seen;
    expect(entry.version).toBe(1);
    expect(events.map((event) => [event.version, event.origin])).toEqual([
      [1, a.channel.instanceId],
      [1, a.channel.instanceId],
    ]);
    expect(a.definitions.get('payments')).toEqual({ limit: 7 });
    expect(b.definitions.get('payments')).toEqual({ limit: 7 });
    const stored = JSON.parse((await client().hget(`{${n.key}}`, 'payments'))!);
    expect(stored).toEqual({ version: 1, epoch: entry.epoch, name: 'payments', origin: a.channel.instanceId, definition: { limit: 7 } });
    expect(await client().get(a.channel.epochKey)).toBe(entry.epoch);
    expect((await a.channel.publish('payments', { limit: 8 })).version).toBe(2);
  });

  it('duplicates and out-of-order messages are dropped: the highest version wins, whatever the delivery order (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 8 }), { minLength: 1, maxLength: 12 }), async (versions) => {
        const n = freshNames();
        const target = await instance(n);
        const done = next(target.channel.onApplied, (event) => event.name === 'payments' && event.version === Math.max(...versions));
        for (const version of versions) await operatorPublish(n, 'payments', { limit: 100 + version }, version);
        await done;
        // A marker published last: every message before it on the same connection was delivered.
        await operatorPublish(n, 'marker', { limit: 1 }, 1);
        await next(target.channel.onRefused, (event) => event.name === 'marker');
        const increasing = versions.filter((version, index) => versions.slice(0, index).every((earlier) => earlier < version));
        expect(target.applied).toEqual(increasing);
        expect(target.definitions.get('payments')).toEqual({ limit: 100 + Math.max(...versions) });
        await target.channel.close();
      }),
      { numRuns: 15 },
    );
  });

  it('an invalid change or an unknown policy is refused by every instance, which keeps the previous definition; the hash gets it back', async () => {
    const n = freshNames();
    const [a, b] = [await instance(n), await instance(n)];
    const first = Promise.all([a, b].map((i) => next(i.channel.onApplied)));
    const good = await a.channel.publish('payments', { limit: 5 });
    await first;

    const refusals = Promise.all([a, b].map((i) => next(i.channel.onRefused)));
    const bad = await operatorPublish(n, 'payments', { limit: -1 });
    const events = await refusals;
    for (const event of events) {
      expect(event).toMatchObject({ name: 'payments', version: bad.version, origin: 'ops-script' });
      expect(event.error).toBeInstanceOf(InvalidOptionError);
      expect((event.error as InvalidOptionError).message).toContain('invalid option "limit": got -1');
    }
    expect(a.definitions.get('payments')).toEqual({ limit: 5 });
    expect(b.definitions.get('payments')).toEqual({ limit: 5 });
    // The entry in force is put back, so a later instance loads what the fleet runs.
    await expect.poll(async () => JSON.parse((await client().hget(`{${n.key}}`, 'payments'))!).version).toBe(good.version);
    const late = await instance(n);
    expect(late.definitions.get('payments')).toEqual({ limit: 5 });
    expect(late.refused).toEqual([]);

    const unknown = Promise.all([a, b].map((i) => next(i.channel.onRefused, (event) => event.name === 'nope')));
    await operatorPublish(n, 'nope', { limit: 3 });
    for (const event of await unknown) expect((event.error as InvalidOptionError).option).toBe('policy');
    expect([...a.definitions.keys()]).toEqual(['payments']);
  });

  it('a refused change that an instance validated and published (a newer version of the app) stays in the hash', async () => {
    const n = freshNames();
    const [old, current] = [await instance(n), await instance(n)];
    // `current` runs a newer version of the application, which accepts a limit of 0.
    const accepted = next(current.channel.onApplied);
    await current.channel.publish('payments', { limit: 2 });
    await Promise.all([accepted, next(old.channel.onApplied)]);
    const refusal = next(old.channel.onRefused);
    const published = await current.channel.publish('payments', { limit: 0 }, { validated: true });
    expect(published.validated).toBe(true);
    expect((await refusal).version).toBe(published.version);
    expect(old.definitions.get('payments')).toEqual({ limit: 2 });
    // A restore would be sent right after the refusal, on the instance's connection: once a reload sent
    // after it is answered, the hash shows whether it ran.
    await old.channel.sync();
    const stored = JSON.parse((await client().hget(`{${n.key}}`, 'payments'))!);
    expect(stored).toMatchObject({ version: published.version, validated: true, definition: { limit: 0 } });
    // An operator's change refused the same way is replaced by the definition in force.
    const refusedAgain = next(old.channel.onRefused);
    const bad = await operatorPublish(n, 'payments', { limit: -1 });
    await refusedAgain;
    await expect.poll(async () => JSON.parse((await client().hget(`{${n.key}}`, 'payments'))!).definition).toEqual({ limit: 2 });
    expect(bad.version).toBeGreaterThan(published.version);
  });

  it('Redis losing its data (the counter starts again) does not make running instances drop the next changes', async () => {
    const n = freshNames();
    const [a, b] = [await instance(n), await instance(n)];
    for (const limit of [3, 4, 5]) {
      const seen = Promise.all([a, b].map((i) => next(i.channel.onApplied, (event) => event.name === 'payments')));
      await a.channel.publish('payments', { limit });
      await seen;
    }
    expect(b.channel.versionOf('payments')).toBe(3);
    const before = await client().get(a.channel.epochKey);
    // What a restart without persistence or a failover to an empty replica leaves: none of the keys.
    await client().del(a.channel.hashKey, a.channel.versionKey, a.channel.epochKey);
    const seen = Promise.all([a, b].map((i) => next(i.channel.onApplied, (event) => event.name === 'payments')));
    const entry = await b.channel.publish('payments', { limit: 9 });
    expect(entry.version).toBe(1);
    expect(entry.epoch).not.toBe(before);
    expect((await seen).map((event) => event.version)).toEqual([1, 1]);
    expect(a.definitions.get('payments')).toEqual({ limit: 9 });
    expect(b.definitions.get('payments')).toEqual({ limit: 9 });
    // Later changes of the new run go through as usual, and an instance starting now loads the new run.
    const next2 = Promise.all([a, b].map((i) => next(i.channel.onApplied, (event) => event.version === 2)));
    await a.channel.publish('payments', { limit: 10 });
    await next2;
    expect(b.definitions.get('payments')).toEqual({ limit: 10 });
    const late = await instance(n);
    expect(late.definitions.get('payments')).toEqual({ limit: 10 });
  });

  it('a reload finds the new run of the counter after a loss of data it was not told of', async () => {
    const n = freshNames();
    const a = await instance(n);
    for (const limit of [3, 4]) {
      const seen = next(a.channel.onApplied);
      await a.channel.publish('payments', { limit });
      await seen;
    }
    await client().del(a.channel.hashKey, a.channel.versionKey, a.channel.epochKey);
    // Published by another instance while this one was not listening: only the hash tells it.
    const other = new LiveConfigChannel({ redis: client(), ...n });
    cleanups.push(() => other.close());
    const entry = await other.publish('payments', { limit: 8 });
    expect(entry.version).toBe(1);
    await a.channel.sync();
    expect(a.definitions.get('payments')).toEqual({ limit: 8 });
    expect(a.channel.versionOf('payments')).toBe(1);
  });

  it('a malformed message is refused with an error naming what is wrong', async () => {
    const n = freshNames();
    const target = await instance(n);
    const admin = client();
    const notJson = next(target.channel.onRefused);
    await admin.publish(n.channel!, 'limit=3');
    expect(await notJson).toMatchObject({ name: undefined, version: undefined });
    const noVersion = next(target.channel.onRefused);
    await admin.publish(n.channel!, JSON.stringify({ name: 'payments', origin: 'x', definition: { limit: 2 } }));
    expect(((await noVersion).error as InvalidOptionError).option).toBe('version');
    const notObject = next(target.channel.onRefused);
    await admin.publish(n.channel!, JSON.stringify({ version: 1, name: 'payments', origin: 'x', definition: [1] }));
    expect(((await notObject).error as InvalidOptionError).option).toBe('policies.payments');
    expect(target.definitions.get('payments')).toEqual({ limit: 1 });
  });

  it('refuses to publish what JSON cannot carry, naming its path; nothing reaches Redis', async () => {
    const n = freshNames();
    const a = await instance(n);
    await expect(a.channel.publish('payments', { limit: 2, fallback: { handler } })).rejects.toThrow(/invalid option "policies\.payments\.fallback\.handler": got function recover; expected JSON data/);
    await expect(a.channel.publish('payments', { limit: Number.NaN })).rejects.toThrow(/"policies\.payments\.limit": got NaN/);
    await expect(a.channel.publish('payments', { retryOn: [/timeout/] })).rejects.toThrow(/"policies\.payments\.retryOn\[0\]"/);
    expect(await client().exists(`{${n.key}}`, `{${n.key}}:version`)).toBe(0);
  });

  it('an instance that starts loads the hash first; one that missed messages while disconnected reloads it when it reconnects', async () => {
    const n = freshNames();
    const admin = client();
    await operatorPublish(n, 'payments', { limit: 4 });
    // A name of its own, so the test kills this subscriber only (other files share the server).
    const connectionName = `lc-${randomUUID()}`;
    const named = new Redis(inject('redisUrl'), { connectionName });
    named.on('error', () => {});
    cleanups.push(() => named.disconnect());
    const late = await instance(n, named);
    expect(late.definitions.get('payments')).toEqual({ limit: 4 });

    // Written to the hash without any announcement: only a reload can bring it.
    const reconnected = next(late.channel.onApplied, (event) => event.version === 2);
    await admin.incr(`{${n.key}}:version`);
    await admin.hset(`{${n.key}}`, 'payments', JSON.stringify({ version: 2, name: 'payments', origin: 'ops', definition: { limit: 9 } }));
    const subscribers = ((await admin.call('CLIENT', 'LIST', 'TYPE', 'pubsub')) as string).split('\n').filter((line) => line.includes(` name=${connectionName} `));
    expect(subscribers).toHaveLength(1);
    await admin.call('CLIENT', 'KILL', 'ID', /id=(\d+)/.exec(subscribers[0]!)![1]!);
    await reconnected;
    expect(late.definitions.get('payments')).toEqual({ limit: 9 });
  });

  it('with Redis down: start() resolves after the command timeout, publish() rejects, nothing is unhandled; it converges once Redis is back', async () => {
    const server = await startRedis();
    cleanups.push(() => server.stop());
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    cleanups.push(() => void process.off('unhandledRejection', onUnhandled));
    await server.stop();

    const n = freshNames();
    const started = performance.now();
    const down = await instance({ ...n, commandTimeout: '300ms' }, server.url);
    expect(performance.now() - started).toBeLessThan(2_000);
    await expect(down.channel.publish('payments', { limit: 3 })).rejects.toThrow(/not connected/);
    expect(down.definitions.get('payments')).toEqual({ limit: 1 });

    // The same port again: the channel's connections come back by themselves and reload the hash.
    const again = await startRedis(['--port', String(server.port)]);
    cleanups.push(() => again.stop());
    const admin = client(server.url);
    await admin.hset(`{${n.key}}`, 'payments', JSON.stringify({ version: 1, name: 'payments', origin: 'ops', definition: { limit: 6 } }));
    await next(down.channel.onApplied, (event) => event.version === 1, 5_000);
    expect(down.definitions.get('payments')).toEqual({ limit: 6 });
    expect(unhandled).toEqual([]);
  });

  it('validates its options', () => {
    expect(() => new LiveConfigChannel({ redis: 'localhost:6379' })).toThrow(/invalid option "redis"/);
    expect(() => new LiveConfigChannel({ redis: client(), key: '{x}' })).toThrow(/invalid option "key"/);
    expect(() => new LiveConfigChannel({ redis: client(), channel: '' })).toThrow(/invalid option "channel"/);
    expect(() => new LiveConfigChannel({ redis: client(), commandTimeout: -1 })).toThrow(/invalid option "commandTimeout"/);
    expect(() => new LiveConfigChannel({ redis: client(), chanel: 'x' } as LiveConfigOptions)).toThrow(/invalid option "chanel"/);
    expect(() => new LiveConfigChannel({ redis: {} as never })).toThrow(/invalid option "redis"/);
  });
});

describe('LiveConfigChannel default names', () => {
  it('uses the documented keys and channel', () => {
    const channel = new LiveConfigChannel({ redis: inject('redisUrl') });
    cleanups.push(() => channel.close());
    expect([channel.channel, channel.hashKey, channel.versionKey, channel.epochKey]).toEqual(['nest-resilience:live-config', '{nest-resilience:live-config}', '{nest-resilience:live-config}:version', '{nest-resilience:live-config}:epoch']);
  });
});
