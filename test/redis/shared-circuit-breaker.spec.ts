import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import { FakeClock } from '../../lib/core/clock.js';
import { InvalidOptionError } from '../../lib/core/errors.js';
import { CircuitBreakerPolicy } from '../../lib/policies/circuit-breaker/circuit-breaker.policy.js';
import { isCircuitOpenError } from '../../lib/policies/circuit-breaker/circuit-breaker.error.js';
import type { CircuitStateChangeEvent } from '../../lib/policies/circuit-breaker/circuit-breaker.policy.js';
import { SharedCircuitBreaker, type SharedCircuitBreakerOptions, type SharedStoreStatusEvent } from '../../lib/stores/redis/shared-circuit-breaker.js';
import { hashTag } from '../../lib/stores/redis/shared-redis.js';
import { useCleanups } from './support/cleanups.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';

// Unit-level behaviour of the shared breaker against the run's redis-server: every test uses
// keys under a prefix of its own and closes every client and breaker it creates.

const { cleanups, client } = useCleanups();

interface Fleet {
  prefix: string;
  make(options?: Partial<SharedCircuitBreakerOptions>, instanceId?: string, redis?: Redis): SharedCircuitBreaker;
}

function fleet(base: SharedCircuitBreakerOptions): Fleet {
  const prefix = `t-${randomUUID()}:`;
  return {
    prefix,
    make(options = {}, instanceId, redis = client()) {
      const breaker = new SharedCircuitBreaker({ ...base, ...options }, { client: redis, keyPrefix: prefix, ...(instanceId ? { instanceId } : {}) });
      cleanups.push(() => breaker.close());
      return breaker;
    },
  };
}

const boom = (): Promise<never> => Promise.reject(new Error('boom'));
const ok = (): string => 'ok';
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const slow = (): Promise<string> => sleep(30).then(() => 'slow');

async function outcomes(breaker: SharedCircuitBreaker, calls: Array<() => unknown>): Promise<string[]> {
  const results: string[] = [];
  for (const call of calls) {
    try {
      await breaker.execute(call);
      results.push('ok');
    } catch (error) {
      results.push(isCircuitOpenError(error) ? `rejected:${error.state}` : 'failed');
    }
  }
  return results;
}

function deferred(): { promise: Promise<string>; resolve(value: string): void; reject(error: unknown): void } {
  let resolve!: (value: string) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<string>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function transitions(breaker: SharedCircuitBreaker): CircuitStateChangeEvent[] {
  const events: CircuitStateChangeEvent[] = [];
  breaker.onStateChange((event) => events.push(event));
  return events;
}

describe('SharedCircuitBreaker (shared redis-server)', () => {
  it('opens fleet-wide on the union of the instances’ windows, and an open circuit costs no round trip per call', async () => {
    const f = fleet({ name: 'payments', minimumCalls: 10, failureRateThreshold: 50, openDuration: '5s', syncInterval: '50ms' });
    const redisA = client();
    const a = f.make({}, 'a', redisA);
    const b = f.make({}, 'b');
    const eventsA = transitions(a);
    const eventsB = transitions(b);
    // 5 calls each, 3 failures each: neither instance reaches minimumCalls alone, the fleet does (6/10).
    await outcomes(a, [boom, boom, ok, boom, ok]);
    await a.sync();
    expect(a.state).toBe('CLOSED');
    await outcomes(b, [boom, ok, boom, ok, boom]);
    await b.sync();
    expect(b.state).toBe('OPEN');
    expect(b.stats()).toMatchObject({ calls: 10, failures: 6, instances: 2, source: 'redis' });
    await a.sync();
    expect(a.state).toBe('OPEN');
    expect(eventsA).toEqual([{ breaker: 'payments', from: 'CLOSED', to: 'OPEN', reason: 'failureRate' }]);
    expect(eventsB).toEqual([{ breaker: 'payments', from: 'CLOSED', to: 'OPEN', reason: 'failureRate' }]);

    const evalsha = vi.spyOn(redisA, 'evalsha');
    const ran = vi.fn<() => string>(ok);
    const results = await outcomes(a, Array.from({ length: 200 }, () => ran));
    expect(results.every((result) => result === 'rejected:OPEN')).toBe(true);
    expect(ran).not.toHaveBeenCalled();
    // At most the periodic syncs: none per call.
    expect(evalsha.mock.calls.length).toBeLessThanOrEqual(2);
    const error = await a.execute(ok).catch((caught: unknown) => caught);
    expect(isCircuitOpenError(error) && error.retryAfterMs).toBeGreaterThan(4000);
  });

  it('admits exactly halfOpenMaxCalls probes across instances, closes on their success and re-opens on a failure', async () => {
    const f = fleet({ name: 'probes', consecutiveFailures: 1, openDuration: '300ms', halfOpenMaxCalls: 2, syncInterval: '50ms' });
    const a = f.make({}, 'a');
    const b = f.make({}, 'b');
    const c = f.make({}, 'c');
    await outcomes(a, [boom]);
    await a.sync();
    expect(a.state).toBe('OPEN');
    await Promise.all([b.sync(), c.sync()]);
    expect([b.state, c.state]).toEqual(['OPEN', 'OPEN']);
    await sleep(320);

    const gate = deferred();
    let ran = 0;
    const probe = (): Promise<string> => {
      ran++;
      return gate.promise;
    };
    const pending = [a, b, c, a, b, c].map((breaker) => breaker.execute(probe).then(() => 'ok', (error: unknown) => (isCircuitOpenError(error) ? 'rejected' : 'failed')));
    await sleep(50);
    // More tries on every instance while the two probes are in flight.
    const later = await Promise.all([a, b, c].map((breaker) => outcomes(breaker, [probe, probe])));
    expect(ran).toBe(2);
    expect(later.flat().every((result) => result.startsWith('rejected'))).toBe(true);
    gate.resolve('ok');
    const settled = await Promise.all(pending);
    expect(settled.filter((result) => result === 'ok')).toHaveLength(2);
    await sleep(30);
    await Promise.all([a.sync(), b.sync(), c.sync()]);
    expect([a.state, b.state, c.state]).toEqual(['CLOSED', 'CLOSED', 'CLOSED']);

    // Open again, then a failed probe re-opens the circuit for the fleet.
    await outcomes(b, [boom]);
    await b.sync();
    await sleep(320);
    const events = transitions(c);
    expect(await outcomes(c, [boom])).toEqual(['failed']);
    await sleep(30);
    await a.sync();
    expect(a.state).toBe('OPEN');
    expect(events.map((event) => `${event.from}>${event.to}:${event.reason}`)).toEqual(['CLOSED>HALF_OPEN:openDurationElapsed', 'HALF_OPEN>OPEN:probeFailure']);
  });

  it('a probe lease held by a dead instance expires after probeTimeout and cannot pin HALF_OPEN', async () => {
    const f = fleet({ name: 'dead-probe', consecutiveFailures: 1, openDuration: '200ms', probeTimeout: '300ms', syncInterval: '50ms' });
    const redisA = client();
    const a = f.make({}, 'a', redisA);
    const b = f.make({}, 'b');
    await outcomes(a, [boom]);
    await a.sync();
    await sleep(220);
    // A takes the only probe and dies holding it.
    let probeStarted = false;
    void a.execute(() => {
      probeStarted = true;
      return new Promise<never>(() => {});
    });
    await sleep(30);
    expect(probeStarted).toBe(true);
    a.close();
    redisA.disconnect();
    expect(await outcomes(b, [ok])).toEqual(['rejected:HALF_OPEN']);
    // Past the probe's deadline the fleet counts it as failed and re-opens; after openDuration B probes.
    await sleep(320);
    await b.sync();
    expect(b.state).toBe('OPEN');
    expect(b.stats().halfOpenInFlight).toBe(0);
    await sleep(220);
    expect(await outcomes(b, [ok])).toEqual(['ok']);
    await sleep(20);
    await b.sync();
    expect(b.state).toBe('CLOSED');
  });

  it('forceOpen, disable and reset act fleet-wide', async () => {
    const f = fleet({ name: 'admin', syncInterval: '50ms' });
    const a = f.make({}, 'a');
    const b = f.make({}, 'b');
    await Promise.all([a.sync(), b.sync()]);
    expect(await a.forceOpen()).toEqual({ fleetWide: true });
    expect(a.state).toBe('FORCED_OPEN');
    await b.sync();
    expect(await outcomes(b, [ok])).toEqual(['rejected:FORCED_OPEN']);
    expect(await b.reset()).toEqual({ fleetWide: true });
    await a.sync();
    expect(await outcomes(a, [ok])).toEqual(['ok']);
    expect(await b.disable()).toEqual({ fleetWide: true });
    await a.sync();
    expect(a.state).toBe('DISABLED');
    expect(await outcomes(a, [boom, boom, boom])).toEqual(['failed', 'failed', 'failed']);
    expect(a.stats().local.calls).toBe(0);
    // An instance idle for longer than the staleness bound reads the state before its next call.
    const late = f.make({}, 'late');
    expect(await outcomes(late, [boom])).toEqual(['failed']);
    expect(late.state).toBe('DISABLED');
  });

  it('a fleet-wide operation made while a probe is being granted wins: the probe does not run', async () => {
    const f = fleet({ name: 'race', consecutiveFailures: 1, openDuration: '100ms', syncInterval: '50ms' });
    const a = f.make({}, 'a');
    await outcomes(a, [boom]);
    await a.sync();
    await sleep(120);
    // Fresh, so the call below sends its probe request at once; the operation overtakes its reply.
    await a.sync();
    expect(a.state).toBe('HALF_OPEN');
    const ran = vi.fn<() => string>(ok);
    const probe = a.execute(ran).then(() => 'ok', (error: unknown) => (isCircuitOpenError(error) ? `rejected:${error.state}` : 'failed'));
    const forced = a.forceOpen();
    expect(await probe).toBe('rejected:FORCED_OPEN');
    expect(await forced).toEqual({ fleetWide: true });
    expect(ran).not.toHaveBeenCalled();
    await a.sync();
    expect(a.stats()).toMatchObject({ state: 'FORCED_OPEN', halfOpenInFlight: 0 });
  });

  it('fleet-wide failures in a row: batches from several instances add up, a success resets them', async () => {
    const f = fleet({ name: 'consecutive', consecutiveFailures: 4, syncInterval: '50ms' });
    const a = f.make({}, 'a');
    const b = f.make({}, 'b');
    await outcomes(a, [boom, boom]);
    await a.sync();
    await outcomes(b, [ok]);
    await b.sync();
    expect(b.stats().consecutiveFailures).toBe(0);
    await outcomes(a, [boom, boom]);
    await a.sync();
    expect(a.state).toBe('CLOSED');
    expect(a.stats().consecutiveFailures).toBe(2);
    const events = transitions(b);
    await outcomes(b, [boom, boom]);
    await b.sync();
    expect(b.state).toBe('OPEN');
    expect(events).toEqual([{ breaker: 'consecutive', from: 'CLOSED', to: 'OPEN', reason: 'consecutiveFailures' }]);
  });

  it('quorum: one failing instance alone does not open the fleet, a second one does', async () => {
    const options = { minimumCalls: 10, failureRateThreshold: 30, syncInterval: '50ms' } as const;
    const q2 = fleet({ name: 'quorum', ...options, quorum: 2 });
    const q1 = fleet({ name: 'quorum', ...options });
    const run = async (f: Fleet): Promise<SharedCircuitBreaker[]> => {
      const [bad, good, third] = [f.make({}, 'bad'), f.make({}, 'good'), f.make({}, 'third')];
      await outcomes(bad, Array.from({ length: 10 }, () => boom));
      await bad.sync();
      await outcomes(good, Array.from({ length: 10 }, () => ok));
      await good.sync();
      return [bad, good, third];
    };
    const [control] = await run(q1);
    await control!.sync();
    expect(control!.state).toBe('OPEN');
    const [bad, , third] = await run(q2);
    await bad!.sync();
    expect(bad!.state).toBe('CLOSED');
    expect(bad!.stats()).toMatchObject({ calls: 20, failures: 10, votes: 1 });
    await outcomes(third!, Array.from({ length: 5 }, () => boom));
    await third!.sync();
    expect(third!.state).toBe('OPEN');
  });

  it('survives SCRIPT FLUSH: no NOSCRIPT reaches a caller', async () => {
    const f = fleet({ name: 'noscript', consecutiveFailures: 1, openDuration: '100ms', syncInterval: '50ms' });
    const redis = client();
    const breaker = f.make({}, 'a', redis);
    const status: SharedStoreStatusEvent[] = [];
    breaker.onStoreStatusChange((event) => status.push(event));
    await breaker.sync();
    const admin = client();
    await admin.script('FLUSH');
    const evalFallback = vi.spyOn(redis, 'eval');
    await outcomes(breaker, [boom]);
    await breaker.sync();
    expect(breaker.state).toBe('OPEN');
    await admin.script('FLUSH');
    await sleep(110);
    expect(await outcomes(breaker, [ok])).toEqual(['ok']);
    await admin.script('FLUSH');
    expect(await breaker.forceOpen()).toEqual({ fleetWide: true });
    expect(evalFallback.mock.calls.length).toBeGreaterThanOrEqual(3);
    expect(status).toEqual([]);
    expect(breaker.source).toBe('redis');
  });

  it('a permanent Redis error is reported loudly and the instance decides locally, never rejecting for it', async () => {
    const f = fleet({ name: 'wrongtype', consecutiveFailures: 2, syncInterval: '50ms' });
    const redis = client();
    await redis.set(`{${f.prefix}breaker:wrongtype}:state`, 'not a hash');
    const breaker = f.make({}, 'a', redis);
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => {
      warnings.push(warning.message);
    };
    process.on('warning', onWarning);
    cleanups.push(() => void process.off('warning', onWarning));
    const status: SharedStoreStatusEvent[] = [];
    breaker.onStoreStatusChange((event) => status.push(event));
    expect(await outcomes(breaker, [ok, boom, boom, ok])).toEqual(['ok', 'failed', 'failed', 'rejected:OPEN']);
    await sleep(10);
    expect(breaker.source).toBe('local');
    expect(status.map((event) => event.source)).toEqual(['local']);
    expect(String((status[0]!.error as Error).message)).toMatch(/WRONGTYPE/);
    expect(warnings.some((message) => message.includes('permanent Redis error') && message.includes('WRONGTYPE'))).toBe(true);
  });

  it('falls back to its local breaker when Redis dies and resynchronises when it is back', async () => {
    const server: RedisProcess = await startRedis();
    cleanups.push(() => server.stop());
    const f = fleet({ name: 'outage', consecutiveFailures: 2, openDuration: '10s', syncInterval: '50ms' });
    const a = f.make({}, 'a', client(server.url));
    const b = f.make({}, 'b', client(server.url));
    await Promise.all([a.sync(), b.sync()]);
    expect(await b.forceOpen()).toEqual({ fleetWide: true });
    expect(await b.reset()).toEqual({ fleetWide: true });
    await a.sync();
    await server.stop();
    // A CLOSED call touches no Redis: the outage shows at the next periodic sync.
    expect(await outcomes(a, [ok])).toEqual(['ok']);
    await sleep(120);
    expect(a.source).toBe('local');
    const started = performance.now();
    expect(await outcomes(a, [boom, boom, ok])).toEqual(['failed', 'failed', 'rejected:OPEN']);
    expect(performance.now() - started).toBeLessThan(100);
    // Made during the outage: applied locally now, pushed to the fleet on recovery.
    expect((await b.forceOpen()).fleetWide).toBe(false);
    const restarted = await startRedis(['--port', String(server.port)]);
    cleanups.push(() => restarted.stop());
    const deadline = performance.now() + 5000;
    while ((a.source === 'local' || b.source === 'local') && performance.now() < deadline) await sleep(50);
    expect([a.source, b.source]).toEqual(['redis', 'redis']);
    await a.sync();
    expect(a.state).toBe('FORCED_OPEN');
  });

  it('a time window and the slow-call rate open the fleet too', async () => {
    const f = fleet({ name: 'slow', windowType: 'time', windowSize: '10s', minimumCalls: 4, slowCallDuration: '20ms', slowCallRateThreshold: 50, syncInterval: '50ms' });
    const a = f.make({}, 'a');
    const b = f.make({}, 'b');
    const events = transitions(b);
    await outcomes(a, [slow, ok]);
    await a.sync();
    expect(a.state).toBe('CLOSED');
    await outcomes(b, [slow, ok]);
    await b.sync();
    expect(b.stats()).toMatchObject({ state: 'OPEN', calls: 4, slowCalls: 2, instances: 2 });
    expect(events).toEqual([{ breaker: 'slow', from: 'CLOSED', to: 'OPEN', reason: 'slowCallRate' }]);
  });

  it('runs on a Redis Cluster: every key of a breaker shares one slot (no CROSSSLOT)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nr-cluster-'));
    const server = await startRedis(['--cluster-enabled', 'yes', '--cluster-announce-ip', '127.0.0.1', '--cluster-config-file', join(dir, 'nodes.conf'), '--dir', dir]);
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }), () => server.stop());
    const setupClient = client(server.url);
    await setupClient.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
    for (let i = 0; i < 100 && !(await setupClient.cluster('INFO')).includes('cluster_state:ok'); i++) await sleep(50);
    const cluster = new Cluster([{ host: '127.0.0.1', port: server.port }], { redisOptions: { maxRetriesPerRequest: 1 } });
    cluster.on('error', () => {});
    cleanups.push(() => cluster.disconnect());
    // A name with braces and a colon: it must not end the hash tag early.
    const f = fleet({ name: 'pay{ments}:eu', consecutiveFailures: 2, openDuration: '200ms', syncInterval: '50ms' });
    const a = f.make({}, 'a', cluster as unknown as Redis);
    const b = f.make({}, 'b', cluster as unknown as Redis);
    const status: SharedStoreStatusEvent[] = [];
    a.onStoreStatusChange((event) => status.push(event));
    await outcomes(a, [boom, boom]);
    await a.sync();
    await b.sync();
    expect([a.state, b.state]).toEqual(['OPEN', 'OPEN']);
    await sleep(220);
    expect(await outcomes(b, [ok])).toEqual(['ok']);
    expect(await a.forceOpen()).toEqual({ fleetWide: true });
    expect(status).toEqual([]);
    const tag = hashTag(f.prefix, 'breaker', 'pay{ments}:eu');
    expect(tag).toBe(`{${f.prefix}breaker:pay%7Bments%7D:eu}`);
    const slots = await Promise.all(['state', 'window', 'probes'].map((suffix) => setupClient.cluster('KEYSLOT', `${tag}:${suffix}`)));
    expect(new Set(slots).size).toBe(1);
  });

  it('the local fallback is fed without running calls (CircuitBreakerPolicy.recordOutcome)', () => {
    const clock = new FakeClock();
    const local = new CircuitBreakerPolicy({ consecutiveFailures: 2, openDuration: 1000 }, { clock });
    local.recordOutcome(true);
    expect(local.stats()).toMatchObject({ state: 'CLOSED', calls: 1, failures: 1 });
    local.recordOutcome(true, true);
    expect(local.stats()).toMatchObject({ state: 'OPEN', openUntilMs: 1000 });
    // Only CLOSED counts.
    local.recordOutcome(false);
    clock.advance(1000);
    expect(local.stats()).toMatchObject({ state: 'HALF_OPEN', calls: 2 });
  });

  it('validates its options', () => {
    const redis = client();
    expect(() => new SharedCircuitBreaker({ quorum: 0 }, { client: redis })).toThrow(InvalidOptionError);
    expect(() => new SharedCircuitBreaker({ syncInterval: '0ms' }, { client: redis })).toThrow(/syncInterval/);
    expect(() => new SharedCircuitBreaker({ failureRate: 3 } as never, { client: redis })).toThrow(/failureRate/);
    expect(() => new SharedCircuitBreaker({}, { client: {} as never })).toThrow(/client/);
  });
});
