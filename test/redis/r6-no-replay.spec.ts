import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisStore } from '../../lib/stores/redis/redis.store.js';
import type { LimitSpec } from '../../lib/stores/store.interface.js';
import { sleep, startManagedRedis, type ManagedRedis } from './support/managed-redis.js';
import { fixedWindowCount } from './support/state.js';

const CALLERS = 200;
/** One key per decision, so Redis's record says how many times each decision was applied. */
const LIMITS: LimitSpec[] = [{ name: 'audit', algorithm: 'fixed-window', limit: 1e12, windowMs: 2 ** 40, burst: 1e12 }];

type ClientKind = 'store-owned client' | 'passed-in client with ioredis defaults (offline queue, re-send on reconnect)';

interface Outcome {
  started: number;
  settled: number;
  /** Decisions answered by Redis. */
  acknowledged: string[];
  /** Decisions sent and left unanswered (timeout, connection lost): Redis may or may not have run them. */
  unknown: Set<string>;
  /** Decisions made without a round trip (Redis known down). */
  offline: number;
  errors: unknown[];
  /** Status of the passed-in client after the store closed. */
  givenStatus?: string | undefined;
  /** How many times Redis applied each decision it holds a record of. */
  applied: Map<string, number>;
}

async function scenario(redis: ManagedRedis, kind: ClientKind, fault: (redis: ManagedRedis) => Promise<void>): Promise<Outcome> {
  const prefix = `r6:${randomUUID()}:`;
  const given = kind === 'store-owned client' ? undefined : new Redis(redis.url, { lazyConnect: true });
  given?.on('error', () => undefined);
  await given?.connect();
  const store = given === undefined ? new RedisStore({ url: redis.url, keyPrefix: prefix, commandTimeout: 100 }) : new RedisStore({ client: given, keyPrefix: prefix, commandTimeout: 100 });
  await store.init();
  const outcome: Outcome = { started: 0, settled: 0, acknowledged: [], unknown: new Set(), offline: 0, errors: [], applied: new Map() };
  store.onFailure((event) => {
    if (event.kind === 'offline') outcome.offline++;
    else outcome.unknown.add(event.key);
  });
  const state = { running: true };
  let next = 0;
  const loop = async (): Promise<void> => {
    while (state.running) {
      const key = `d${next++}`;
      outcome.started++;
      try {
        const decision = await store.consume(key, LIMITS, 1, 'consume', performance.now());
        if (decision.degraded === undefined) outcome.acknowledged.push(key);
      } catch (error) {
        outcome.errors.push(error);
      } finally {
        outcome.settled++;
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  const loops = Array.from({ length: CALLERS }, loop);
  await sleep(100);
  await fault(redis);
  await sleep(150);
  state.running = false;
  // Every promise settles, and well within the timeout.
  const all = Promise.all(loops);
  const settledInTime = await Promise.race([all.then(() => true), sleep(1_000).then(() => false)]);
  expect(settledInTime).toBe(true);
  // Let commands still queued in Redis (a frozen server) run before reading what was applied.
  await sleep(300);
  await store.close();
  // A client passed in is left open.
  outcome.givenStatus = given?.status;
  await given?.quit();
  const reader = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
  await reader.connect();
  try {
    let cursor = '0';
    do {
      const [nextCursor, keys] = await reader.scan(cursor, 'MATCH', `{${prefix}*`, 'COUNT', 1_000);
      cursor = nextCursor;
      if (keys.length === 0) continue;
      const values = await reader.mgetBuffer(...keys);
      keys.forEach((key, index) => outcome.applied.set(key.slice(prefix.length + 1, key.indexOf('}')), fixedWindowCount(values[index] ?? null)));
    } while (cursor !== '0');
  } finally {
    await reader.quit();
  }
  return outcome;
}

describe('R6 no replay', () => {
  let redis: ManagedRedis;

  beforeAll(async () => {
    redis = await startManagedRedis();
  });

  afterAll(async () => {
    await redis?.stop();
  });

  const KINDS: readonly ClientKind[] = ['store-owned client', 'passed-in client with ioredis defaults (offline queue, re-send on reconnect)'];
  const FAULTS = [
    {
      name: 'connections killed mid-flight (CLIENT KILL every 30 ms for 600 ms)',
      run: async (target: ManagedRedis) => {
        const end = performance.now() + 600;
        while (performance.now() < end) {
          await target.admin('client', 'kill', 'type', 'normal').catch(() => undefined);
          await sleep(30);
        }
      },
    },
    {
      name: 'commands timing out while queued (SIGSTOP 300 ms)',
      run: async (target: ManagedRedis) => {
        target.freeze();
        await sleep(300);
        target.thaw();
      },
    },
  ];

  for (const fault of FAULTS) {
    for (const kind of KINDS) {
      it(`${fault.name}, ${kind}: every promise settles; each acknowledged decision applied once, none beyond those of unknown outcome`, async () => {
        const outcome = await scenario(redis, kind, fault.run);
        const twice = [...outcome.applied.values()].filter((count) => count > 1).length;
        const missing = outcome.acknowledged.filter((key) => outcome.applied.get(key) !== 1).length;
        const acknowledged = new Set(outcome.acknowledged);
        const unexplained = [...outcome.applied.keys()].filter((key) => !outcome.unknown.has(key) && !acknowledged.has(key)).length;
        const unknownApplied = [...outcome.unknown].filter((key) => outcome.applied.has(key)).length;
        console.log(
          `[R6] ${fault.name}, ${kind}: ${outcome.started} decisions started, ${outcome.settled} settled; ` +
            `${outcome.acknowledged.length} acknowledged (applied exactly once: ${outcome.acknowledged.length - missing}), ` +
            `${outcome.unknown.size} of unknown outcome (${unknownApplied} of them applied by Redis), ${outcome.offline} decided without a round trip; ` +
            `applied twice: ${twice}, applied without being acknowledged or unknown: ${unexplained}`,
        );
        expect(outcome.errors).toEqual([]);
        expect(outcome.givenStatus).toBe(kind === 'store-owned client' ? undefined : 'ready');
        expect(outcome.settled).toBe(outcome.started);
        expect(outcome.unknown.size).toBeGreaterThan(0);
        expect(twice).toBe(0);
        expect(missing).toBe(0);
        expect(unexplained).toBe(0);
      }, 15_000);
    }
  }
});
