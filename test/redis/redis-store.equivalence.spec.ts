import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { RateLimitDecision } from '../../lib/policies/rate-limit/rate-limit.options.js';
import { MemoryStore } from '../../lib/stores/memory/memory.store.js';
import { RedisStore, SCRIPT_CLOCK, SCRIPT_REPLY } from '../../lib/stores/redis/redis.store.js';
import type { ConsumeMode, LimitSpec } from '../../lib/stores/store.interface.js';
import { ALGORITHMS, replay, scenarioArb, tally } from './support/equivalence.js';

describe('RedisStore gives the memory store’s decisions', () => {
  let store: RedisStore;

  beforeAll(async () => {
    store = new RedisStore({ url: inject('redisUrl'), commandTimeout: 2_000 });
    await store.init();
  });

  afterAll(async () => {
    await store.close();
  });

  it('for random sequences of every algorithm, cost, multi-limit and mode (script clock)', async () => {
    const clock = { now: 0 };
    store[SCRIPT_CLOCK] = () => clock.now;
    const seen = tally();
    try {
      await fc.assert(
        fc.asyncProperty(scenarioArb(), async (scenario) => {
          const run = randomUUID();
          await replay(scenario, store, new MemoryStore(), clock, (key) => `${run}:${key}`, seen);
        }),
        { numRuns: 120, seed: 20_260_401 },
      );
    } finally {
      store[SCRIPT_CLOCK] = undefined;
    }
    console.log(
      `[equivalence] ${seen.decisions} decisions identical to the memory store (allowed, retryAfterMs, remaining, resetMs; exact) — ` +
        `${seen.modes.consume} consume / ${seen.modes.peek} peek / ${seen.modes.refund} refund, ${seen.refused} refused; limit-decisions per algorithm: ` +
        [...seen.perAlgorithm].map(([name, count]) => `${name} ${count}`).join(', '),
    );
    expect(seen.decisions).toBeGreaterThan(2_000);
    expect(seen.refused).toBeGreaterThan(200);
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
