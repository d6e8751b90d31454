import { Injectable, type Provider } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock, flushMicrotasks, Hedge, ResilienceModule, Retry, RetryPolicy, type ResilienceModuleOptions } from 'nest-resilience';
import { ResilienceService } from '../../lib/nest/resilience.service.js';

// A named retry budget of the module shared by @Retry on provider methods, against a downstream
// that always fails: the attempts stay within (1 + ratio) × calls + floor × seconds (+ the floor's
// one-second burst) instead of maxAttempts × calls.

const opened: TestingModule[] = [];

afterEach(async () => {
  while (opened.length > 0) await opened.pop()!.close();
});

async function boot(providers: Provider[], options: ResilienceModuleOptions): Promise<{ moduleRef: TestingModule; clock: FakeClock }> {
  const clock = new FakeClock();
  const moduleRef = await Test.createTestingModule({ imports: [ResilienceModule.forRoot({ clock, ...options })], providers }).compile();
  opened.push(moduleRef);
  await moduleRef.init();
  return { moduleRef, clock };
}

async function drain(clock: FakeClock): Promise<void> {
  for (;;) {
    await flushMicrotasks();
    if (clock.pendingTimers === 0) return;
    await clock.runAllAsync();
  }
}

@Injectable()
class Downstream {
  attempts = 0;

  @Retry({ maxAttempts: 5, delay: 20, jitter: 'none', budget: 'shared' })
  async quote(): Promise<string> {
    this.attempts++;
    throw new Error('quote service down');
  }

  @Retry({ maxAttempts: 5, delay: 20, jitter: 'none', budget: 'shared' })
  async stock(): Promise<string> {
    this.attempts++;
    throw new Error('stock service down');
  }
}

describe('@Retry with a named retry budget (provider methods)', () => {
  it('keeps the attempts of every method naming the budget within (1 + ratio) × calls + floor × seconds', async () => {
    const ratio = 0.2;
    const floor = 1;
    const { moduleRef, clock } = await boot([Downstream], { retryBudgets: { shared: { ratio, minRetriesPerSecond: floor, window: '10s' } } });
    const downstream = moduleRef.get(Downstream);
    const calls = 400;
    const outcomes: Array<Promise<unknown>> = [];
    for (let i = 0; i < calls; i++) {
      outcomes.push((i % 2 === 0 ? downstream.quote() : downstream.stock()).catch((error: Error) => error.message));
      await clock.advanceAsync(50);
    }
    await drain(clock);
    const messages = await Promise.all(outcomes);
    // Every call still fails with its own error, unchanged.
    expect(new Set(messages)).toEqual(new Set(['quote service down', 'stock service down']));
    const seconds = clock.now() / 1000;
    const bound = (1 + ratio) * calls + floor * seconds + Math.max(1, floor);
    expect(downstream.attempts).toBeLessThanOrEqual(bound);
    // Without the budget: 5 attempts per call.
    expect(downstream.attempts).toBeLessThan(2 * calls);
    console.info(`@Retry budget 'shared' (e2e): ${downstream.attempts} attempts for ${calls} calls over ${seconds} s (${(downstream.attempts / calls).toFixed(3)} per call; bound ${bound.toFixed(1)})`);
  });

  it('a @Retry and a @Hedge naming one budget deposit once per call: the retries do not pay for themselves', async () => {
    @Injectable()
    class Hedged {
      attempts = 0;

      @Retry({ maxAttempts: 5, delay: 20, jitter: 'none', budget: 'shared' })
      @Hedge({ delay: 1000, budget: 'shared' })
      async quote(): Promise<string> {
        this.attempts++;
        throw new Error('quote service down');
      }
    }
    const ratio = 0.5;
    const { moduleRef, clock } = await boot([Hedged], { retryBudgets: { shared: { ratio, minRetriesPerSecond: 0, window: '1m' } } });
    const hedged = moduleRef.get(Hedged);
    const calls = 100;
    for (let i = 0; i < calls; i++) {
      const outcome = hedged.quote().catch(() => undefined);
      await drain(clock);
      await outcome;
    }
    const plan = moduleRef.get(ResilienceService).planFor(Hedged, Hedged.prototype.quote);
    const retry = plan.pipeline!.policies.retry as RetryPolicy;
    // Each call deposits `ratio`: 100 calls pay for 50 retries. Had every retry deposited again
    // on re-entering the hedge, each call would have earned its own retries (about 2.5 each).
    expect(retry.budget!.name).toBe('shared');
    expect(hedged.attempts).toBeLessThanOrEqual(calls * (1 + ratio) + 1);
    expect(hedged.attempts).toBeGreaterThanOrEqual(calls * (1 + ratio) - 1);
  });

  it('refuses to boot when @Retry names a budget the module does not declare', async () => {
    const clock = new FakeClock();
    const moduleRef = await Test.createTestingModule({ imports: [ResilienceModule.forRoot({ clock, retryBudgets: { other: {} } })], providers: [Downstream] }).compile();
    const failure = await moduleRef.init().then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    await moduleRef.close().catch(() => undefined);
    expect(failure?.message).toMatch(/shared/);
  });
});
