import { fork, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileLib } from '../support/compile-lib.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';

// R9: several processes share one breaker through a redis-server of this file's own. Each child
// runs the transpiled engines under --unhandled-rejections=strict (a stray rejection kills it and
// fails the test), with an ioredis client on its defaults (offline queue on), and answers the
// parent's commands over IPC.

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const SYNC_MS = 100;
const COMMAND_TIMEOUT_MS = 200;

const CHILD = `
import { createRequire } from 'node:module';
import { SharedCircuitBreaker } from './lib/stores/redis/shared-circuit-breaker.js';
import { isCircuitOpenError } from './lib/policies/circuit-breaker/circuit-breaker.error.js';

const { Redis } = createRequire(${JSON.stringify(join(REPO, 'package.json'))})('ioredis');
const redis = new Redis(process.env.REDIS_URL, { maxRetriesPerRequest: 1 });
redis.on('error', () => {});
const breakers = new Map();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One call: 'ok', 'fail', or 'hang' (succeeds after holdMs). Reports how long the decision took.
async function call(breaker, behavior, holdMs, tally) {
  const started = performance.now();
  let decided = false;
  const decide = () => {
    if (!decided) {
      decided = true;
      tally.maxDecisionMs = Math.max(tally.maxDecisionMs, performance.now() - started);
    }
  };
  try {
    await breaker.execute(async () => {
      decide();
      tally.ran++;
      if (behavior === 'fail') throw new Error('downstream down');
      if (behavior === 'hang') await sleep(holdMs);
      return 'ok';
    });
    tally.ok++;
  } catch (error) {
    decide();
    if (isCircuitOpenError(error)) {
      tally.rejected[error.state] = (tally.rejected[error.state] ?? 0) + 1;
      tally.firstRejectAt ??= Date.now();
    } else if (error.message === 'downstream down') tally.failed++;
    else throw error;
  }
}

const handlers = {
  create({ name, options }) {
    const breaker = new SharedCircuitBreaker(options, { client: redis, keyPrefix: process.env.PREFIX, instanceId: process.env.INSTANCE, commandTimeout: ${COMMAND_TIMEOUT_MS} });
    breakers.set(name, breaker);
    breaker.sources = [];
    breaker.onStoreStatusChange((event) => breaker.sources.push(event.source));
  },
  // Calls one after the other (or concurrency at a time) for durationMs, or n calls.
  async run({ name, behavior, failFrom, n, durationMs, everyMs = 0, concurrency = 1, holdMs = 0 }) {
    const breaker = breakers.get(name);
    const tally = { ran: 0, ok: 0, failed: 0, rejected: {}, maxDecisionMs: 0, firstRejectAt: undefined, calls: 0 };
    const until = durationMs === undefined ? Infinity : performance.now() + durationMs;
    const lane = async () => {
      while (tally.calls < (n ?? Infinity) && performance.now() < until) {
        tally.calls++;
        const current = failFrom !== undefined ? (Date.now() >= failFrom ? 'fail' : 'ok') : behavior;
        await call(breaker, current, holdMs, tally);
        if (everyMs > 0) await sleep(everyMs);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, lane));
    return tally;
  },
  async sync({ name }) {
    await breakers.get(name).sync();
  },
  state({ name }) {
    const breaker = breakers.get(name);
    const { state, source, calls, failures, votes, instances } = breaker.stats();
    return { state, source, calls, failures, votes, instances, sources: breaker.sources };
  },
  async exit() {
    for (const breaker of breakers.values()) breaker.close();
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

interface Tally {
  ran: number;
  ok: number;
  failed: number;
  calls: number;
  rejected: Record<string, number>;
  maxDecisionMs: number;
  firstRejectAt?: number;
}

interface ChildState {
  state: string;
  source: 'redis' | 'local';
  calls: number;
  failures: number;
  votes: number;
  instances: number;
  sources: string[];
}

interface Child {
  readonly process: ChildProcess;
  readonly exited: Promise<number | null>;
  request<T = void>(cmd: string, args?: Record<string, unknown>): Promise<T>;
}

function spawnChild(dir: string, env: Record<string, string>): Child {
  const child = fork(join(dir, 'r9-child.mjs'), [], {
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
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      for (const request of pending.values()) request.reject(new Error(`child ${env.INSTANCE} exited with ${code}`));
      pending.clear();
      resolve(code);
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

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const sum = (tallies: Tally[], pick: (tally: Tally) => number): number => tallies.reduce((total, tally) => total + pick(tally), 0);
const rejectedOf = (tally: Tally): number => Object.values(tally.rejected).reduce((total, count) => total + count, 0);

async function evalshaCalls(admin: Redis): Promise<number> {
  const info = await admin.info('commandstats');
  return Number(/cmdstat_evalsha:calls=(\d+)/.exec(info)?.[1] ?? 0) + Number(/cmdstat_eval:calls=(\d+)/.exec(info)?.[1] ?? 0);
}

describe('R9 shared circuit breaker: several processes, one breaker', () => {
  let lib: ReturnType<typeof compileLib>;
  let server: RedisProcess;
  let admin: Redis;
  let children: Child[];

  beforeAll(async () => {
    lib = compileLib();
    writeFileSync(join(lib.dir, 'r9-child.mjs'), CHILD);
    server = await startRedis();
    admin = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => null });
    admin.on('error', () => {});
    children = ['p0', 'p1', 'p2'].map((instance) => spawnChild(lib.dir, { REDIS_URL: server.url, PREFIX: 'r9:', INSTANCE: instance }));
  });

  afterAll(async () => {
    // Only if a test failed before the last one: stop what is left, by PID.
    for (const child of children) if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGKILL');
    admin.disconnect();
    await server.stop();
    lib.dispose();
  });

  const create = (name: string, options: Record<string, unknown>): Promise<unknown> => Promise.all(children.map((child) => child.request('create', { name, options })));
  const states = (name: string): Promise<ChildState[]> => Promise.all(children.map((child) => child.request<ChildState>('state', { name })));

  it('the fleet opens together, and an open circuit costs no Redis round trip per call', async () => {
    await create('spread', { name: 'spread', windowSize: 20, minimumCalls: 10, failureRateThreshold: 50, openDuration: '20s', syncInterval: `${SYNC_MS}ms` });
    // Every process calls every 5 ms; the downstream starts failing for everyone at once.
    const failFrom = Date.now() + 300;
    const opening = await Promise.all(children.map((child) => child.request<Tally>('run', { name: 'spread', failFrom, durationMs: 900, everyMs: 5 })));
    const seen = opening.map((tally) => tally.firstRejectAt!);
    expect(seen.every((at) => typeof at === 'number')).toBe(true);
    const spread = Math.max(...seen) - Math.min(...seen);
    const before = await evalshaCalls(admin);
    const open = await Promise.all(children.map((child) => child.request<Tally>('run', { name: 'spread', behavior: 'ok', durationMs: 600, everyMs: 1 })));
    const commands = (await evalshaCalls(admin)) - before;
    const rejected = sum(open, rejectedOf);
    console.log(
      `[R9] fleet opening: 3 processes saw OPEN within ${spread} ms of each other (sync interval ${SYNC_MS} ms), ` +
        `first after ${Math.min(...seen) - failFrom} ms of failures, ${sum(opening, (tally) => tally.failed)} failed calls reached the downstream fleet-wide; ` +
        `while OPEN: ${rejected} calls refused with ${commands} Redis scripts (${(commands / rejected).toFixed(3)} round trips per call), downstream calls ${sum(open, (tally) => tally.ran)}`,
    );
    expect(spread).toBeLessThanOrEqual(SYNC_MS + 150);
    expect(sum(open, (tally) => tally.ran)).toBe(0);
    expect(rejected).toBeGreaterThan(300);
    // Only the periodic syncs: at most one per process per interval (+1 each for timing).
    expect(commands).toBeLessThanOrEqual(3 * (600 / SYNC_MS + 2));
  });

  it('fleet-wide half-open probes equal halfOpenMaxCalls', async () => {
    await create('probe', { name: 'probe', consecutiveFailures: 1, openDuration: '600ms', halfOpenMaxCalls: 3, syncInterval: `${SYNC_MS}ms` });
    await children[0]!.request('run', { name: 'probe', behavior: 'fail', n: 1 });
    await children[0]!.request('sync', { name: 'probe' });
    await sleep(650);
    // 3 processes × 10 concurrent callers hammer the half-open circuit; each probe takes 500 ms.
    const hammer = await Promise.all(children.map((child) => child.request<Tally>('run', { name: 'probe', behavior: 'hang', holdMs: 500, durationMs: 300, concurrency: 10, everyMs: 2 })));
    const probes = sum(hammer, (tally) => tally.ran);
    const tried = sum(hammer, (tally) => tally.calls);
    await sleep(350);
    await Promise.all(children.map((child) => child.request('sync', { name: 'probe' })));
    const after = await states('probe');
    console.log(
      `[R9] half-open: ${probes} probes ran fleet-wide for halfOpenMaxCalls = 3 (${tried} calls tried by 3 processes × 10 callers, ` +
        `${sum(hammer, rejectedOf)} refused); after the probes succeeded: ${after.map((state) => state.state).join('/')}`,
    );
    expect(probes).toBe(3);
    expect(sum(hammer, rejectedOf)).toBe(tried - 3);
    expect(after.map((state) => state.state)).toEqual(['CLOSED', 'CLOSED', 'CLOSED']);
  });

  it('quorum: one failing instance alone does not open the fleet when quorum = 2, two do; without a quorum one does', async () => {
    const options = { windowSize: 20, minimumCalls: 10, failureRateThreshold: 30, syncInterval: `${SYNC_MS}ms` };
    await create('quorum', { name: 'quorum', ...options, quorum: 2 });
    await create('control', { name: 'control', ...options });
    const [bad, good, third] = children as [Child, Child, Child];
    for (const name of ['quorum', 'control']) {
      await bad.request('run', { name, behavior: 'fail', n: 20 });
      await good.request('run', { name, behavior: 'ok', n: 20 });
      await bad.request('sync', { name });
      await good.request('sync', { name });
      await third.request('sync', { name });
    }
    const control = await states('control');
    const oneBad = await states('quorum');
    await third.request('run', { name: 'quorum', behavior: 'fail', n: 10 });
    await third.request('sync', { name: 'quorum' });
    await Promise.all(children.map((child) => child.request('sync', { name: 'quorum' })));
    const twoBad = await states('quorum');
    console.log(
      `[R9] quorum: 1 failing instance of 3, fleet failure rate ${((oneBad[1]!.failures * 100) / oneBad[1]!.calls).toFixed(0)} % ≥ 30 %: ` +
        `quorum 1 → ${control[2]!.state}, quorum 2 → ${oneBad[2]!.state} (votes ${oneBad[1]!.votes}); 2 failing instances, quorum 2 → ${twoBad.map((state) => state.state).join('/')}`,
    );
    expect(control.map((state) => state.state)).toEqual(['OPEN', 'OPEN', 'OPEN']);
    expect(oneBad.map((state) => state.state)).toEqual(['CLOSED', 'CLOSED', 'CLOSED']);
    expect(oneBad[1]).toMatchObject({ calls: 40, failures: 20, votes: 1, instances: 2 });
    expect(twoBad.map((state) => state.state)).toEqual(['OPEN', 'OPEN', 'OPEN']);
  });

  it('with Redis hung (CLIENT PAUSE) then dead (SIGKILL), every process decides promptly on its local breaker', async () => {
    await create('outage', { name: 'outage', consecutiveFailures: 5, openDuration: '20s', syncInterval: `${SYNC_MS}ms` });
    await Promise.all(children.map((child) => child.request('run', { name: 'outage', behavior: 'ok', n: 5 })));
    // A hang: Redis accepts connections and answers nothing for 1.2 s.
    await admin.call('CLIENT', 'PAUSE', '1200', 'ALL');
    const pausedAt = performance.now();
    const hung = await Promise.all(children.map((child) => child.request<Tally>('run', { name: 'outage', behavior: 'fail', durationMs: 800, everyMs: 5 })));
    const duringPause = await states('outage');
    // Back: each process resynchronises with the fleet on its own.
    let resynced: ChildState[] = duringPause;
    while (resynced.some((state) => state.source !== 'redis') && performance.now() - pausedAt < 5000) {
      await sleep(50);
      resynced = await states('outage');
    }
    const resyncMs = performance.now() - pausedAt - 1200;
    // Death: the server is killed; the clients see their connection drop and reconnect in vain.
    await server.stop();
    await sleep(50);
    const dead = await Promise.all(children.map((child) => child.request<Tally>('run', { name: 'outage', behavior: 'fail', durationMs: 400, everyMs: 5 })));
    const afterKill = await states('outage');
    const maxHung = Math.max(...hung.map((tally) => tally.maxDecisionMs));
    const maxDead = Math.max(...dead.map((tally) => tally.maxDecisionMs));
    console.log(
      `[R9] Redis down: CLIENT PAUSE → longest decision ${maxHung.toFixed(0)} ms (command timeout ${COMMAND_TIMEOUT_MS} ms), ` +
        `${duringPause.filter((state) => state.source === 'local' && state.state === 'OPEN').length}/3 processes opened their local breaker; ` +
        `resynchronised ${Math.max(0, resyncMs).toFixed(0)} ms after the pause; SIGKILL → longest decision ${maxDead.toFixed(1)} ms, ` +
        `${afterKill.filter((state) => state.source === 'local').length}/3 on local state, downstream calls per process ${dead.map((tally) => tally.ran).join('/')} (local threshold 5)`,
    );
    expect(maxHung).toBeLessThanOrEqual(COMMAND_TIMEOUT_MS + 100);
    expect(duringPause.map((state) => `${state.source}:${state.state}`)).toEqual(['local:OPEN', 'local:OPEN', 'local:OPEN']);
    expect(resynced.map((state) => state.source)).toEqual(['redis', 'redis', 'redis']);
    expect(resynced.every((state) => state.sources.join() === 'local,redis')).toBe(true);
    expect(maxDead).toBeLessThanOrEqual(50);
    expect(afterKill.map((state) => `${state.source}:${state.state}`)).toEqual(['local:OPEN', 'local:OPEN', 'local:OPEN']);
    // Each process let at most its local threshold of failures through, plus the calls made before
    // it noticed the dead connection: at most one sync interval and one command timeout, one call
    // every 5 ms (a loaded machine delays the notice; an idle one sees 5).
    const detectionCalls = Math.ceil((SYNC_MS + COMMAND_TIMEOUT_MS) / 5);
    for (const tally of dead) expect(tally.ran).toBeLessThanOrEqual(5 + detectionCalls);
  });

  it('every process exits on its own once its breakers are closed: no unhandled rejection, no timer or socket left', async () => {
    await Promise.all(children.map((child) => child.request('exit')));
    const codes = await Promise.race([Promise.all(children.map((child) => child.exited)), sleep(5000).then(() => 'still running after 5 s' as const)]);
    expect(codes).toEqual([0, 0, 0]);
  });
});
