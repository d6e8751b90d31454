import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../lib/core/clock.js';
import { InvalidOptionError } from '../../lib/core/errors.js';
import { DEFAULT_ORDER, Pipeline, resolveOrder } from '../../lib/core/pipeline.js';
import { BulkheadPolicy } from '../../lib/policies/bulkhead/bulkhead.policy.js';
import { CircuitBreakerPolicy } from '../../lib/policies/circuit-breaker/circuit-breaker.policy.js';
import { isCircuitOpenError } from '../../lib/policies/circuit-breaker/circuit-breaker.error.js';
import { FallbackPolicy } from '../../lib/policies/fallback/fallback.policy.js';
import { RateLimitPolicy } from '../../lib/policies/rate-limit/rate-limit.policy.js';
import { isRateLimitExceededError } from '../../lib/policies/rate-limit/rate-limit.error.js';
import { RetryPolicy } from '../../lib/policies/retry/retry.policy.js';
import { TimeoutPolicy } from '../../lib/policies/timeout/timeout.policy.js';
import { isTimeoutExceededError } from '../../lib/policies/timeout/timeout.error.js';

/** Drives the fake clock until `promise` settles; returns its outcome. */
async function settle<T>(promise: Promise<T>, clock: FakeClock, stepMs = 10, maxSteps = 10_000): Promise<{ value?: T; error?: unknown }> {
  const box: { outcome?: { value?: T; error?: unknown } } = {};
  promise.then(
    (value) => (box.outcome = { value }),
    (error: unknown) => (box.outcome = { error }),
  );
  for (let step = 0; box.outcome === undefined; step++) {
    if (step > maxSteps) throw new Error('call never settled');
    await clock.advanceAsync(stepMs);
  }
  return box.outcome;
}

/** A policy that records its kind in `seen` and passes the call through. */
function tracing(seen: string[], name: string) {
  return ({
    execute: () => Promise.reject(new Error('unused')),
    run: <T>(fn: (context: never) => T | PromiseLike<T>, context: unknown) => {
      seen.push(name);
      return Promise.resolve(fn(context as never));
    },
    runWithKey: <T>(_key: string, fn: (context: never) => T | PromiseLike<T>, context: unknown) => {
      seen.push('rateLimit');
      return Promise.resolve(fn(context as never));
    },
  });
}

/** Every kind, each tracing into `seen`, given in reverse of the canonical order. */
function tracingPolicies(seen: string[]) {
  return {
    chaos: tracing(seen, 'chaos'),
    bulkhead: tracing(seen, 'bulkhead'),
    timeout: tracing(seen, 'timeout'),
    circuitBreaker: tracing(seen, 'circuitBreaker'),
    hedge: tracing(seen, 'hedge'),
    retry: tracing(seen, 'retry'),
    fallback: tracing(seen, 'fallback'),
    loadShedding: tracing(seen, 'loadShedding'),
    rateLimit: tracing(seen, 'rateLimit'),
  };
}

describe('Pipeline', () => {
  it('applies the canonical order whatever order the policies are given in', async () => {
    const seen: string[] = [];
    await new Pipeline(tracingPolicies(seen)).execute(() => seen.push('fn'));
    expect(seen).toEqual([...DEFAULT_ORDER, 'fn']);
  });

  it('a partial order moves the kinds it names outermost and still applies every policy', async () => {
    const seen: string[] = [];
    await new Pipeline(tracingPolicies(seen), ['circuitBreaker', 'retry']).execute(() => seen.push('fn'));
    expect(seen).toEqual(['circuitBreaker', 'retry', 'rateLimit', 'loadShedding', 'fallback', 'hedge', 'timeout', 'bulkhead', 'chaos', 'fn']);
    expect(() => new Pipeline(tracingPolicies(seen), ['retry', 'retry'])).toThrow(InvalidOptionError);
  });

  it('an order override puts the named kinds first and keeps the rest in canonical order', () => {
    expect(resolveOrder(['timeout', 'retry'])).toEqual(['timeout', 'retry', 'rateLimit', 'loadShedding', 'fallback', 'hedge', 'circuitBreaker', 'bulkhead', 'chaos']);
    expect(() => resolveOrder(['retry', 'retry'])).toThrow(InvalidOptionError);
    expect(() => resolveOrder(['retries'])).toThrow('"order[0]": got "retries"');
  });

  it('hands the fallback the call arguments and the rate limiter the call key', async () => {
    const clock = new FakeClock();
    const limiter = new RateLimitPolicy({ limit: 1, window: '1m' }, { clock });
    const pipeline = new Pipeline({
      rateLimit: limiter,
      fallback: new FallbackPolicy({ handler: (error: unknown, id: unknown) => `cached ${String(id)}` }),
    });
    await expect(pipeline.execute(() => Promise.reject(new Error('x')), undefined, { args: [7], key: 'a' })).resolves.toBe('cached 7');
    // The rate limit sits outside the fallback: a refusal is not turned into a fallback answer.
    const refused = await pipeline.execute(() => 'ok', undefined, { args: [7], key: 'a' }).catch((error: unknown) => error);
    expect(isRateLimitExceededError(refused)).toBe(true);
    await expect(pipeline.execute(() => 'ok', undefined, { key: 'b' })).resolves.toBe('ok');
  });

  it('each retry attempt gets its own timeout and re-enters the breaker', async () => {
    const clock = new FakeClock();
    const breaker = new CircuitBreakerPolicy({ consecutiveFailures: 5, openDuration: '1m' }, { clock });
    const pipeline = new Pipeline({
      retry: new RetryPolicy({ maxAttempts: 3, delay: 10, jitter: 'none', backoff: 'constant' }, { clock }),
      circuitBreaker: breaker,
      timeout: new TimeoutPolicy(100, { clock }),
    });
    let attempts = 0;
    const outcome = await settle(
      pipeline.execute(() => {
        attempts++;
        return new Promise(() => {});
      }),
      clock,
    );
    expect(isTimeoutExceededError(outcome.error)).toBe(true);
    expect(attempts).toBe(3);
    expect(breaker.stats().failures).toBe(3);
    expect(clock.pendingTimers).toBe(0);
  });

  it('the bulkhead permit wait is bounded by the timeout', async () => {
    const clock = new FakeClock();
    const bulkhead = new BulkheadPolicy({ maxConcurrent: 1, maxQueue: 1 }, { clock });
    const pipeline = new Pipeline({ timeout: new TimeoutPolicy(50, { clock }), bulkhead });
    const holder = pipeline.execute(() => new Promise(() => {}));
    const waiter = pipeline.execute(() => 'never runs');
    const waiterOutcome = waiter.catch((error: unknown) => error);
    holder.catch(() => undefined);
    await clock.advanceAsync(50);
    expect(isTimeoutExceededError(await waiterOutcome)).toBe(true);
    expect(bulkhead.stats().queued).toBe(0);
  });
});

describe('E5 composition', () => {
  it('attempts ≤ maxAttempts, own refusals never retried, an open breaker ends retries, delays within bounds', async () => {
    let logicalCalls = 0;
    let downstreamCalls = 0;
    let retriesSeen = 0;
    let refusedByBreaker = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          maxAttempts: fc.integer({ min: 1, max: 5 }),
          delay: fc.integer({ min: 1, max: 200 }),
          maxDelay: fc.integer({ min: 200, max: 2_000 }),
          jitter: fc.constantFrom('none', 'full', 'equal', 'decorrelated' as const),
          consecutiveFailures: fc.integer({ min: 1, max: 6 }),
          outcomes: fc.array(fc.constantFrom('ok', 'fail', 'fail-retry-after', 'hang'), { minLength: 1, maxLength: 40 }),
          abortAt: fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 500 }) }),
          seed: fc.integer(),
        }),
        async (scenario) => {
          const clock = new FakeClock();
          let state = scenario.seed;
          const random = () => ((state = (state * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
          const breaker = new CircuitBreakerPolicy({ consecutiveFailures: scenario.consecutiveFailures, openDuration: '10s' }, { clock });
          const retry = new RetryPolicy(
            { maxAttempts: scenario.maxAttempts, delay: scenario.delay, maxDelay: scenario.maxDelay, jitter: scenario.jitter },
            { clock, random },
          );
          const retries: Array<{ delayMs: number; error: unknown }> = [];
          retry.onRetry((event) => retries.push(event));
          const pipeline = new Pipeline({ retry, circuitBreaker: breaker, timeout: new TimeoutPolicy(300, { clock }), bulkhead: new BulkheadPolicy({ maxConcurrent: 2 }, { clock }) });
          let cursor = 0;
          for (let call = 0; call < 6; call++) {
            let attempts = 0;
            const controller = new AbortController();
            if (scenario.abortAt !== undefined) clock.setTimeout(() => controller.abort(new Error('caller gave up')), scenario.abortAt);
            const outcome = await settle(
              pipeline.execute(() => {
                attempts++;
                downstreamCalls++;
                const next = scenario.outcomes[cursor++ % scenario.outcomes.length];
                if (next === 'ok') return Promise.resolve('ok');
                if (next === 'hang') return new Promise(() => {});
                return Promise.reject(Object.assign(new Error('downstream failed'), next === 'fail-retry-after' ? { retryAfterMs: 150 } : {}));
              }, controller.signal),
              clock,
            );
            logicalCalls++;
            expect(attempts).toBeLessThanOrEqual(scenario.maxAttempts);
            // Our own refusals are never retried, so an open breaker ends the retries at once.
            for (const event of retries) {
              expect(isCircuitOpenError(event.error)).toBe(false);
              // A delay the error asks for is honoured (within maxDelay).
              const asked = (event.error as { retryAfterMs?: number }).retryAfterMs === 150 ? Math.min(150, scenario.maxDelay) : 0;
              expect(event.delayMs).toBeGreaterThanOrEqual(asked);
              expect(event.delayMs).toBeLessThanOrEqual(scenario.maxDelay);
            }
            expect(isCircuitOpenError(outcome.error) && breaker.state === 'CLOSED').toBe(false);
            retriesSeen += retries.length;
            if (isCircuitOpenError(outcome.error)) refusedByBreaker++;
            retries.length = 0;
            await clock.advanceAsync(11_000);
          }
          expect(clock.pendingTimers).toBeLessThanOrEqual(6);
        },
      ),
      { numRuns: 60 },
    );
    console.log(`[E5] composition: ${logicalCalls} logical calls, ${downstreamCalls} downstream calls, ${(downstreamCalls / logicalCalls).toFixed(2)} downstream calls per logical call, ${retriesSeen} retries, ${refusedByBreaker} calls ended by an open breaker`);
  });

  it('our own refusals are not retried unless asked', async () => {
    const clock = new FakeClock();
    const breaker = new CircuitBreakerPolicy({ consecutiveFailures: 1, openDuration: '1m' }, { clock });
    breaker.forceOpen();
    let refusedAttempts = 0;
    const retry = new RetryPolicy({ maxAttempts: 4, delay: 1 }, { clock });
    retry.onRetry(() => refusedAttempts++);
    const outcome = await settle(new Pipeline({ retry, circuitBreaker: breaker }).execute(() => 'x'), clock);
    expect(isCircuitOpenError(outcome.error)).toBe(true);
    expect(refusedAttempts).toBe(0);

    const eager = new RetryPolicy({ maxAttempts: 4, delay: 1, retryRejections: true }, { clock });
    let eagerRetries = 0;
    eager.onRetry(() => eagerRetries++);
    await settle(new Pipeline({ retry: eager, circuitBreaker: breaker }).execute(() => 'x'), clock);
    expect(eagerRetries).toBe(3);
  });
});
