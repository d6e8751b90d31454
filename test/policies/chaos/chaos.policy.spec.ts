import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock, flushMicrotasks } from '../../../lib/core/clock.js';
import { CallContext, getAbortSignal } from '../../../lib/core/context.js';
import { MAX_TIMER_MS } from '../../../lib/core/duration.js';
import { InvalidOptionError, isOperationAbortedError, isResilienceError, OperationAbortedError } from '../../../lib/core/errors.js';
import { Pipeline } from '../../../lib/core/pipeline.js';
import { isPolicyRejection } from '../../../lib/core/rejection.js';
import { BulkheadPolicy } from '../../../lib/policies/bulkhead/index.js';
import {
  ChaosInjectedError,
  ChaosNotAllowedError,
  ChaosPolicy,
  isChaosInjectedError,
  isChaosNotAllowedError,
  type ChaosInjectEvent,
} from '../../../lib/policies/chaos/index.js';
import { CircuitBreakerPolicy } from '../../../lib/policies/circuit-breaker/index.js';
import { RetryPolicy } from '../../../lib/policies/retry/index.js';
import { catchError, settle } from '../retry/helpers.js';
import { gate, outcome } from '../../support/promises.js';

/** Random numbers from a list, in turn; counts the draws. Fails loudly when the list runs out. */
function draws(...values: number[]): (() => number) & { taken: number } {
  const random = Object.assign(
    () => {
      if (random.taken >= values.length) throw new Error(`random drawn ${random.taken + 1} times, only ${values.length} values given`);
      return values[random.taken++]!;
    },
    { taken: 0 },
  );
  return random;
}

const dev = { production: false } as const;

describe('ChaosPolicy options', () => {
  it('is enabled with no fault by default, named "chaos"', async () => {
    const random = draws();
    const chaos = new ChaosPolicy({}, { ...dev, random });
    expect(chaos.name).toBe('chaos');
    expect(chaos.enabled).toBe(true);
    await expect(chaos.execute(() => 'ok')).resolves.toBe('ok');
    expect(random.taken).toBe(0);
    expect(chaos.stats()).toEqual({ calls: 1, latency: 0, errors: 0, aborts: 0 });
  });

  it('accepts rates at both ends, a range of delays, and error + abort rates adding up to exactly 1', () => {
    expect(() => new ChaosPolicy({ latency: { rate: 0, delay: 0 }, error: { rate: 1 } }, dev)).not.toThrow();
    expect(() => new ChaosPolicy({ latency: { rate: 1, delay: ['1ms', '1m'] }, error: { rate: 0.7 }, abort: { rate: 0.3 } }, dev)).not.toThrow();
    expect(() => new ChaosPolicy({ latency: { rate: 0.5, delay: [5, 5] } }, dev)).not.toThrow();
  });

  it.each([
    [{ latency: { rate: -0.1, delay: 5 } }, 'invalid option "latency.rate": got -0.1; expected a number between 0 and 1'],
    [{ latency: { rate: 1.5, delay: 5 } }, 'invalid option "latency.rate": got 1.5'],
    [{ error: { rate: Number.NaN } }, 'invalid option "error.rate": got NaN'],
    [{ error: { rate: '0.5' } }, 'invalid option "error.rate": got "0.5"'],
    [{ abort: {} }, 'invalid option "abort.rate": got undefined; expected a number between 0 and 1'],
    [{ latency: { rate: 0.5 } }, 'invalid option "latency.delay": got undefined'],
    [{ latency: { rate: 0.5, delay: 'soon' } }, 'invalid option "latency.delay": got "soon"'],
    [{ latency: { rate: 0.5, delay: MAX_TIMER_MS + 1 } }, `invalid option "latency.delay": got ${MAX_TIMER_MS + 1}`],
    [{ latency: { rate: 0.5, delay: ['2s', '1s'] } }, 'invalid option "latency.delay[1]": got "1s"; expected a duration ≥ latency.delay[0] (2000 ms)'],
    [{ latency: { rate: 0.5, delay: [1] } }, 'invalid option "latency.delay": got [1]; expected a duration, or [min, max] of two durations'],
    [{ latency: { rate: 0.5, delay: [-1, 5] } }, 'invalid option "latency.delay[0]": got -1'],
    [{ latency: 0.5 }, 'invalid option "latency": got 0.5; expected an object with rate, delay'],
    [{ error: { rate: 0.6 }, abort: { rate: 0.5 } }, 'invalid option "error.rate": got 0.6; expected a rate ≤ 0.5 (error.rate + abort.rate ≤ 1'],
    [{ abort: { rate: 0.5, after: 3 } }, 'invalid option "abort.after": got 3; expected no such option; known options: rate'],
    [{ erorr: { rate: 1 } }, 'invalid option "erorr": got {"rate":1}; expected no such option; known options: name, enabled, latency, error, abort'],
    [{ enabled: 'yes' }, 'invalid option "enabled": got "yes"; expected true or false'],
    [{ name: '' }, 'invalid option "name": got ""; expected a non-empty string'],
  ])('refuses %j, naming the option and the value', (options, message) => {
    const build = () => new ChaosPolicy(options as never, dev);
    expect(build).toThrow(InvalidOptionError);
    expect(build).toThrow(message);
  });

  it('refuses something that is not an options object', () => {
    expect(() => new ChaosPolicy(null as never)).toThrow('invalid option "chaos": got null; expected an options object');
  });
});

describe('ChaosPolicy in production', () => {
  const original = process.env.NODE_ENV;
  afterEach(() => {
    process.env.NODE_ENV = original;
  });

  it('is built disabled whatever `enabled` says, injects nothing, and enable() says what to set', async () => {
    const random = draws();
    const chaos = new ChaosPolicy({ name: 'payments', enabled: true, error: { rate: 1 } }, { production: true, random });
    expect(chaos.enabled).toBe(false);
    await expect(chaos.execute(() => 'ok')).resolves.toBe('ok');
    expect(random.taken).toBe(0);

    const error = catchError(() => chaos.enable());
    expect(error).toBeInstanceOf(ChaosNotAllowedError);
    expect(isChaosNotAllowedError(error)).toBe(true);
    expect((error as Error).message).toContain('Chaos "payments" cannot be enabled');
    expect((error as Error).message).toContain('ResilienceModule.forRoot({ chaos: { allowInProduction: true } })');
    expect(chaos.enabled).toBe(false);
  });

  it('refuses update({ enabled: true }) without applying its faults, and accepts updates that keep it off', async () => {
    const chaos = new ChaosPolicy({ error: { rate: 1 } }, { production: true, allowInProduction: false });
    expect(() => chaos.update({ enabled: true, latency: { rate: 1, delay: 10 } })).toThrow(ChaosNotAllowedError);
    expect(chaos.enabled).toBe(false);
    expect(() => chaos.update({ abort: { rate: 0.5 } })).not.toThrow();
    expect(() => chaos.update({ enabled: false })).not.toThrow();
    await expect(chaos.execute(() => 'ok')).resolves.toBe('ok');
  });

  it('follows NODE_ENV when `production` is not given', () => {
    process.env.NODE_ENV = 'production';
    expect(new ChaosPolicy({ error: { rate: 1 } }).enabled).toBe(false);
    process.env.NODE_ENV = 'development';
    expect(new ChaosPolicy({ error: { rate: 1 } }).enabled).toBe(true);
  });

  it('injects in production when allowed explicitly', async () => {
    const chaos = new ChaosPolicy({ error: { rate: 1 } }, { production: true, allowInProduction: true, random: draws(0.5) });
    expect(chaos.enabled).toBe(true);
    await expect(chaos.execute(() => 'ok')).rejects.toBeInstanceOf(ChaosInjectedError);
    chaos.disable();
    chaos.enable();
    expect(chaos.enabled).toBe(true);
  });
});

describe('ChaosPolicy switching and updates', () => {
  it('disabled, runs the task untouched: the same promise, no draw, no event, no count', async () => {
    const random = draws();
    const chaos = new ChaosPolicy({ enabled: false, error: { rate: 1 }, latency: { rate: 1, delay: 10 } }, { ...dev, random });
    const events: ChaosInjectEvent[] = [];
    chaos.onInject((event) => events.push(event));
    const result = Promise.resolve('ok');
    expect(chaos.run(() => result, undefined)).toBe(result);
    expect(random.taken).toBe(0);
    expect(events).toEqual([]);
    expect(chaos.stats()).toEqual({ calls: 0, latency: 0, errors: 0, aborts: 0 });
  });

  it('enable() and disable() switch injection at run time', async () => {
    const chaos = new ChaosPolicy({ error: { rate: 1 } }, { ...dev, random: () => 0.5 });
    await expect(chaos.execute(() => 'ok')).rejects.toBeInstanceOf(ChaosInjectedError);
    chaos.disable();
    expect(chaos.enabled).toBe(false);
    await expect(chaos.execute(() => 'ok')).resolves.toBe('ok');
    chaos.enable();
    await expect(chaos.execute(() => 'ok')).rejects.toBeInstanceOf(ChaosInjectedError);
    expect(chaos.stats()).toEqual({ calls: 2, latency: 0, errors: 2, aborts: 0 });
  });

  it('update() replaces the faults; an invalid update changes nothing', async () => {
    const clock = new FakeClock();
    const chaos = new ChaosPolicy({ error: { rate: 1 } }, { ...dev, clock, random: () => 0.5 });
    expect(() => chaos.update({ latency: { rate: 1, delay: 10 }, error: { rate: 2 } })).toThrow('invalid option "error.rate": got 2');
    expect(() => chaos.update({ latency: { rate: 1, delay: 10 }, enabled: false, name: 'x' } as never)).toThrow('invalid option "name"');
    expect(chaos.enabled).toBe(true);
    await expect(chaos.execute(() => 'ok')).rejects.toBeInstanceOf(ChaosInjectedError);
    expect(clock.pendingTimers).toBe(0);

    chaos.update({ latency: { rate: 1, delay: 10 } });
    const call = outcome(chaos.execute(() => 'ok'));
    await flushMicrotasks();
    expect(call.settled).toBe(false);
    await clock.advanceAsync(10);
    expect(call).toEqual({ settled: true, value: 'ok' });
    expect(chaos.enabled).toBe(true);

    chaos.update({ enabled: false });
    expect(chaos.enabled).toBe(false);
    chaos.update({ enabled: true, error: { rate: 1 } });
    await expect(chaos.execute(() => 'ok')).rejects.toBeInstanceOf(ChaosInjectedError);
  });
});

describe('ChaosPolicy errors', () => {
  it('fails without running the method, with a ChaosInjectedError that is not a policy refusal', async () => {
    const chaos = new ChaosPolicy({ name: 'pricing', error: { rate: 1 } }, { ...dev, random: () => 0.99 });
    const events: ChaosInjectEvent[] = [];
    chaos.onInject((event) => events.push(event));
    let ran = false;
    const result = await settle(chaos.execute(() => (ran = true)));
    expect(ran).toBe(false);
    expect(result.ok).toBe(false);
    const error = (result as { error: unknown }).error;
    expect(isChaosInjectedError(error)).toBe(true);
    expect(isResilienceError(error)).toBe(true);
    expect(isPolicyRejection(error)).toBe(false);
    expect(error).toMatchObject({ policy: 'pricing', fault: 'error', message: 'Chaos "pricing" injected a failure' });
    expect(isChaosInjectedError(new Error('x'))).toBe(false);
    expect(events).toEqual([{ policy: 'pricing', fault: 'error' }]);
    expect(chaos.stats()).toEqual({ calls: 1, latency: 0, errors: 1, aborts: 0 });
  });

  it('fails with the configured value, or with what the factory builds for each call', async () => {
    const fixed = new Error('fixed');
    const same = new ChaosPolicy({ error: { rate: 1, error: fixed } }, { ...dev, random: () => 0 });
    await expect(same.execute(() => 'ok')).rejects.toBe(fixed);
    await expect(same.execute(() => 'ok')).rejects.toBe(fixed);

    let built = 0;
    const factory = new ChaosPolicy({ error: { rate: 1, error: () => new Error(`built ${++built}`) } }, { ...dev, random: () => 0 });
    await expect(factory.execute(() => 'ok')).rejects.toThrow('built 1');
    await expect(factory.execute(() => 'ok')).rejects.toThrow('built 2');

    const boom = new Error('factory threw');
    const throwing = new ChaosPolicy({ error: { rate: 1, error: () => { throw boom; } } }, { ...dev, random: () => 0 });
    await expect(throwing.execute(() => 'ok')).rejects.toBe(boom);
  });

  it('counts as a failure for a breaker and is retried by a retry', async () => {
    const chaos = new ChaosPolicy({ error: { rate: 1 } }, { ...dev, random: () => 0.5 });
    const breaker = new CircuitBreakerPolicy({ windowSize: 4, minimumCalls: 4, failureRateThreshold: 50, openDuration: '1m' });
    const retry = new RetryPolicy({ maxAttempts: 4, delay: 0, jitter: 'none' });
    const pipeline = new Pipeline({ retry, circuitBreaker: breaker, chaos });
    let ran = 0;
    const result = await settle(pipeline.execute(() => ++ran));
    expect(ran).toBe(0);
    expect(chaos.stats().errors).toBe(4);
    expect(breaker.state).toBe('OPEN');
    expect(result.ok).toBe(false);
  });
});

describe('ChaosPolicy aborts', () => {
  it('starts the method, fires its signal while it runs, and rejects with OperationAbortedError once it settles', async () => {
    const chaos = new ChaosPolicy({ name: 'inventory', abort: { rate: 1 } }, { ...dev, random: () => 0.2 });
    const events: ChaosInjectEvent[] = [];
    chaos.onInject((event) => events.push(event));
    const parent = new CallContext();
    const work = gate();
    const seen: { atStart?: boolean; fired?: unknown; ambient?: AbortSignal } = {};
    const call = outcome(
      chaos.execute(({ signal }) => {
        seen.atStart = signal.aborted;
        seen.ambient = getAbortSignal();
        signal.addEventListener('abort', () => (seen.fired = signal.reason));
        return work.promise;
      }, parent),
    );
    await flushMicrotasks();
    expect(seen.atStart).toBe(false);
    expect(seen.fired).toBeInstanceOf(OperationAbortedError);
    expect(seen.ambient?.aborted).toBe(true);
    expect(parent.aborted).toBe(false);
    // The method ignores its signal: the caller waits for it, then gets the abort.
    expect(call.settled).toBe(false);
    work.open('done anyway');
    await flushMicrotasks();
    expect(call.settled).toBe(true);
    expect(isOperationAbortedError(call.error)).toBe(true);
    expect(call.error).toBe(seen.fired);
    const cause = (call.error as Error).cause;
    expect(isChaosInjectedError(cause)).toBe(true);
    expect(cause).toMatchObject({ policy: 'inventory', fault: 'abort' });
    expect(events).toEqual([{ policy: 'inventory', fault: 'abort' }]);
    expect(chaos.stats()).toEqual({ calls: 1, latency: 0, errors: 0, aborts: 1 });
  });

  it('fires the signal while the method runs even when it starts a few promise hops later (as a Nest handler does)', async () => {
    const chaos = new ChaosPolicy({ abort: { rate: 1 } }, { ...dev, random: () => 0 });
    const seen: { atStart?: boolean; ambient?: boolean } = {};
    const result = await settle(
      chaos.execute(async () => {
        for (let hop = 0; hop < 5; hop++) await Promise.resolve();
        const signal = getAbortSignal()!;
        seen.atStart = signal.aborted;
        return new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('dropped'))));
      }),
    );
    expect(seen.atStart).toBe(false);
    expect(isOperationAbortedError((result as { error: unknown }).error)).toBe(true);
  });

  it('rejects with the abort when the method throws synchronously or rejects', async () => {
    const chaos = new ChaosPolicy({ abort: { rate: 1 } }, { ...dev, random: () => 0 });
    const thrown = await settle(chaos.execute(() => {
      throw new Error('sync');
    }));
    expect(isOperationAbortedError((thrown as { error: unknown }).error)).toBe(true);
    const rejected = await settle(chaos.execute(({ signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('AbortError'))))));
    expect(isOperationAbortedError((rejected as { error: unknown }).error)).toBe(true);
  });

  it('keeps the bulkhead permit until the aborted method settles', async () => {
    const chaos = new ChaosPolicy({ abort: { rate: 1 } }, { ...dev, random: () => 0 });
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1 });
    const work = gate();
    const call = outcome(bulkhead.execute((ctx) => chaos.run(() => work.promise, ctx)));
    await flushMicrotasks();
    expect(bulkhead.stats().active).toBe(1);
    work.open('late');
    await flushMicrotasks();
    expect(bulkhead.stats().active).toBe(0);
    expect(isOperationAbortedError(call.error)).toBe(true);
  });
});

describe('ChaosPolicy latency', () => {
  it('waits the delay on the clock before the method runs, announcing it first, and leaves no timer', async () => {
    const clock = new FakeClock();
    const chaos = new ChaosPolicy({ name: 'db', latency: { rate: 1, delay: '100ms' } }, { ...dev, clock, random: () => 0.3 });
    const events: Array<ChaosInjectEvent & { pending: number }> = [];
    chaos.onInject((event) => events.push({ ...event, pending: clock.pendingTimers }));
    let ranAt: number | undefined;
    const call = outcome(chaos.execute(() => (ranAt = clock.now())));
    expect(events).toEqual([{ policy: 'db', fault: 'latency', delayMs: 100, pending: 1 }]);
    await clock.advanceAsync(99);
    expect(ranAt).toBeUndefined();
    await clock.advanceAsync(1);
    expect(ranAt).toBe(100);
    expect(call).toEqual({ settled: true, value: 100 });
    expect(clock.pendingTimers).toBe(0);
    expect(chaos.stats()).toEqual({ calls: 1, latency: 1, errors: 0, aborts: 0 });
  });

  it('draws a delay uniformly within [min, max]', async () => {
    const clock = new FakeClock();
    // Draws: latency roll, then the delay's position in the range.
    const chaos = new ChaosPolicy({ latency: { rate: 0.5, delay: ['1s', '3s'] } }, { ...dev, clock, random: draws(0.1, 0.25, 0.7, 0.49, 1 - 2 ** -53) });
    const delays: Array<number | undefined> = [];
    chaos.onInject((event) => delays.push(event.delayMs));
    for (let i = 0; i < 3; i++) {
      const call = chaos.execute(() => 'ok');
      await clock.runAllAsync();
      await call;
    }
    expect(delays[0]).toBe(1500);
    expect(delays).toHaveLength(2);
    expect(delays[1]).toBeCloseTo(3000, 6);
    expect(delays[1]).toBeLessThanOrEqual(3000);
  });

  it('ends the wait early when the call is aborted: the abort reason, no method run, no timer, no listener', async () => {
    const clock = new FakeClock();
    const chaos = new ChaosPolicy({ latency: { rate: 1, delay: '10s' } }, { ...dev, clock, random: () => 0 });
    const controller = new AbortController();
    let ran = false;
    const call = outcome(chaos.execute(() => (ran = true), controller.signal));
    await clock.advanceAsync(5000);
    const reason = new Error('caller gave up');
    controller.abort(reason);
    await flushMicrotasks();
    expect(call).toEqual({ settled: true, error: reason });
    expect(clock.pendingTimers).toBe(0);
    await clock.advanceAsync(10_000);
    expect(ran).toBe(false);
  });

  it('does not start the method when the abort lands between the timer and the continuation', async () => {
    const clock = new FakeClock();
    const chaos = new ChaosPolicy({ latency: { rate: 1, delay: 10 } }, { ...dev, clock, random: () => 0 });
    const parent = new CallContext();
    let ran = false;
    const call = outcome(chaos.execute(() => (ran = true), parent));
    clock.advance(10);
    parent.abort(new Error('late abort'));
    await flushMicrotasks();
    expect(ran).toBe(false);
    expect((call.error as Error).message).toBe('late abort');
  });

  it('refuses a call whose context is already aborted, counting nothing', async () => {
    const chaos = new ChaosPolicy({ error: { rate: 1 } }, dev);
    const parent = new CallContext();
    parent.abort(new Error('before'));
    await expect(chaos.execute(() => 'ok', parent)).rejects.toThrow('before');
    expect(chaos.stats().calls).toBe(0);
  });

  it('combines: latency first, then at most one of abort and error, decided when the call enters', async () => {
    const clock = new FakeClock();
    // Draws per call: latency roll, then one roll for abort [0, 0.1) / error [0.8, 1) / neither.
    const random = draws(0.5, 0.8, 0.1, 0.05, 0.9, 0.99, 0.7, 0.79);
    const chaos = new ChaosPolicy({ latency: { rate: 0.6, delay: 50 }, abort: { rate: 0.1 }, error: { rate: 0.2 } }, { ...dev, clock, random });
    const faults: string[] = [];
    chaos.onInject((event) => faults.push(event.fault));
    const results: string[] = [];
    for (let i = 0; i < 4; i++) {
      const call = settle(chaos.execute(() => 'ran'));
      // Switched off during the wait: the call keeps what it was dealt.
      if (i === 0) chaos.disable();
      await clock.runAllAsync();
      const result = await call;
      chaos.enable();
      results.push(result.ok ? result.value : isChaosInjectedError(result.error) ? 'error' : isOperationAbortedError(result.error) ? 'abort' : 'other');
    }
    expect(results).toEqual(['error', 'abort', 'error', 'ran']);
    expect(faults).toEqual(['latency', 'error', 'latency', 'abort', 'error']);
    expect(random.taken).toBe(8);
    expect(chaos.stats()).toEqual({ calls: 4, latency: 2, errors: 2, aborts: 1 });
  });
});
