import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../lib/core/clock.js';
import { CallContext, NO_CONTEXT } from '../../lib/core/context.js';
import { MAX_TIMER_MS, toMilliseconds } from '../../lib/core/duration.js';
import { httpStatusOf, InvalidOptionError, retryAfterOf } from '../../lib/core/errors.js';
import { EventSource } from '../../lib/core/events.js';
import { compileMatchers } from '../../lib/core/matchers.js';

describe('toMilliseconds', () => {
  it('accepts numbers and unit strings', () => {
    expect(toMilliseconds(250, 'x')).toBe(250);
    expect(toMilliseconds('500ms', 'x')).toBe(500);
    expect(toMilliseconds('2s', 'x')).toBe(2000);
    expect(toMilliseconds('1.5m', 'x')).toBe(90_000);
    expect(toMilliseconds('1h', 'x')).toBe(3_600_000);
    expect(toMilliseconds('1d', 'x')).toBe(86_400_000);
  });

  it('names the option, the value and what is allowed', () => {
    expect(() => toMilliseconds('2 weeks', 'retry.delay')).toThrow('invalid option "retry.delay": got "2 weeks"; expected a number of milliseconds');
    expect(() => toMilliseconds(-1, 'openDuration')).toThrow('invalid option "openDuration": got -1; expected a finite duration ≥ 0');
    expect(() => toMilliseconds(0, 'd', { allowZero: false })).toThrow('expected a finite duration > 0');
    expect(() => toMilliseconds(MAX_TIMER_MS + 1, 'd', { timer: true })).toThrow(/2\^31-1/);
    expect(toMilliseconds(MAX_TIMER_MS, 'd', { timer: true })).toBe(MAX_TIMER_MS);
  });

  it('InvalidOptionError.withContext says where the option was written', () => {
    const error = new InvalidOptionError('limit', -1, 'an integer ≥ 1').withContext('@RateLimit on UsersController.list', 'rateLimit');
    expect(error.message).toBe('@RateLimit on UsersController.list: invalid option "rateLimit.limit": got -1; expected an integer ≥ 1');
    expect(error.option).toBe('rateLimit.limit');
  });
});

describe('FakeClock', () => {
  it('fires timers in due order, then by creation, and only when due', () => {
    const clock = new FakeClock(100);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push('b'), 20);
    clock.setTimeout(() => fired.push('a'), 10);
    const cleared = clock.setTimeout(() => fired.push('x'), 15);
    clock.setTimeout(() => fired.push('c'), 20);
    clock.clearTimeout(cleared);
    clock.advance(19);
    expect(fired).toEqual(['a']);
    clock.advance(1);
    expect(fired).toEqual(['a', 'b', 'c']);
    expect(clock.now()).toBe(120);
    expect(clock.pendingTimers).toBe(0);
  });

  it('advanceAsync lets awaited timers schedule the next ones', async () => {
    const clock = new FakeClock();
    const sleep = (ms: number) => new Promise<void>((resolve) => clock.setTimeout(resolve, ms));
    const times: number[] = [];
    const loop = (async () => {
      for (let i = 0; i < 3; i++) {
        await sleep(100);
        times.push(clock.now());
      }
    })();
    await clock.advanceAsync(300);
    await loop;
    expect(times).toEqual([100, 200, 300]);
  });
});

describe('CallContext', () => {
  it('propagates an abort to derived contexts, never to the parent', () => {
    const parent = new CallContext();
    const child = new CallContext(parent);
    const grandchild = new CallContext(child);
    child.abort('stop');
    expect(grandchild.aborted).toBe(true);
    expect(grandchild.abortReason).toBe('stop');
    expect(parent.aborted).toBe(false);
    const late = new CallContext(child);
    expect(late.aborted).toBe(true);
  });

  it('takes the earlier deadline of its own and its parent', () => {
    const parent = new CallContext(undefined, 1000);
    expect(new CallContext(parent, 5000).deadline).toBe(1000);
    expect(new CallContext(parent, 500).deadline).toBe(500);
  });

  it('creates its signal lazily, already aborted when the call is', () => {
    const context = new CallContext();
    context.abort(new Error('x'));
    expect(context.signal.aborted).toBe(true);
  });

  it('NO_CONTEXT is inert', () => {
    NO_CONTEXT.abort('nope');
    expect(NO_CONTEXT.aborted).toBe(false);
    const child = new CallContext(NO_CONTEXT);
    expect(child.aborted).toBe(false);
  });

  it('a disposed child stops listening to its parent', () => {
    const parent = new CallContext();
    const child = new CallContext(parent);
    child.dispose();
    parent.abort('late');
    expect(child.aborted).toBe(false);
  });

  it('many calls on one external signal share a single listener, removed after the last', () => {
    const controller = new AbortController();
    const contexts = Array.from({ length: 50 }, () => CallContext.fromSignal(controller.signal));
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
    for (const context of contexts.slice(0, 49)) context.dispose();
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
    controller.abort('bye');
    expect(contexts[49]!.aborted).toBe(true);
    expect(contexts[0]!.aborted).toBe(false);
    contexts[49]!.dispose();
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);

    const other = new AbortController();
    const single = CallContext.fromSignal(other.signal);
    single.dispose();
    expect(getEventListeners(other.signal, 'abort')).toHaveLength(0);
  });

  it('follows both the external signal and the parent', () => {
    const parent = new CallContext(undefined, 700);
    const controller = new AbortController();
    const context = CallContext.fromSignal(controller.signal, parent);
    expect(context.deadline).toBe(700);
    parent.abort('parent');
    expect(context.abortReason).toBe('parent');
    context.dispose();
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });
});

describe('errors helpers', () => {
  it('reads retry-after hints in their usual shapes', () => {
    expect(retryAfterOf({ retryAfterMs: 1500 })).toBe(1500);
    expect(retryAfterOf({ retryAfter: 2 })).toBe(2000);
    expect(retryAfterOf({ retryAfter: '3' })).toBe(3000);
    expect(retryAfterOf({ retryAfter: new Date(10_000) }, 4000)).toBe(6000);
    expect(retryAfterOf({ retryAfter: new Date(10_000).toUTCString() }, 4000)).toBe(6000);
    expect(retryAfterOf(new Error('x'))).toBeUndefined();
  });

  it('reads HTTP statuses the usual ways', () => {
    expect(httpStatusOf({ getStatus: () => 404 })).toBe(404);
    expect(httpStatusOf({ status: 503 })).toBe(503);
    expect(httpStatusOf({ statusCode: 429 })).toBe(429);
    expect(httpStatusOf(new Error('x'))).toBeUndefined();
  });

  it('compiles classes and predicates into one matcher', () => {
    class Transient extends Error {}
    const matches = compileMatchers([Transient, (error) => (error as Error).message === 'flaky'], 'retryOn')!;
    expect(matches(new Transient())).toBe(true);
    expect(matches(new Error('flaky'))).toBe(true);
    expect(matches(new Error('other'))).toBe(false);
    expect(() => compileMatchers([42 as never], 'retryOn')).toThrow('"retryOn[0]": got 42');
  });
});

describe('EventSource', () => {
  it('delivers to listeners, survives a throwing listener, and unsubscribes', () => {
    const source = new EventSource<number>();
    const seen: number[] = [];
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on('warning', onWarning);
    source.event(() => {
      throw new Error('bad listener');
    });
    const subscription = source.event((value) => seen.push(value));
    source.emit(1);
    subscription.dispose();
    source.emit(2);
    expect(seen).toEqual([1]);
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        process.off('warning', onWarning);
        expect(warnings).toContain('ListenerError');
        resolve();
      }),
    );
  });
});
