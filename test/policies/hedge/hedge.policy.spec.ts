import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FakeClock, flushMicrotasks } from '../../../lib/core/clock.js';
import { CallContext, getAbortSignal } from '../../../lib/core/context.js';
import { InvalidOptionError, isOperationAbortedError } from '../../../lib/core/errors.js';
import { HedgePolicy, type HedgeEvent } from '../../../lib/policies/hedge/index.js';
import { RetryBudget } from '../../../lib/policies/retry/index.js';
import { catchError, seededRandom, settle } from '../retry/helpers.js';

interface Attempt {
  /** The attempt's own signal, read through `getAbortSignal()`. */
  signal: AbortSignal | undefined;
  /** The context the task received. */
  context: CallContext;
  startedAt: number;
}

/**
 * A downstream driven by the fake clock: attempt n answers after `plan[n].latency` ms with
 * `value-n` or an error; it stops (clearing its timer) when its signal fires, like a real client.
 */
function downstream(clock: FakeClock, plan: ReadonlyArray<{ latency: number; ok: boolean }>) {
  const attempts: Attempt[] = [];
  const fn = (context: CallContext): Promise<string> => {
    const index = attempts.length;
    const signal = getAbortSignal();
    attempts.push({ signal, context, startedAt: clock.now() });
    const step = plan[index] ?? plan[plan.length - 1]!;
    return new Promise<string>((resolve, reject) => {
      const timer = clock.setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        if (step.ok) resolve(`value-${index + 1}`);
        else reject(new Error(`error-${index + 1}`));
      }, step.latency);
      const onAbort = (): void => {
        clock.clearTimeout(timer);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  };
  return { fn, attempts };
}

describe('HedgePolicy options', () => {
  it('applies the documented defaults', () => {
    const hedge = new HedgePolicy();
    expect(hedge.options).toEqual({ delay: undefined, percentile: 95, minDelay: 0, maxDelay: 1000, sampleSize: 100, maxHedges: 1 });
    expect(hedge.budget).toBeUndefined();
    expect(new HedgePolicy({ delay: '50ms' }).options).toMatchObject({ delay: 50, percentile: undefined });
  });

  it.each([
    [{ maxHedges: 0 }, 'maxHedges'],
    [{ maxHedges: 1.5 }, 'maxHedges'],
    [{ delay: -1 }, 'delay'],
    [{ delay: {} }, 'delay.percentile'],
    [{ delay: { percentile: 0 } }, 'delay.percentile'],
    [{ delay: { percentile: 101 } }, 'delay.percentile'],
    [{ delay: { percentile: 90, minDelay: 100, maxDelay: 50 } }, 'delay.maxDelay'],
    [{ delay: { percentile: 90, sampleSize: 0 } }, 'delay.sampleSize'],
    [{ delay: { percentile: 90, samples: 5 } }, 'delay.samples'],
    [{ budget: { ratio: -1 } }, 'budget.ratio'],
    [{ hedges: 2 }, 'hedges'],
  ])('rejects %j naming the option', (options, option) => {
    const error = catchError(() => new HedgePolicy(options as never));
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect((error as InvalidOptionError).option).toBe(option);
  });
});

describe('HedgePolicy with a fixed delay', () => {
  it('starts no hedge when the first attempt answers in time, and leaves no timer', async () => {
    const clock = new FakeClock();
    const hedge = new HedgePolicy({ delay: 100 }, { clock });
    const { fn, attempts } = downstream(clock, [{ latency: 99, ok: true }]);
    const outcome = settle(hedge.execute(fn));
    await clock.advanceAsync(99);
    expect(await outcome).toEqual({ ok: true, value: 'value-1' });
    expect(attempts).toHaveLength(1);
    expect(clock.pendingTimers).toBe(0);
  });

  it('starts a hedge after the delay; the hedge answers and the first attempt is aborted through its own signal', async () => {
    const clock = new FakeClock();
    const hedge = new HedgePolicy({ delay: '100ms' }, { clock });
    const events: HedgeEvent[] = [];
    hedge.onHedge((event) => events.push(event));
    const { fn, attempts } = downstream(clock, [{ latency: 1_000, ok: true }, { latency: 20, ok: true }]);
    const outcome = settle(hedge.execute(fn));
    await clock.advanceAsync(100);
    expect(events).toEqual([{ attempt: 2, delayMs: 100 }]);
    expect(attempts.map((a) => a.startedAt)).toEqual([0, 100]);
    // Each attempt has a context and a signal of its own.
    expect(attempts[0]!.signal).toBe(attempts[0]!.context.signal);
    expect(attempts[0]!.signal).not.toBe(attempts[1]!.signal);
    await clock.advanceAsync(20);
    expect(await outcome).toEqual({ ok: true, value: 'value-2' });
    expect(attempts[0]!.signal!.aborted).toBe(true);
    expect(isOperationAbortedError(attempts[0]!.signal!.reason)).toBe(true);
    expect(attempts[1]!.signal!.aborted).toBe(false);
    expect(clock.pendingTimers).toBe(0);
    expect(hedge.stats()).toMatchObject({ calls: 1, hedges: 1, hedgeWins: 1, refused: 0 });
  });

  it('aborts the hedge when the first attempt answers first', async () => {
    const clock = new FakeClock();
    const hedge = new HedgePolicy({ delay: 100 }, { clock });
    const { fn, attempts } = downstream(clock, [{ latency: 150, ok: true }, { latency: 500, ok: true }]);
    const outcome = settle(hedge.execute(fn));
    await clock.advanceAsync(150);
    expect(await outcome).toEqual({ ok: true, value: 'value-1' });
    expect(attempts).toHaveLength(2);
    expect(attempts[1]!.signal!.aborted).toBe(true);
    expect(clock.pendingTimers).toBe(0);
  });

  it('starts up to maxHedges hedges, one per delay', async () => {
    const clock = new FakeClock();
    const hedge = new HedgePolicy({ delay: 100, maxHedges: 2 }, { clock });
    const { fn, attempts } = downstream(clock, [{ latency: 10_000, ok: true }]);
    const outcome = settle(hedge.execute(fn));
    await clock.advanceAsync(1_000);
    expect(attempts.map((a) => a.startedAt)).toEqual([0, 100, 200]);
    await clock.advanceAsync(9_000);
    expect(await outcome).toEqual({ ok: true, value: 'value-1' });
    expect(attempts.slice(1).every((a) => a.signal!.aborted)).toBe(true);
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects at once with the error when the only running attempt fails, starting no hedge', async () => {
    const clock = new FakeClock();
    const hedge = new HedgePolicy({ delay: 100 }, { clock });
    const { fn, attempts } = downstream(clock, [{ latency: 30, ok: false }]);
    const outcome = settle(hedge.execute(fn));
    await clock.advanceAsync(30);
    const result = await outcome;
    expect(result.ok).toBe(false);
    expect((result as { error: Error }).error.message).toBe('error-1');
    expect(attempts).toHaveLength(1);
    expect(clock.pendingTimers).toBe(0);
  });

  it('waits for the others when one attempt fails, and rejects with the last error when all fail', async () => {
    const clock = new FakeClock();
    const hedge = new HedgePolicy({ delay: 100, maxHedges: 2 }, { clock });
    const { fn } = downstream(clock, [
      { latency: 150, ok: false },
      { latency: 200, ok: false },
      { latency: 50, ok: false },
    ]);
    const outcome = settle(hedge.execute(fn));
    await clock.advanceAsync(1_000);
    const result = await outcome;
    // Attempt 1 fails at 150, attempt 3 at 250, attempt 2 last at 300.
    expect((result as { error: Error }).error.message).toBe('error-2');
    expect(clock.pendingTimers).toBe(0);
  });

  it('lets a hedge win after the first attempt failed', async () => {
    const clock = new FakeClock();
    const hedge = new HedgePolicy({ delay: 100 }, { clock });
    const { fn } = downstream(clock, [
      { latency: 150, ok: false },
      { latency: 100, ok: true },
    ]);
    const outcome = settle(hedge.execute(fn));
    await clock.advanceAsync(1_000);
    expect(await outcome).toEqual({ ok: true, value: 'value-2' });
  });

  it('turns a synchronous throw into a rejection', async () => {
    const hedge = new HedgePolicy({ delay: 100 }, { clock: new FakeClock() });
    const result = await settle(
      hedge.execute(() => {
        throw new Error('sync');
      }),
    );
    expect((result as { error: Error }).error.message).toBe('sync');
  });

  it('rejects with the abort reason when the caller aborts, aborting every attempt and clearing the timer', async () => {
    const clock = new FakeClock();
    const hedge = new HedgePolicy({ delay: 100 }, { clock });
    const { fn, attempts } = downstream(clock, [{ latency: 10_000, ok: true }]);
    const controller = new AbortController();
    const outcome = settle(hedge.execute(fn, controller.signal));
    await clock.advanceAsync(150);
    const reason = new Error('caller gave up');
    controller.abort(reason);
    expect(await outcome).toEqual({ ok: false, error: reason });
    expect(attempts.every((a) => a.signal!.aborted)).toBe(true);
    await flushMicrotasks();
    expect(clock.pendingTimers).toBe(0);
    const late = await settle(hedge.execute(fn, controller.signal));
    expect(late).toEqual({ ok: false, error: reason });
  });
});

describe('HedgePolicy with a percentile delay', () => {
  it('waits maxDelay until it has seen enough successes, then the percentile of their latencies', async () => {
    const clock = new FakeClock();
    const hedge = new HedgePolicy({ delay: { percentile: 50, maxDelay: 500, sampleSize: 20 } }, { clock });
    expect(hedge.stats().delayMs).toBe(500);
    for (let latency = 1; latency <= 20; latency++) {
      const { fn } = downstream(clock, [{ latency, ok: true }]);
      const outcome = hedge.execute(fn);
      await clock.advanceAsync(latency);
      await outcome;
    }
    // Nearest rank: the 10th of 1..20 ms.
    expect(hedge.stats().delayMs).toBe(10);
    const events: HedgeEvent[] = [];
    hedge.onHedge((event) => events.push(event));
    const { fn, attempts } = downstream(clock, [{ latency: 1_000, ok: true }, { latency: 1, ok: true }]);
    const start = clock.now();
    const outcome = settle(hedge.execute(fn));
    await clock.advanceAsync(11);
    expect(await outcome).toEqual({ ok: true, value: 'value-2' });
    expect(attempts[1]!.startedAt - start).toBe(10);
    expect(events).toEqual([{ attempt: 2, delayMs: 10 }]);
  });

  it('keeps the percentile within minDelay and maxDelay', async () => {
    const clock = new FakeClock();
    const hedge = new HedgePolicy({ delay: { percentile: 99, minDelay: 40, maxDelay: 60, sampleSize: 10 } }, { clock });
    const run = async (latency: number): Promise<void> => {
      const { fn } = downstream(clock, [{ latency, ok: true }]);
      const outcome = hedge.execute(fn);
      await clock.advanceAsync(latency);
      await outcome;
    };
    for (let i = 0; i < 10; i++) await run(5);
    expect(hedge.stats().delayMs).toBe(40);
    for (let i = 0; i < 10; i++) await run(59);
    expect(hedge.stats().delayMs).toBe(59);
  });
});

describe('HedgePolicy with a budget', () => {
  it('starts no hedge when the budget refuses; the first attempt still answers', async () => {
    const clock = new FakeClock();
    const budget = new RetryBudget({ ratio: 0, minRetriesPerSecond: 0 }, { clock });
    const hedge = new HedgePolicy({ delay: 100, budget }, { clock });
    const { fn, attempts } = downstream(clock, [{ latency: 300, ok: true }]);
    const outcome = settle(hedge.execute(fn));
    await clock.advanceAsync(300);
    expect(await outcome).toEqual({ ok: true, value: 'value-1' });
    expect(attempts).toHaveLength(1);
    expect(hedge.stats()).toMatchObject({ hedges: 0, refused: 1 });
    expect(budget.stats()).toMatchObject({ calls: 1, refused: 1 });
  });

  it('spends one token per hedge: ratio 0.5 over 10 slow calls allows 5 hedges', async () => {
    const clock = new FakeClock();
    const hedge = new HedgePolicy({ delay: 100, budget: { ratio: 0.5, minRetriesPerSecond: 0 } }, { clock });
    const { fn, attempts } = downstream(clock, [{ latency: 1_000, ok: true }]);
    const outcomes = Array.from({ length: 10 }, () => settle(hedge.execute(fn)));
    await clock.advanceAsync(2_000);
    await Promise.all(outcomes);
    expect(attempts).toHaveLength(15);
    expect(hedge.stats()).toMatchObject({ calls: 10, hedges: 5, refused: 5 });
  });

  it('awaits a budget that answers asynchronously, and starts nothing once the call settled', async () => {
    const clock = new FakeClock();
    let release!: (ok: boolean) => void;
    const hedge = new HedgePolicy(
      { delay: 100, budget: { name: 'async', recordCall() {}, tryAcquire: () => new Promise<boolean>((resolve) => (release = resolve)) } },
      { clock },
    );
    const { fn, attempts } = downstream(clock, [{ latency: 150, ok: true }]);
    const outcome = settle(hedge.execute(fn));
    await clock.advanceAsync(150);
    expect(await outcome).toEqual({ ok: true, value: 'value-1' });
    release(true);
    await flushMicrotasks();
    expect(attempts).toHaveLength(1);
  });
});

/**
 * The outcome of a hedged call, computed from the plan alone by a discrete-event simulation: attempt
 * k starts at k × delay unless the call settled before; the first success settles it, and a failure
 * settles it when no other attempt is running. (Starts are multiples of 10 and ends are not: no ties.)
 */
function model(plan: ReadonlyArray<{ latency: number; ok: boolean }>, delay: number, maxHedges: number): { attempts: number; result: string; ok: boolean } {
  const ends = new Map<number, number>();
  let started = 0;
  for (;;) {
    const nextStart = started <= maxHedges ? started * delay : Infinity;
    let endIndex = -1;
    let endAt = Infinity;
    for (const [index, at] of ends) {
      if (at < endAt) {
        endAt = at;
        endIndex = index;
      }
    }
    if (nextStart < endAt) {
      const step = plan[started] ?? plan[plan.length - 1]!;
      ends.set(started, nextStart + step.latency);
      started++;
      continue;
    }
    ends.delete(endIndex);
    const step = plan[endIndex] ?? plan[plan.length - 1]!;
    if (step.ok) return { attempts: started, result: `value-${endIndex + 1}`, ok: true };
    if (ends.size === 0) return { attempts: started, result: `error-${endIndex + 1}`, ok: false };
  }
}

describe('HedgePolicy properties', () => {
  it('makes at most 1 + maxHedges attempts, settles exactly once as the model says, and leaves no timer', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 20 }).map((n) => n * 10),
        fc.array(fc.record({ latency: fc.integer({ min: 0, max: 60 }).map((n) => n * 10 + 5), ok: fc.boolean() }), { minLength: 1, maxLength: 6 }),
        async (maxHedges, delay, plan) => {
          const clock = new FakeClock();
          const hedge = new HedgePolicy({ delay, maxHedges }, { clock });
          const { fn, attempts } = downstream(clock, plan);
          let settlements = 0;
          const outcome = hedge.execute(fn).then(
            (value) => {
              settlements++;
              return { ok: true, result: value };
            },
            (error: Error) => {
              settlements++;
              return { ok: false, result: error.message };
            },
          );
          await clock.runAllAsync();
          const got = await outcome;
          const expected = model(plan, delay, maxHedges);
          expect(attempts.length).toBeLessThanOrEqual(1 + maxHedges);
          expect(attempts.length).toBe(expected.attempts);
          expect(got).toEqual({ ok: expected.ok, result: expected.result });
          expect(settlements).toBe(1);
          expect(clock.pendingTimers).toBe(0);
          // Every attempt still running when the call answered with a success was aborted.
          const winner = got.ok ? Number(got.result.slice('value-'.length)) - 1 : -1;
          const wonAt = got.ok ? attempts[winner]!.startedAt + (plan[winner] ?? plan[plan.length - 1]!).latency : Infinity;
          const stillRunning = attempts.filter((attempt, index) => index !== winner && attempt.startedAt + (plan[index] ?? plan[plan.length - 1]!).latency > wonAt);
          expect(stillRunning.filter((attempt) => !attempt.signal!.aborted)).toEqual([]);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('HedgePolicy robustness', () => {
  it('keeps hedging when a hedge throws synchronously while another attempt runs', async () => {
    const clock = new FakeClock();
    const hedge = new HedgePolicy({ delay: 100, maxHedges: 2 }, { clock });
    const { fn: slow, attempts } = downstream(clock, [{ latency: 1_000, ok: true }, { latency: 1_000, ok: true }, { latency: 20, ok: true }]);
    let calls = 0;
    const fn = (context: CallContext): Promise<string> => {
      if (++calls === 2) {
        attempts.push({ signal: undefined, context, startedAt: clock.now() });
        throw new Error('sync');
      }
      return slow(context);
    };
    const outcome = settle(hedge.execute(fn));
    await clock.advanceAsync(220);
    // Attempt 2 threw at 100; attempt 3 still starts one delay later and answers at 220.
    expect(attempts.map((a) => a.startedAt)).toEqual([0, 100, 200]);
    expect(await outcome).toEqual({ ok: true, value: 'value-3' });
    expect(hedge.stats()).toMatchObject({ hedges: 2, hedgeWins: 1 });
    expect(clock.pendingTimers).toBe(0);
  });

  it('treats a budget whose tryAcquire throws as a refusal, in the timer, without an uncaught exception', async () => {
    const clock = new FakeClock();
    const budget = {
      name: 'broken',
      recordCall() {},
      tryAcquire(): boolean {
        throw new Error('budget store down');
      },
    };
    const hedge = new HedgePolicy({ delay: 100, budget }, { clock });
    const { fn, attempts } = downstream(clock, [{ latency: 300, ok: true }]);
    const outcome = settle(hedge.execute(fn));
    // Before the fix the timer callback threw out of advanceAsync.
    await clock.advanceAsync(300);
    expect(await outcome).toEqual({ ok: true, value: 'value-1' });
    expect(attempts).toHaveLength(1);
    expect(hedge.stats()).toMatchObject({ hedges: 0, refused: 1 });
  });

  it('runs the call when the budget recordCall throws', async () => {
    const clock = new FakeClock();
    const budget = {
      name: 'broken',
      recordCall(): void {
        throw new Error('budget store down');
      },
      tryAcquire: () => true,
    };
    const hedge = new HedgePolicy({ delay: 100, budget }, { clock });
    const { fn } = downstream(clock, [{ latency: 300, ok: true }, { latency: 10, ok: true }]);
    const outcome = settle(hedge.execute(fn));
    await clock.advanceAsync(110);
    expect(await outcome).toEqual({ ok: true, value: 'value-2' });
    expect(hedge.stats()).toMatchObject({ calls: 1, hedges: 1 });
  });
});

describe('HedgePolicy percentile under hedging', () => {
  it('records the call latency from the first attempt start, so a slow first attempt that loses still counts as slow', async () => {
    const clock = new FakeClock();
    const hedge = new HedgePolicy({ delay: { percentile: 100, maxDelay: 100, sampleSize: 10 } }, { clock });
    // Until 10 samples the delay is maxDelay (100): each first attempt (500 ms) loses to a 5 ms hedge at 105.
    for (let i = 0; i < 10; i++) {
      const { fn } = downstream(clock, [{ latency: 500, ok: true }, { latency: 5, ok: true }]);
      const outcome = settle(hedge.execute(fn));
      await clock.runAllAsync();
      expect(await outcome).toEqual({ ok: true, value: 'value-2' });
    }
    // The winner alone took 5 ms; the call took 105, a lower bound on the first attempt's latency.
    expect(hedge.stats().delayMs).toBe(100);
  });

  it('hedges about (100 − percentile) % of calls: the delay settles at the true p95, not below it', async () => {
    const clock = new FakeClock();
    const random = seededRandom(7);
    // 90 % of latencies uniform in [5, 15) ms, 10 % in [20, 40): the true p95 is 30 ms.
    const latency = (): number => (random() < 0.9 ? 5 + 10 * random() : 20 + 20 * random());
    const hedge = new HedgePolicy({ delay: { percentile: 95, maxDelay: 100 } }, { clock });
    const calls = 3_000;
    const delays: number[] = [];
    for (let i = 0; i < calls; i++) {
      const { fn } = downstream(clock, [
        { latency: latency(), ok: true },
        { latency: latency(), ok: true },
      ]);
      const outcome = settle(hedge.execute(fn));
      await clock.runAllAsync();
      await outcome;
      if (i >= 500) delays.push(hedge.stats().delayMs);
    }
    const { hedges } = hedge.stats();
    const meanDelay = delays.reduce((sum, d) => sum + d, 0) / delays.length;
    console.log(`[hedge p95] hedged ${((100 * hedges) / calls).toFixed(1)} % of calls, mean delay ${meanDelay.toFixed(1)} ms (true p95 30 ms)`);
    // The 95th of 100 samples estimates the 94th percentile on average (28 ms here, 6 % hedged);
    // recording the winner's latency alone gave 18 ms and 10.5 % hedged with this seed.
    expect(hedges / calls).toBeGreaterThan(0.045);
    expect(hedges / calls).toBeLessThan(0.075);
    expect(meanDelay).toBeGreaterThan(24);
    expect(meanDelay).toBeLessThan(32);
  });
});
