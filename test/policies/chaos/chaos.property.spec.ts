import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../../lib/core/clock.js';
import { isOperationAbortedError } from '../../../lib/core/errors.js';
import { ChaosPolicy, isChaosInjectedError, type ChaosOptions } from '../../../lib/policies/chaos/index.js';
import { seededRandom, settle } from '../retry/helpers.js';

const CALLS = 600;

/** The binomial count's allowed distance from rate × calls: five standard deviations, plus one for rounding. */
function tolerance(rate: number, calls: number): number {
  return 5 * Math.sqrt(calls * rate * (1 - rate)) + 1;
}

const rates = fc
  .record({
    latency: fc.double({ min: 0, max: 1, noNaN: true }),
    error: fc.double({ min: 0, max: 1, noNaN: true }),
    abortShare: fc.double({ min: 0, max: 1, noNaN: true }),
    delay: fc.integer({ min: 0, max: 5000 }),
  })
  // The abort rate takes a share of what the error rate leaves, so the two never exceed 1.
  .map(({ latency, error, abortShare, delay }) => ({ latency, error, abort: (1 - error) * abortShare, delay }));

interface Tally {
  ran: number;
  errors: number;
  aborts: number;
  delayed: number;
  waited: number;
  inconsistent: number;
}

async function drive(chaos: ChaosPolicy, clock: FakeClock, calls: number): Promise<Tally> {
  const tally: Tally = { ran: 0, errors: 0, aborts: 0, delayed: 0, waited: 0, inconsistent: 0 };
  // The timer is set before the event: advancing here ends the wait with no real time spent.
  const subscription = chaos.onInject((event) => {
    if (event.fault !== 'latency') return;
    tally.delayed++;
    tally.waited += event.delayMs!;
    clock.advance(event.delayMs!);
  });
  for (let i = 0; i < calls; i++) {
    let started = false;
    const result = await settle(
      chaos.execute(() => {
        started = true;
        return i;
      }),
    );
    // An error never runs the method; an abort always starts it first.
    if (result.ok) {
      tally.ran++;
      if (!started || result.value !== i) tally.inconsistent++;
    } else if (isChaosInjectedError(result.error)) {
      tally.errors++;
      if (started) tally.inconsistent++;
    } else if (isOperationAbortedError(result.error)) {
      tally.aborts++;
      if (!started) tally.inconsistent++;
    } else {
      tally.inconsistent++;
    }
  }
  subscription.dispose();
  return tally;
}

describe('ChaosPolicy properties', () => {
  it('injects each fault at its rate (within five standard deviations) and leaves no timer', async () => {
    await fc.assert(
      fc.asyncProperty(rates, fc.integer(), async (rate, seed) => {
        const clock = new FakeClock();
        const options: ChaosOptions = {
          latency: { rate: rate.latency, delay: rate.delay },
          error: { rate: rate.error },
          abort: { rate: rate.abort },
        };
        const chaos = new ChaosPolicy(options, { production: false, clock, random: seededRandom(seed) });
        const tally = await drive(chaos, clock, CALLS);

        expect(Math.abs(tally.delayed - rate.latency * CALLS)).toBeLessThanOrEqual(tolerance(rate.latency, CALLS));
        expect(Math.abs(tally.errors - rate.error * CALLS)).toBeLessThanOrEqual(tolerance(rate.error, CALLS));
        expect(Math.abs(tally.aborts - rate.abort * CALLS)).toBeLessThanOrEqual(tolerance(rate.abort, CALLS));
        expect(tally.inconsistent).toBe(0);
        expect(tally.ran + tally.errors + tally.aborts).toBe(CALLS);
        expect(clock.now()).toBe(tally.waited);
        expect(tally.waited).toBe(tally.delayed * rate.delay);
        expect(chaos.stats()).toEqual({ calls: CALLS, latency: tally.delayed, errors: tally.errors, aborts: tally.aborts });
        expect(clock.pendingTimers).toBe(0);
      }),
      { numRuns: 60 },
    );
  });

  it('disabled (by option, by disable(), or in production), injects nothing and draws nothing', async () => {
    await fc.assert(
      fc.asyncProperty(rates, fc.constantFrom('option', 'disable', 'production'), async (rate, how) => {
        const clock = new FakeClock();
        let drawn = 0;
        const random = () => {
          drawn++;
          return 0;
        };
        const options: ChaosOptions = {
          enabled: how !== 'option',
          latency: { rate: rate.latency, delay: rate.delay },
          error: { rate: rate.error },
          abort: { rate: rate.abort },
        };
        const chaos = new ChaosPolicy(options, { production: how === 'production', clock, random });
        if (how === 'disable') chaos.disable();
        const tally = await drive(chaos, clock, 50);
        expect(tally).toEqual({ ran: 50, errors: 0, aborts: 0, delayed: 0, waited: 0, inconsistent: 0 });
        expect(drawn).toBe(0);
        expect(chaos.stats()).toEqual({ calls: 0, latency: 0, errors: 0, aborts: 0 });
        expect(clock.pendingTimers).toBe(0);
      }),
      { numRuns: 60 },
    );
  });
});
