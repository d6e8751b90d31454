// fast-check documents its default import (`fc.integer`, ...); the rule would have every helper imported by name.
// oxlint-disable import/no-named-as-default-member
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CountWindow, TimeWindow } from '../../../lib/policies/circuit-breaker/sliding-window.js';

type Step = { gap: number; failure: boolean; slow: boolean; read: boolean };

const stepArb: fc.Arbitrary<Step> = fc.record({
  gap: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 50 }), fc.integer({ min: 0, max: 5_000 })),
  failure: fc.boolean(),
  slow: fc.boolean(),
  read: fc.boolean(),
});

function totals(list: ReadonlyArray<{ failure: boolean; slow: boolean }>) {
  return { calls: list.length, failures: list.filter((entry) => entry.failure).length, slowCalls: list.filter((entry) => entry.slow).length };
}

describe('sliding windows', () => {
  it('a count window equals the last N outcomes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 20 }), fc.array(stepArb, { maxLength: 200 }), (size, steps) => {
        const window = new CountWindow(size);
        const all: Step[] = [];
        for (const step of steps) {
          window.record(0, step.failure, step.slow);
          all.push(step);
          expect({ calls: window.calls, failures: window.failures, slowCalls: window.slowCalls }).toEqual(totals(all.slice(-size)));
        }
        window.clear();
        expect(window.calls + window.failures + window.slowCalls).toBe(0);
      }),
    );
  });

  it('a time window equals the outcomes of the current bucket and the buckets − 1 before it', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5_000 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: -10_000, max: 10_000 }),
        fc.array(stepArb, { maxLength: 150 }),
        (duration, buckets, start, steps) => {
          fc.pre(duration / buckets >= 1);
          const window = new TimeWindow(duration, buckets);
          const width = duration / buckets;
          const all: Array<Step & { at: number }> = [];
          let now = start;
          for (const step of steps) {
            now += step.gap;
            if (step.read) {
              window.advance(now);
            } else {
              window.record(now, step.failure, step.slow);
              all.push({ ...step, at: now });
            }
            const current = Math.floor(now / width);
            const live = all.filter((entry) => Math.floor(entry.at / width) > current - buckets);
            expect({ calls: window.calls, failures: window.failures, slowCalls: window.slowCalls }).toEqual(totals(live));
          }
        },
      ),
    );
  });
});
