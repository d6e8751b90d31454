import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidOptionError } from '../../../lib/core/errors.js';
import { AimdLimit, createAdaptiveLimit, GradientLimit, resolveAdaptiveLimitOptions } from '../../../lib/policies/bulkhead/index.js';

describe('adaptive limit options', () => {
  it('applies the defaults, gradient first', () => {
    expect(resolveAdaptiveLimitOptions()).toEqual({
      algorithm: 'gradient',
      initialLimit: 20,
      minLimit: 1,
      maxLimit: 200,
      tolerance: 1.5,
      backoffRatio: 0.9,
      smoothing: 0.2,
      probeInterval: 1000,
    });
    expect(createAdaptiveLimit()).toBeInstanceOf(GradientLimit);
    expect(createAdaptiveLimit({ algorithm: 'aimd' })).toBeInstanceOf(AimdLimit);
  });

  it('keeps the default initial limit within the bounds given', () => {
    expect(resolveAdaptiveLimitOptions({ maxLimit: 8 }).initialLimit).toBe(8);
    expect(resolveAdaptiveLimitOptions({ minLimit: 30 })).toMatchObject({ initialLimit: 30, maxLimit: 200 });
    expect(resolveAdaptiveLimitOptions({ minLimit: 300 })).toMatchObject({ initialLimit: 300, maxLimit: 300 });
    expect(createAdaptiveLimit({ initialLimit: 7 }).limit).toBe(7);
  });

  it('re-measures at least 5 × maxLimit samples apart: the default grows with maxLimit, 0 turns it off', () => {
    expect(resolveAdaptiveLimitOptions({ maxLimit: 500 }).probeInterval).toBe(2500);
    expect(resolveAdaptiveLimitOptions({ maxLimit: 10, probeInterval: 50 }).probeInterval).toBe(50);
    expect(resolveAdaptiveLimitOptions({ maxLimit: 500, probeInterval: 0 }).probeInterval).toBe(0);
  });

  it.each([
    [{ algorithm: 'vegas' }, 'invalid option "algorithm": got "vegas"; expected one of \'aimd\', \'gradient\''],
    [{ minLimit: 0 }, 'invalid option "minLimit": got 0; expected an integer ≥ 1'],
    [{ minLimit: 5, maxLimit: 4 }, 'invalid option "maxLimit": got 4; expected an integer ≥ 5'],
    [{ maxLimit: 10, initialLimit: 11 }, 'invalid option "initialLimit": got 11; expected an integer between 1 and 10'],
    [{ tolerance: 1 }, 'invalid option "tolerance": got 1; expected a number > 1'],
    [{ backoffRatio: 1 }, 'invalid option "backoffRatio": got 1; expected a number > 0 and < 1'],
    [{ backoffRatio: 0 }, 'invalid option "backoffRatio": got 0'],
    [{ smoothing: 0 }, 'invalid option "smoothing": got 0; expected a number > 0 and ≤ 1'],
    [{ probeInterval: -1 }, 'invalid option "probeInterval": got -1; expected an integer ≥ 0'],
    [{ probeInterval: 1 }, 'invalid option "probeInterval": got 1; expected 0 (never), or an integer ≥ 1000 (5 × maxLimit)'],
    [{ maxLimit: 10, probeInterval: 49 }, 'invalid option "probeInterval": got 49; expected 0 (never), or an integer ≥ 50 (5 × maxLimit)'],
    [{ window: 5 }, 'invalid option "window": got 5; expected no such option; known options: algorithm, initialLimit'],
  ])('refuses %j', (options, message) => {
    expect(() => createAdaptiveLimit(options as never)).toThrow(InvalidOptionError);
    expect(() => createAdaptiveLimit(options as never)).toThrow(message);
  });
});

describe('AimdLimit', () => {
  it('grows by one per round trip of calls that use the limit, not when the traffic leaves it idle', () => {
    const aimd = new AimdLimit({ initialLimit: 10, probeInterval: 0 });
    // Samples of a saturated limit: +1/limit each, so a round trip of 11 adds one.
    for (let i = 0; i < 10; i++) aimd.update(10, 10, false);
    expect(aimd.limit).toBe(10);
    aimd.update(10, 10, false);
    expect(aimd.limit).toBe(11);
    // Calls using under half the limit: no growth.
    for (let i = 0; i < 100; i++) aimd.update(10, 3, false);
    expect(aimd.limit).toBe(11);
  });

  it('backs off by backoffRatio on a drop or an RTT above tolerance × min RTT, once per round trip', () => {
    const aimd = new AimdLimit({ initialLimit: 20, backoffRatio: 0.5, tolerance: 2, probeInterval: 0 });
    aimd.update(10, 20, false);
    expect(aimd.minRttMs).toBe(10);
    expect(aimd.update(20, 20, false)).toBe(20); // exactly 2 × min RTT: within tolerance
    expect(aimd.update(21, 20, false)).toBe(10);
    // The calls in flight at the decrease (about 21) carry no news: no second decrease for them.
    for (let i = 0; i < 20; i++) expect(aimd.update(50, 20, true)).toBe(10);
    expect(aimd.update(50, 20, true)).toBe(5);
  });

  it('stays within [minLimit, maxLimit]', () => {
    const aimd = new AimdLimit({ initialLimit: 3, minLimit: 2, maxLimit: 4, backoffRatio: 0.1, probeInterval: 0 });
    for (let i = 0; i < 100; i++) aimd.update(1, 100, false);
    expect(aimd.limit).toBe(4);
    for (let i = 0; i < 100; i++) aimd.update(1, 100, true);
    expect(aimd.limit).toBe(2);
  });
});

describe('GradientLimit', () => {
  it('grows while the RTT stays at the minimum, and shrinks with the ratio min RTT / RTT of a round', () => {
    const gradient = new GradientLimit({ initialLimit: 16, smoothing: 1, probeInterval: 0 });
    // A round is 16 samples; the limit moves once, at its end: 16 × 1 + √16 / 2.
    for (let i = 0; i < 15; i++) expect(gradient.update(10, 16, false)).toBe(16);
    expect(gradient.update(10, 16, false)).toBe(18);
    // A round at twice the minimum RTT: 18 × 0.5 + √18 / 2 ≈ 11.1.
    for (let i = 0; i < 18; i++) gradient.update(20, 18, false);
    expect(gradient.limit).toBe(11);
  });

  it('treats a round with a drop as a gradient of 0.5, and leaves the limit alone when calls use under half of it', () => {
    const gradient = new GradientLimit({ initialLimit: 16, smoothing: 1, probeInterval: 0 });
    for (let i = 0; i < 16; i++) gradient.update(10, 7, false);
    expect(gradient.limit).toBe(16);
    for (let i = 0; i < 16; i++) gradient.update(10, 16, i === 3);
    expect(gradient.limit).toBe(10); // 16 × 0.5 + 2
  });

  it('halves the limit while it re-measures the minimum RTT, then restores it with the new minimum', () => {
    const gradient = new GradientLimit({ initialLimit: 10, maxLimit: 10, smoothing: 1, probeInterval: 50 });
    for (let i = 0; i < 49; i++) gradient.update(10, 10, false);
    expect(gradient.probing).toBe(false);
    expect(gradient.update(30, 10, false)).toBe(5);
    expect(gradient.probing).toBe(true);
    // 10 calls admitted before, 5 under the halved limit; their minimum becomes the no-load RTT.
    for (let i = 0; i < 14; i++) expect(gradient.update(30, 5, false)).toBe(5);
    expect(gradient.update(30, 5, false)).toBe(10);
    expect(gradient.probing).toBe(false);
    expect(gradient.minRttMs).toBe(30);
  });
});

describe('adaptive limits under any samples', () => {
  it('keep the limit an integer within [minLimit, maxLimit]', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('aimd' as const, 'gradient' as const),
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 0, max: 50 }),
        fc.integer({ min: -1, max: 20 }),
        fc.array(fc.tuple(fc.double({ min: 0, max: 1e4, noNaN: true }), fc.integer({ min: 0, max: 200 }), fc.boolean()), { maxLength: 300 }),
        (algorithm, minLimit, span, extraProbe, samples) => {
          const maxLimit = minLimit + span;
          // Off (-1), or the shortest interval allowed plus a little.
          const probeInterval = extraProbe < 0 ? 0 : 5 * maxLimit + extraProbe;
          const limit = createAdaptiveLimit({ algorithm, minLimit, maxLimit, initialLimit: minLimit, probeInterval });
          for (const [rtt, inflight, dropped] of samples) {
            const value = limit.update(rtt, inflight, dropped);
            expect(value).toBe(limit.limit);
            expect(Number.isInteger(value)).toBe(true);
            expect(value).toBeGreaterThanOrEqual(minLimit);
            expect(value).toBeLessThanOrEqual(maxLimit);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
