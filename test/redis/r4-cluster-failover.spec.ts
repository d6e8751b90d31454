import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoreFailurePolicy } from '../../lib/policies/rate-limit/rate-limit.options.js';
import { RedisStore } from '../../lib/stores/redis/redis.store.js';
import { isStoreUnavailableError } from '../../lib/stores/store.errors.js';
import type { LimitSpec } from '../../lib/stores/store.interface.js';
import { startRedisCluster, type RedisCluster } from '../support/redis-cluster.js';
import { ALGORITHMS } from './support/equivalence.js';
import { sleep } from './support/managed-redis.js';

const TIMEOUT_MS = 100;
/** Allowed lateness of a decision past the timeout, on top of the longest event-loop stall measured meanwhile. */
const MARGIN_MS = 50;
const POLICIES: readonly StoreFailurePolicy[] = ['fail-closed', 'local', 'fail-open'];
const CALLERS_PER_POLICY = 80;
const KEY_PREFIX = 'r4:';
/** Caller keys spread over the slots (and so over the primaries), with characters that matter to hash tags. */
const KEYS = ['198.51.100.1', '198.51.100.2', '203.0.113.9', '2001:db8::/64', '2001:db8:1::/64', 'user:{alice}', 'user:{bob}:*', 'u:}{', 'ip:1:2', 'k*{x}', 'tenant:7', 'svc:{a}{b}'];
/** Every algorithm in turn, with limits nobody reaches: a refusal would be the store's doing. */
const LIMITS: LimitSpec[][] = KEYS.map((_, index) => {
  const algorithm = ALGORITHMS[index % ALGORITHMS.length]!;
  return [{ name: 'r4', algorithm, limit: 1_000_000_000, windowMs: 60_000, burst: 1_000_000_000 }];
});
/** Decisions must come from Redis only, for every key, for this long, for a fault to count as healed. */
const STABLE_MS = 500;
/** Bound on the time from the fault to healed decisions (cluster-node-timeout 1 s, then an election). */
const HEAL_BOUND_MS = 8_000;

/**
 * `kill`: a primary is dead and the others still serve; `down`: the cluster has marked it failed
 * and, while its slots have no primary, every node answers `CLUSTERDOWN` (Redis's default
 * `cluster-require-full-coverage yes`), until its replica is promoted.
 */
type Phase = 'steady' | 'failover' | 'kill' | 'down';

interface Driver {
  readonly policy: StoreFailurePolicy;
  readonly store: RedisStore;
  redisAllowed: number;
  redisRefused: number;
  local: number;
  failOpen: number;
  unavailable: number;
  inFlight: number;
  readonly errors: unknown[];
  maxLatency: number;
  /** Longest time between two Redis-backed decisions of the store (any key). */
  maxGap: number;
  /** Longest time one key went without a Redis-backed decision. */
  maxKeyGap: number;
  lastRedis: number;
  readonly lastRedisPerKey: number[];
  /** When the last decision not made by Redis settled. */
  lastDegraded: number;
  /** Per phase and key: decisions by Redis, and by the failure policy. */
  readonly perKey: Record<Phase, Array<{ redis: number; degraded: number }>>;
}

/** One line of `CLUSTER NODES`. */
interface NodeLine {
  readonly id: string;
  readonly port: number;
  readonly flags: readonly string[];
  readonly primaryId: string;
  readonly slots: ReadonlyArray<readonly [number, number]>;
}

function parseNodes(text: string): NodeLine[] {
  return text
    .trim()
    .split('\n')
    .map((line) => {
      const fields = line.split(' ');
      const port = Number(fields[1]!.split('@')[0]!.split(':').pop());
      const slots = fields
        .slice(8)
        .filter((range) => !range.startsWith('['))
        .map((range) => {
          const [from, to] = range.split('-').map(Number);
          return [from!, to ?? from!] as const;
        });
      return { id: fields[0]!, port, flags: fields[2]!.split(','), primaryId: fields[3]!, slots };
    });
}

function servesSlot(node: NodeLine, slot: number): boolean {
  return node.slots.some(([from, to]) => slot >= from && slot <= to);
}

/** The Redis key the store writes for a caller key (hash tag with `%`, `{`, `}` escaped). */
function storeKey(key: string): string {
  return `{${KEY_PREFIX}${key.replace(/[%{}]/g, (char) => (char === '%' ? '%25' : char === '{' ? '%7B' : '%7D'))}}:r4`;
}

function perKeyCounts(): Array<{ redis: number; degraded: number }> {
  return KEYS.map(() => ({ redis: 0, degraded: 0 }));
}

/** `CALLERS_PER_POLICY` closed-loop callers through a store with `policy`, until `state.running` turns false. */
function drive(policy: StoreFailurePolicy, cluster: RedisCluster, state: { running: boolean; phase: Phase }): { driver: Driver; loops: Promise<void> } {
  const store = new RedisStore({ cluster: { nodes: cluster.startupNodes }, keyPrefix: KEY_PREFIX, commandTimeout: TIMEOUT_MS, onFailure: policy });
  const driver: Driver = {
    policy,
    store,
    redisAllowed: 0,
    redisRefused: 0,
    local: 0,
    failOpen: 0,
    unavailable: 0,
    inFlight: 0,
    errors: [],
    maxLatency: 0,
    maxGap: 0,
    maxKeyGap: 0,
    lastRedis: performance.now(),
    lastRedisPerKey: KEYS.map(() => performance.now()),
    lastDegraded: 0,
    perKey: { steady: perKeyCounts(), failover: perKeyCounts(), kill: perKeyCounts(), down: perKeyCounts() },
  };
  const loop = async (caller: number): Promise<void> => {
    const index = caller % KEYS.length;
    while (state.running) {
      const start = performance.now();
      driver.inFlight++;
      let redisBacked = false;
      try {
        const decision = await store.consume(KEYS[index]!, LIMITS[index]!, 1, 'consume', Date.now());
        if (decision.degraded === 'local') driver.local++;
        else if (decision.degraded === 'fail-open') driver.failOpen++;
        else if (decision.allowed) driver.redisAllowed++;
        else driver.redisRefused++;
        redisBacked = decision.degraded === undefined;
      } catch (error) {
        if (isStoreUnavailableError(error)) driver.unavailable++;
        else driver.errors.push(error);
      }
      driver.inFlight--;
      const end = performance.now();
      driver.maxLatency = Math.max(driver.maxLatency, end - start);
      const tally = driver.perKey[state.phase][index]!;
      if (redisBacked) {
        tally.redis++;
        driver.maxGap = Math.max(driver.maxGap, end - driver.lastRedis);
        driver.lastRedis = end;
        // Callers of one key overlap: the gap runs from the last Redis-backed answer to this call's start.
        driver.maxKeyGap = Math.max(driver.maxKeyGap, start - driver.lastRedisPerKey[index]!);
        driver.lastRedisPerKey[index] = Math.max(driver.lastRedisPerKey[index]!, start);
      } else {
        tally.degraded++;
        driver.lastDegraded = end;
      }
      // Degraded decisions answer at once: let I/O and timers run between calls.
      await sleep(redisBacked ? 1 : 3);
    }
  };
  return { driver, loops: Promise.all(Array.from({ length: CALLERS_PER_POLICY }, (_, caller) => loop(caller))).then(() => undefined) };
}

/** The longest event-loop stall since `start()`: a 10 ms interval that notes how late it runs. */
function stallMeter(): { start(): void; stop(): number } {
  let timer: NodeJS.Timeout | undefined;
  let worst = 0;
  return {
    start() {
      let last = performance.now();
      timer = setInterval(() => {
        const now = performance.now();
        worst = Math.max(worst, now - last - 10);
        last = now;
      }, 10);
    },
    stop() {
      clearInterval(timer);
      return worst;
    },
  };
}

function share(counts: ReadonlyArray<{ redis: number; degraded: number }>, indexes: readonly number[]): string {
  const redis = indexes.reduce((sum, index) => sum + counts[index]!.redis, 0);
  const degraded = indexes.reduce((sum, index) => sum + counts[index]!.degraded, 0);
  return `${redis} by Redis / ${degraded} by the policy`;
}

/**
 * Waits until every store answered every key from Redis after `since`, and only from Redis for
 * {@link STABLE_MS}; returns, per policy, when its last decision not made by Redis settled
 * (ms after `faultAt`).
 */
async function waitHealed(drivers: readonly Driver[], since: number, faultAt: number): Promise<Record<string, number>> {
  const deadline = faultAt + HEAL_BOUND_MS;
  for (;;) {
    const now = performance.now();
    const done = drivers.every((driver) => driver.lastRedisPerKey.every((at) => at > since) && now - Math.max(driver.lastDegraded, since) >= STABLE_MS);
    if (done) return Object.fromEntries(drivers.map((driver) => [driver.policy, Math.max(0, driver.lastDegraded - faultAt)]));
    if (now > deadline) {
      const state = drivers.map(
        (driver) => `${driver.policy}: last degraded ${Math.round(now - driver.lastDegraded)} ms ago, ${driver.lastRedisPerKey.filter((at) => at <= since).length} keys without a Redis answer since healing`,
      );
      throw new Error(`decisions did not return to Redis within ${HEAL_BOUND_MS} ms: ${state.join('; ')}`);
    }
    await sleep(25);
  }
}

describe('R4 Redis Cluster failover under load', () => {
  let cluster: RedisCluster;
  const admins = new Map<number, Promise<Redis>>();
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(reason);
  };

  /** A connection to one node, for `CLUSTER` and `CONFIG` commands; never waits for a dead node. */
  function admin(port: number): Promise<Redis> {
    let connected = admins.get(port);
    if (connected === undefined) {
      const client = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null, lazyConnect: true });
      client.on('error', () => undefined);
      // Callers racing for the same node share one connection attempt.
      connected = client.connect().then(() => client);
      admins.set(port, connected);
    }
    return connected;
  }

  async function topology(port: number): Promise<NodeLine[]> {
    return parseNodes(String(await (await admin(port)).cluster('NODES')));
  }

  /**
   * Polls until `port` is a primary and every node in `ports` reports `cluster_state:ok`; returns
   * when a node first reported `cluster_state:fail`, if one did (`onDown` is called then).
   */
  async function waitPromoted(port: number, ports: readonly number[], onDown?: () => void): Promise<number | undefined> {
    const deadline = performance.now() + HEAL_BOUND_MS;
    let downAt: number | undefined;
    for (;;) {
      const self = (await topology(port)).find((node) => node.flags.includes('myself'))!;
      const infos = await Promise.all(ports.map(async (other) => String(await (await admin(other)).cluster('INFO'))));
      if (downAt === undefined && infos.some((info) => info.includes('cluster_state:fail'))) {
        downAt = performance.now();
        onDown?.();
      }
      if (self.flags.includes('master') && infos.every((info) => info.includes('cluster_state:ok'))) return downAt;
      if (performance.now() > deadline) throw new Error(`node ${port} was not promoted within ${HEAL_BOUND_MS} ms`);
      await sleep(25);
    }
  }

  beforeAll(async () => {
    process.on('unhandledRejection', onUnhandled);
    cluster = await startRedisCluster(3);
  }, 60_000);

  afterAll(async () => {
    process.off('unhandledRejection', onUnhandled);
    for (const connected of admins.values()) void connected.then((client) => client.disconnect(), () => undefined);
    await cluster?.stop();
  });

  it('a manual failover and a killed primary heal with no NOSCRIPT, hung decision or permanent error reaching a caller, per failure policy', async () => {
    const ports = cluster.nodes.map((node) => node.port);
    const slots = await Promise.all(KEYS.map(async (key) => Number(await (await admin(ports[0]!)).cluster('KEYSLOT', storeKey(key)))));
    const state: { running: boolean; phase: Phase } = { running: true, phase: 'steady' };
    const stalls = stallMeter();
    stalls.start();
    const runs = POLICIES.map((policy) => drive(policy, cluster, state));
    const drivers = runs.map((run) => run.driver);
    const lines: string[] = [];
    let killedKeys: number[] = [];
    let downMs = 0;
    try {
      await Promise.all(drivers.map((driver) => driver.store.init()));
      await sleep(500);

      // (a) CLUSTER FAILOVER sent to the replica of the primary serving the first key.
      let nodes = await topology(ports[0]!);
      const first = nodes.find((node) => node.flags.includes('master') && servesSlot(node, slots[0]!))!;
      const firstReplica = nodes.find((node) => node.primaryId === first.id)!;
      const failoverKeys = KEYS.flatMap((_, index) => (servesSlot(first, slots[index]!) ? [index] : []));
      state.phase = 'failover';
      let faultAt = performance.now();
      await (await admin(firstReplica.port)).cluster('FAILOVER');
      await waitPromoted(firstReplica.port, ports);
      let healedAt = performance.now();
      let healed = await waitHealed(drivers, healedAt, faultAt);
      state.phase = 'steady';
      lines.push(
        `[R4] CLUSTER FAILOVER to the replica of a primary serving ${failoverKeys.length} of ${KEYS.length} keys: promoted in ${Math.round(healedAt - faultAt)} ms; ` +
          `last decision not made by Redis at ${POLICIES.map((policy) => `${policy} +${Math.round(healed[policy]!)} ms`).join(', ')}`,
      );

      // (b) SIGKILL another primary serving some keys; its replica takes over after cluster-node-timeout.
      nodes = await topology(firstReplica.port);
      const victim = nodes.find((node) => node.flags.includes('master') && node.port !== firstReplica.port && slots.some((slot) => servesSlot(node, slot)))!;
      const victimReplica = nodes.find((node) => node.primaryId === victim.id)!;
      const victimProcess = cluster.nodes.find((node) => node.port === victim.port)!;
      killedKeys = KEYS.flatMap((_, index) => (servesSlot(victim, slots[index]!) ? [index] : []));
      (await admin(victim.port)).disconnect();
      state.phase = 'kill';
      faultAt = performance.now();
      await victimProcess.stop();
      const downAt = await waitPromoted(
        victimReplica.port,
        ports.filter((port) => port !== victim.port),
        () => {
          state.phase = 'down';
        },
      );
      healedAt = performance.now();
      downMs = downAt === undefined ? 0 : healedAt - downAt;
      state.phase = 'steady';
      healed = await waitHealed(drivers, healedAt, faultAt);
      lines.push(
        `[R4] SIGKILL of a primary (by PID) serving ${killedKeys.length} of ${KEYS.length} keys: replica promoted in ${Math.round(healedAt - faultAt)} ms, ` +
          `the last ${Math.round(downMs)} ms of which every node answered CLUSTERDOWN (slots without a primary); ` +
          `last decision not made by Redis at ${POLICIES.map((policy) => `${policy} +${Math.round(healed[policy]!)} ms`).join(', ')}`,
      );
      await sleep(200);
    } finally {
      state.running = false;
      const settled = await Promise.race([Promise.all(runs.map((run) => run.loops)).then(() => true), sleep(TIMEOUT_MS + 2_000).then(() => false)]);
      expect(settled, 'every decision settles').toBe(true);
      await Promise.all(drivers.map((driver) => driver.store.close()));
    }
    const worstStall = stalls.stop();

    for (const line of lines) console.log(line);
    const otherKeys = KEYS.flatMap((_, index) => (killedKeys.includes(index) ? [] : [index]));
    for (const driver of drivers) {
      const stats = driver.store.stats();
      const noscript = driver.errors.filter((error) => error instanceof Error && error.message.includes('NOSCRIPT')).length;
      const failures = Object.entries(stats.failures)
        .filter(([, count]) => count > 0)
        .map(([kind, count]) => `${kind} ${count}`)
        .join(', ');
      console.log(
        `[R4] ${driver.policy}, ${CALLERS_PER_POLICY} callers on ${KEYS.length} keys, timeout ${TIMEOUT_MS} ms: longest gap between Redis-backed decisions ` +
          `${Math.round(driver.maxGap)} ms (one key: ${Math.round(driver.maxKeyGap)} ms), longest decision ${Math.round(driver.maxLatency)} ms ` +
          `(longest event-loop stall ${Math.round(worstStall)} ms); admitted by Redis ${driver.redisAllowed}, local ${driver.local}, fail-open ${driver.failOpen}, ` +
          `StoreUnavailableError (503) ${driver.unavailable}; during the manual failover: ${share(driver.perKey.failover, KEYS.map((_, index) => index))}; ` +
          `after the kill, before the cluster marked the primary failed: its keys ${share(driver.perKey.kill, killedKeys)}, ` +
          `keys of the live primaries ${share(driver.perKey.kill, otherKeys)}; then until the promotion (CLUSTERDOWN) ${share(driver.perKey.down, KEYS.map((_, index) => index))}; ` +
          `failures by kind: ${failures || 'none'}; script reloads ${stats.scriptReloads}; ` +
          `NOSCRIPT to callers ${noscript}, other errors ${driver.errors.length - noscript}, permanent errors ${stats.permanentErrors}`,
      );
      expect(driver.errors).toEqual([]);
      expect(stats.permanentErrors).toBe(0);
      expect(driver.inFlight).toBe(0);
      expect(driver.maxLatency).toBeLessThanOrEqual(TIMEOUT_MS + MARGIN_MS + worstStall);
      // The promoted replicas started with an empty script cache: the store sent the script again.
      expect(stats.scriptReloads).toBeGreaterThan(0);
      expect(driver.redisRefused).toBe(0);
      // Only the store's own policy decided meanwhile.
      const degraded = { 'fail-closed': driver.unavailable, local: driver.local, 'fail-open': driver.failOpen }[driver.policy];
      expect(driver.unavailable + driver.local + driver.failOpen).toBe(degraded);
      expect(degraded).toBeGreaterThan(0);
    }
    expect(unhandled).toEqual([]);
  }, 30_000);
});
