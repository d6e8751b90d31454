import { AsyncLocalStorage } from 'node:async_hooks';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FakeClock, flushMicrotasks } from '../../../lib/core/clock.js';
import { CallContext, NO_CONTEXT } from '../../../lib/core/context.js';
import { MAX_TIMER_MS } from '../../../lib/core/duration.js';
import { InvalidOptionError, isOperationAbortedError } from '../../../lib/core/errors.js';
import { isPolicyRejection } from '../../../lib/core/rejection.js';
import {
  BulkheadPolicy,
  BulkheadRejectedError,
  isBulkheadRejectedError,
  type BulkheadQueueEvent,
  type BulkheadRejectEvent,
} from '../../../lib/policies/bulkhead/index.js';
import { TimeoutExceededError } from '../../../lib/policies/timeout/timeout.error.js';
import { TimeoutPolicy } from '../../../lib/policies/timeout/timeout.policy.js';
import { gate, outcome, type Gate } from '../../support/promises.js';

/** Counts the abort listeners a context holds, by wrapping its `onAbort`. */
function listenerSpy(context: CallContext): { added: number; live: number } {
  const original = context.onAbort.bind(context);
  const spy = { added: 0, live: 0 };
  context.onAbort = (listener) => {
    spy.added++;
    spy.live++;
    let live = true;
    const remove = original((reason) => {
      if (live) {
        live = false;
        spy.live--;
      }
      listener(reason);
    });
    return () => {
      if (live) {
        live = false;
        spy.live--;
      }
      remove();
    };
  };
  return spy;
}

describe('BulkheadPolicy options', () => {
  it('applies the defaults and freezes the resolved options', () => {
    const bulkhead = new BulkheadPolicy();
    expect(bulkhead.options).toEqual({ name: 'default', maxConcurrent: 10, maxQueue: 0, queueTimeout: undefined });
    expect(bulkhead.name).toBe('default');
    expect(Object.isFrozen(bulkhead.options)).toBe(true);
  });

  it('resolves every option, durations in milliseconds', () => {
    const bulkhead = new BulkheadPolicy({ name: 'payments', maxConcurrent: 3, maxQueue: 7, queueTimeout: '2s' });
    expect(bulkhead.options).toEqual({ name: 'payments', maxConcurrent: 3, maxQueue: 7, queueTimeout: 2000 });
    expect(new BulkheadPolicy({ queueTimeout: 0 }).options.queueTimeout).toBe(0);
  });

  it.each([
    [{ maxConcurrent: 0 }, 'invalid option "maxConcurrent": got 0; expected an integer ≥ 1'],
    [{ maxConcurrent: 1.5 }, 'invalid option "maxConcurrent": got 1.5; expected an integer ≥ 1'],
    [{ maxConcurrent: '4' }, 'invalid option "maxConcurrent": got "4"; expected an integer ≥ 1'],
    [{ maxConcurrent: Infinity }, 'invalid option "maxConcurrent": got Infinity'],
    [{ maxQueue: -1 }, 'invalid option "maxQueue": got -1; expected an integer ≥ 0'],
    [{ maxQueue: Infinity }, 'invalid option "maxQueue": got Infinity; expected an integer ≥ 0'],
    [{ queueTimeout: '2 weeks' }, 'invalid option "queueTimeout": got "2 weeks"'],
    [{ queueTimeout: -5 }, 'invalid option "queueTimeout": got -5; expected a finite duration ≥ 0'],
    [{ queueTimeout: MAX_TIMER_MS + 1 }, `invalid option "queueTimeout": got ${MAX_TIMER_MS + 1}; expected a duration ≤ ${MAX_TIMER_MS} ms`],
    [{ name: '' }, 'invalid option "name": got ""; expected a non-empty string'],
    [{ name: 42 }, 'invalid option "name": got 42; expected a non-empty string'],
    [{ maxConcurent: 5 }, 'invalid option "maxConcurent": got 5; expected no such option; known options: name, maxConcurrent, maxQueue, queueTimeout'],
  ])('refuses %j, naming the option and the value', (options, message) => {
    const build = () => new BulkheadPolicy(options as never);
    expect(build).toThrow(InvalidOptionError);
    expect(build).toThrow(message);
  });

  it('refuses something that is not an options object', () => {
    expect(() => new BulkheadPolicy(null as never)).toThrow('invalid option "bulkhead": got null; expected an options object');
    expect(() => new BulkheadPolicy(5 as never)).toThrow(InvalidOptionError);
  });
});

describe('BulkheadPolicy permits', () => {
  it('runs up to maxConcurrent calls at once and refuses the next one at once', async () => {
    const bulkhead = new BulkheadPolicy({ name: 'db', maxConcurrent: 2 });
    const events: BulkheadRejectEvent[] = [];
    bulkhead.onReject((event) => events.push(event));
    const gates = [gate(), gate()];
    let running = 0;
    const calls = gates.map((g) =>
      outcome(
        bulkhead.execute(() => {
          running++;
          return g.promise;
        }),
      ),
    );
    expect(running).toBe(2);
    const refused = await bulkhead.execute(async () => 'never').catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(BulkheadRejectedError);
    expect(isBulkheadRejectedError(refused)).toBe(true);
    expect(isPolicyRejection(refused)).toBe(true);
    expect(refused).toMatchObject({ bulkhead: 'db', reason: 'full', active: 2, queued: 0 });
    expect((refused as Error).message).toBe('Bulkhead "db" is full (2 running, 0 queued)');
    expect(events).toEqual([{ bulkhead: 'db', reason: 'full', active: 2, queued: 0 }]);
    expect(bulkhead.stats()).toEqual({ active: 2, queued: 0, rejected: 1, timedOut: 0, aborted: 0 });

    gates[0]!.open('a');
    gates[1]!.open('b');
    await flushMicrotasks();
    expect(calls.map((call) => call.value)).toEqual(['a', 'b']);
    expect(bulkhead.stats().active).toBe(0);
    await expect(bulkhead.execute(async () => 'again')).resolves.toBe('again');
  });

  it('releases the permit exactly once on success, rejection, synchronous throw and synchronous value', async () => {
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1 });
    const boom = new Error('boom');
    await expect(bulkhead.execute(async () => 1)).resolves.toBe(1);
    await expect(bulkhead.execute(async () => Promise.reject(boom))).rejects.toBe(boom);
    await expect(
      bulkhead.execute(() => {
        throw boom;
      }),
    ).rejects.toBe(boom);
    await expect(bulkhead.execute(() => 'sync')).resolves.toBe('sync');
    // A foreign thenable settling later: the permit is held until then.
    let activeMeanwhile = -1;
    const thenable = {
      then(onFulfilled: (value: string) => unknown) {
        setImmediate(() => {
          activeMeanwhile = bulkhead.stats().active;
          onFulfilled('thenable');
        });
      },
    } as PromiseLike<string>;
    await expect(bulkhead.execute(() => thenable)).resolves.toBe('thenable');
    expect(activeMeanwhile).toBe(1);
    expect(bulkhead.stats().active).toBe(0);
    // Exactly once: two calls in parallel still find a single permit.
    const g = gate();
    const first = outcome(bulkhead.execute(() => g.promise));
    await expect(bulkhead.execute(async () => 'second')).rejects.toBeInstanceOf(BulkheadRejectedError);
    g.open('first');
    await flushMicrotasks();
    expect(first.value).toBe('first');
    expect(bulkhead.stats()).toMatchObject({ active: 0, rejected: 1 });
  });

  it('hands the permit of a synchronous thrower to the next waiter at once', async () => {
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1, maxQueue: 2 });
    const g = gate();
    const first = outcome(bulkhead.execute(() => g.promise));
    const boom = new Error('sync');
    const thrower = outcome(
      bulkhead.execute(() => {
        throw boom;
      }),
    );
    const last = outcome(bulkhead.execute(async () => 'last'));
    expect(bulkhead.stats()).toMatchObject({ active: 1, queued: 2 });
    g.open('first');
    await flushMicrotasks();
    expect(first.value).toBe('first');
    expect(thrower.error).toBe(boom);
    expect(last.value).toBe('last');
    expect(bulkhead.stats()).toMatchObject({ active: 0, queued: 0 });
  });

  it('survives a long queue of synchronous throwers without growing the stack', async () => {
    const size = 50_000;
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1, maxQueue: size });
    const g = gate();
    const head = outcome(bulkhead.execute(() => g.promise));
    const boom = new Error('sync');
    const throwers: Array<Promise<unknown>> = [];
    for (let i = 0; i < size; i++) {
      throwers.push(
        bulkhead.execute(() => {
          throw boom;
        }),
      );
    }
    g.open('head');
    const results = await Promise.allSettled(throwers);
    expect(head.value).toBe('head');
    expect(results.every((result) => result.status === 'rejected' && result.reason === boom)).toBe(true);
    expect(bulkhead.stats()).toMatchObject({ active: 0, queued: 0 });
  });
});

describe('BulkheadPolicy queue', () => {
  it('queues up to maxQueue calls, starts them in order, and refuses beyond', async () => {
    const bulkhead = new BulkheadPolicy({ name: 'q', maxConcurrent: 1, maxQueue: 2 });
    const queuedEvents: BulkheadQueueEvent[] = [];
    bulkhead.onQueue((event) => queuedEvents.push(event));
    const order: string[] = [];
    const gates = { a: gate(), b: gate(), c: gate() };
    const run = (key: keyof typeof gates) =>
      outcome(
        bulkhead.execute(() => {
          order.push(key);
          return gates[key].promise;
        }),
      );
    const a = run('a');
    const b = run('b');
    const c = run('c');
    const refused = await bulkhead.execute(async () => 'd').catch((error: unknown) => error);
    expect(refused).toMatchObject({ reason: 'full', active: 1, queued: 2 });
    expect(queuedEvents).toEqual([
      { bulkhead: 'q', active: 1, queued: 1 },
      { bulkhead: 'q', active: 1, queued: 2 },
    ]);
    expect(order).toEqual(['a']);
    gates.a.open('A');
    await flushMicrotasks();
    expect(order).toEqual(['a', 'b']);
    expect(bulkhead.stats()).toMatchObject({ active: 1, queued: 1 });
    gates.b.fail(new Error('B'));
    await flushMicrotasks();
    expect(order).toEqual(['a', 'b', 'c']);
    gates.c.open('C');
    await flushMicrotasks();
    expect([a.value, (b.error as Error).message, c.value]).toEqual(['A', 'B', 'C']);
    expect(bulkhead.stats()).toEqual({ active: 0, queued: 0, rejected: 1, timedOut: 0, aborted: 0 });
  });

  it('rejects a waiter with queue-timeout after exactly queueTimeout, without running it', async () => {
    const clock = new FakeClock();
    const bulkhead = new BulkheadPolicy({ name: 'slow', maxConcurrent: 1, maxQueue: 1, queueTimeout: '1s' }, { clock });
    const events: BulkheadRejectEvent[] = [];
    bulkhead.onReject((event) => events.push(event));
    const g = gate();
    outcome(bulkhead.execute(() => g.promise));
    let ran = false;
    const waiter = outcome(
      bulkhead.execute(async () => {
        ran = true;
      }),
    );
    expect(clock.pendingTimers).toBe(1);
    await clock.advanceAsync(999);
    expect(waiter.settled).toBe(false);
    await clock.advanceAsync(1);
    expect(waiter.error).toBeInstanceOf(BulkheadRejectedError);
    expect(waiter.error).toMatchObject({ bulkhead: 'slow', reason: 'queue-timeout', active: 1, queued: 0 });
    expect((waiter.error as Error).message).toBe('Bulkhead "slow": no permit within the queue timeout');
    expect(events).toEqual([{ bulkhead: 'slow', reason: 'queue-timeout', active: 1, queued: 0 }]);
    expect(bulkhead.stats()).toEqual({ active: 1, queued: 0, rejected: 0, timedOut: 1, aborted: 0 });
    g.open('done');
    await flushMicrotasks();
    expect(ran).toBe(false);
    expect(bulkhead.stats().active).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it('clears the queue timer of a waiter that gets a permit in time', async () => {
    const clock = new FakeClock();
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1, maxQueue: 1, queueTimeout: 1000 }, { clock });
    const g = gate();
    outcome(bulkhead.execute(() => g.promise));
    const waiter = outcome(bulkhead.execute(async () => 'served'));
    await clock.advanceAsync(500);
    g.open('x');
    await flushMicrotasks();
    expect(waiter.value).toBe('served');
    expect(clock.pendingTimers).toBe(0);
    await clock.advanceAsync(1000);
    expect(bulkhead.stats()).toEqual({ active: 0, queued: 0, rejected: 0, timedOut: 0, aborted: 0 });
  });

  it('lets a waiter with queueTimeout 0 take only a permit released before the timer fires', async () => {
    const clock = new FakeClock();
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1, maxQueue: 1, queueTimeout: 0 }, { clock });
    const g = gate();
    outcome(bulkhead.execute(() => g.promise));
    const lucky = outcome(bulkhead.execute(async () => 'lucky'));
    g.open('x');
    await flushMicrotasks();
    expect(lucky.value).toBe('lucky');
    const h = gate();
    outcome(bulkhead.execute(() => h.promise));
    const late = outcome(bulkhead.execute(async () => 'late'));
    await clock.advanceAsync(0);
    expect(late.error).toMatchObject({ reason: 'queue-timeout' });
    h.open('y');
    await flushMicrotasks();
    expect(bulkhead.stats()).toMatchObject({ active: 0, queued: 0, timedOut: 1 });
  });
});

describe('BulkheadPolicy aborts', () => {
  it('never starts a call whose context is already aborted', async () => {
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1 });
    const context = new CallContext();
    const reason = new Error('gone');
    context.abort(reason);
    let ran = false;
    await expect(
      bulkhead.execute(async () => {
        ran = true;
      }, context),
    ).rejects.toBe(reason);
    const controller = new AbortController();
    controller.abort(reason);
    await expect(
      bulkhead.execute(async () => {
        ran = true;
      }, controller.signal),
    ).rejects.toBe(reason);
    expect(ran).toBe(false);
    expect(bulkhead.stats()).toEqual({ active: 0, queued: 0, rejected: 0, timedOut: 0, aborted: 0 });
  });

  it('removes an aborted waiter at once: its slot is free, it never runs, its listener and timer are gone', async () => {
    const clock = new FakeClock();
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1, maxQueue: 1, queueTimeout: '10s' }, { clock });
    const g = gate();
    outcome(bulkhead.execute(() => g.promise));
    const context = new CallContext();
    const spy = listenerSpy(context);
    let ran = false;
    const waiter = outcome(
      bulkhead.execute(async () => {
        ran = true;
      }, context),
    );
    expect(spy.live).toBe(1);
    expect(clock.pendingTimers).toBe(1);
    const reason = new Error('caller left');
    context.abort(reason);
    // At once: no tick in between.
    expect(bulkhead.stats()).toMatchObject({ queued: 0, aborted: 1 });
    expect(clock.pendingTimers).toBe(0);
    expect(spy.live).toBe(0);
    const next = outcome(bulkhead.execute(async () => 'next'));
    expect(bulkhead.stats().queued).toBe(1);
    await flushMicrotasks();
    expect(waiter.error).toBe(reason);
    g.open('x');
    await flushMicrotasks();
    expect(next.value).toBe('next');
    expect(ran).toBe(false);
    expect(bulkhead.stats()).toEqual({ active: 0, queued: 0, rejected: 0, timedOut: 0, aborted: 1 });
  });

  it('rejects an aborted waiter with OperationAbortedError when the abort has no reason', async () => {
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1, maxQueue: 1 });
    const g = gate();
    outcome(bulkhead.execute(() => g.promise));
    const context = new CallContext();
    const waiter = outcome(bulkhead.execute(async () => 'x', context));
    context.abort(undefined);
    await flushMicrotasks();
    expect(isOperationAbortedError(waiter.error)).toBe(true);
    g.open('x');
  });

  it('follows an AbortSignal passed to execute while queued', async () => {
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1, maxQueue: 1 });
    const g = gate();
    outcome(bulkhead.execute(() => g.promise));
    const controller = new AbortController();
    const waiter = outcome(bulkhead.execute(async () => 'x', controller.signal));
    controller.abort(new Error('stop'));
    expect(bulkhead.stats().queued).toBe(0);
    await flushMicrotasks();
    expect((waiter.error as Error).message).toBe('stop');
    g.open('x');
  });

  it('settles a call aborted while running at once, but keeps its permit until the function settles', async () => {
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1, maxQueue: 1 });
    const context = new CallContext();
    const spy = listenerSpy(context);
    const g = gate();
    const running = outcome(bulkhead.execute(() => g.promise, context));
    const order: string[] = [];
    const waiter = outcome(
      bulkhead.execute(async () => {
        order.push('waiter');
        return 'w';
      }),
    );
    const reason = new Error('abort');
    context.abort(reason);
    await flushMicrotasks();
    expect(running.error).toBe(reason);
    expect(bulkhead.stats()).toMatchObject({ active: 1, queued: 1 });
    expect(order).toEqual([]);
    g.open('late');
    await flushMicrotasks();
    expect(order).toEqual(['waiter']);
    expect(waiter.value).toBe('w');
    expect(bulkhead.stats()).toMatchObject({ active: 0, queued: 0 });
    expect(spy.live).toBe(0);
  });

  it('settles a handed-off waiter aborted while running at once, and removes its listener when it settles', async () => {
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1, maxQueue: 1 });
    const first = gate();
    outcome(bulkhead.execute(() => first.promise));
    const context = new CallContext();
    const spy = listenerSpy(context);
    const second = gate();
    const waiter = outcome(bulkhead.execute(() => second.promise, context));
    first.open('x');
    await flushMicrotasks();
    expect(bulkhead.stats()).toMatchObject({ active: 1, queued: 0 });
    expect(spy.live).toBe(1);
    const reason = new Error('abort');
    context.abort(reason);
    await flushMicrotasks();
    expect(waiter.error).toBe(reason);
    expect(bulkhead.stats().active).toBe(1);
    second.open('late');
    await flushMicrotasks();
    expect(waiter.error).toBe(reason);
    expect(bulkhead.stats()).toMatchObject({ active: 0, aborted: 0 });
    expect(spy.live).toBe(0);
  });

  it('under a TimeoutPolicy: the timeout settles the caller and the permit is held until the function settles', async () => {
    const clock = new FakeClock();
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1, maxQueue: 1 }, { clock });
    const timeout = new TimeoutPolicy(100, { clock });
    const g = gate();
    const call = outcome(timeout.execute((context) => bulkhead.run(() => g.promise, context)));
    await clock.advanceAsync(100);
    expect(call.error).toBeInstanceOf(TimeoutExceededError);
    expect(bulkhead.stats().active).toBe(1);
    g.open('late');
    await flushMicrotasks();
    expect(bulkhead.stats().active).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it('under a TimeoutPolicy: a deadline reached in the queue frees the slot and the function never runs', async () => {
    const clock = new FakeClock();
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1, maxQueue: 1, queueTimeout: '1m' }, { clock });
    const timeout = new TimeoutPolicy(100, { clock });
    const g = gate();
    outcome(bulkhead.execute(() => g.promise));
    let ran = false;
    const call = outcome(
      timeout.execute((context) =>
        bulkhead.run(async () => {
          ran = true;
        }, context),
      ),
    );
    expect(bulkhead.stats().queued).toBe(1);
    await clock.advanceAsync(100);
    expect(call.error).toBeInstanceOf(TimeoutExceededError);
    expect(bulkhead.stats()).toMatchObject({ queued: 0, aborted: 1, timedOut: 0 });
    expect(clock.pendingTimers).toBe(0);
    g.open('x');
    await flushMicrotasks();
    expect(ran).toBe(false);
    expect(bulkhead.stats().active).toBe(0);
  });
});

describe('BulkheadPolicy hygiene', () => {
  it('adds no timer and no abort listener for a call that finds a free permit', async () => {
    const clock = new FakeClock();
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 2, maxQueue: 5, queueTimeout: '1s' }, { clock });
    // A context with a deadline is owned by a timeout, which already watches its aborts.
    const withDeadline = new CallContext(undefined, 1_000_000);
    const spy = listenerSpy(withDeadline);
    const g = gate();
    const call = outcome(bulkhead.execute(() => g.promise, withDeadline));
    expect(spy.added).toBe(0);
    expect(clock.pendingTimers).toBe(0);
    await expect(bulkhead.execute(async () => 1)).resolves.toBe(1);
    expect(clock.pendingTimers).toBe(0);
    g.open('done');
    await flushMicrotasks();
    expect(call.value).toBe('done');
    expect(spy.added).toBe(0);
  });

  it('watches a context without a deadline while running and stops watching when the call settles', async () => {
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1 });
    const context = new CallContext();
    const spy = listenerSpy(context);
    await expect(bulkhead.execute(async () => 1, context)).resolves.toBe(1);
    await expect(bulkhead.execute(() => Promise.reject(new Error('x')), context)).rejects.toThrow('x');
    expect(spy.added).toBe(2);
    expect(spy.live).toBe(0);
  });

  it('runs a waiter in its own caller\'s async context, not in the releasing call\'s', async () => {
    const storage = new AsyncLocalStorage<string>();
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1, maxQueue: 2 });
    const g = gate();
    const seen: Array<string | undefined> = [];
    const first = storage.run('first', () =>
      outcome(
        bulkhead.execute(() => {
          seen.push(storage.getStore());
          return g.promise;
        }),
      ),
    );
    const second = storage.run('second', () =>
      outcome(
        bulkhead.execute(() => {
          seen.push(storage.getStore());
          throw new Error('sync');
        }),
      ),
    );
    const third = storage.run('third', () =>
      outcome(
        bulkhead.execute(async () => {
          seen.push(storage.getStore());
          return storage.getStore();
        }),
      ),
    );
    storage.run('releaser', () => g.open('x'));
    await flushMicrotasks();
    expect(seen).toEqual(['first', 'second', 'third']);
    expect(first.value).toBe('x');
    expect((second.error as Error).message).toBe('sync');
    expect(third.value).toBe('third');
  });

  it('passes the call context to the function, NO_CONTEXT when there is none', async () => {
    const bulkhead = new BulkheadPolicy();
    const context = new CallContext();
    await expect(bulkhead.execute(async (received) => received, context)).resolves.toBe(context);
    await expect(bulkhead.run(async (received) => received, undefined)).resolves.toBe(NO_CONTEXT);
  });

  it('keeps working when an event listener throws, and stops notifying a disposed listener', async () => {
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1, maxQueue: 1 });
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.message);
    process.on('warning', onWarning);
    try {
      const subscription = bulkhead.onQueue(() => {
        throw new Error('listener bug');
      });
      const g = gate();
      outcome(bulkhead.execute(() => g.promise));
      const waiter = outcome(bulkhead.execute(async () => 'ok'));
      subscription.dispose();
      outcome(bulkhead.execute(async () => 'refused'));
      g.open('x');
      await flushMicrotasks();
      expect(waiter.value).toBe('ok');
      expect(warnings.some((message) => message.includes('listener bug'))).toBe(true);
      const count = warnings.length;
      const h = gate();
      outcome(bulkhead.execute(() => h.promise));
      outcome(bulkhead.execute(async () => 'queued'));
      h.open('y');
      await flushMicrotasks();
      expect(warnings.length).toBe(count);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('close() refuses waiters and later calls with "closed", clears timers and listeners, lets running calls finish', async () => {
    const clock = new FakeClock();
    const bulkhead = new BulkheadPolicy({ name: 'shutdown', maxConcurrent: 1, maxQueue: 2, queueTimeout: '5s' }, { clock });
    const events: BulkheadRejectEvent[] = [];
    bulkhead.onReject((event) => events.push(event));
    const g = gate();
    const running = outcome(bulkhead.execute(() => g.promise));
    const context = new CallContext();
    const spy = listenerSpy(context);
    let ran = false;
    const waiters = [
      outcome(
        bulkhead.execute(async () => {
          ran = true;
        }, context),
      ),
      outcome(
        bulkhead.execute(async () => {
          ran = true;
        }),
      ),
    ];
    bulkhead.close();
    bulkhead.close();
    expect(clock.pendingTimers).toBe(0);
    expect(spy.live).toBe(0);
    await flushMicrotasks();
    for (const waiter of waiters) expect(waiter.error).toMatchObject({ bulkhead: 'shutdown', reason: 'closed', active: 1, queued: 2 });
    expect((waiters[0]!.error as Error).message).toBe('Bulkhead "shutdown" is closed');
    await expect(bulkhead.execute(async () => 'late')).rejects.toMatchObject({ reason: 'closed' });
    expect(events.map((event) => event.reason)).toEqual(['closed']);
    g.open('finished');
    await flushMicrotasks();
    expect(running.value).toBe('finished');
    expect(ran).toBe(false);
    expect(bulkhead.stats()).toEqual({ active: 0, queued: 0, rejected: 0, timedOut: 0, aborted: 0 });
  });
});

function at(priority: number): CallContext {
  return new CallContext(undefined, Infinity, priority);
}

describe('BulkheadPolicy priorities', () => {
  it('serves the queue highest priority first, first in first out within a priority', async () => {
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1, maxQueue: 10 });
    const g = gate();
    outcome(bulkhead.execute(() => g.promise));
    const order: string[] = [];
    const calls = [
      ['low-1', 0],
      ['normal-1', 1],
      ['critical', 3],
      ['low-2', 0],
      ['high-1', 2],
      ['normal-2', 1],
      ['high-2', 2],
    ] as const;
    for (const [label, priority] of calls) {
      outcome(
        bulkhead.execute(async () => {
          order.push(label);
        }, at(priority)),
      );
    }
    g.open('x');
    await flushMicrotasks();
    expect(order).toEqual(['critical', 'high-1', 'high-2', 'normal-1', 'normal-2', 'low-1', 'low-2']);
    expect(bulkhead.stats()).toMatchObject({ active: 0, queued: 0 });
  });

  it('lets a call of higher priority displace the newest waiter of the lowest priority from a full queue', async () => {
    const clock = new FakeClock();
    const bulkhead = new BulkheadPolicy({ name: 'api', maxConcurrent: 1, maxQueue: 3, queueTimeout: '10s' }, { clock });
    const events: BulkheadRejectEvent[] = [];
    bulkhead.onReject((event) => events.push(event));
    const g = gate();
    outcome(bulkhead.execute(() => g.promise));
    const ran: string[] = [];
    const call = (label: string, context: CallContext) =>
      outcome(
        bulkhead.execute(async () => {
          ran.push(label);
          return label;
        }, context),
      );
    const lowOld = call('low-old', at(0));
    const lowContext = at(0);
    const spy = listenerSpy(lowContext);
    const lowNew = call('low-new', lowContext);
    const normal = call('normal', at(1));
    expect(clock.pendingTimers).toBe(3);
    const high = call('high', at(2));
    // At once: the newest low waiter leaves, with its timer and abort listener.
    expect(bulkhead.stats()).toMatchObject({ queued: 3, rejected: 1 });
    expect(clock.pendingTimers).toBe(3);
    expect(spy.live).toBe(0);
    expect(events).toEqual([{ bulkhead: 'api', reason: 'displaced', active: 1, queued: 2 }]);
    await flushMicrotasks();
    expect(lowNew.error).toBeInstanceOf(BulkheadRejectedError);
    expect(lowNew.error).toMatchObject({ bulkhead: 'api', reason: 'displaced', active: 1, queued: 2 });
    expect((lowNew.error as Error).message).toBe('Bulkhead "api": displaced from the queue by a call of higher priority');
    expect(isPolicyRejection(lowNew.error)).toBe(true);
    // A call of the same priority as the lowest queued, or lower, is refused as before.
    const lowLate = call('low-late', at(0));
    await flushMicrotasks();
    expect(lowLate.error).toMatchObject({ reason: 'full' });
    g.open('x');
    await flushMicrotasks();
    expect(ran).toEqual(['high', 'normal', 'low-old']);
    expect([high.value, normal.value, lowOld.value]).toEqual(['high', 'normal', 'low-old']);
    expect(bulkhead.stats()).toEqual({ active: 0, queued: 0, rejected: 2, timedOut: 0, aborted: 0 });
    expect(clock.pendingTimers).toBe(0);
  });

  it('displaces nothing without a queue, and keeps the order when waiters of a middle priority leave', async () => {
    const none = new BulkheadPolicy({ maxConcurrent: 1 });
    const g = gate();
    outcome(none.execute(() => g.promise, at(0)));
    await expect(none.execute(async () => 1, at(3))).rejects.toMatchObject({ reason: 'full' });
    g.open('x');

    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1, maxQueue: 5 });
    const h = gate();
    outcome(bulkhead.execute(() => h.promise));
    const order: number[] = [];
    const contexts = [at(0), at(1), at(2), at(1), at(3)];
    const calls = contexts.map((context, index) =>
      outcome(
        bulkhead.execute(async () => {
          order.push(index);
        }, context),
      ),
    );
    contexts[1]!.abort(new Error('gone'));
    contexts[3]!.abort(new Error('gone'));
    contexts[4]!.abort(new Error('gone'));
    // Priorities 1 and 3 are gone; a new normal call goes between 0 and 2 again.
    outcome(
      bulkhead.execute(async () => {
        order.push(5);
      }, at(1)),
    );
    h.open('x');
    await flushMicrotasks();
    expect(order).toEqual([2, 5, 0]);
    expect(calls.filter((call) => call.settled)).toHaveLength(5);
    expect(bulkhead.stats()).toMatchObject({ active: 0, queued: 0, aborted: 3 });
  });

  it('counts a priority that is not a number as normal', async () => {
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1, maxQueue: 3 });
    const g = gate();
    outcome(bulkhead.execute(() => g.promise));
    const order: string[] = [];
    for (const [label, priority] of [['low', 0], ['nan', Number.NaN], ['high', 2]] as const) {
      outcome(
        bulkhead.execute(async () => {
          order.push(label);
        }, at(priority)),
      );
    }
    g.open('x');
    await flushMicrotasks();
    expect(order).toEqual(['high', 'nan', 'low']);
  });

  it('property: serves by priority then arrival, displaces only lower priorities, and every call is accounted for', async () => {
    type PStep = { t: 'call'; priority: number } | { t: 'settle'; pick: number } | { t: 'abort'; pick: number };
    const stepArbitrary: fc.Arbitrary<PStep> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ t: fc.constant('call' as const), priority: fc.integer({ min: -2, max: 4 }) }) },
      { weight: 4, arbitrary: fc.record({ t: fc.constant('settle' as const), pick: fc.nat() }) },
      { weight: 1, arbitrary: fc.record({ t: fc.constant('abort' as const), pick: fc.nat() }) },
    );
    interface Call {
      readonly id: number;
      readonly priority: number;
      readonly context: CallContext;
      readonly result: { settled: boolean; value?: unknown; error?: unknown };
      gate?: Gate;
    }
    const classify = ({ settled, error }: Call['result']): string =>
      !settled ? 'unsettled' : error === undefined ? 'value' : isBulkheadRejectedError(error) ? error.reason : (error as Error).message === 'abort' ? 'aborted' : 'other';
    const totals = { displaced: 0, servedFromQueue: 0, full: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 0, max: 5 }),
        fc.array(stepArbitrary, { minLength: 1, maxLength: 120, size: 'medium' }),
        async (maxConcurrent, maxQueue, steps) => {
          const bulkhead = new BulkheadPolicy({ maxConcurrent, maxQueue });
          const calls: Call[] = [];
          // Who displaced whom, as the bulkhead reports it: the displacer is the call being made.
          let arriving: Call | undefined;
          const displacers: Call[] = [];
          bulkhead.onReject((event) => {
            if (event.reason === 'displaced') displacers.push(arriving!);
          });
          const displacedInOrder: Call[] = [];
          // The reference model: permits taken, and the queue in arrival order.
          let running = 0;
          let queue: Call[] = [];
          const expected = new Map<number, string>();
          const started: number[] = [];
          const modelStarted: number[] = [];
          const violations: string[] = [];
          const start = (call: Call) => {
            modelStarted.push(call.id);
            running++;
          };
          const settle = (call: Call) => {
            expected.set(call.id, 'value');
            call.gate!.open('done');
            running--;
            // The first of the highest priority queued.
            const next = queue.reduce<Call | undefined>((best, c) => (best === undefined || c.priority > best.priority ? c : best), undefined);
            if (next !== undefined) {
              queue = queue.filter((c) => c !== next);
              start(next);
              totals.servedFromQueue++;
            }
          };
          for (const step of steps) {
            if (step.t === 'call') {
              const call: Call = { id: calls.length, priority: step.priority, context: at(step.priority), result: { settled: false } };
              calls.push(call);
              if (running < maxConcurrent) start(call);
              else if (queue.length < maxQueue) queue.push(call);
              else {
                // The newest waiter of the lowest priority.
                const lowest = queue.reduce<Call | undefined>((low, c) => (low === undefined || c.priority <= low.priority ? c : low), undefined);
                if (lowest !== undefined && lowest.priority < call.priority) {
                  queue = queue.filter((c) => c !== lowest);
                  expected.set(lowest.id, 'displaced');
                  queue.push(call);
                  totals.displaced++;
                } else {
                  expected.set(call.id, 'full');
                  totals.full++;
                }
              }
              arriving = call;
              bulkhead
                .execute(() => {
                  started.push(call.id);
                  call.gate = gate();
                  return call.gate.promise;
                }, call.context)
                .then(
                  (value) => Object.assign(call.result, { settled: true, value }),
                  (error: unknown) => {
                    Object.assign(call.result, { settled: true, error });
                    if (isBulkheadRejectedError(error) && error.reason === 'displaced') displacedInOrder.push(call);
                  },
                );
              arriving = undefined;
            } else if (step.t === 'settle') {
              const open = calls.filter((c) => c.gate !== undefined && !expected.has(c.id));
              if (open.length === 0) continue;
              settle(open[step.pick % open.length]!);
            } else {
              if (queue.length === 0) continue;
              const call = queue[step.pick % queue.length]!;
              queue = queue.filter((c) => c !== call);
              expected.set(call.id, 'aborted');
              call.context.abort(new Error('abort'));
            }
            await flushMicrotasks();
            if (started.join() !== modelStarted.join()) violations.push(`started ${started.join()}, model ${modelStarted.join()}`);
            if (bulkhead.stats().queued !== queue.length) violations.push(`queued ${bulkhead.stats().queued}, model ${queue.length}`);
            if (violations.length > 0) break;
          }
          expect(violations).toEqual([]);
          // Drain: settle every running call, which starts the waiters in turn.
          for (let open = calls.find((c) => c.gate !== undefined && !expected.has(c.id)); open !== undefined; open = calls.find((c) => c.gate !== undefined && !expected.has(c.id))) {
            settle(open);
            await flushMicrotasks();
          }
          expect(queue).toEqual([]);
          // Served in the model's order: highest priority first, then arrival.
          expect(started).toEqual(modelStarted);
          expect(calls.map((call) => ({ id: call.id, outcome: classify(call.result) }))).toEqual(calls.map((call) => ({ id: call.id, outcome: expected.get(call.id) })));
          // Each displaced call had a lower priority than the call that took its place.
          expect(displacers).toHaveLength(displacedInOrder.length);
          displacedInOrder.forEach((displaced, index) => expect(displaced.priority).toBeLessThan(displacers[index]!.priority));
          const counts = { value: 0, full: 0, displaced: 0, aborted: 0 };
          for (const kind of expected.values()) counts[kind as keyof typeof counts]++;
          expect(counts.value + counts.full + counts.displaced + counts.aborted).toBe(calls.length);
          expect(bulkhead.stats()).toEqual({ active: 0, queued: 0, rejected: counts.full + counts.displaced, timedOut: 0, aborted: counts.aborted });
        },
      ),
      { numRuns: 200 },
    );
    console.log(`[priority] displaced ${totals.displaced}, served from the queue ${totals.servedFromQueue}, refused full ${totals.full}`);
    expect(totals.displaced).toBeGreaterThan(50);
    expect(totals.servedFromQueue).toBeGreaterThan(100);
  });
});
