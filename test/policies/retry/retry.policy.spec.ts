import { describe, expect, it } from 'vitest';
import { FakeClock, flushMicrotasks } from '../../../lib/core/clock.js';
import { CallContext, NO_CONTEXT } from '../../../lib/core/context.js';
import { InvalidOptionError, isOperationAbortedError } from '../../../lib/core/errors.js';
import { BulkheadRejectedError } from '../../../lib/policies/bulkhead/bulkhead.error.js';
import { CircuitOpenError } from '../../../lib/policies/circuit-breaker/circuit-breaker.error.js';
import { RateLimitExceededError } from '../../../lib/policies/rate-limit/rate-limit.error.js';
import {
  RetryPolicy,
  type RetryEvent,
  type RetryGiveUpEvent,
  type RetryOptions,
} from '../../../lib/policies/retry/index.js';
import { catchError, drain, flaky, settle } from './helpers.js';

class TransientError extends Error {}
class FatalError extends Error {}
class StatusError extends Error {
  constructor(readonly status: number) {
    super(`status ${status}`);
  }
}

interface Harness {
  clock: FakeClock;
  policy: RetryPolicy;
  retries: RetryEvent[];
  giveUps: RetryGiveUpEvent[];
}

function harness(options: RetryOptions, random: () => number = () => 0.5): Harness {
  const clock = new FakeClock();
  const policy = new RetryPolicy(options, { clock, random });
  const retries: RetryEvent[] = [];
  const giveUps: RetryGiveUpEvent[] = [];
  policy.onRetry((event) => retries.push(event));
  policy.onGiveUp((event) => giveUps.push(event));
  return { clock, policy, retries, giveUps };
}

const errors = (count: number, make: (i: number) => unknown = (i) => new TransientError(`failure ${i + 1}`)) =>
  Array.from({ length: count }, (_, i) => make(i));

/** Always fails, each attempt with a new error object; counts the calls. */
function failing(make: (i: number) => unknown = (i) => new TransientError(`failure ${i + 1}`)) {
  const thrown: unknown[] = [];
  const fn = () => {
    const error = make(thrown.length);
    thrown.push(error);
    return Promise.reject(error);
  };
  return { fn, thrown };
}

async function delaysOf(options: RetryOptions, random: () => number = () => 0.5): Promise<number[]> {
  const { clock, policy, retries } = harness({ maxAttempts: 6, ...options }, random);
  const { fn, thrown } = failing();
  const result = settle(policy.execute(fn));
  await drain(clock);
  expect((await result).ok).toBe(false);
  expect(thrown).toHaveLength(options.maxAttempts ?? 6);
  return retries.map((event) => event.delayMs);
}

async function firstDelay(options: RetryOptions, error: unknown): Promise<number> {
  const { clock, policy, retries } = harness({ maxAttempts: 2, backoff: 'constant', delay: 100, jitter: 'none', ...options });
  const result = settle(policy.execute(flaky([error], 'ok', clock).fn));
  await drain(clock);
  expect(await result).toEqual({ ok: true, value: 'ok' });
  expect(clock.now()).toBe(retries[0]!.delayMs);
  return retries[0]!.delayMs;
}

const rejections = () => [
  new CircuitOpenError('payments', 'OPEN', 1000),
  new RateLimitExceededError('api', { allowed: false, retryAfterMs: 500, limits: [] }),
  new BulkheadRejectedError('db', 'full', 10, 5),
];

describe('RetryPolicy options', () => {
  it('resolves defaults and durations', () => {
    const policy = new RetryPolicy();
    expect(policy.options).toMatchObject({
      maxAttempts: 3,
      backoff: 'exponential',
      delay: 100,
      multiplier: 2,
      maxDelay: 30_000,
      jitter: 'full',
      retryOn: undefined,
      abortOn: undefined,
      honorRetryAfter: true,
      retryRejections: false,
    });
    const custom = new RetryPolicy({ delay: '2s', maxDelay: '1m', retryOn: TransientError });
    expect(custom.options.delay).toBe(2000);
    expect(custom.options.maxDelay).toBe(60_000);
    expect(custom.options.retryOn?.(new TransientError())).toBe(true);
    expect(custom.options.retryOn?.(new FatalError())).toBe(false);
  });

  it.each([
    [{ maxAttempts: 0 }, 'maxAttempts'],
    [{ maxAttempts: 1.5 }, 'maxAttempts'],
    [{ maxAttempts: '3' }, 'maxAttempts'],
    [{ backoff: 'fibonacci' }, 'backoff'],
    [{ jitter: 'some' }, 'jitter'],
    [{ delay: -1 }, 'delay'],
    [{ delay: '1 week' }, 'delay'],
    [{ maxDelay: 2 ** 31 }, 'maxDelay'],
    [{ delay: '10s', maxDelay: '5s' }, 'maxDelay'],
    [{ multiplier: 0.5 }, 'multiplier'],
    [{ multiplier: Number.NaN }, 'multiplier'],
    [{ retryOn: 'TransientError' }, 'retryOn'],
    [{ abortOn: [FatalError, 42] }, 'abortOn[1]'],
    [{ honorRetryAfter: 'yes' }, 'honorRetryAfter'],
    [{ retryRejections: 1 }, 'retryRejections'],
    [{ maxAttempt: 3 }, 'maxAttempt'],
  ])('rejects %j naming %s', (options, option) => {
    const caught = catchError(() => new RetryPolicy(options as RetryOptions));
    expect(caught).toBeInstanceOf(InvalidOptionError);
    expect((caught as InvalidOptionError).option).toBe(option);
    expect((caught as InvalidOptionError).message).toContain(`"${option}"`);
  });

  it('rejects a non-object', () => {
    expect(() => new RetryPolicy(null as unknown as RetryOptions)).toThrow(InvalidOptionError);
  });
});

describe('RetryPolicy success path', () => {
  it('runs once, schedules nothing and emits nothing when the first attempt succeeds', async () => {
    const { clock, policy, retries, giveUps } = harness({});
    let calls = 0;
    await expect(policy.execute(async () => ++calls)).resolves.toBe(1);
    expect(calls).toBe(1);
    expect(clock.pendingTimers).toBe(0);
    expect(retries).toEqual([]);
    expect(giveUps).toEqual([]);
  });

  it('accepts a synchronous task and returns a promise', async () => {
    const { policy } = harness({});
    const result = policy.execute(() => 'sync');
    expect(result).toBeInstanceOf(Promise);
    await expect(result).resolves.toBe('sync');
  });

  it('gives the task the inert context when there is none, and the same context on every attempt', async () => {
    const { clock, policy } = harness({ backoff: 'constant', jitter: 'none' });
    const seen: CallContext[] = [];
    await policy.execute((ctx) => {
      seen.push(ctx);
      return 1;
    });
    expect(seen).toEqual([NO_CONTEXT]);

    const context = new CallContext();
    seen.length = 0;
    const result = settle(
      policy.execute((ctx) => {
        seen.push(ctx);
        return seen.length < 3 ? Promise.reject(new TransientError()) : 'done';
      }, context),
    );
    await drain(clock);
    expect(await result).toEqual({ ok: true, value: 'done' });
    expect(seen).toHaveLength(3);
    for (const ctx of seen) expect(ctx).toBe(context);
  });

  it('retries after failures and returns the first success', async () => {
    const { clock, policy, retries, giveUps } = harness({ backoff: 'constant', delay: 100, jitter: 'none' });
    const { fn, calls } = flaky(errors(2), 'ok', clock);
    const result = settle(policy.execute(fn));
    await drain(clock);
    expect(await result).toEqual({ ok: true, value: 'ok' });
    expect(calls).toEqual([0, 100, 200]);
    expect(retries.map((event) => [event.attempt, event.delayMs])).toEqual([
      [1, 100],
      [2, 100],
    ]);
    expect(giveUps).toEqual([]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('retries a synchronous throw', async () => {
    const { clock, policy } = harness({ jitter: 'none' });
    let calls = 0;
    const result = settle(
      policy.execute(() => {
        if (++calls === 1) throw new TransientError('sync');
        return 'recovered';
      }),
    );
    await drain(clock);
    expect(await result).toEqual({ ok: true, value: 'recovered' });
    expect(calls).toBe(2);
  });
});

describe('RetryPolicy delays', () => {
  it('follows each backoff kind without jitter', async () => {
    expect(await delaysOf({ backoff: 'constant', delay: 50, jitter: 'none' })).toEqual([50, 50, 50, 50, 50]);
    expect(await delaysOf({ backoff: 'linear', delay: 50, jitter: 'none' })).toEqual([50, 100, 150, 200, 250]);
    expect(await delaysOf({ backoff: 'exponential', delay: 50, jitter: 'none' })).toEqual([50, 100, 200, 400, 800]);
    expect(await delaysOf({ backoff: 'exponential', delay: 50, multiplier: 3, jitter: 'none' })).toEqual([50, 150, 450, 1350, 4050]);
  });

  it('caps delays at maxDelay', async () => {
    expect(await delaysOf({ delay: 100, maxDelay: 500, jitter: 'none' })).toEqual([100, 200, 400, 500, 500]);
    expect(await delaysOf({ backoff: 'linear', delay: 100, maxDelay: 250, jitter: 'none' })).toEqual([100, 200, 250, 250, 250]);
  });

  it('applies each jitter with the injected random', async () => {
    expect(await delaysOf({ delay: 100, jitter: 'full' })).toEqual([50, 100, 200, 400, 800]);
    expect(await delaysOf({ delay: 100, jitter: 'equal' })).toEqual([75, 150, 300, 600, 1200]);
    expect(await delaysOf({ delay: 100, maxDelay: 1000, jitter: 'decorrelated' })).toEqual([200, 350, 575, 912.5, 1000]);
    expect(await delaysOf({ delay: 100, jitter: 'equal' }, () => 0)).toEqual([50, 100, 200, 400, 800]);
  });

  it('sleeps exactly the delay it reports', async () => {
    const { clock, policy, retries } = harness({ maxAttempts: 4, delay: 100, jitter: 'equal' }, () => 0.3);
    const { fn, calls } = flaky(errors(3), 'ok', clock);
    const result = settle(policy.execute(fn));
    await drain(clock);
    expect((await result).ok).toBe(true);
    let at = 0;
    const expected = [0];
    for (const event of retries) expected.push((at += event.delayMs));
    expect(calls).toEqual(expected);
  });

  it('retries at once, without a timer, when the delay is zero', async () => {
    const { clock, policy } = harness({ delay: 0, jitter: 'none' });
    const { fn, calls } = flaky(errors(2), 'ok', clock);
    await expect(policy.execute(fn)).resolves.toBe('ok');
    expect(calls).toEqual([0, 0, 0]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('uses Math.random when no random is injected', async () => {
    const clock = new FakeClock();
    const policy = new RetryPolicy({ maxAttempts: 2, delay: 1000, jitter: 'full' }, { clock });
    const delays: number[] = [];
    policy.onRetry((event) => delays.push(event.delayMs));
    const result = settle(policy.execute(() => Promise.reject(new TransientError())));
    await drain(clock);
    await result;
    expect(delays).toHaveLength(1);
    expect(delays[0]).toBeGreaterThanOrEqual(0);
    expect(delays[0]).toBeLessThan(1000);
  });
});

describe('RetryPolicy Retry-After', () => {
  it('waits the longer of the backoff and the delay the error carries', async () => {
    expect(await firstDelay({}, Object.assign(new TransientError(), { retryAfterMs: 700 }))).toBe(700);
    expect(await firstDelay({}, Object.assign(new TransientError(), { retryAfter: 2 }))).toBe(2000);
    expect(await firstDelay({}, Object.assign(new TransientError(), { retryAfter: '3' }))).toBe(3000);
    expect(await firstDelay({ delay: 500 }, Object.assign(new TransientError(), { retryAfterMs: 100 }))).toBe(500);
  });

  it('reads a Date against the wall clock', async () => {
    const delay = await firstDelay({}, Object.assign(new TransientError(), { retryAfter: new Date(Date.now() + 5000) }));
    expect(delay).toBeGreaterThan(4000);
    expect(delay).toBeLessThanOrEqual(5000);
  });

  it('caps the carried delay at maxDelay', async () => {
    expect(await firstDelay({ maxDelay: 1000 }, Object.assign(new TransientError(), { retryAfterMs: 60_000 }))).toBe(1000);
  });

  it('ignores the carried delay when honorRetryAfter is false', async () => {
    expect(await firstDelay({ honorRetryAfter: false }, Object.assign(new TransientError(), { retryAfterMs: 700 }))).toBe(100);
  });
});

describe('RetryPolicy giving up', () => {
  it('makes at most maxAttempts attempts and re-throws the last error unchanged', async () => {
    const { clock, policy, giveUps } = harness({ maxAttempts: 4 });
    const { fn, thrown } = failing();
    const result = settle(policy.execute(fn));
    await drain(clock);
    const outcome = await result;
    expect(thrown).toHaveLength(4);
    expect(outcome).toEqual({ ok: false, error: thrown[3] });
    expect(outcome.ok === false && outcome.error).toBe(thrown[3]);
    expect(giveUps).toEqual([{ attempts: 4, error: thrown[3], reason: 'exhausted' }]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('does not retry at all with maxAttempts 1', async () => {
    const { policy, retries, giveUps } = harness({ maxAttempts: 1 });
    const error = new TransientError();
    let calls = 0;
    await expect(
      policy.execute(() => {
        calls++;
        throw error;
      }),
    ).rejects.toBe(error);
    expect(calls).toBe(1);
    expect(retries).toEqual([]);
    expect(giveUps).toEqual([{ attempts: 1, error, reason: 'exhausted' }]);
  });

  it('retries only what retryOn accepts (class, predicate, list)', async () => {
    const cases: Array<[RetryOptions['retryOn'], unknown, boolean]> = [
      [TransientError, new TransientError(), true],
      [TransientError, new FatalError(), false],
      [(error) => error instanceof StatusError && error.status >= 500, new StatusError(503), true],
      [(error) => error instanceof StatusError && error.status >= 500, new StatusError(404), false],
      [[FatalError, (error) => error instanceof StatusError], new StatusError(400), true],
      [[FatalError, (error) => error instanceof StatusError], new TransientError(), false],
    ];
    for (const [retryOn, error, retried] of cases) {
      const { clock, policy, giveUps } = harness({ maxAttempts: 2, retryOn });
      let calls = 0;
      const result = settle(
        policy.execute(() => {
          calls++;
          return Promise.reject(error);
        }),
      );
      await drain(clock);
      expect(await result).toEqual({ ok: false, error });
      expect(calls).toBe(retried ? 2 : 1);
      expect(giveUps[0]!.reason).toBe(retried ? 'exhausted' : 'not-retryable');
    }
  });

  it('never retries what abortOn matches, even when retryOn accepts it', async () => {
    const cases: Array<[RetryOptions, unknown]> = [
      [{ abortOn: FatalError }, new FatalError()],
      [{ abortOn: (error) => error instanceof StatusError && error.status === 401 }, new StatusError(401)],
      [{ abortOn: [FatalError, StatusError], retryOn: () => true }, new StatusError(500)],
    ];
    for (const [options, error] of cases) {
      const { policy, giveUps } = harness({ maxAttempts: 5, ...options });
      let calls = 0;
      await expect(
        policy.execute(() => {
          calls++;
          return Promise.reject(error);
        }),
      ).rejects.toBe(error);
      expect(calls).toBe(1);
      expect(giveUps).toEqual([{ attempts: 1, error, reason: 'not-retryable' }]);
    }
    const { clock, policy } = harness({ maxAttempts: 2, abortOn: FatalError });
    const result = settle(policy.execute(flaky([new TransientError()], 'ok', clock).fn));
    await drain(clock);
    expect(await result).toEqual({ ok: true, value: 'ok' });
  });

  it('never retries our own refusals', async () => {
    for (const error of rejections()) {
      const { policy, giveUps } = harness({ maxAttempts: 5, retryOn: () => true });
      let calls = 0;
      await expect(
        policy.execute(() => {
          calls++;
          return Promise.reject(error);
        }),
      ).rejects.toBe(error);
      expect(calls).toBe(1);
      expect(giveUps).toEqual([{ attempts: 1, error, reason: 'not-retryable' }]);
    }
  });

  it('retries our own refusals with retryRejections, honouring their retry-after', async () => {
    const [open, limited, full] = rejections();
    const { clock, policy, retries } = harness({ maxAttempts: 4, retryRejections: true, backoff: 'constant', delay: 100, jitter: 'none' });
    const { fn, calls } = flaky([open, limited, full], 'ok', clock);
    const result = settle(policy.execute(fn));
    await drain(clock);
    expect(await result).toEqual({ ok: true, value: 'ok' });
    expect(retries.map((event) => event.delayMs)).toEqual([1000, 500, 100]);
    expect(calls).toEqual([0, 1000, 1500, 1600]);
  });

  it('still lets abortOn stop a refusal when retryRejections is on', async () => {
    const { policy } = harness({ maxAttempts: 4, retryRejections: true, abortOn: CircuitOpenError });
    let calls = 0;
    await expect(
      policy.execute(() => {
        calls++;
        throw new CircuitOpenError('x', 'OPEN', 1000);
      }),
    ).rejects.toBeInstanceOf(CircuitOpenError);
    expect(calls).toBe(1);
  });
});

describe('RetryPolicy aborts and deadlines', () => {
  it('stops at once when aborted during a backoff sleep, with the abort reason, leaving no timer or listener', async () => {
    const { clock, policy, giveUps } = harness({ delay: 10_000, jitter: 'none', maxAttempts: 5 });
    const context = new CallContext();
    const { fn, thrown } = failing();
    const result = settle(policy.execute(fn, context));
    await flushMicrotasks();
    expect(clock.pendingTimers).toBe(1);
    const reason = new Error('client went away');
    context.abort(reason);
    expect(clock.pendingTimers).toBe(0);
    expect(await result).toEqual({ ok: false, error: reason });
    expect(clock.now()).toBe(0);
    expect(thrown).toHaveLength(1);
    expect(giveUps).toEqual([{ attempts: 1, error: reason, reason: 'aborted' }]);
    await drain(clock);
    expect(thrown).toHaveLength(1);
  });

  it('stops when the caller aborts through an AbortSignal', async () => {
    const { clock, policy } = harness({ delay: 10_000, jitter: 'none' });
    const controller = new AbortController();
    const { fn, thrown } = failing();
    const result = settle(policy.execute(fn, controller.signal));
    await flushMicrotasks();
    controller.abort();
    const outcome = await result;
    expect(outcome.ok).toBe(false);
    expect(outcome.ok === false && outcome.error).toBe(controller.signal.reason);
    expect(clock.pendingTimers).toBe(0);
    expect(thrown).toHaveLength(1);
  });

  it('stops when an onRetry listener aborts the call before the sleep', async () => {
    const { clock, policy } = harness({ delay: 100, jitter: 'none' });
    const context = new CallContext();
    const reason = new Error('stop');
    policy.onRetry(() => context.abort(reason));
    const { fn, thrown } = failing();
    await expect(policy.execute(fn, context)).rejects.toBe(reason);
    expect(thrown).toHaveLength(1);
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects with an OperationAbortedError when the abort carries no reason', async () => {
    const { policy } = harness({ delay: 10_000, jitter: 'none' });
    const context = new CallContext();
    const result = settle(policy.execute(failing().fn, context));
    await flushMicrotasks();
    context.abort(undefined);
    const outcome = await result;
    expect(outcome.ok === false && isOperationAbortedError(outcome.error)).toBe(true);
  });

  it('does not retry an attempt that failed after the call was aborted, and re-throws its error', async () => {
    const { clock, policy, giveUps } = harness({ maxAttempts: 5 });
    const context = new CallContext();
    const error = new TransientError('aborted work');
    let calls = 0;
    await expect(
      policy.execute((ctx) => {
        calls++;
        ctx.abort(new Error('deadline'));
        return Promise.reject(error);
      }, context),
    ).rejects.toBe(error);
    expect(calls).toBe(1);
    expect(clock.pendingTimers).toBe(0);
    expect(giveUps).toEqual([{ attempts: 1, error, reason: 'aborted' }]);
  });

  it('aborts with the parent: an enclosing context that aborts stops the retry of a derived one', async () => {
    const { clock, policy } = harness({ delay: 1000, jitter: 'none' });
    const outer = new CallContext();
    const inner = new CallContext(outer);
    const result = settle(policy.execute(failing().fn, inner));
    await flushMicrotasks();
    outer.abort(new Error('outer gone'));
    const outcome = await result;
    expect(outcome.ok === false && (outcome.error as Error).message).toBe('outer gone');
    expect(clock.pendingTimers).toBe(0);
  });

  it('removes its abort listener once the sleep ends', async () => {
    const { clock, policy } = harness({ delay: 100, jitter: 'none' });
    const context = new CallContext();
    const result = settle(policy.execute(flaky(errors(2), 'ok', clock).fn, context));
    await drain(clock);
    expect(await result).toEqual({ ok: true, value: 'ok' });
    expect(context['listeners'] ?? []).toHaveLength(0);
  });

  it('gives up at once, re-throwing the last error, when the next delay ends at or past the deadline', async () => {
    const { clock, policy, retries, giveUps } = harness({ maxAttempts: 10, backoff: 'constant', delay: 100, jitter: 'none' });
    const context = new CallContext(undefined, 250);
    const { fn, thrown } = failing();
    const result = settle(policy.execute(fn, context));
    await drain(clock);
    const outcome = await result;
    expect(thrown).toHaveLength(3);
    expect(outcome).toEqual({ ok: false, error: thrown[2] });
    expect(clock.now()).toBe(200);
    expect(retries).toHaveLength(2);
    expect(giveUps).toEqual([{ attempts: 3, error: thrown[2], reason: 'deadline' }]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('counts a Retry-After against the deadline', async () => {
    const { clock, policy, giveUps } = harness({ maxAttempts: 10, delay: 10, jitter: 'none' });
    const context = new CallContext(undefined, 1000);
    const error = Object.assign(new TransientError(), { retryAfter: 5 });
    await expect(policy.execute(() => Promise.reject(error), context)).rejects.toBe(error);
    expect(clock.now()).toBe(0);
    expect(giveUps[0]!.reason).toBe('deadline');
  });
});

describe('RetryPolicy events', () => {
  it('emits onRetry before sleeping, so a listener can drive a fake clock synchronously', async () => {
    const { clock, policy } = harness({ backoff: 'constant', delay: 100, jitter: 'none', maxAttempts: 3 });
    const seen: Array<{ at: number; calls: number; event: RetryEvent }> = [];
    const { fn, calls } = flaky(errors(2), 'ok', clock);
    policy.onRetry((event) => {
      seen.push({ at: clock.now(), calls: calls.length, event });
      clock.advance(event.delayMs);
    });
    await expect(policy.execute(fn)).resolves.toBe('ok');
    expect(seen.map(({ at, calls: made, event }) => [at, made, event.attempt, event.delayMs])).toEqual([
      [0, 1, 1, 100],
      [100, 2, 2, 100],
    ]);
    expect(calls).toEqual([0, 100, 200]);
  });

  it('lets a listener advance the clock asynchronously as well', async () => {
    const { clock, policy } = harness({ delay: 100, jitter: 'none', maxAttempts: 4 });
    policy.onRetry((event) => void clock.advanceAsync(event.delayMs));
    const { fn, thrown } = failing();
    const outcome = await settle(policy.execute(fn));
    expect(thrown).toHaveLength(4);
    expect(outcome).toEqual({ ok: false, error: thrown[3] });
    expect(clock.now()).toBe(100 + 200 + 400);
  });

  it('reports the failed attempt and its error', async () => {
    const { clock, policy, retries } = harness({ maxAttempts: 3 });
    const list = errors(2);
    const result = settle(policy.execute(flaky(list, 'ok', clock).fn));
    await drain(clock);
    await result;
    expect(retries.map((event) => [event.attempt, event.error])).toEqual([
      [1, list[0]],
      [2, list[1]],
    ]);
  });

  it('stops emitting to a disposed listener', async () => {
    const { clock, policy } = harness({ maxAttempts: 3 });
    const seen: number[] = [];
    const subscription = policy.onRetry((event) => seen.push(event.attempt));
    subscription.dispose();
    const result = settle(policy.execute(failing().fn));
    await drain(clock);
    await result;
    expect(seen).toEqual([]);
  });
});
