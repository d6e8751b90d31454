import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { RateLimitAlgorithm, RateLimitDecision } from '../../lib/policies/rate-limit/rate-limit.options.js';
import { MemoryStore } from '../../lib/stores/memory/memory.store.js';
import { RedisStore, SCRIPT_CLOCK, SCRIPT_REPLY } from '../../lib/stores/redis/redis.store.js';
import type { ConsumeMode, LimitSpec } from '../../lib/stores/store.interface.js';

const ALGORITHMS: readonly RateLimitAlgorithm[] = ['token-bucket', 'gcra', 'fixed-window', 'sliding-window-counter', 'sliding-window-log'];
/** Redis-like timestamps: milliseconds since the epoch, with microseconds. */
const EPOCH = 1_767_225_600_000.123;

interface Step {
  readonly dt: 'none' | 'small' | 'edge' | 'retry' | 'window' | 'long';
  readonly fraction: number;
  readonly key: number;
  readonly mode: ConsumeMode;
  readonly cost: number;
  /** Changes the algorithm of one limit (same name) before the step. */
  readonly switchTo: RateLimitAlgorithm | undefined;
  readonly switchIndex: number;
}

const limitArb = fc.record({
  algorithm: fc.constantFrom(...ALGORITHMS),
  limit: fc.integer({ min: 1, max: 8 }),
  windowMs: fc.constantFrom(1, 7, 100, 250, 1000, 3_600_000),
  extraBurst: fc.integer({ min: 0, max: 4 }),
});

const stepArb: fc.Arbitrary<Step> = fc.record({
  dt: fc.constantFrom('none', 'small', 'edge', 'retry', 'retry', 'window', 'long'),
  fraction: fc.double({ min: 0, max: 1, noNaN: true }),
  key: fc.integer({ min: 0, max: 1 }),
  mode: fc.constantFrom<ConsumeMode>('consume', 'consume', 'consume', 'consume', 'peek', 'refund'),
  cost: fc.constantFrom(1, 1, 1, 2, 3, 9, 13),
  switchTo: fc.option(fc.constantFrom(...ALGORITHMS), { freq: 15 }).map((value) => value ?? undefined),
  switchIndex: fc.integer({ min: 0, max: 2 }),
});

const scenarioArb = fc.record({
  limits: fc.array(limitArb, { minLength: 1, maxLength: 3 }),
  steps: fc.array(stepArb, { minLength: 10, maxLength: 60 }),
  start: fc.double({ min: 0, max: 3_600_000, noNaN: true }),
});

function toSpecs(limits: ReadonlyArray<{ algorithm: RateLimitAlgorithm; limit: number; windowMs: number; extraBurst: number }>): LimitSpec[] {
  return limits.map((limit, index) => ({
    name: `l${index}`,
    algorithm: limit.algorithm,
    limit: limit.limit,
    windowMs: limit.windowMs,
    burst: limit.algorithm === 'token-bucket' || limit.algorithm === 'gcra' ? limit.limit + limit.extraBurst : limit.limit,
  }));
}

describe('RedisStore gives the memory store’s decisions', () => {
  let store: RedisStore;
  let time = 0;

  beforeAll(async () => {
    store = new RedisStore({ url: inject('redisUrl'), commandTimeout: 2_000 });
    await store.init();
  });

  afterAll(async () => {
    await store.close();
  });

  it('for random sequences of every algorithm, cost, multi-limit and mode (script clock)', async () => {
    store[SCRIPT_CLOCK] = () => time;
    let decisions = 0;
    const perAlgorithm = new Map<RateLimitAlgorithm, number>();
    const modes = { consume: 0, peek: 0, refund: 0 };
    let refused = 0;
    try {
      await fc.assert(
        fc.asyncProperty(scenarioArb, async (scenario) => {
          const run = randomUUID();
          const memory = new MemoryStore();
          let specs = toSpecs(scenario.limits);
          time = EPOCH + scenario.start;
          let lastRetry = 0;
          for (const step of scenario.steps) {
            if (step.switchTo !== undefined) {
              const index = step.switchIndex % specs.length;
              const spec = specs[index]!;
              specs = specs.map((candidate, i) =>
                i === index
                  ? { ...spec, algorithm: step.switchTo!, burst: step.switchTo === 'token-bucket' || step.switchTo === 'gcra' ? spec.burst : spec.limit }
                  : candidate,
              );
            }
            const window = specs[Math.floor(step.fraction * specs.length) % specs.length]!.windowMs;
            switch (step.dt) {
              case 'small':
                time += step.fraction * 20;
                break;
              case 'edge': {
                // Just before, at or after the next aligned window boundary.
                const next = (Math.floor(time / window) + 1) * window;
                time = Math.max(time, next + [-0.001, 0, 0.001][Math.floor(step.fraction * 3) % 3]!);
                break;
              }
              case 'retry':
                time += lastRetry;
                break;
              case 'window':
                time += window * step.fraction * 2;
                break;
              case 'long':
                time += 7_200_000 * step.fraction;
                break;
              default:
                break;
            }
            const key = `${run}:${step.key}`;
            const expected = memory.consume(key, specs, step.cost, step.mode, time);
            const actual = await store.consume(key, specs, step.cost, step.mode, 0);
            expect(actual).toEqual(expected);
            if (!expected.allowed) refused++;
            lastRetry = expected.retryAfterMs ?? 0;
            decisions++;
            modes[step.mode]++;
            for (const spec of specs) perAlgorithm.set(spec.algorithm, (perAlgorithm.get(spec.algorithm) ?? 0) + 1);
          }
        }),
        { numRuns: 120, seed: 20_260_401 },
      );
    } finally {
      store[SCRIPT_CLOCK] = undefined;
    }
    console.log(
      `[equivalence] ${decisions} decisions identical to the memory store (allowed, retryAfterMs, remaining, resetMs; exact) — ` +
        `${modes.consume} consume / ${modes.peek} peek / ${modes.refund} refund, ${refused} refused; limit-decisions per algorithm: ` +
        [...perAlgorithm].map(([name, count]) => `${name} ${count}`).join(', '),
    );
    expect(decisions).toBeGreaterThan(2_000);
    expect(refused).toBeGreaterThan(200);
  }, 60_000);

  it('on Redis TIME: the memory store fed the server’s clock decides the same', async () => {
    let serverNow = Number.NaN;
    store[SCRIPT_REPLY] = (reply) => {
      serverNow = reply.nowMs;
    };
    const run = randomUUID();
    const memory = new MemoryStore();
    const limits: LimitSpec[] = ALGORITHMS.map((algorithm, index) => ({ name: `r${index}`, algorithm, limit: 4, windowMs: 40 + 10 * index, burst: 4 }));
    let compared = 0;
    let refused = 0;
    let last = 0;
    try {
      for (let i = 0; i < 150; i++) {
        // Each limit alone (so one refusal does not hide the others), then all together.
        const chosen = i % 6 === 5 ? limits : [limits[i % 6]!];
        const mode: ConsumeMode = i % 11 === 10 ? 'refund' : i % 7 === 6 ? 'peek' : 'consume';
        const cost = i % 5 === 4 ? 2 : 1;
        const actual = await store.consume(run, chosen, cost, mode, 0);
        expect(serverNow).toBeGreaterThan(last);
        last = serverNow;
        const expected: RateLimitDecision = memory.consume(run, chosen, cost, mode, serverNow);
        expect(actual).toEqual(expected);
        compared++;
        if (!actual.allowed) refused++;
        if (i % 4 === 0) await new Promise((resolve) => setTimeout(resolve, 3 + (i % 13)));
      }
    } finally {
      store[SCRIPT_REPLY] = undefined;
    }
    console.log(`[equivalence] Redis TIME: ${compared} decisions (${refused} refused) identical to the memory store given the server's clock`);
    expect(refused).toBeGreaterThan(10);
  });
});
