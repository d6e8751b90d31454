import { fork, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileLib } from '../support/compile-lib.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';

// R10: several processes share one fleet-wide bulkhead through a redis-server of this file's own.
// Each child runs the transpiled engines under --unhandled-rejections=strict and stamps the start
// and end of every protected call with Redis TIME, so the overlap is measured on one clock.

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const CAP = 10;

const CHILD = `
import { createRequire } from 'node:module';
import { DistributedBulkhead } from './lib/stores/redis/distributed-bulkhead.js';
import { isBulkheadRejectedError } from './lib/policies/bulkhead/bulkhead.error.js';

const { Redis } = createRequire(${JSON.stringify(join(REPO, 'package.json'))})('ioredis');
const redis = new Redis(process.env.REDIS_URL, { maxRetriesPerRequest: 1 });
redis.on('error', () => {});
const PREFIX = 'r10:';
const bulkheads = new Map();
const lost = [];
const held = new Map();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const time = async () => {
  const [seconds, micros] = await redis.time();
  return Number(seconds) * 1e6 + Number(micros);
};

// The protected work: two Redis TIME stamps around a short hold.
async function work(intervals) {
  const start = await time();
  await sleep(2 + Math.random() * 6);
  intervals.push([start, await time()]);
}

// The deliberately broken control: the cap checked, then taken, in two round trips.
async function brokenCall(name, intervals) {
  const key = '{' + PREFIX + 'broken:' + name + '}:permits';
  const id = process.env.INSTANCE + '#' + Math.random();
  for (;;) {
    if ((await redis.zcard(key)) < ${CAP}) {
      await redis.zadd(key, Date.now() + 10_000, id);
      break;
    }
    await sleep(1);
  }
  try {
    await work(intervals);
  } finally {
    await redis.zrem(key, id);
  }
}

const handlers = {
  create({ name, options }) {
    const bulkhead = new DistributedBulkhead({ name, ...options }, { client: redis, keyPrefix: PREFIX, instanceId: process.env.INSTANCE });
    bulkhead.onLeaseLost((event) => lost.push(event));
    bulkheads.set(name, bulkhead);
  },
  async flood({ name, calls, concurrency, broken = false }) {
    const bulkhead = bulkheads.get(name);
    const intervals = [];
    let issued = 0;
    let ok = 0;
    let rejected = 0;
    let firstStartAt;
    const lane = async () => {
      while (issued < calls) {
        issued++;
        try {
          if (broken) await brokenCall(name, intervals);
          else await bulkhead.execute(() => {
            firstStartAt ??= Date.now();
            return work(intervals);
          });
          ok++;
        } catch (error) {
          if (isBulkheadRejectedError(error)) rejected++;
          else throw error;
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, lane));
    return { ok, rejected, intervals, firstStartAt };
  },
  // Takes n permits with calls that settle only when told (or never).
  async hold({ name, n, tag }) {
    const bulkhead = bulkheads.get(name);
    let started = 0;
    const gates = [];
    const results = [];
    for (let i = 0; i < n; i++) {
      results.push(bulkhead.execute(() => {
        started++;
        return new Promise((resolve) => gates.push(resolve));
      }));
    }
    while (started < n) await sleep(2);
    held.set(tag, { gates, results });
  },
  async release({ tag }) {
    const { gates, results } = held.get(tag);
    for (const gate of gates) gate('finished');
    return Promise.all(results);
  },
  lost: () => lost,
  stats: ({ name }) => bulkheads.get(name).stats(),
  async exit() {
    await Promise.all([...bulkheads.values()].map((bulkhead) => bulkhead.close()));
    redis.disconnect();
    setImmediate(() => process.disconnect());
  },
};

process.on('message', async (message) => {
  try {
    process.send({ id: message.id, result: await handlers[message.cmd](message) });
  } catch (error) {
    process.send({ id: message.id, error: String(error?.stack ?? error) });
  }
});
`;

interface Flood {
  ok: number;
  rejected: number;
  intervals: Array<[number, number]>;
  firstStartAt?: number;
}

interface LostEvent {
  bulkhead: string;
  permitId: string;
  reason: 'expired' | 'unreachable';
}

interface Child {
  readonly process: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  request<T = void>(cmd: string, args?: Record<string, unknown>): Promise<T>;
}

function spawnChild(dir: string, env: Record<string, string>): Child {
  const child = fork(join(dir, 'r10-child.mjs'), [], {
    cwd: dir,
    env: { ...process.env, ...env },
    execArgv: ['--unhandled-rejections=strict'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  let seq = 0;
  child.on('message', (message: { id: number; result?: unknown; error?: string }) => {
    const request = pending.get(message.id);
    pending.delete(message.id);
    if (message.error !== undefined) request?.reject(new Error(message.error));
    else request?.resolve(message.result);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      for (const request of pending.values()) request.reject(new Error(`child ${env.INSTANCE} exited with ${code ?? signal}`));
      pending.clear();
      resolve({ code, signal });
    }),
  );
  return {
    process: child,
    exited,
    request: <T>(cmd: string, args: Record<string, unknown> = {}) =>
      new Promise<T>((resolve, reject) => {
        const id = ++seq;
        pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
        child.send({ id, cmd, ...args });
      }),
  };
}

/** The largest number of intervals open at one instant; starts sort before ends at equal stamps (conservative). */
function maxOverlap(intervals: Array<[number, number]>): number {
  const events = intervals.flatMap(([start, end]) => [
    [start, 0],
    [end, 1],
  ]);
  events.sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
  let open = 0;
  let peak = 0;
  for (const [, kind] of events) {
    open += kind === 0 ? 1 : -1;
    peak = Math.max(peak, open);
  }
  return peak;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Permits alive in Redis under `pattern` (scored past Redis TIME), and whether every permits key
 * expires on its own. An expired lease stays in its sorted set until the next acquisition prunes
 * it, or the key's own TTL removes it: it holds nothing.
 */
async function livePermits(admin: Redis, pattern = '*permits*'): Promise<{ live: number; keys: number; withoutTtl: number }> {
  const keys = await admin.keys(pattern);
  const [seconds, micros] = await admin.time();
  const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  const live = await Promise.all(keys.map((key) => admin.zcount(key, `(${now}`, '+inf')));
  const ttls = await Promise.all(keys.map((key) => admin.pttl(key)));
  return { live: live.reduce((total, count) => total + count, 0), keys: keys.length, withoutTtl: ttls.filter((ttl) => ttl < 0).length };
}

describe('R10 distributed bulkhead: several processes, fleet cap 10', () => {
  let lib: ReturnType<typeof compileLib>;
  let server: RedisProcess;
  let admin: Redis;
  let children: Child[];

  beforeAll(async () => {
    lib = compileLib();
    writeFileSync(join(lib.dir, 'r10-child.mjs'), CHILD);
    server = await startRedis();
    admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
    children = ['p0', 'p1', 'p2', 'p3'].map((instance) => spawnChild(lib.dir, { REDIS_URL: server.url, INSTANCE: instance }));
  });

  afterAll(async () => {
    // Only if a test failed before the last one: stop what is left, by PID.
    for (const child of children) if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGKILL');
    admin.disconnect();
    await server.stop();
    lib.dispose();
  });

  const create = (name: string, options: Record<string, unknown>, who = children): Promise<unknown> => Promise.all(who.map((child) => child.request('create', { name, options })));

  it('overlap from Redis TIME stamps never exceeds the cap; the two-round-trip control does', async () => {
    await create('flood', { maxConcurrent: CAP, maxQueue: 50, queueTimeout: '20s', pollInterval: '20ms' });
    const floods = await Promise.all(children.map((child) => child.request<Flood>('flood', { name: 'flood', calls: 150, concurrency: 25 })));
    const intervals = floods.flatMap((flood) => flood.intervals);
    const overlap = maxOverlap(intervals);
    const control = await Promise.all(children.map((child) => child.request<Flood>('flood', { name: 'flood', calls: 60, concurrency: 25, broken: true })));
    const controlOverlap = maxOverlap(control.flatMap((flood) => flood.intervals));
    const left = (await livePermits(admin, '{r10:bulkhead:flood}:permits')).live;
    console.log(
      `[R10] fleet cap ${CAP}: 4 processes × 25 callers, ${intervals.length} calls, max overlap from Redis TIME = ${overlap}/${CAP} ` +
        `(rejected ${floods.reduce((total, flood) => total + flood.rejected, 0)}); two-round-trip control: max overlap ${controlOverlap}/${CAP}; permits left ${left}`,
    );
    expect(intervals).toHaveLength(600);
    expect(overlap).toBeLessThanOrEqual(CAP);
    expect(overlap).toBe(CAP);
    expect(controlOverlap).toBeGreaterThan(CAP);
    expect(left).toBe(0);
  });

  it('a process killed holding permits: they return to the fleet within the lease TTL', async () => {
    const leaseTtl = 1000;
    await create('kill', { maxConcurrent: CAP, maxQueue: 20, queueTimeout: '10s', leaseTtl, pollInterval: '50ms' });
    const victim = children[3]!;
    await victim.request('hold', { name: 'kill', n: CAP, tag: 'victim' });
    expect(await admin.zcard('{r10:bulkhead:kill}:permits')).toBe(CAP);
    const waiting = children[0]!.request<Flood>('flood', { name: 'kill', calls: 5, concurrency: 5 });
    await sleep(150);
    const killedAt = Date.now();
    victim.process.kill('SIGKILL');
    const { signal } = await victim.exited;
    const flood = await waiting;
    const backAfter = flood.firstStartAt! - killedAt;
    const left = (await livePermits(admin, '{r10:bulkhead:kill}:permits')).live;
    console.log(
      `[R10] SIGKILL while holding ${CAP}/${CAP} permits: the fleet admitted again ${backAfter} ms later (lease TTL ${leaseTtl} ms, renewed every ${Math.floor(leaseTtl / 3)} ms); ` +
        `${flood.ok}/5 waiting calls ran; permits left ${left}`,
    );
    expect(signal).toBe('SIGKILL');
    expect(backAfter).toBeGreaterThan(0);
    expect(backAfter).toBeLessThanOrEqual(leaseTtl + 200);
    expect(flood.ok).toBe(5);
    expect(left).toBe(0);
  });

  it('a lost lease is a typed event, never an unhandled rejection; no permit is left in Redis at the end', async () => {
    const [holder, paused] = [children[1]!, children[2]!];
    await create('lost', { maxConcurrent: 2, leaseTtl: 300 }, [holder]);
    await create('lost-pause', { maxConcurrent: 2, leaseTtl: 300 }, [paused]);
    // Taken from under it: the permit disappears from Redis.
    await holder.request('hold', { name: 'lost', n: 1, tag: 'deleted' });
    await admin.del('{r10:bulkhead:lost}:permits');
    for (let waited = 0; (await holder.request<LostEvent[]>('lost')).length === 0 && waited < 2000; waited += 20) await sleep(20);
    // Starved: Redis answers nothing for longer than the lease.
    await paused.request('hold', { name: 'lost-pause', n: 1, tag: 'paused' });
    await admin.call('CLIENT', 'PAUSE', '700', 'ALL');
    await sleep(900);
    const events = [...(await holder.request<LostEvent[]>('lost')), ...(await paused.request<LostEvent[]>('lost'))];
    const results = [...(await holder.request<string[]>('release', { tag: 'deleted' })), ...(await paused.request<string[]>('release', { tag: 'paused' }))];
    await sleep(100);
    const { live: left, keys, withoutTtl } = await livePermits(admin);
    const stats = await holder.request<{ leasesLost: number; active: number }>('stats', { name: 'lost' });
    console.log(
      `[R10] lost leases: ${events.map((event) => `${event.bulkhead}:${event.reason}`).join(', ')} as typed events; the calls finished (${results.join(', ')}); ` +
        `both processes alive under --unhandled-rejections=strict; live permits left in Redis at the end: ${left} (${keys} keys, ${withoutTtl} without a TTL)`,
    );
    expect(events.map((event) => [event.bulkhead, event.reason])).toEqual([
      ['lost', 'expired'],
      ['lost-pause', 'unreachable'],
    ]);
    expect(results).toEqual(['finished', 'finished']);
    expect(stats).toMatchObject({ leasesLost: 1, active: 0 });
    expect([holder.process.exitCode, paused.process.exitCode]).toEqual([null, null]);
    expect(left).toBe(0);
    expect(withoutTtl).toBe(0);
  });

  it('the processes not killed on purpose exit on their own once closed: no unhandled rejection, no timer or socket left', async () => {
    const alive = children.slice(0, 3);
    await Promise.all(alive.map((child) => child.request('exit')));
    const exits = await Promise.race([Promise.all(alive.map((child) => child.exited)), sleep(5000).then(() => 'still running after 5 s' as const)]);
    expect(exits).toEqual([
      { code: 0, signal: null },
      { code: 0, signal: null },
      { code: 0, signal: null },
    ]);
  });
});
