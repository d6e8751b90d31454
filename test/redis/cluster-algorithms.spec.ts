import fc from 'fast-check';
import { Cluster, type Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RateLimitAlgorithm } from '../../lib/policies/rate-limit/rate-limit.options.js';
import { MemoryStore } from '../../lib/stores/memory/memory.store.js';
import { keySlot } from '../../lib/stores/redis/redis-client.js';
import { RedisStore, SCRIPT_CLOCK } from '../../lib/stores/redis/redis.store.js';
import type { LimitSpec } from '../../lib/stores/store.interface.js';
import { startRedisCluster, type RedisCluster } from '../support/redis-cluster.js';
import { ALGORITHMS, EPOCH, replay, scenarioArb, tally } from './support/equivalence.js';

/**
 * Caller keys as the Nest layer produces them (IPv4, an IPv6 /64, user ids) and user ids holding
 * the characters that matter to Cluster slots and key patterns: a `{…}` that would be a hash tag
 * of its own, lone braces, `:` and `*`.
 */
const KEYS = ['203.0.113.7', '2001:db8:85a3::/64', 'user:{alice}', 'user:{alice}:2', 'u:}{bob}*', 'u:{}', 'ip:*:{', '{*}:}'];
const RUNS_PER_ALGORITHM = 40;
/** Keys that exercise every hash-tag rule: none, empty, unclosed, nested, several, multi-byte. */
const SLOT_CASES = ['', 'foo', '{user1000}.following', '{user1000}.followers', 'foo{}{bar}', 'foo{{bar}}zap', 'foo{bar}{zap}', '{', '}', '}{', '{}', 'clé{ünï}', '😀{😀}', 'a{b'];

/** The hash tag the store gives a caller key (`%`, `{`, `}` escaped), as a Redis key prefix. */
function tagOf(prefix: string, key: string): string {
  return `{${prefix}${key.replace(/[%{}]/g, (char) => (char === '%' ? '%25' : char === '{' ? '%7B' : '%7D'))}}`;
}

/** Every key under `prefix` on one node, by `SCAN` (the node's own keys, not the cluster's). */
async function scanNode(node: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await node.scan(cursor, 'MATCH', `{${prefix}*`, 'COUNT', 1_000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

describe('every algorithm on Redis Cluster (3 primaries + 3 replicas)', () => {
  let cluster: RedisCluster;
  let store: RedisStore;
  let admin: Cluster;

  beforeAll(async () => {
    cluster = await startRedisCluster(3);
    store = new RedisStore({ cluster: { nodes: cluster.startupNodes }, commandTimeout: 2_000, keyPrefix: 'cl:' });
    admin = new Cluster(cluster.startupNodes, { lazyConnect: true });
    await Promise.all([store.init(), admin.connect()]);
  }, 60_000);

  afterAll(async () => {
    await store?.close();
    await admin?.quit();
    await cluster?.stop();
  });

  /** Keys under `prefix`, per primary, as each primary holds them. */
  async function keysPerPrimary(prefix: string): Promise<Array<{ port: number; keys: string[] }>> {
    const primaries = admin.nodes('master');
    expect(primaries).toHaveLength(3);
    return Promise.all(primaries.map(async (node) => ({ port: node.options.port!, keys: await scanNode(node, prefix) })));
  }

  it.each(ALGORITHMS.map((algorithm, index) => [algorithm, index] as const))('%s: the memory store’s decisions for the same scripted sequences (consume, peek, refund, reset)', async (algorithm: RateLimitAlgorithm, index: number) => {
    const clock = { now: EPOCH };
    store[SCRIPT_CLOCK] = () => clock.now;
    const seen = tally();
    let run = 0;
    try {
      await fc.assert(
        fc.asyncProperty(scenarioArb({ algorithms: [algorithm], reset: true }), async (scenario) => {
          run++;
          // Two keys per run, taken in turn from KEYS: every run starts from fresh state.
          await replay(scenario, store, new MemoryStore(), clock, (which) => `${KEYS[(2 * run + which) % KEYS.length]}#${algorithm}#${run}`, seen);
        }),
        { numRuns: RUNS_PER_ALGORITHM, seed: 20_260_402 + index },
      );
    } finally {
      store[SCRIPT_CLOCK] = undefined;
    }
    const spread = await keysPerPrimary(`cl:`);
    const mine = spread.map(({ port, keys }) => ({ port, count: keys.filter((key) => key.includes(`#${algorithm}#`)).length }));
    console.log(
      `[R4] cluster, ${algorithm}: ${seen.decisions} decisions identical to the memory store (${seen.modes.consume} consume / ${seen.modes.peek} peek / ` +
        `${seen.modes.refund} refund, ${seen.resets} resets, ${seen.refused} refused); live keys per primary ${mine.map(({ port, count }) => `${port}: ${count}`).join(', ')}`,
    );
    expect(seen.decisions).toBeGreaterThan(300);
    expect(seen.refused).toBeGreaterThan(30);
    expect(seen.resets).toBeGreaterThan(10);
    expect(mine.filter(({ count }) => count > 0).length).toBeGreaterThan(1);
    expect(store.stats()).toMatchObject({ permanentErrors: 0, failOpen: 0 });
  }, 30_000);

  it('keySlot agrees with CLUSTER KEYSLOT, hash tags and multi-byte characters included', async () => {
    const generated = fc.sample(fc.string({ unit: fc.constantFrom('{', '}', 'a', 'b', ':', '*', '%', 'é', '😀'), maxLength: 12 }), { numRuns: 300, seed: 20_260_403 });
    const keys = [...SLOT_CASES, ...KEYS.map((key) => `${tagOf('nr:', key)}:second`), ...generated];
    const expected = await Promise.all(keys.map((key) => admin.cluster('KEYSLOT', key)));
    expect(keys.map((key) => keySlot(key))).toEqual(expected);
    expect(new Set(expected).size).toBeGreaterThan(100);
  });

  it('keys of IPv4, IPv6 and user ids with { } : * stay in one slot per caller, spread over the primaries; reset and peek', async () => {
    const prefix = 'spread:';
    const spreadStore = new RedisStore({ cluster: { nodes: cluster.startupNodes }, commandTimeout: 2_000, keyPrefix: prefix });
    // One limit per algorithm on the same call: five keys in one script, a CROSSSLOT if the tag broke.
    const limits: LimitSpec[] = ALGORITHMS.map((algorithm, index) => ({ name: `a${index}`, algorithm, limit: 3, windowMs: 3_600_000, burst: 3 }));
    try {
      await spreadStore.init();
      for (const key of KEYS) {
        for (let i = 0; i < 3; i++) expect((await spreadStore.consume(key, limits, 1, 'consume', Date.now())).allowed).toBe(true);
        const refused = await spreadStore.consume(key, limits, 1, 'consume', Date.now());
        expect(refused.allowed).toBe(false);
        expect(refused.limits.map((state) => state.remaining)).toEqual([0, 0, 0, 0, 0]);
      }
      const before = await keysPerPrimary(prefix);
      const slotsOf = new Map<string, Set<number>>();
      const foreign: string[] = [];
      for (const { keys } of before) {
        for (const stored of keys) {
          const caller = KEYS.find((key) => stored.startsWith(`${tagOf(prefix, key)}:`));
          if (caller === undefined) {
            foreign.push(stored);
            continue;
          }
          const slots = slotsOf.get(caller) ?? new Set<number>();
          slots.add(await admin.cluster('KEYSLOT', stored));
          slotsOf.set(caller, slots);
        }
      }
      expect(foreign).toEqual([]);
      const perPrimary = before.map(({ keys }) => keys.length);
      const slots = [...slotsOf.values()].map((set) => [...set][0]!);
      console.log(
        `[R4] cluster, ${KEYS.length} caller keys (${KEYS.join(' ')}) × 5 algorithms on one call: keys per primary ${perPrimary.join(' / ')}, ` +
          `${new Set(slots).size} distinct slots, one slot per caller, 0 CROSSSLOT`,
      );
      // Every caller's five keys, each caller in exactly one slot, callers on different slots and primaries.
      expect(perPrimary.reduce((sum, count) => sum + count, 0)).toBe(KEYS.length * ALGORITHMS.length);
      expect([...slotsOf.values()].every((set) => set.size === 1)).toBe(true);
      expect(slotsOf.size).toBe(KEYS.length);
      // Unescaped, both would hash by their inner `{alice}` alone and share a slot.
      expect(slotsOf.get('user:{alice}')).not.toEqual(slotsOf.get('user:{alice}:2'));
      expect(perPrimary.filter((count) => count > 0).length).toBeGreaterThan(1);

      // Peek reads without charging; reset forgets every limit of the caller, on whichever primary holds it.
      const peek = await spreadStore.consume(KEYS[2]!, limits, 1, 'peek', Date.now());
      expect(peek.allowed).toBe(false);
      for (const key of KEYS) await spreadStore.reset(key, limits);
      const after = await keysPerPrimary(prefix);
      expect(after.flatMap(({ keys }) => keys)).toEqual([]);
      const fresh = await spreadStore.consume(KEYS[2]!, limits, 1, 'peek', Date.now());
      expect(fresh.allowed).toBe(true);
      expect(fresh.limits.map((state) => state.remaining)).toEqual([3, 3, 3, 3, 3]);
      expect((await spreadStore.consume(KEYS[2]!, limits, 1, 'consume', Date.now())).limits.map((state) => state.remaining)).toEqual([2, 2, 2, 2, 2]);
      expect(spreadStore.stats()).toMatchObject({ permanentErrors: 0, failOpen: 0 });
    } finally {
      await spreadStore.close();
    }
  });
});
