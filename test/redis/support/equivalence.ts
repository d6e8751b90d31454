import fc from 'fast-check';
import { expect } from 'vitest';
import type { RateLimitAlgorithm } from '../../../lib/policies/rate-limit/rate-limit.options.js';
import type { MemoryStore } from '../../../lib/stores/memory/memory.store.js';
import type { RedisStore } from '../../../lib/stores/redis/redis.store.js';
import type { ConsumeMode, LimitSpec } from '../../../lib/stores/store.interface.js';

/** Every rate-limit algorithm, in a fixed order. */
export const ALGORITHMS: readonly RateLimitAlgorithm[] = ['token-bucket', 'gcra', 'fixed-window', 'sliding-window-counter', 'sliding-window-log'];
/** Redis-like timestamps: milliseconds since the epoch, with microseconds. */
export const EPOCH = 1_767_225_600_000.123;

/** One step of a scripted sequence: a clock move, then one call on one of two keys. */
export interface Step {
  readonly dt: 'none' | 'small' | 'edge' | 'retry' | 'window' | 'long';
  readonly fraction: number;
  readonly key: number;
  /** A decision mode, or `'reset'`: both stores forget the key, then a peek compares them. */
  readonly mode: ConsumeMode | 'reset';
  readonly cost: number;
  /** Changes the algorithm of one limit (same name) before the step. */
  readonly switchTo: RateLimitAlgorithm | undefined;
  readonly switchIndex: number;
}

/** A scripted sequence: up to three limits on the same keys, the steps, and where the clock starts. */
export interface Scenario {
  readonly limits: ReadonlyArray<{ algorithm: RateLimitAlgorithm; limit: number; windowMs: number; extraBurst: number }>;
  readonly steps: readonly Step[];
  readonly start: number;
}

/** What replaying sequences went through, for the printed figures. */
export interface Tally {
  decisions: number;
  refused: number;
  resets: number;
  modes: Record<ConsumeMode, number>;
  perAlgorithm: Map<RateLimitAlgorithm, number>;
}

/** An empty {@link Tally}. */
export function tally(): Tally {
  return { decisions: 0, refused: 0, resets: 0, modes: { consume: 0, peek: 0, refund: 0 }, perAlgorithm: new Map() };
}

/**
 * Random sequences biased to window edges, to waiting exactly the announced `Retry-After`, and to
 * costs near and above capacity. `algorithms` narrows the limits (and the switches) to some
 * algorithms; `reset` adds reset steps. Without options the sequences are the same for a given
 * seed as they always were.
 */
export function scenarioArb(options: { algorithms?: readonly RateLimitAlgorithm[]; reset?: boolean } = {}): fc.Arbitrary<Scenario> {
  const algorithms = options.algorithms ?? ALGORITHMS;
  const modes: Array<Step['mode']> = ['consume', 'consume', 'consume', 'consume', 'peek', 'refund'];
  if (options.reset === true) modes.push('reset');
  const limitArb = fc.record({
    algorithm: fc.constantFrom(...algorithms),
    limit: fc.integer({ min: 1, max: 8 }),
    windowMs: fc.constantFrom(1, 7, 100, 250, 1000, 3_600_000),
    extraBurst: fc.integer({ min: 0, max: 4 }),
  });
  const stepArb: fc.Arbitrary<Step> = fc.record({
    dt: fc.constantFrom('none', 'small', 'edge', 'retry', 'retry', 'window', 'long'),
    fraction: fc.double({ min: 0, max: 1, noNaN: true }),
    key: fc.integer({ min: 0, max: 1 }),
    mode: fc.constantFrom(...modes),
    cost: fc.constantFrom(1, 1, 1, 2, 3, 9, 13),
    switchTo: fc.option(fc.constantFrom(...algorithms), { freq: 15 }).map((value) => value ?? undefined),
    switchIndex: fc.integer({ min: 0, max: 2 }),
  });
  return fc.record({
    limits: fc.array(limitArb, { minLength: 1, maxLength: 3 }),
    steps: fc.array(stepArb, { minLength: 10, maxLength: 60 }),
    start: fc.double({ min: 0, max: 3_600_000, noNaN: true }),
  });
}

/** The store-level limits of a scenario (named `l0`, `l1`…; a burst only where the algorithm has one). */
export function toSpecs(limits: Scenario['limits']): LimitSpec[] {
  return limits.map((limit, index) => ({
    name: `l${index}`,
    algorithm: limit.algorithm,
    limit: limit.limit,
    windowMs: limit.windowMs,
    burst: limit.algorithm === 'token-bucket' || limit.algorithm === 'gcra' ? limit.limit + limit.extraBurst : limit.limit,
  }));
}

/**
 * Replays `scenario` through a fresh memory store and the Redis store, step by step, and requires
 * identical decisions (allowed, retryAfterMs, remaining, resetMs). The Redis store's script must
 * read its clock from `clock.now` (see `SCRIPT_CLOCK`); `keyOf` names the two keys of the run.
 */
export async function replay(scenario: Scenario, store: RedisStore, memory: MemoryStore, clock: { now: number }, keyOf: (index: number) => string, seen: Tally): Promise<void> {
  let specs = toSpecs(scenario.limits);
  clock.now = EPOCH + scenario.start;
  let lastRetry = 0;
  for (const step of scenario.steps) {
    if (step.switchTo !== undefined) {
      const index = step.switchIndex % specs.length;
      const spec = specs[index]!;
      const burst = step.switchTo === 'token-bucket' || step.switchTo === 'gcra' ? spec.burst : spec.limit;
      specs = specs.map((candidate, i) => (i === index ? { ...spec, algorithm: step.switchTo!, burst } : candidate));
    }
    const window = specs[Math.floor(step.fraction * specs.length) % specs.length]!.windowMs;
    switch (step.dt) {
      case 'small':
        clock.now += step.fraction * 20;
        break;
      case 'edge': {
        // Just before, at or after the next aligned window boundary.
        const next = (Math.floor(clock.now / window) + 1) * window;
        clock.now = Math.max(clock.now, next + [-0.001, 0, 0.001][Math.floor(step.fraction * 3) % 3]!);
        break;
      }
      case 'retry':
        clock.now += lastRetry;
        break;
      case 'window':
        clock.now += window * step.fraction * 2;
        break;
      case 'long':
        clock.now += 7_200_000 * step.fraction;
        break;
      default:
        break;
    }
    const key = keyOf(step.key);
    let mode: ConsumeMode = 'peek';
    if (step.mode === 'reset') {
      memory.reset(key, specs);
      await store.reset(key, specs);
      seen.resets++;
    } else {
      mode = step.mode;
    }
    const expected = memory.consume(key, specs, step.cost, mode, clock.now);
    const actual = await store.consume(key, specs, step.cost, mode, 0);
    expect(actual).toEqual(expected);
    if (!expected.allowed) seen.refused++;
    lastRetry = expected.retryAfterMs ?? 0;
    seen.decisions++;
    seen.modes[mode]++;
    for (const spec of specs) seen.perAlgorithm.set(spec.algorithm, (seen.perAlgorithm.get(spec.algorithm) ?? 0) + 1);
  }
}
