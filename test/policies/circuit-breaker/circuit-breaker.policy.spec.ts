import { describe, expect, it } from 'vitest';
import { FakeClock, flushMicrotasks } from '../../../lib/core/clock.js';
import { CallContext } from '../../../lib/core/context.js';
import { InvalidOptionError, OperationAbortedError } from '../../../lib/core/errors.js';
import { rejectionBrand } from '../../../lib/core/rejection.js';
import {
  CircuitBreakerPolicy,
  CircuitOpenError,
  isCircuitOpenError,
  type CircuitBreakerOptions,
  type CircuitCallEvent,
  type CircuitStateChangeEvent,
} from '../../../lib/policies/circuit-breaker/index.js';
import { deferred, fail, httpError, settledOf, succeed, timed } from './helpers.js';

function breakerOn(options: CircuitBreakerOptions = {}): { clock: FakeClock; breaker: CircuitBreakerPolicy } {
  const clock = new FakeClock(1_000);
  return { clock, breaker: new CircuitBreakerPolicy(options, { clock }) };
}

function record<T>(subscribe: (listener: (event: T) => void) => unknown): T[] {
  const events: T[] = [];
  subscribe((event) => events.push(event));
  return events;
}

function thrownBy(build: () => unknown): unknown {
  try {
    build();
  } catch (error) {
    return error;
  }
  return undefined;
}

async function openedBreaker(options: CircuitBreakerOptions = {}) {
  const setup = breakerOn({ consecutiveFailures: 1, openDuration: 10_000, ...options });
  await fail(setup.breaker);
  expect(setup.breaker.state).toBe('OPEN');
  return setup;
}

describe('CircuitBreakerPolicy options', () => {
  it('resolves the defaults', () => {
    const { breaker } = breakerOn();
    expect(breaker.options).toMatchObject({
      name: 'default',
      mode: 'enforce',
      windowType: 'count',
      windowSize: 100,
      minimumCalls: 10,
      failureRateThreshold: 50,
      slowCallRateThreshold: 100,
      slowCallDuration: 60_000,
      consecutiveFailures: undefined,
      openDuration: 30_000,
      halfOpenMaxCalls: 1,
      probeTimeout: 30_000,
      ignore: undefined,
    });
    expect(breaker.name).toBe('default');
    const time = new CircuitBreakerPolicy({ windowType: 'time', openDuration: '5s', slowCallDuration: '2s' });
    expect(time.options).toMatchObject({ windowSize: 60_000, windowBuckets: 10, openDuration: 5_000, probeTimeout: 5_000, slowCallDuration: 2_000 });
  });

  it('shrinks the default minimumCalls to a small count window', () => {
    expect(new CircuitBreakerPolicy({ windowSize: 4 }).options.minimumCalls).toBe(4);
  });

  const invalid: Array<[CircuitBreakerOptions, string, unknown]> = [
    [{ failureRateThreshold: 0 }, 'failureRateThreshold', 0],
    [{ failureRateThreshold: 101 }, 'failureRateThreshold', 101],
    [{ slowCallRateThreshold: -5 }, 'slowCallRateThreshold', -5],
    [{ slowCallRateThreshold: Number.NaN }, 'slowCallRateThreshold', Number.NaN],
    [{ minimumCalls: 0 }, 'minimumCalls', 0],
    [{ windowSize: 5, minimumCalls: 6 }, 'minimumCalls', 6],
    [{ windowSize: 0 }, 'windowSize', 0],
    [{ windowSize: 2.5 }, 'windowSize', 2.5],
    [{ windowType: 'time', windowSize: '5ms', windowBuckets: 10 }, 'windowBuckets', 10],
    [{ windowType: 'time', windowSize: 'soon' as never }, 'windowSize', 'soon'],
    [{ windowType: 'time', windowBuckets: 0 }, 'windowBuckets', 0],
    [{ windowType: 'sliding' as never }, 'windowType', 'sliding'],
    [{ halfOpenMaxCalls: 0 }, 'halfOpenMaxCalls', 0],
    [{ consecutiveFailures: 1.5 }, 'consecutiveFailures', 1.5],
    [{ consecutiveFailures: 0 }, 'consecutiveFailures', 0],
    [{ openDuration: 0 }, 'openDuration', 0],
    [{ openDuration: 2 ** 31 }, 'openDuration', 2 ** 31],
    [{ probeTimeout: '-1s' as never }, 'probeTimeout', '-1s'],
    [{ slowCallDuration: '1y' as never }, 'slowCallDuration', '1y'],
    [{ isFailure: true as never }, 'isFailure', true],
    [{ ignore: [Error, 'nope' as never] }, 'ignore[1]', 'nope'],
    [{ mode: 'audit' as never }, 'mode', 'audit'],
    [{ name: '' }, 'name', ''],
    [{ treshold: 5 } as never, 'treshold', 5],
  ];
  it.each(invalid)('rejects %j, naming the option and the value', (options, option, value) => {
    const thrown = thrownBy(() => new CircuitBreakerPolicy(options));
    expect(thrown).toBeInstanceOf(InvalidOptionError);
    expect((thrown as InvalidOptionError).option).toBe(option);
    expect((thrown as InvalidOptionError).value).toEqual(value);
    expect((thrown as Error).message).toContain(option);
  });
});

describe('CircuitBreakerPolicy in CLOSED', () => {
  it('trips on the failure rate once minimumCalls are recorded, and not before', async () => {
    const { breaker } = breakerOn({ windowSize: 10, minimumCalls: 4, failureRateThreshold: 50 });
    await fail(breaker, 3);
    expect(breaker.state).toBe('CLOSED');
    expect(breaker.stats()).toMatchObject({ calls: 3, failures: 3, failureRate: 100 });
    await succeed(breaker);
    // 3 of 4 = 75 % ≥ 50 %, evaluated as the fourth call lands.
    expect(breaker.state).toBe('OPEN');
  });

  it('does not trip below the threshold and trips exactly at it', async () => {
    const { breaker } = breakerOn({ windowSize: 10, minimumCalls: 10, failureRateThreshold: 50 });
    await succeed(breaker, 6);
    await fail(breaker, 4);
    expect(breaker.state).toBe('CLOSED');
    expect(breaker.stats().failureRate).toBe(40);
    await fail(breaker); // evicts a success: 5 of 10
    expect(breaker.state).toBe('OPEN');
  });

  it('rolls a count window: failures older than windowSize calls are forgotten', async () => {
    const { breaker } = breakerOn({ windowSize: 5, minimumCalls: 5, failureRateThreshold: 60 });
    await fail(breaker, 2);
    await succeed(breaker, 3);
    expect(breaker.stats()).toMatchObject({ calls: 5, failures: 2 });
    await succeed(breaker, 2);
    expect(breaker.stats()).toMatchObject({ calls: 5, failures: 0 });
    await fail(breaker, 2);
    expect(breaker.stats()).toMatchObject({ calls: 5, failures: 2, state: 'CLOSED' });
    await fail(breaker);
    expect(breaker.state).toBe('OPEN');
  });

  it('forgets the buckets of a time window as the clock moves, without a timer', async () => {
    const { clock, breaker } = breakerOn({ windowType: 'time', windowSize: '10s', windowBuckets: 10, minimumCalls: 4, failureRateThreshold: 50 });
    clock.set(0);
    await fail(breaker, 3);
    expect(breaker.stats()).toMatchObject({ calls: 3, failures: 3 });
    clock.advance(9_999);
    expect(breaker.stats().calls).toBe(3);
    clock.advance(1);
    expect(breaker.stats()).toMatchObject({ calls: 0, failures: 0 });
    await fail(breaker, 3);
    clock.advance(5_000);
    await fail(breaker);
    expect(breaker.state).toBe('OPEN');
    expect(clock.pendingTimers).toBe(0);
  });

  it('keeps a partial time window: buckets expire one by one', async () => {
    const { clock, breaker } = breakerOn({ windowType: 'time', windowSize: 4_000, windowBuckets: 4, minimumCalls: 100 });
    clock.set(0);
    for (let second = 0; second < 4; second++) {
      await fail(breaker, second + 1);
      clock.advance(1_000);
    }
    // Buckets hold 1, 2, 3, 4 failures; at t = 4 s the first one leaves the window.
    expect(breaker.stats().calls).toBe(9);
    clock.advance(1_000);
    expect(breaker.stats().calls).toBe(7);
    clock.advance(1_000);
    expect(breaker.stats().calls).toBe(4);
    clock.advance(60_000);
    expect(breaker.stats().calls).toBe(0);
  });

  it('trips on the slow-call rate; a slow call is one longer than slowCallDuration, success or not', async () => {
    const { clock, breaker } = breakerOn({ windowSize: 4, minimumCalls: 4, slowCallRateThreshold: 50, slowCallDuration: 100 });
    await timed(breaker, clock, 100);
    await timed(breaker, clock, 101, httpError(404));
    await timed(breaker, clock, 10);
    expect(breaker.stats()).toMatchObject({ calls: 3, slowCalls: 1, failures: 0, state: 'CLOSED' });
    await timed(breaker, clock, 500);
    expect(breaker.state).toBe('OPEN');
  });

  it('with the default slowCallRateThreshold of 100, trips only when every call is slow', async () => {
    const { clock, breaker } = breakerOn({ windowSize: 3, minimumCalls: 3, slowCallDuration: 50 });
    await timed(breaker, clock, 60);
    await timed(breaker, clock, 60);
    await timed(breaker, clock, 10);
    expect(breaker.state).toBe('CLOSED');
    await timed(breaker, clock, 60);
    await timed(breaker, clock, 60);
    expect(breaker.state).toBe('CLOSED');
    await timed(breaker, clock, 60);
    expect(breaker.state).toBe('OPEN');
  });

  it('consecutive mode opens after N failures in a row; a success restarts the count; ignored errors do not', async () => {
    const { breaker } = breakerOn({ consecutiveFailures: 3, ignore: (error) => (error as Error).message === 'ignored' });
    await fail(breaker, 2);
    await succeed(breaker);
    await fail(breaker, 2);
    expect(breaker.stats().consecutiveFailures).toBe(2);
    await fail(breaker, 1, new Error('ignored'));
    expect(breaker.stats().consecutiveFailures).toBe(2);
    expect(breaker.state).toBe('CLOSED');
    await fail(breaker);
    expect(breaker.state).toBe('OPEN');
  });

  it('consecutive mode does not use the rates', async () => {
    const { breaker } = breakerOn({ consecutiveFailures: 5, windowSize: 2, minimumCalls: 2 });
    await fail(breaker, 4);
    expect(breaker.stats()).toMatchObject({ state: 'CLOSED', failureRate: 100 });
  });

  it('counts client errors (HTTP 4xx) as successes and server errors as failures', async () => {
    const { breaker } = breakerOn({ consecutiveFailures: 2 });
    await fail(breaker, 1, httpError(500));
    await fail(breaker, 1, httpError(404));
    await fail(breaker, 1, { getStatus: () => 429 });
    await fail(breaker, 1, { statusCode: 400 });
    await fail(breaker, 1, httpError(503));
    expect(breaker.stats()).toMatchObject({ calls: 5, failures: 2, consecutiveFailures: 1, state: 'CLOSED' });
    await fail(breaker, 1, { statusCode: 502 });
    expect(breaker.state).toBe('OPEN');
  });

  it('uses a custom isFailure', async () => {
    const { breaker } = breakerOn({ consecutiveFailures: 1, isFailure: (error) => error instanceof TypeError });
    await fail(breaker, 3, new Error('not counted'));
    expect(breaker.stats()).toMatchObject({ calls: 3, failures: 0, state: 'CLOSED' });
    await fail(breaker, 1, new TypeError('counted'));
    expect(breaker.state).toBe('OPEN');
  });

  it('counts a call as failed when isFailure throws, and still surfaces the call error', async () => {
    const { breaker } = breakerOn({ consecutiveFailures: 1, isFailure: () => { throw new Error('predicate bug'); } });
    const boom = new Error('boom');
    await expect(breaker.execute(() => Promise.reject(boom))).rejects.toBe(boom);
    expect(breaker.state).toBe('OPEN');
  });

  it('ignore (classes and predicates) counts as neither success nor failure', async () => {
    class Ignored extends Error {}
    const { breaker } = breakerOn({ consecutiveFailures: 1, ignore: [Ignored, (error) => (error as { code?: string }).code === 'SKIP'] });
    await fail(breaker, 2, new Ignored());
    await fail(breaker, 1, Object.assign(new Error(), { code: 'SKIP' }));
    expect(breaker.stats()).toMatchObject({ calls: 0, failures: 0, state: 'CLOSED' });
    await fail(breaker);
    expect(breaker.state).toBe('OPEN');
  });

  it('ignores our own rejections and caller aborts', async () => {
    const { breaker } = breakerOn({ consecutiveFailures: 1 });
    const rejection = Object.assign(new Error('bulkhead full'), { [rejectionBrand]: true });
    await fail(breaker, 1, rejection);
    await fail(breaker, 1, new OperationAbortedError());
    const controller = new AbortController();
    const result = breaker.execute(() => {
      controller.abort();
      return Promise.reject(new Error('stopped because aborted'));
    }, controller.signal);
    await expect(result).rejects.toThrow('stopped because aborted');
    const context = new CallContext();
    context.abort('gone');
    await expect(breaker.run(() => Promise.reject(new Error('x')), context)).rejects.toThrow('x');
    expect(breaker.stats()).toMatchObject({ calls: 0, state: 'CLOSED' });
  });

  it('turns a synchronous throw into a rejection that counts', async () => {
    const { breaker } = breakerOn({ consecutiveFailures: 1 });
    const boom = new Error('sync');
    const result = breaker.execute(() => {
      throw boom;
    });
    expect(result).toBeInstanceOf(Promise);
    await expect(result).rejects.toBe(boom);
    expect(breaker.state).toBe('OPEN');
  });

  it('passes the context to the task and returns its value', async () => {
    const { breaker } = breakerOn();
    const context = new CallContext();
    await expect(breaker.run((received) => (received === context ? 'same' : 'other'), context)).resolves.toBe('same');
    await expect(breaker.run((received) => (received.aborted ? 'aborted' : 'live'), undefined)).resolves.toBe('live');
  });

  it('does not count calls that were in flight when the circuit opened', async () => {
    const { breaker } = breakerOn({ consecutiveFailures: 1, openDuration: 1_000 });
    const late = deferred();
    const lateResult = settledOf(breaker.execute(() => late.promise));
    await fail(breaker);
    const openUntil = breaker.stats().openUntilMs;
    late.reject(new Error('late'));
    await lateResult;
    expect(breaker.stats().openUntilMs).toBe(openUntil);
    expect(breaker.state).toBe('OPEN');
  });
});

describe('CircuitBreakerPolicy in OPEN and HALF_OPEN', () => {
  it('refuses at once with CircuitOpenError carrying the real time to the next probe, never running the task', async () => {
    const { clock, breaker } = await openedBreaker({ name: 'payments' });
    clock.advance(2_500);
    let ran = false;
    const error = await breaker.execute(() => { ran = true; }).catch((caught: unknown) => caught);
    expect(ran).toBe(false);
    expect(isCircuitOpenError(error)).toBe(true);
    expect(error).toBeInstanceOf(CircuitOpenError);
    expect(error).toMatchObject({ breaker: 'payments', state: 'OPEN', retryAfterMs: 7_500 });
    expect(breaker.stats().openUntilMs).toBe(7_500);
  });

  it('moves to HALF_OPEN lazily when openDuration has elapsed, with no timer', async () => {
    const { clock, breaker } = await openedBreaker();
    expect(clock.pendingTimers).toBe(0);
    clock.advance(9_999);
    expect(breaker.state).toBe('OPEN');
    clock.advance(1);
    expect(breaker.state).toBe('HALF_OPEN');
  });

  it('admits exactly halfOpenMaxCalls concurrent probes, then closes with an empty window when they all succeed', async () => {
    const { clock, breaker } = await openedBreaker({ halfOpenMaxCalls: 3, probeTimeout: 4_000 });
    clock.advance(10_000);
    const gates = [deferred(), deferred(), deferred()];
    let ran = 0;
    const probes = gates.map((gate) => breaker.execute(() => { ran++; return gate.promise; }));
    clock.advance(1_000);
    const refused = await breaker.execute(() => { ran++; }).catch((error: unknown) => error);
    expect(ran).toBe(3);
    expect(refused).toMatchObject({ state: 'HALF_OPEN', retryAfterMs: 3_000 });
    expect(breaker.stats().halfOpenInFlight).toBe(3);
    gates[0]!.resolve('a');
    gates[1]!.resolve('b');
    await Promise.all(probes.slice(0, 2));
    expect(breaker.state).toBe('HALF_OPEN');
    await expect(breaker.execute(() => 'x')).rejects.toBeInstanceOf(CircuitOpenError);
    gates[2]!.resolve('c');
    await expect(Promise.all(probes)).resolves.toEqual(['a', 'b', 'c']);
    expect(breaker.state).toBe('CLOSED');
    expect(breaker.stats()).toMatchObject({ calls: 0, failures: 0, consecutiveFailures: 0 });
  });

  it('re-opens at once when a probe fails, with a new openDuration; later probe failures do not push the schedule', async () => {
    const { clock, breaker } = await openedBreaker({ halfOpenMaxCalls: 2 });
    clock.advance(10_000);
    const first = deferred();
    const second = deferred();
    const probes = [settledOf(breaker.execute(() => first.promise)), settledOf(breaker.execute(() => second.promise))];
    clock.advance(300);
    first.reject(new Error('down'));
    await probes[0];
    expect(breaker.stats()).toMatchObject({ state: 'OPEN', openUntilMs: 10_000 });
    clock.advance(200);
    second.reject(new Error('down too'));
    await probes[1];
    expect(breaker.stats()).toMatchObject({ state: 'OPEN', openUntilMs: 9_800 });
    clock.advance(9_800);
    expect(breaker.state).toBe('HALF_OPEN');
  });

  it('releases the permit of an ignored probe without deciding', async () => {
    const { clock, breaker } = await openedBreaker({ ignore: (error) => (error as Error).message === 'ignored' });
    clock.advance(10_000);
    await fail(breaker, 1, new Error('ignored'));
    expect(breaker.stats()).toMatchObject({ state: 'HALF_OPEN', halfOpenInFlight: 0 });
    await fail(breaker, 1, httpError(404)); // a client error is a success
    expect(breaker.state).toBe('CLOSED');
  });

  it('counts a hung probe as failed at its deadline and ignores it when it finally settles', async () => {
    const { clock, breaker } = await openedBreaker({ probeTimeout: 2_000 });
    const transitions = record<CircuitStateChangeEvent>(breaker.onStateChange);
    clock.advance(10_000);
    const hung = deferred();
    const hungResult = settledOf(breaker.execute(() => hung.promise));
    clock.advance(1_999);
    expect(breaker.state).toBe('HALF_OPEN');
    clock.advance(501);
    // Re-opened at the deadline, 500 ms ago.
    expect(breaker.stats()).toMatchObject({ state: 'OPEN', openUntilMs: 9_500 });
    clock.advance(9_500);
    expect(breaker.state).toBe('HALF_OPEN');
    hung.resolve('finally');
    await expect(hungResult).resolves.toEqual({ status: 'fulfilled', value: 'finally' });
    expect(breaker.stats()).toMatchObject({ state: 'HALF_OPEN', halfOpenInFlight: 0 });
    await succeed(breaker);
    expect(breaker.state).toBe('CLOSED');
    expect(transitions.map((event) => `${event.from}>${event.to}:${event.reason}`)).toEqual([
      'OPEN>HALF_OPEN:openDurationElapsed',
      'HALF_OPEN>OPEN:probeTimeout',
      'OPEN>HALF_OPEN:openDurationElapsed',
      'HALF_OPEN>CLOSED:probesSucceeded',
    ]);
  });

  it('applies a long-overdue probe deadline and the open duration after it in one read', async () => {
    const { clock, breaker } = await openedBreaker({ probeTimeout: 1_000 });
    clock.advance(10_000);
    void breaker.execute(() => new Promise(() => {}));
    clock.advance(50_000);
    expect(breaker.stats()).toMatchObject({ state: 'HALF_OPEN', halfOpenInFlight: 0 });
  });

  it('treats a slow probe as a failure only when slowCallRateThreshold < 100', async () => {
    for (const [threshold, expected] of [[100, 'CLOSED'], [80, 'OPEN']] as const) {
      const { clock, breaker } = await openedBreaker({ slowCallDuration: 100, slowCallRateThreshold: threshold });
      clock.advance(10_000);
      await timed(breaker, clock, 150);
      expect(breaker.state).toBe(expected);
    }
  });
});

describe('CircuitBreakerPolicy manual states', () => {
  it('forceOpen refuses everything, without a retryAfter, until reset', async () => {
    const { clock, breaker } = breakerOn();
    breaker.forceOpen();
    clock.advance(10 ** 9);
    let ran = false;
    const error = await breaker.execute(() => { ran = true; }).catch((caught: unknown) => caught);
    expect(ran).toBe(false);
    expect(error).toMatchObject({ state: 'FORCED_OPEN', retryAfterMs: undefined });
    expect(breaker.state).toBe('FORCED_OPEN');
    breaker.reset();
    await expect(breaker.execute(() => 1)).resolves.toBe(1);
  });

  it('disable admits every call and records nothing', async () => {
    const { breaker } = breakerOn({ consecutiveFailures: 1 });
    const events = record<CircuitCallEvent>(breaker.onCall);
    breaker.disable();
    await fail(breaker, 20);
    expect(breaker.stats()).toMatchObject({ state: 'DISABLED', calls: 0, failures: 0 });
    expect(events).toEqual([]);
    breaker.reset();
    await fail(breaker);
    expect(breaker.state).toBe('OPEN');
  });

  it('reset closes with an empty window and drops the outcomes of calls in flight', async () => {
    const { breaker } = breakerOn({ windowSize: 4, minimumCalls: 4 });
    await fail(breaker, 3);
    const inFlight = deferred();
    const result = settledOf(breaker.execute(() => inFlight.promise));
    breaker.reset();
    expect(breaker.stats()).toMatchObject({ state: 'CLOSED', calls: 0, failures: 0, consecutiveFailures: 0 });
    inFlight.reject(new Error('late'));
    await result;
    expect(breaker.stats().calls).toBe(0);
  });

  it('reset from OPEN and from HALF_OPEN frees the breaker at once', async () => {
    const { clock, breaker } = await openedBreaker();
    breaker.reset();
    await expect(breaker.execute(() => 'ok')).resolves.toBe('ok');
    await fail(breaker);
    clock.advance(10_000);
    const probe = deferred();
    const probeResult = settledOf(breaker.execute(() => probe.promise));
    breaker.reset();
    probe.reject(new Error('old probe'));
    await probeResult;
    expect(breaker.state).toBe('CLOSED');
  });
});

describe('CircuitBreakerPolicy shadow mode', () => {
  it('records and transitions as usual but runs every call, reporting would-be rejections', async () => {
    const { clock, breaker } = breakerOn({ mode: 'shadow', consecutiveFailures: 2, openDuration: 1_000 });
    const calls = record<CircuitCallEvent>(breaker.onCall);
    await fail(breaker, 2);
    expect(breaker.state).toBe('OPEN');
    let ran = 0;
    await expect(breaker.execute(() => { ran++; return 'ran'; })).resolves.toBe('ran');
    await expect(breaker.execute(() => { ran++; return Promise.reject(new Error('not recorded')); })).rejects.toThrow('not recorded');
    expect(ran).toBe(2);
    const shadowed = calls.filter((event) => event.outcome === 'rejected');
    expect(shadowed).toHaveLength(2);
    expect(shadowed[0]).toMatchObject({ shadow: true, durationMs: 0 });
    expect(shadowed[0]!.error).toMatchObject({ state: 'OPEN', retryAfterMs: 1_000 });
    // The failure that ran while OPEN was not a probe and changed nothing.
    expect(breaker.stats()).toMatchObject({ state: 'OPEN', openUntilMs: 1_000 });

    clock.advance(1_000);
    const probe = deferred();
    const probeResult = breaker.execute(() => probe.promise);
    await expect(breaker.execute(() => 'beyond budget')).resolves.toBe('beyond budget');
    expect(breaker.stats()).toMatchObject({ state: 'HALF_OPEN', halfOpenInFlight: 1 });
    expect(calls.at(-1)).toMatchObject({ outcome: 'rejected', shadow: true });
    probe.resolve('probe');
    await probeResult;
    expect(breaker.state).toBe('CLOSED');
  });

  it('runs calls while forced open', async () => {
    const { breaker } = breakerOn({ mode: 'shadow' });
    breaker.forceOpen();
    await expect(breaker.execute(() => 7)).resolves.toBe(7);
  });
});

describe('CircuitBreakerPolicy events', () => {
  it('emits call outcomes with duration and slowness, and state changes with their reasons', async () => {
    const { clock, breaker } = breakerOn({ name: 'inventory', consecutiveFailures: 1, openDuration: 500, slowCallDuration: 100 });
    const calls = record<CircuitCallEvent>(breaker.onCall);
    const changes = record<CircuitStateChangeEvent>(breaker.onStateChange);
    await timed(breaker, clock, 150);
    await fail(breaker, 1, new OperationAbortedError());
    const boom = new Error('boom');
    await timed(breaker, clock, 20, boom);
    await breaker.execute(() => 1).catch(() => undefined);
    expect(calls).toEqual([
      { breaker: 'inventory', outcome: 'success', slow: true, durationMs: 150 },
      { breaker: 'inventory', outcome: 'ignored', slow: false, durationMs: 0, error: expect.any(OperationAbortedError) },
      { breaker: 'inventory', outcome: 'failure', slow: false, durationMs: 20, error: boom },
      { breaker: 'inventory', outcome: 'rejected', slow: false, durationMs: 0, error: expect.any(CircuitOpenError) },
    ]);
    expect(changes).toEqual([{ breaker: 'inventory', from: 'CLOSED', to: 'OPEN', reason: 'consecutiveFailures' }]);
    breaker.forceOpen();
    breaker.disable();
    breaker.reset();
    breaker.reset();
    expect(changes.slice(1).map((event) => [event.to, event.reason])).toEqual([
      ['FORCED_OPEN', 'forceOpen'],
      ['DISABLED', 'disable'],
      ['CLOSED', 'reset'],
    ]);
  });

  it('names the rate that tripped the circuit', async () => {
    const { clock, breaker } = breakerOn({ windowSize: 2, minimumCalls: 2, slowCallRateThreshold: 50, slowCallDuration: 10 });
    const changes = record<CircuitStateChangeEvent>(breaker.onStateChange);
    await timed(breaker, clock, 20);
    await succeed(breaker);
    expect(changes.map((event) => event.reason)).toEqual(['slowCallRate']);
    breaker.reset();
    await fail(breaker, 2);
    expect(changes.map((event) => event.reason)).toEqual(['slowCallRate', 'reset', 'failureRate']);
  });

  it('stops delivering after dispose, and a listener that resets the breaker is safe', async () => {
    const { breaker } = breakerOn({ consecutiveFailures: 1 });
    const seen: string[] = [];
    const subscription = breaker.onCall((event) => {
      seen.push(event.outcome);
      if (event.outcome === 'failure') breaker.reset();
    });
    await fail(breaker);
    expect(breaker.state).toBe('CLOSED');
    subscription.dispose();
    await fail(breaker);
    expect(seen).toEqual(['failure']);
    expect(breaker.state).toBe('OPEN');
  });

  it('runs the call when a state-change listener disables the breaker during a lazy transition', async () => {
    const { clock, breaker } = await openedBreaker();
    breaker.onStateChange((event) => {
      if (event.to === 'HALF_OPEN') breaker.disable();
    });
    clock.advance(10_000);
    await expect(breaker.execute(() => 'ran')).resolves.toBe('ran');
    expect(breaker.state).toBe('DISABLED');
  });

  it('reports a late call with its outcome; it does not count', async () => {
    const { clock, breaker } = await openedBreaker();
    const calls = record<CircuitCallEvent>(breaker.onCall);
    clock.advance(10_000);
    const probe = deferred();
    const result = settledOf(breaker.execute(() => probe.promise));
    breaker.forceOpen();
    probe.resolve('late');
    await result;
    await flushMicrotasks();
    expect(calls).toEqual([{ breaker: 'default', outcome: 'success', slow: false, durationMs: 0 }]);
    expect(breaker.state).toBe('FORCED_OPEN');
  });
});
