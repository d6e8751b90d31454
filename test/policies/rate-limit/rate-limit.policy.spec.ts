import { describe, expect, it } from 'vitest';
import { FakeClock, flushMicrotasks } from '../../../lib/core/clock.js';
import { CallContext } from '../../../lib/core/context.js';
import { InvalidOptionError, isOperationAbortedError } from '../../../lib/core/errors.js';
import { isPolicyRejection } from '../../../lib/core/rejection.js';
import {
  isRateLimitExceededError,
  RateLimitExceededError,
  RateLimitPolicy,
  type RateLimitDecision,
  type RateLimitDecisionEvent,
  type RateLimitOptions,
} from '../../../lib/policies/rate-limit/index.js';
import { MemoryStore } from '../../../lib/stores/memory/index.js';
import { AsyncStore } from './helpers.js';

function invalid(build: () => unknown): InvalidOptionError {
  let caught: unknown;
  try {
    build();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(InvalidOptionError);
  return caught as InvalidOptionError;
}

/** One call per 400 ms, waiting up to `maxWait` for room. */
function waiting(clock: FakeClock, maxWait = '1s'): RateLimitPolicy {
  return new RateLimitPolicy({ algorithm: 'gcra', limit: 1, window: 400, maxWait: maxWait as never }, { clock });
}

describe('RateLimitPolicy options', () => {
  it('resolves defaults: sliding window counter, one minute, burst = limit, cost 1, enforce, no wait', () => {
    const policy = new RateLimitPolicy({ limit: 5 });
    expect(policy.name).toBe('default');
    expect(policy.key).toBe('global');
    expect(policy.store).toBeInstanceOf(MemoryStore);
    expect(policy.options).toEqual({
      limits: [{ name: 'default', algorithm: 'sliding-window-counter', limit: 5, windowMs: 60_000, burst: 5 }],
      cost: 1,
      mode: 'enforce',
      maxWait: 0,
      onStoreError: undefined,
    });
    expect(Object.isFrozen(policy.options.limits[0])).toBe(true);
  });

  it('resolves several limits with durations, default names by position, and policy-wide settings', () => {
    const policy = new RateLimitPolicy(
      [
        { name: 'second', algorithm: 'gcra', limit: 10, window: '1s', burst: 20, cost: 2, maxWait: '500ms', onStoreError: 'local' },
        { algorithm: 'token-bucket', limit: 1000, window: '1h', cost: 2 },
        { algorithm: 'fixed-window', limit: 7, window: 250 },
      ],
      { name: 'api', key: 'tenant-1' },
    );
    expect(policy.name).toBe('api');
    expect(policy.key).toBe('tenant-1');
    expect(policy.options).toEqual({
      limits: [
        { name: 'second', algorithm: 'gcra', limit: 10, windowMs: 1000, burst: 20 },
        { name: 'default-1', algorithm: 'token-bucket', limit: 1000, windowMs: 3_600_000, burst: 1000 },
        { name: 'default-2', algorithm: 'fixed-window', limit: 7, windowMs: 250, burst: 7 },
      ],
      cost: 2,
      mode: 'enforce',
      maxWait: 500,
      onStoreError: 'local',
    });
    expect(new RateLimitPolicy([{ name: 'per-user', limit: 1 }]).name).toBe('per-user');
    // A window is not a timer: a monthly quota is fine.
    expect(new RateLimitPolicy({ limit: 10_000, window: '30d' }).options.limits[0]!.windowMs).toBe(2_592_000_000);
  });

  it.each<[string, () => unknown, string, unknown]>([
    ['a missing limit', () => new RateLimitPolicy({} as RateLimitOptions), 'rateLimit.limit', undefined],
    ['a zero limit', () => new RateLimitPolicy({ limit: 0 }), 'rateLimit.limit', 0],
    ['a fractional limit', () => new RateLimitPolicy([{ limit: 5 }, { limit: 1.5 }]), 'rateLimit[1].limit', 1.5],
    ['a zero window', () => new RateLimitPolicy({ limit: 5, window: 0 }), 'rateLimit.window', 0],
    ['a malformed window', () => new RateLimitPolicy({ limit: 5, window: '5 minutes' as never }), 'rateLimit.window', '5 minutes'],
    ['an unknown algorithm', () => new RateLimitPolicy({ limit: 5, algorithm: 'leaky-bucket' as never }), 'rateLimit.algorithm', 'leaky-bucket'],
    ['a zero burst', () => new RateLimitPolicy({ limit: 5, algorithm: 'token-bucket', burst: 0 }), 'rateLimit.burst', 0],
    ['a burst on a window algorithm', () => new RateLimitPolicy({ limit: 5, algorithm: 'fixed-window', burst: 10 }), 'rateLimit.burst', 10],
    ['a zero cost', () => new RateLimitPolicy({ limit: 5, cost: 0 }), 'rateLimit.cost', 0],
    ['a fractional cost', () => new RateLimitPolicy({ limit: 5, cost: 0.5 }), 'rateLimit.cost', 0.5],
    ['an unknown mode', () => new RateLimitPolicy({ limit: 5, mode: 'dry-run' as never }), 'rateLimit.mode', 'dry-run'],
    ['a wait longer than a timer', () => new RateLimitPolicy({ limit: 5, maxWait: '30d' }), 'rateLimit.maxWait', '30d'],
    ['an unknown store policy', () => new RateLimitPolicy({ limit: 5, onStoreError: 'retry' as never }), 'rateLimit.onStoreError', 'retry'],
    ['a misspelt option', () => new RateLimitPolicy([{ limit: 5 }, { limit: 5, windw: '1s' } as never]), 'rateLimit[1].windw', '1s'],
    ['a duplicate name', () => new RateLimitPolicy([{ name: 'a', limit: 5 }, { name: 'a', limit: 50 }]), 'rateLimit[1].name', 'a'],
    ['a duplicate default name', () => new RateLimitPolicy([{ limit: 5 }, { name: 'default', limit: 50 }]), 'rateLimit[1].name', 'default'],
    ['a name unfit for keys and headers', () => new RateLimitPolicy({ name: 'per {user}', limit: 5 }), 'rateLimit.name', 'per {user}'],
    ['a limit that is not an object', () => new RateLimitPolicy([{ limit: 5 }, 7 as never]), 'rateLimit[1]', 7],
    ['disagreeing costs', () => new RateLimitPolicy([{ limit: 5, cost: 2 }, { limit: 50, cost: 3 }]), 'rateLimit[1].cost', 3],
    ['disagreeing modes', () => new RateLimitPolicy([{ limit: 5 }, { limit: 50, mode: 'shadow' }, { limit: 9, mode: 'enforce' }]), 'rateLimit[2].mode', 'enforce'],
    ['disagreeing waits', () => new RateLimitPolicy([{ limit: 5, maxWait: '1s' }, { limit: 50, maxWait: 999 }]), 'rateLimit[1].maxWait', 999],
  ])('rejects %s, naming the option and the value', (_, build, option, value) => {
    const error = invalid(build);
    expect(error.option).toBe(option);
    expect(error.value).toEqual(value);
    expect(error.message).toContain(`"${option}"`);
  });

  it('rejects no limit at all, and explains policy-wide settings', () => {
    expect(invalid(() => new RateLimitPolicy([])).option).toBe('rateLimit');
    expect(invalid(() => new RateLimitPolicy([{ limit: 5, cost: 2 }, { limit: 50, cost: 3 }])).message).toContain('rateLimit[0].cost (2)');
    // Equal values written twice, in different units, agree.
    expect(new RateLimitPolicy([{ limit: 5, maxWait: '1s' }, { limit: 50, maxWait: 1000 }]).options.maxWait).toBe(1000);
  });
});

describe('RateLimitPolicy decisions', () => {
  it('decides synchronously on the memory store, per key', () => {
    const clock = new FakeClock();
    const policy = new RateLimitPolicy({ algorithm: 'fixed-window', limit: 2, window: '1s' }, { clock });
    const first = policy.decide('alice') as RateLimitDecision;
    expect(first).toEqual({ allowed: true, retryAfterMs: 0, limits: [{ name: 'default', limit: 2, windowMs: 1000, remaining: 1, resetMs: 1000 }] });
    expect((policy.decide('alice', 1) as RateLimitDecision).allowed).toBe(true);
    expect(policy.decide('alice')).toMatchObject({ allowed: false, retryAfterMs: 1000 });
    expect(policy.decide('bob')).toMatchObject({ allowed: true });
    clock.advance(1000);
    expect(policy.decide('alice')).toMatchObject({ allowed: true });
    expect(policy.stats()).toEqual({ admitted: 4, rejected: 1 });
  });

  it('peeks, refunds and resets through the store', () => {
    const policy = new RateLimitPolicy({ algorithm: 'sliding-window-log', limit: 3, window: '1s' }, { clock: new FakeClock() });
    policy.decide('k', 3);
    expect(policy.peek('k')).toMatchObject({ allowed: false, retryAfterMs: 1000 });
    expect(policy.refund('k', 2)).toMatchObject({ allowed: true, limits: [{ remaining: 2 }] });
    expect(policy.peek('k', 2)).toMatchObject({ allowed: true, limits: [{ remaining: 2 }] });
    policy.reset('k');
    expect(policy.peek('k', 3)).toMatchObject({ allowed: true, limits: [{ remaining: 3 }] });
    expect(policy.stats()).toEqual({ admitted: 1, rejected: 0 });
  });

  it('rejects a cost that is not an integer ≥ 1 at call time', () => {
    const policy = new RateLimitPolicy({ limit: 3 });
    expect(() => policy.decide('k', 0)).toThrow(RangeError);
    expect(() => policy.peek('k', 1.5)).toThrow(/cost must be an integer ≥ 1, got 1.5/);
  });

  it('answers through promises when the store does', async () => {
    const store = new AsyncStore();
    const policy = new RateLimitPolicy({ algorithm: 'gcra', limit: 1, window: '1s' }, { store, clock: new FakeClock() });
    const pending = policy.decide('k');
    expect(pending).toBeInstanceOf(Promise);
    await expect(pending).resolves.toMatchObject({ allowed: true });
    await expect(policy.decide('k')).resolves.toMatchObject({ allowed: false, retryAfterMs: 1000 });
    await expect(policy.runWithKey('k', () => 'ran', undefined)).rejects.toBeInstanceOf(RateLimitExceededError);
    await expect(policy.execute(() => 'ran')).resolves.toBe('ran');
    expect(store.calls).toBe(4);
  });

  it('emits every consume and peek decision, only to listeners', () => {
    const policy = new RateLimitPolicy({ algorithm: 'fixed-window', limit: 1, window: 1000 }, { name: 'login', clock: new FakeClock() });
    const events: RateLimitDecisionEvent[] = [];
    const subscription = policy.onDecision((event) => events.push(event));
    policy.decide('ip-1');
    policy.peek('ip-1', 1);
    policy.refund('ip-1');
    expect(events).toHaveLength(2);
    expect(events[0]).toMatchObject({ limiter: 'login', key: 'ip-1', cost: 1, shadow: false, mode: 'consume', decision: { allowed: true } });
    expect(events[1]).toMatchObject({ mode: 'peek', decision: { allowed: false } });
    subscription.dispose();
    policy.decide('ip-1');
    expect(events).toHaveLength(2);
  });
});

describe('RateLimitPolicy.execute', () => {
  it('runs the function while there is room, then rejects without running it', async () => {
    const clock = new FakeClock();
    const policy = new RateLimitPolicy({ algorithm: 'token-bucket', limit: 2, window: '1s' }, { clock, name: 'outbound' });
    let runs = 0;
    const task = () => ++runs;
    await expect(policy.execute(task)).resolves.toBe(1);
    await expect(policy.execute(task)).resolves.toBe(2);
    const error = await policy.execute(task).catch((caught: unknown) => caught);
    expect(runs).toBe(2);
    expect(isRateLimitExceededError(error)).toBe(true);
    expect(isPolicyRejection(error)).toBe(true);
    expect(error).toMatchObject({ limiter: 'outbound', retryAfterMs: 500, decision: { allowed: false } });
    expect((error as Error).message).toBe('Rate limit "outbound" exceeded; retry in 500 ms');
  });

  it('keys calls by runWithKey, and by the policy key for execute', async () => {
    const policy = new RateLimitPolicy({ algorithm: 'fixed-window', limit: 1, window: '1s' }, { clock: new FakeClock(), key: 'shared' });
    await policy.runWithKey('a', () => 'a', undefined);
    await policy.runWithKey('b', () => 'b', undefined);
    await expect(policy.runWithKey('a', () => 'a', undefined)).rejects.toBeInstanceOf(RateLimitExceededError);
    await policy.execute(() => 'shared');
    expect(policy.peek('shared')).toMatchObject({ allowed: false });
  });

  it('turns a synchronous throw into a rejection, and a throwing store into a rejection', async () => {
    const policy = new RateLimitPolicy({ limit: 5 });
    await expect(
      policy.execute(() => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    const broken = new RateLimitPolicy({ limit: 5 }, {
      store: { kind: 'broken', consume: () => { throw new Error('store down'); }, reset: () => undefined },
    });
    await expect(broken.execute(() => 1)).rejects.toThrow('store down');
  });

  it('refuses a cost above capacity at once, with no retry time, even with maxWait', async () => {
    const clock = new FakeClock();
    const policy = new RateLimitPolicy({ algorithm: 'gcra', limit: 2, window: '1s', cost: 3, maxWait: '1m' }, { clock });
    const error = await policy.execute(() => 1).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ retryAfterMs: undefined, message: 'Rate limit "default" refused a call whose cost exceeds its capacity' });
    expect(clock.pendingTimers).toBe(0);
  });

  it('does not charge a call whose context is already aborted', async () => {
    const policy = new RateLimitPolicy({ algorithm: 'fixed-window', limit: 1, window: '1s' }, { clock: new FakeClock() });
    const controller = new AbortController();
    controller.abort(new Error('client left'));
    await expect(policy.execute(() => 1, controller.signal)).rejects.toThrow('client left');
    expect(policy.peek('global')).toMatchObject({ allowed: true });
  });
});

describe('shadow mode', () => {
  it('runs refused calls anyway, counting and reporting them as refused', async () => {
    const policy = new RateLimitPolicy({ algorithm: 'fixed-window', limit: 1, window: '1s', mode: 'shadow' }, { clock: new FakeClock() });
    const events: RateLimitDecisionEvent[] = [];
    policy.onDecision((event) => events.push(event));
    await expect(policy.execute(() => 'first')).resolves.toBe('first');
    await expect(policy.execute(() => 'second')).resolves.toBe('second');
    expect(events.map((event) => [event.decision.allowed, event.shadow])).toEqual([
      [true, true],
      [false, true],
    ]);
    expect(policy.stats()).toEqual({ admitted: 1, rejected: 1 });
    // decide() still tells the truth; the caller enforces.
    expect(policy.decide('global')).toMatchObject({ allowed: false });
  });
});

describe('maxWait', () => {
  it('waits for room on the clock, then runs', async () => {
    const clock = new FakeClock();
    const policy = waiting(clock);
    await policy.execute(() => 'first');
    let settled: unknown;
    void policy.execute(() => 'second').then((value) => (settled = value));
    await flushMicrotasks();
    expect(clock.pendingTimers).toBe(1);
    await clock.advanceAsync(399);
    expect(settled).toBeUndefined();
    await clock.advanceAsync(1);
    expect(settled).toBe('second');
    expect(clock.pendingTimers).toBe(0);
  });

  it('waits again when another call took the room first, within maxWait', async () => {
    const clock = new FakeClock();
    const policy = waiting(clock);
    await policy.execute(() => 'first');
    const second = policy.execute(() => 'second');
    await flushMicrotasks();
    clock.advance(400);
    // The room frees at 400 and is taken before the waiter wakes up.
    expect(policy.decide('global')).toMatchObject({ allowed: true });
    await clock.advanceAsync(400);
    await expect(second).resolves.toBe('second');
    expect(clock.now()).toBe(800);
  });

  it('gives up at once when the wait exceeds maxWait or the deadline', async () => {
    const clock = new FakeClock();
    const policy = waiting(clock, '300ms');
    await policy.execute(() => 'first');
    await expect(policy.execute(() => 'late')).rejects.toMatchObject({ retryAfterMs: 400 });
    expect(clock.pendingTimers).toBe(0);

    const patient = waiting(clock, '10s');
    await patient.execute(() => 'first');
    const deadline = new CallContext(undefined, clock.now() + 400);
    await expect(patient.run(() => 'late', deadline)).rejects.toBeInstanceOf(RateLimitExceededError);
    expect(clock.pendingTimers).toBe(0);
  });

  it('gives up when a wait would pass maxWait counted from the first refusal', async () => {
    const clock = new FakeClock();
    const policy = waiting(clock, '700ms');
    await policy.execute(() => 'first');
    const second = policy.execute(() => 'second').catch((error: unknown) => error);
    await flushMicrotasks();
    clock.advance(400);
    policy.decide('global');
    // Woken at 400 to find the room gone, the next wait (to 800) passes 700: rejected.
    await clock.advanceAsync(0);
    expect(await second).toBeInstanceOf(RateLimitExceededError);
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects with the abort reason when aborted while waiting, leaving no timer', async () => {
    const clock = new FakeClock();
    const policy = waiting(clock);
    await policy.execute(() => 'first');
    const controller = new AbortController();
    let ran = false;
    const pending = policy.execute(() => (ran = true), controller.signal);
    await flushMicrotasks();
    expect(clock.pendingTimers).toBe(1);
    const reason = new Error('caller gave up');
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
    expect(clock.pendingTimers).toBe(0);
    await clock.advanceAsync(1000);
    expect(ran).toBe(false);
  });

  it('removes its abort listener when the wait ends', async () => {
    const clock = new FakeClock();
    const policy = waiting(clock);
    await policy.execute(() => 'first');
    const context = new CallContext();
    const pending = policy.run(() => 'second', context);
    await clock.advanceAsync(400);
    await expect(pending).resolves.toBe('second');
    // A later abort reaches no stale listener of ours (it would reject a settled promise or clear a dead timer).
    const listeners = (context as unknown as { listeners: unknown[] | undefined }).listeners;
    expect(listeners ?? []).toHaveLength(0);
  });

  it('an OperationAbortedError stands in for an abort without a reason', async () => {
    const clock = new FakeClock();
    const policy = waiting(clock);
    await policy.execute(() => 'first');
    const context = new CallContext();
    const pending = policy.run(() => 'second', context);
    await flushMicrotasks();
    context.abort(undefined);
    expect(isOperationAbortedError(await pending.catch((error: unknown) => error))).toBe(true);
    expect(clock.pendingTimers).toBe(0);
  });
});
