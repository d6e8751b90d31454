import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../../lib/core/clock.js';
import { CallContext } from '../../../lib/core/context.js';
import { InvalidOptionError } from '../../../lib/core/errors.js';
import { RetryBudget, RetryPolicy, type RetryBudgetInstance, type RetryGiveUpEvent } from '../../../lib/policies/retry/index.js';
import { catchError, drain, seededRandom, settle } from './helpers.js';

function grants(budget: RetryBudget, tries: number): number {
  let granted = 0;
  for (let i = 0; i < tries; i++) if (budget.tryAcquire()) granted++;
  return granted;
}

describe('RetryBudget', () => {
  it('applies the documented defaults', () => {
    const budget = new RetryBudget();
    expect(budget.name).toBe('default');
    expect(budget.options).toEqual({ ratio: 0.2, minRetriesPerSecond: 10, window: 10_000 });
  });

  it.each([
    [{ ratio: -0.1 }, 'ratio'],
    [{ ratio: Number.NaN }, 'ratio'],
    [{ ratio: 1001 }, 'ratio'],
    [{ minRetriesPerSecond: -1 }, 'minRetriesPerSecond'],
    [{ window: 0 }, 'window'],
    [{ window: '1 week' }, 'window'],
    [{ name: '' }, 'name'],
    [{ ratoi: 0.2 }, 'ratoi'],
  ])('rejects %j naming the option', (options, option) => {
    const error = catchError(() => new RetryBudget(options as never));
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect((error as InvalidOptionError).option).toBe(option);
  });

  it('grants ratio × calls retries from deposits, no more', () => {
    const budget = new RetryBudget({ ratio: 0.2, minRetriesPerSecond: 0 }, { clock: new FakeClock() });
    for (let i = 0; i < 10; i++) budget.recordCall();
    expect(grants(budget, 5)).toBe(2);
    budget.recordCall();
    budget.recordCall();
    budget.recordCall();
    budget.recordCall();
    expect(budget.tryAcquire()).toBe(false);
    budget.recordCall();
    expect(budget.tryAcquire()).toBe(true);
    expect(budget.stats()).toEqual({ calls: 15, retries: 3, refused: 4, available: 0 });
  });

  it('lets deposits expire after the window (to a tenth of it)', () => {
    const clock = new FakeClock();
    const budget = new RetryBudget({ ratio: 1, minRetriesPerSecond: 0, window: '10s' }, { clock });
    for (let i = 0; i < 5; i++) budget.recordCall();
    clock.advance(8_999);
    expect(budget.stats().available).toBe(5);
    clock.advance(1_001);
    expect(budget.stats().available).toBe(0);
    expect(budget.tryAcquire()).toBe(false);
  });

  it('keeps a withdrawal for as long as the deposits it spent: a deposit is never spent twice', () => {
    const clock = new FakeClock();
    const budget = new RetryBudget({ ratio: 1, minRetriesPerSecond: 0, window: 1000 }, { clock });
    budget.recordCall();
    clock.advance(500);
    expect(budget.tryAcquire()).toBe(true);
    budget.recordCall();
    clock.advance(600);
    // The first deposit expired; the withdrawal made after it has not: the second deposit is owed.
    expect(budget.tryAcquire()).toBe(false);
    clock.advance(500);
    budget.recordCall();
    expect(budget.tryAcquire()).toBe(true);
  });

  it('has a floor of minRetriesPerSecond: one second of burst, then the rate', () => {
    const clock = new FakeClock();
    const budget = new RetryBudget({ ratio: 0, minRetriesPerSecond: 10 }, { clock });
    expect(grants(budget, 20)).toBe(10);
    clock.advance(99);
    expect(budget.tryAcquire()).toBe(false);
    clock.advance(1);
    expect(budget.tryAcquire()).toBe(true);
    clock.advance(60_000);
    expect(grants(budget, 20)).toBe(10);
  });

  it('lets a floor below one per second grant one retry per 1/rate seconds', () => {
    const clock = new FakeClock();
    const budget = new RetryBudget({ ratio: 0, minRetriesPerSecond: 0.5 }, { clock });
    expect(grants(budget, 3)).toBe(1);
    clock.advance(1_999);
    expect(budget.tryAcquire()).toBe(false);
    clock.advance(1);
    expect(budget.tryAcquire()).toBe(true);
  });

  it('refuses everything with ratio 0 and no floor', () => {
    const budget = new RetryBudget({ ratio: 0, minRetriesPerSecond: 0 }, { clock: new FakeClock() });
    for (let i = 0; i < 100; i++) budget.recordCall();
    expect(budget.tryAcquire()).toBe(false);
  });

  it('clears the whole ring after a quiet spell longer than the window', () => {
    const clock = new FakeClock();
    const budget = new RetryBudget({ ratio: 1, minRetriesPerSecond: 0, window: 1000 }, { clock });
    for (let i = 0; i < 3; i++) budget.recordCall();
    clock.advance(1_000_000);
    expect(budget.stats().available).toBe(0);
    budget.recordCall();
    expect(grants(budget, 3)).toBe(1);
  });

  it('grants exactly floor(ratio × calls) when the calls fall within one slot (property)', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 5, noNaN: true }), fc.integer({ min: 0, max: 200 }), (ratio, calls) => {
        const budget = new RetryBudget({ ratio, minRetriesPerSecond: 0 }, { clock: new FakeClock() });
        for (let i = 0; i < calls; i++) budget.recordCall();
        const granted = grants(budget, calls * 6 + 2);
        expect(granted).toBeLessThanOrEqual(ratio * calls);
        expect(granted).toBeGreaterThanOrEqual(Math.floor(ratio * calls - 1e-9));
      }),
    );
  });
});

/** A downstream failing every attempt, counting them. */
function failing() {
  let attempts = 0;
  return {
    fn: () => {
      attempts++;
      return Promise.reject(new Error(`attempt ${attempts}`));
    },
    get attempts() {
      return attempts;
    },
  };
}

/** A deliberately broken budget: withdrawals are forgotten at once, so every deposit can be spent again and again. */
class LeakyBudget implements RetryBudgetInstance {
  readonly name = 'leaky';
  private deposits = 0;
  constructor(private readonly ratio: number) {}
  recordCall(): void {
    this.deposits += this.ratio;
  }
  tryAcquire(): boolean {
    return this.deposits >= 1;
  }
}

/**
 * Calls arrive in bursts separated by gaps, each through a RetryPolicy on the budget `make` builds,
 * to a downstream that always fails; the attempts must stay within the budget's bound.
 */
function boundProperty<B extends RetryBudgetInstance>(
  make: (options: { ratio: number; minRetriesPerSecond: number; window: number }, clock: FakeClock) => B,
  check: (budget: B, calls: number, attempts: number) => void = () => {},
) {
  return fc.asyncProperty(
    fc.double({ min: 0, max: 2, noNaN: true }),
    fc.oneof(fc.constant(0), fc.double({ min: 0.1, max: 50, noNaN: true })),
    fc.integer({ min: 100, max: 20_000 }),
    fc.integer({ min: 2, max: 8 }),
    fc.array(fc.record({ gap: fc.integer({ min: 0, max: 3_000 }), burst: fc.integer({ min: 0, max: 15 }) }), { minLength: 1, maxLength: 25 }),
    fc.integer(),
    async (ratio, floor, window, maxAttempts, pattern, seed) => {
      const clock = new FakeClock();
      const budget = make({ ratio, minRetriesPerSecond: floor, window }, clock);
      const retry = new RetryPolicy({ maxAttempts, delay: 50, maxDelay: 2_000, budget }, { clock, random: seededRandom(seed) });
      const down = failing();
      let calls = 0;
      const outcomes: Array<Promise<unknown>> = [];
      for (const { gap, burst } of pattern) {
        await clock.advanceAsync(gap);
        for (let i = 0; i < burst; i++) {
          calls++;
          outcomes.push(settle(retry.execute(down.fn)));
        }
      }
      await drain(clock);
      await Promise.all(outcomes);
      const seconds = clock.now() / 1000;
      const burst = floor === 0 ? 0 : Math.max(1, floor);
      expect(down.attempts).toBeLessThanOrEqual((1 + ratio) * calls + floor * seconds + burst + 1e-9);
      check(budget, calls, down.attempts);
    },
  );
}

describe('RetryPolicy with a budget', () => {
  it('gives up with reason "budget", rethrowing the last error, once the budget is spent', async () => {
    const clock = new FakeClock();
    const budget = new RetryBudget({ ratio: 0, minRetriesPerSecond: 1 }, { clock });
    const retry = new RetryPolicy({ maxAttempts: 5, delay: 10, jitter: 'none', budget }, { clock });
    const giveUps: RetryGiveUpEvent[] = [];
    retry.onGiveUp((event) => giveUps.push(event));
    const down = failing();
    const outcome = settle(retry.execute(down.fn));
    await drain(clock);
    const result = await outcome;
    expect(result.ok).toBe(false);
    expect((result as { error: Error }).error.message).toBe('attempt 2');
    expect(down.attempts).toBe(2);
    expect(giveUps).toEqual([{ attempts: 2, error: (result as { error: unknown }).error, reason: 'budget' }]);
    expect(budget.stats()).toMatchObject({ calls: 1, retries: 1, refused: 1 });
  });

  it('builds a budget of its own from options, and validates them under "budget."', () => {
    const retry = new RetryPolicy({ budget: { ratio: 0.5 } });
    expect(retry.budget).toBeInstanceOf(RetryBudget);
    expect((retry.budget as RetryBudget).options.ratio).toBe(0.5);
    const error = catchError(() => new RetryPolicy({ budget: { ratio: -1 } }));
    expect((error as InvalidOptionError).option).toBe('budget.ratio');
    expect((catchError(() => new RetryPolicy({ budget: 3 as never })) as InvalidOptionError).option).toBe('budget');
  });

  it('deposits once per call, not per attempt, and never spends a token on a retry stopped before its backoff for another reason', async () => {
    const clock = new FakeClock();
    const budget = new RetryBudget({ ratio: 10, minRetriesPerSecond: 0 }, { clock });
    const retry = new RetryPolicy({ maxAttempts: 3, delay: 10, jitter: 'none', budget, abortOn: (e) => (e as Error).message === 'fatal' }, { clock });
    const down = failing();
    const outcome = settle(retry.execute(down.fn));
    await drain(clock);
    await outcome;
    await settle(retry.execute(() => Promise.reject(new Error('fatal'))));
    expect(down.attempts).toBe(3);
    expect(budget.stats()).toMatchObject({ calls: 2, retries: 2, refused: 0 });
  });

  it('awaits a budget that answers asynchronously', async () => {
    const clock = new FakeClock();
    let answer = true;
    const budget: RetryBudgetInstance = { name: 'async', recordCall() {}, tryAcquire: () => Promise.resolve(answer) };
    const retry = new RetryPolicy({ maxAttempts: 4, delay: 10, jitter: 'none', budget }, { clock });
    const down = failing();
    const first = settle(retry.execute(down.fn));
    await drain(clock);
    await first;
    expect(down.attempts).toBe(4);
    answer = false;
    const again = failing();
    const second = settle(retry.execute(again.fn));
    await drain(clock);
    expect((await second).ok).toBe(false);
    expect(again.attempts).toBe(1);
  });

  it.each([
    ['rejects', () => Promise.reject(new Error('budget store down'))],
    ['throws', () => {
      throw new Error('budget store down');
    }],
  ])('gives up with reason "budget" and the last call error when tryAcquire %s', async (_, tryAcquire: () => Promise<boolean>) => {
    const clock = new FakeClock();
    const budget: RetryBudgetInstance = { name: 'broken', recordCall() {}, tryAcquire };
    const retry = new RetryPolicy({ maxAttempts: 4, delay: 10, jitter: 'none', budget }, { clock });
    const giveUps: RetryGiveUpEvent[] = [];
    retry.onGiveUp((event) => giveUps.push(event));
    const down = failing();
    const outcome = settle(retry.execute(down.fn));
    await drain(clock);
    const result = await outcome;
    expect(result.ok).toBe(false);
    expect((result as { error: Error }).error.message).toBe('attempt 1');
    expect(down.attempts).toBe(1);
    expect(giveUps).toEqual([{ attempts: 1, error: (result as { error: unknown }).error, reason: 'budget' }]);
  });

  it('runs and retries the call when the budget recordCall throws', async () => {
    const clock = new FakeClock();
    const budget: RetryBudgetInstance = {
      name: 'broken',
      recordCall(): void {
        throw new Error('budget store down');
      },
      tryAcquire: () => true,
    };
    const retry = new RetryPolicy({ maxAttempts: 3, delay: 10, jitter: 'none', budget }, { clock });
    const down = failing();
    const outcome = settle(retry.execute(down.fn));
    await drain(clock);
    expect(await outcome).toMatchObject({ ok: false, error: { message: 'attempt 3' } });
    expect(down.attempts).toBe(3);
  });

  it('checks the deadline again once an asynchronous budget has answered', async () => {
    const clock = new FakeClock();
    // Grants, but only after 95 ms: a budget behind a slow store.
    const budget: RetryBudgetInstance = {
      name: 'slow',
      recordCall() {},
      tryAcquire: () => new Promise<boolean>((resolve) => clock.setTimeout(() => resolve(true), 95)),
    };
    const retry = new RetryPolicy({ maxAttempts: 4, delay: 10, jitter: 'none', budget }, { clock });
    const giveUps: RetryGiveUpEvent[] = [];
    retry.onGiveUp((event) => giveUps.push(event));
    const down = failing();
    // Deadline at 100 ms: at 0 a 10 ms backoff fits; at 95, when the budget answers, it does not.
    const outcome = settle(retry.execute(down.fn, new CallContext(undefined, 100)));
    await drain(clock);
    const result = await outcome;
    expect(down.attempts).toBe(1);
    expect(giveUps).toEqual([{ attempts: 1, error: (result as { error: unknown }).error, reason: 'deadline' }]);
  });

  it('spends the token taken before the backoff sleep when the call is aborted during it', async () => {
    const clock = new FakeClock();
    const budget = new RetryBudget({ ratio: 10, minRetriesPerSecond: 0 }, { clock });
    const retry = new RetryPolicy({ maxAttempts: 3, delay: 100, jitter: 'none', budget }, { clock });
    const context = new CallContext();
    const down = failing();
    const outcome = settle(retry.execute(down.fn, context));
    await clock.advanceAsync(50);
    context.abort(new Error('caller left'));
    expect(await outcome).toMatchObject({ ok: false, error: { message: 'caller left' } });
    expect(down.attempts).toBe(1);
    expect(budget.stats()).toMatchObject({ calls: 1, retries: 1 });
  });

  // The bound of the issue: with the downstream failing every time, attempts ≤ (1 + ratio) × calls
  // + floor × seconds, plus the floor's one-second burst (max(1, floor)).
  it('bounds the attempts against a downstream failing 100 % (property over ratio, floor, window and call patterns)', async () => {
    let runs = 0;
    const property = boundProperty(
      (options, clock) => new RetryBudget(options, { clock }),
      (budget, calls, attempts) => {
        runs++;
        expect(budget.stats()).toMatchObject({ calls, retries: attempts - calls });
      },
    );
    await fc.assert(property, { numRuns: 150 });
    expect(runs).toBeGreaterThanOrEqual(150);
  });

  it('control: the same property fails for a budget that lets a deposit be spent twice (withdrawals expiring at once)', async () => {
    const result = await fc.check(boundProperty((options) => new LeakyBudget(options.ratio)), { numRuns: 150 });
    expect(result.failed).toBe(true);
  });

  it('measured: 1000 calls over 100 s, 5 attempts each, all failing', async () => {
    const clock = new FakeClock();
    const ratio = 0.2;
    const floor = 1;
    const budget = new RetryBudget({ ratio, minRetriesPerSecond: floor }, { clock });
    const retry = new RetryPolicy({ maxAttempts: 5, delay: 20, jitter: 'none', budget }, { clock });
    const down = failing();
    const outcomes: Array<Promise<unknown>> = [];
    for (let i = 0; i < 1000; i++) {
      outcomes.push(settle(retry.execute(down.fn)));
      await clock.advanceAsync(100);
    }
    await drain(clock);
    await Promise.all(outcomes);
    const seconds = clock.now() / 1000;
    const bound = (1 + ratio) * 1000 + floor * seconds + 1;
    // Without the budget the same traffic makes 5000 attempts.
    expect(down.attempts).toBeLessThanOrEqual(bound);
    expect(down.attempts).toBeGreaterThan(1000 * (1 + ratio) * 0.95);
    console.info(`retry budget (memory): ${down.attempts} attempts for 1000 calls over ${seconds} s (${(down.attempts / 1000).toFixed(3)} per call; bound ${bound.toFixed(1)})`);
  });
});
