import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RateLimitAlgorithm, RateLimitDecision } from '../../../lib/policies/rate-limit/rate-limit.options.js';
import { MemoryStore } from '../../../lib/stores/memory/memory.store.js';
import type { ConsumeMode, LimitSpec } from '../../../lib/stores/store.interface.js';
import { ReferenceMemoryStore } from './support/reference-memory-store.js';

/*
 * The store keeps its keys' state in typed arrays, laid out per set of limits; the model keeps
 * one object per key and per limit. Whatever the calls — limit sets sharing keys, algorithms
 * changing, limits reordered, several sliding logs, sets too large to lay out, resets, refunds,
 * eviction under a small bound — both must answer, count and evict the same.
 */

const ALGORITHMS: readonly RateLimitAlgorithm[] = ['token-bucket', 'gcra', 'fixed-window', 'sliding-window-counter', 'sliding-window-log'];
const NAMES = ['a', 'b', 'c', 'd'] as const;

interface Step {
  readonly key: number;
  readonly set: number;
  readonly mode: ConsumeMode | 'reset';
  readonly cost: number;
  readonly dt: number;
  /** Pass a fresh copy of the limit array instead of the same array object. */
  readonly copy: boolean;
  /** A `'consume'` step made through `tryConsume` (only whether it admitted is compared). */
  readonly quiet: boolean;
}

const specArb = fc.record({
  name: fc.constantFrom(...NAMES),
  algorithm: fc.constantFrom(...ALGORITHMS),
  limit: fc.integer({ min: 1, max: 6 }),
  windowMs: fc.constantFrom(5, 40, 100, 1000),
  extraBurst: fc.integer({ min: 0, max: 3 }),
});

/** A limit set: up to four limits with distinct names (a set may reuse another's names with other algorithms). */
const setArb = fc.uniqueArray(specArb, { minLength: 1, maxLength: 4, selector: (spec) => spec.name }).map((specs) =>
  specs.map(
    ({ name, algorithm, limit, windowMs, extraBurst }): LimitSpec => ({
      name,
      algorithm,
      limit,
      windowMs,
      burst: algorithm === 'token-bucket' || algorithm === 'gcra' ? limit + extraBurst : limit,
    }),
  ),
);

const stepArb: fc.Arbitrary<Step> = fc.record({
  key: fc.integer({ min: 0, max: 7 }),
  set: fc.integer({ min: 0, max: 2 }),
  mode: fc.constantFrom<ConsumeMode | 'reset'>('consume', 'consume', 'consume', 'consume', 'peek', 'refund', 'reset'),
  cost: fc.constantFrom(1, 1, 1, 2, 4, 9),
  dt: fc.constantFrom(0, 0, 1, 7, 33, 120, 1500),
  copy: fc.boolean(),
  quiet: fc.boolean(),
});

const scenarioArb = fc.record({
  maxKeys: fc.integer({ min: 1, max: 6 }),
  sets: fc.array(setArb, { minLength: 1, maxLength: 3 }),
  steps: fc.array(stepArb, { minLength: 5, maxLength: 80 }),
});

/** One step on one store: its decision (after a reset: a peek). */
function apply(store: MemoryStore | ReferenceMemoryStore, key: string, limits: readonly LimitSpec[], step: Step, now: number): RateLimitDecision {
  if (step.mode !== 'reset') return store.consume(key, limits, step.cost, step.mode, now);
  store.reset(key, limits);
  return store.consume(key, limits, step.cost, 'peek', now);
}

/**
 * Runs the steps on both stores and requires the same answers and counters after each; returns
 * the most keys the store held.
 */
function replay(store: MemoryStore, model: ReferenceMemoryStore, sets: readonly (readonly LimitSpec[])[], steps: readonly Step[], keyOf = (index: number) => `k${index}`): number {
  let now = 1_000;
  let peak = 0;
  for (const step of steps) {
    now += step.dt;
    const set = sets[step.set % sets.length]!;
    const limits = step.copy ? set.slice() : set;
    const key = keyOf(step.key);
    const quiet = step.quiet && step.mode === 'consume';
    const actual = quiet ? store.tryConsume(key, limits, step.cost, now) : apply(store, key, limits, step, now);
    const expected = quiet ? model.consume(key, limits, step.cost, 'consume', now).allowed : apply(model, key, limits, step, now);
    expect(actual).toEqual(expected);
    expect(store.stats()).toEqual(model.stats());
    peak = Math.max(peak, store.stats().keys);
  }
  return peak;
}

describe('MemoryStore decides as the object-per-key model', () => {
  it('for random calls of several limit sets on shared keys, under a small bound', () => {
    let steps = 0;
    fc.assert(
      fc.property(scenarioArb, (scenario) => {
        replay(new MemoryStore({ maxKeys: scenario.maxKeys }), new ReferenceMemoryStore(scenario.maxKeys), scenario.sets, scenario.steps);
        steps += scenario.steps.length;
      }),
      { numRuns: 400, seed: 20_261_123 },
    );
    expect(steps).toBeGreaterThan(4_000);
  });

  it('with many keys: growing its arrays, evicting, reusing records freed by reset', () => {
    const store = new MemoryStore({ maxKeys: 150 });
    const model = new ReferenceMemoryStore(150);
    const sets: LimitSpec[][] = [
      [{ name: 'a', algorithm: 'sliding-window-counter', limit: 3, windowMs: 50, burst: 3 }],
      [
        { name: 'a', algorithm: 'sliding-window-counter', limit: 3, windowMs: 50, burst: 3 },
        { name: 'b', algorithm: 'sliding-window-log', limit: 4, windowMs: 200, burst: 4 },
      ],
      [
        { name: 'c', algorithm: 'gcra', limit: 2, windowMs: 30, burst: 4 },
        { name: 'd', algorithm: 'token-bucket', limit: 5, windowMs: 100, burst: 5 },
      ],
    ];
    const steps: Step[] = [];
    let seed = 7;
    const next = (bound: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return Math.floor((seed / 2_147_483_648) * bound);
    };
    const modes: Step['mode'][] = ['consume', 'consume', 'consume', 'peek', 'refund', 'reset'];
    for (let i = 0; i < 6_000; i++) {
      steps.push({ key: next(500), set: next(3), mode: modes[next(modes.length)]!, cost: 1 + next(2), dt: next(4) === 0 ? 1 : 0, copy: false, quiet: next(2) === 0 });
    }
    const peak = replay(store, model, sets, steps, (index) => `client-${index}`);
    // The arrays start with room for 64 keys: they grew twice.
    expect(peak).toBeGreaterThan(128);
    expect(store.stats().evictions).toBeGreaterThan(0);
  });

  it('past the limit names it gives ids to (65,536), keeps deciding the same', () => {
    const store = new MemoryStore({ maxKeys: 100 });
    const model = new ReferenceMemoryStore(100);
    const shared: LimitSpec = { name: 'shared', algorithm: 'gcra', limit: 3, windowMs: 1000, burst: 3 };
    const sharedLog: LimitSpec = { name: 'shared-log', algorithm: 'sliding-window-log', limit: 4, windowMs: 2000, burst: 4 };
    let last: LimitSpec[] = [];
    for (let i = 0; i < 70_000; i++) {
      const limits: LimitSpec[] = [{ name: `n${i}`, algorithm: 'fixed-window', limit: 2, windowMs: 1000, burst: 2 }, shared, sharedLog];
      last = limits;
      // Fewer keys than the bound: records live on, and meet the unnamed limits with cells in place.
      const key = `k${i % 80}`;
      const calls = i < 65_000 ? 1 : 3;
      for (let call = 0; call < calls; call++) {
        expect(store.consume(key, limits, 1, 'consume', i)).toEqual(model.consume(key, limits, 1, 'consume', i));
      }
      if (i % 7_001 === 0) {
        store.reset(key, [shared]);
        model.reset(key, [shared]);
      }
    }
    // New keys' logs (their limit named before the bound) use arrays that chained keys gave back.
    const log: LimitSpec[] = [{ name: 'n5', algorithm: 'sliding-window-log', limit: 3, windowMs: 5000, burst: 3 }];
    for (let i = 0; i < 400; i++) {
      const [key, limits] = i % 2 === 0 ? [`z${i % 10}`, log] : [`k${i % 80}`, last];
      expect(store.consume(key, limits, 1, 'consume', 70_000 + i)).toEqual(model.consume(key, limits, 1, 'consume', 70_000 + i));
    }
    expect(store.stats()).toEqual(model.stats());
  });
});
