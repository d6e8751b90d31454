import { describe, expect, it } from 'vitest';
import { ALGORITHMS, EMPTY_STATE, type Verdict } from '../../../lib/policies/rate-limit/algorithms.js';
import { ALGORITHM_NAMES, Harness, spec } from './helpers.js';

const summary = (decision: { allowed: boolean; retryAfterMs: number | undefined; limits: { remaining: number; resetMs: number }[] }) => ({
  allowed: decision.allowed,
  retryAfterMs: decision.retryAfterMs,
  remaining: decision.limits.map((limit) => limit.remaining),
  resetMs: decision.limits.map((limit) => limit.resetMs),
});

describe('token bucket', () => {
  it('admits a burst, then refills at limit per window', () => {
    const bucket = new Harness([spec('token-bucket', 10, 1000)]);
    expect(summary(bucket.at(0))).toEqual({ allowed: true, retryAfterMs: 0, remaining: [9], resetMs: [100] });
    expect(summary(bucket.at(0, 9))).toEqual({ allowed: true, retryAfterMs: 0, remaining: [0], resetMs: [1000] });
    expect(summary(bucket.at(0))).toEqual({ allowed: false, retryAfterMs: 100, remaining: [0], resetMs: [1000] });
    expect(summary(bucket.at(50))).toEqual({ allowed: false, retryAfterMs: 50, remaining: [0], resetMs: [950] });
    expect(summary(bucket.at(100))).toEqual({ allowed: true, retryAfterMs: 0, remaining: [0], resetMs: [1000] });
    // 450 ms refill 4.5 tokens: a cost of 5 waits the missing half token.
    expect(summary(bucket.at(550, 5))).toEqual({ allowed: false, retryAfterMs: 50, remaining: [4], resetMs: [550] });
    expect(bucket.at(600, 5).allowed).toBe(true);
  });

  it('caps the bucket at burst, below or above the limit', () => {
    const small = new Harness([spec('token-bucket', 10, 1000, 3)]);
    for (let i = 0; i < 3; i++) expect(small.at(0).allowed).toBe(true);
    expect(summary(small.at(0))).toEqual({ allowed: false, retryAfterMs: 100, remaining: [0], resetMs: [300] });
    // A long idle period never stores more than the burst.
    expect(small.peek(1_000_000).limits[0]!.remaining).toBe(3);

    const large = new Harness([spec('token-bucket', 2, 1000, 5)]);
    expect(large.at(0, 5).allowed).toBe(true);
    expect(large.at(0).retryAfterMs).toBe(500);
  });

  it('refuses a cost above the burst without a retry time, even when full', () => {
    const bucket = new Harness([spec('token-bucket', 10, 1000, 4)]);
    expect(summary(bucket.at(0, 5))).toEqual({ allowed: false, retryAfterMs: undefined, remaining: [4], resetMs: [0] });
    expect(bucket.at(0, 4).allowed).toBe(true);
  });
});

describe('GCRA', () => {
  it('spaces calls by window / limit after the burst', () => {
    const gcra = new Harness([spec('gcra', 10, 1000)]);
    expect(summary(gcra.at(0))).toEqual({ allowed: true, retryAfterMs: 0, remaining: [9], resetMs: [100] });
    expect(summary(gcra.at(0, 9))).toEqual({ allowed: true, retryAfterMs: 0, remaining: [0], resetMs: [1000] });
    expect(summary(gcra.at(0))).toEqual({ allowed: false, retryAfterMs: 100, remaining: [0], resetMs: [1000] });
    expect(summary(gcra.at(30))).toEqual({ allowed: false, retryAfterMs: 70, remaining: [0], resetMs: [970] });
    expect(gcra.at(100).allowed).toBe(true);
    expect(gcra.at(150).retryAfterMs).toBe(50);
  });

  it('admits burst units at once and refuses a cost above the burst without a retry time', () => {
    const gcra = new Harness([spec('gcra', 4, 1000, 2)]);
    expect(gcra.at(0, 2).allowed).toBe(true);
    expect(gcra.at(0).retryAfterMs).toBe(250);
    expect(summary(gcra.at(0, 3))).toEqual({ allowed: false, retryAfterMs: undefined, remaining: [0], resetMs: [500] });
  });
});

describe('fixed window', () => {
  it('counts per aligned window and resets at its end', () => {
    const fixed = new Harness([spec('fixed-window', 3, 1000)]);
    expect(summary(fixed.peek(500))).toEqual({ allowed: true, retryAfterMs: 0, remaining: [3], resetMs: [0] });
    expect(summary(fixed.at(500))).toEqual({ allowed: true, retryAfterMs: 0, remaining: [2], resetMs: [500] });
    expect(fixed.at(600, 2).allowed).toBe(true);
    expect(summary(fixed.at(999))).toEqual({ allowed: false, retryAfterMs: 1, remaining: [0], resetMs: [1] });
    expect(summary(fixed.at(1000))).toEqual({ allowed: true, retryAfterMs: 0, remaining: [2], resetMs: [1000] });
  });

  it('admits 2L around a window boundary (its documented bound)', () => {
    const fixed = new Harness([spec('fixed-window', 3, 1000)]);
    expect(fixed.at(999, 3).allowed).toBe(true);
    expect(fixed.at(1000, 3).allowed).toBe(true);
  });

  it('refuses a cost above the limit without a retry time', () => {
    const fixed = new Harness([spec('fixed-window', 3, 1000)]);
    expect(fixed.at(0, 4)).toMatchObject({ allowed: false, retryAfterMs: undefined });
  });
});

describe('sliding window counter', () => {
  it('weighs the previous window by its part still inside the sliding window', () => {
    const counter = new Harness([spec('sliding-window-counter', 10, 1000)]);
    expect(counter.at(900, 10).allowed).toBe(true);
    // Within the same window: passes once the next window has slid 10 % in.
    expect(summary(counter.at(950))).toEqual({ allowed: false, retryAfterMs: 150, remaining: [0], resetMs: [1050] });
    // Window 1 starts with the estimate 10 · 1.0: still full.
    expect(summary(counter.at(1000))).toEqual({ allowed: false, retryAfterMs: 100, remaining: [0], resetMs: [1000] });
    expect(counter.peek(1099).allowed).toBe(false);
    expect(summary(counter.at(1100))).toEqual({ allowed: true, retryAfterMs: 0, remaining: [0], resetMs: [1900] });
    // At 1500 the estimate is 10 · 0.5 + 1 = 6.
    expect(summary(counter.at(1500, 4))).toEqual({ allowed: true, retryAfterMs: 0, remaining: [0], resetMs: [1500] });
    // Two windows later nothing is left.
    expect(counter.peek(3000).limits[0]!.remaining).toBe(10);
  });

  it('waits for the next window when this window alone is too full', () => {
    const counter = new Harness([spec('sliding-window-counter', 10, 1000)]);
    counter.at(100, 8);
    // current 8 + cost 3 > 10: in window 1, 8 · (1 − y) + 3 ≤ 10 ⇒ y ≥ 1/8.
    expect(counter.at(200, 3).retryAfterMs).toBe(925);
    expect(counter.peek(1124.9, 3).allowed).toBe(false);
    expect(counter.at(1125, 3).allowed).toBe(true);
  });

  it('forgets a window two windows old, and refuses a cost above the limit without a retry time', () => {
    const counter = new Harness([spec('sliding-window-counter', 5, 1000)]);
    counter.at(0, 5);
    expect(counter.at(2000, 5).allowed).toBe(true);
    expect(counter.at(5000, 6)).toMatchObject({ allowed: false, retryAfterMs: undefined });
  });
});

describe('sliding window log', () => {
  it('is exact: a unit leaves the window exactly one window after it was admitted', () => {
    const log = new Harness([spec('sliding-window-log', 3, 1000)]);
    expect(log.at(0).allowed).toBe(true);
    expect(log.at(100).allowed).toBe(true);
    expect(summary(log.at(200))).toEqual({ allowed: true, retryAfterMs: 0, remaining: [0], resetMs: [1000] });
    expect(summary(log.at(300))).toEqual({ allowed: false, retryAfterMs: 700, remaining: [0], resetMs: [900] });
    expect(log.peek(999.9).allowed).toBe(false);
    expect(summary(log.at(1000))).toEqual({ allowed: true, retryAfterMs: 0, remaining: [0], resetMs: [1000] });
    // A cost of 2 needs the two oldest live units (100 and 200) gone.
    expect(log.at(1050, 2).retryAfterMs).toBe(150);
    expect(log.at(1200, 2).allowed).toBe(true);
  });

  it('records one entry per unit of cost, its ring growing up to the limit only', () => {
    const limit = spec('sliding-window-log', 50, 1000);
    const log = new Harness([limit]);
    for (let t = 0; t < 10_000; t += 10) log.at(t, 1 + (t % 3));
    expect(log.peek(10_000).limits[0]!.remaining).toBeLessThan(50);
    // The ring never holds more timestamps than the limit: recover the state through a fresh check.
    const verdict: Verdict = { allowed: false, remaining: 0, resetMs: 0, retryAfterMs: 0 };
    const state = [0, 0];
    let admitted = 0;
    for (let i = 0; i < 500; i++) {
      ALGORITHMS['sliding-window-log'].check(state, limit, 1 + (i % 5), i * 7, verdict);
      if (verdict.allowed) {
        ALGORITHMS['sliding-window-log'].charge(state, limit, 1 + (i % 5), i * 7, verdict);
        admitted++;
      }
    }
    expect(admitted).toBeGreaterThan(60);
    expect(state.length - 2).toBe(50);
  });

  it('refuses a cost above the limit without a retry time', () => {
    expect(new Harness([spec('sliding-window-log', 3, 1000)]).at(0, 4)).toMatchObject({ allowed: false, retryAfterMs: undefined });
  });
});

describe('every algorithm', () => {
  describe.each(ALGORITHM_NAMES)('%s', (algorithm) => {
    it('reads the shared empty state as full and never writes it', () => {
      const verdict: Verdict = { allowed: false, remaining: 0, resetMs: 0, retryAfterMs: 0 };
      ALGORITHMS[algorithm].check(EMPTY_STATE, spec(algorithm, 5, 1000), 5, 12_345, verdict);
      expect(verdict).toEqual({ allowed: true, remaining: 5, resetMs: 0, retryAfterMs: 0 });
      expect(Object.isFrozen(EMPTY_STATE)).toBe(true);
    });

    it('peek tells what consume would do, charging nothing', () => {
      const limiter = new Harness([spec(algorithm, 2, 1000)]);
      expect(limiter.peek(10, 2)).toMatchObject({ allowed: true, limits: [{ remaining: 2 }] });
      expect(limiter.peek(10, 2)).toMatchObject({ allowed: true, limits: [{ remaining: 2 }] });
      expect(limiter.at(10, 2)).toMatchObject({ allowed: true, limits: [{ remaining: 0 }] });
      const peeked = limiter.peek(10);
      expect(peeked.allowed).toBe(false);
      expect(limiter.at(10)).toEqual(peeked);
    });

    it('refund gives units back, never beyond full', () => {
      const limiter = new Harness([spec(algorithm, 4, 1000)]);
      limiter.at(0, 3);
      expect(limiter.refund(0, 2)).toMatchObject({ allowed: true, retryAfterMs: 0, limits: [{ remaining: 3 }] });
      expect(limiter.refund(0, 100)).toMatchObject({ allowed: true, limits: [{ remaining: 4, resetMs: 0 }] });
      expect(limiter.at(0, 4).allowed).toBe(true);
      // Refunding a key without state changes nothing.
      expect(new Harness([spec(algorithm, 4, 1000)]).refund(0, 3)).toMatchObject({ allowed: true, limits: [{ remaining: 4 }] });
    });

    it('a refused decision leaves every limit as it was', () => {
      const limiter = new Harness([spec(algorithm, 3, 1000)]);
      limiter.at(0, 2);
      const before = limiter.peek(100, 2);
      expect(before.allowed).toBe(false);
      expect(limiter.at(100, 2)).toEqual(before);
      expect(limiter.peek(100, 2)).toEqual(before);
      expect(limiter.at(100, 1).allowed).toBe(true);
    });

    it('reset makes the key full again', () => {
      const limiter = new Harness([spec(algorithm, 2, 1000)]);
      limiter.at(0, 2);
      expect(limiter.at(1).allowed).toBe(false);
      limiter.store.reset(limiter.key, limiter.limits);
      expect(limiter.at(1, 2).allowed).toBe(true);
    });

    it('counts every unit of a very large limit: no unit of slack, remaining exact', () => {
      const huge = 1_000_000_000;
      const limiter = new Harness([spec(algorithm, huge, 60_000, huge)]);
      expect(limiter.at(0)).toMatchObject({ allowed: true, limits: [{ remaining: huge - 1 }] });
      // The log keeps an entry per unit: filling a limit this large is the worst case it documents.
      if (algorithm === 'sliding-window-log') return;
      expect(limiter.at(0, huge - 1)).toMatchObject({ allowed: true, limits: [{ remaining: 0 }] });
      expect(limiter.peek(0).allowed).toBe(false);
    });

    it('passes after exactly the reported retry time, and not before', () => {
      const limiter = new Harness([spec(algorithm, 7, 3000, 7)]);
      const refusals: { at: number; wait: number; passesEarly: boolean; passesOnTime: boolean }[] = [];
      let now = 0;
      for (let step = 0; step < 40; step++) {
        const cost = 1 + (step % 4);
        const decision = limiter.at(now, cost);
        if (!decision.allowed) {
          const wait = decision.retryAfterMs!;
          refusals.push({ at: now, wait, passesEarly: limiter.peek(now + wait * 0.999, cost).allowed, passesOnTime: limiter.peek(now + wait, cost).allowed });
        }
        now += 137.5;
      }
      expect(refusals.length).toBeGreaterThan(5);
      expect(refusals.filter((refusal) => !(refusal.wait > 0) || refusal.passesEarly || !refusal.passesOnTime)).toEqual([]);
    });
  });
});

describe('several limits', () => {
  const perSecond = spec('fixed-window', 10, 1000, 10, 'second');
  const perHour = spec('token-bucket', 3, 3_600_000, 3, 'hour');

  it('admits only when all have room, and then charges all', () => {
    const limiter = new Harness([perSecond, perHour]);
    expect(limiter.at(0)).toMatchObject({ allowed: true, limits: [{ name: 'second', remaining: 9 }, { name: 'hour', remaining: 2 }] });
    expect(limiter.at(0, 2)).toMatchObject({ allowed: true, limits: [{ remaining: 7 }, { remaining: 0 }] });
  });

  it('charges none of them when one refuses (no partial charge)', () => {
    const limiter = new Harness([perSecond, perHour]);
    limiter.at(0, 3);
    const refused = limiter.at(1);
    expect(refused).toMatchObject({ allowed: false, limits: [{ remaining: 7 }, { remaining: 0 }] });
    // One token per 1.2 million ms, 1 ms of which has passed.
    expect(refused.retryAfterMs).toBeCloseTo(1_199_999, 6);
    for (let i = 0; i < 20; i++) limiter.at(2);
    // The per-second window saw 3 units, not 23.
    expect(limiter.peek(3).limits[0]!.remaining).toBe(7);
  });

  it('reports the longest wait among the limits that refused, and none when one never could pass', () => {
    const limiter = new Harness([spec('fixed-window', 2, 1000, 2, 'a'), spec('gcra', 2, 10_000, 2, 'b')]);
    limiter.at(0, 2);
    // 'a' reopens at 1000, 'b' lets one more unit in at 15000 − 10000 (its burst).
    expect(limiter.at(100).retryAfterMs).toBe(4900);
    expect(limiter.at(100, 3).retryAfterMs).toBeUndefined();
  });

  it('keeps each limit state apart by name within one key', () => {
    const store = new Harness([perSecond]).store;
    const a = new Harness([spec('fixed-window', 1, 1000, 1, 'a')], store);
    const b = new Harness([spec('fixed-window', 1, 1000, 1, 'b')], store);
    expect(a.at(0).allowed).toBe(true);
    expect(b.at(0).allowed).toBe(true);
    expect(a.at(0).allowed).toBe(false);
    expect(new Harness([a.limits[0]!, b.limits[0]!], store).peek(0)).toMatchObject({ allowed: false, limits: [{ remaining: 0 }, { remaining: 0 }] });
  });
});
