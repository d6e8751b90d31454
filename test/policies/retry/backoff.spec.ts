import { describe, expect, it } from 'vitest';
import { baseDelay, decorrelatedDelay, nextDelay, type BackoffSettings } from '../../../lib/policies/retry/backoff.js';

const settings = (overrides: Partial<BackoffSettings>): BackoffSettings => ({
  backoff: 'exponential',
  delay: 100,
  multiplier: 2,
  maxDelay: 30_000,
  jitter: 'none',
  ...overrides,
});

describe('baseDelay', () => {
  it('keeps a constant delay', () => {
    const s = settings({ backoff: 'constant' });
    expect([1, 2, 3, 10].map((n) => baseDelay(s, n))).toEqual([100, 100, 100, 100]);
  });

  it('grows linearly', () => {
    const s = settings({ backoff: 'linear' });
    expect([1, 2, 3, 4].map((n) => baseDelay(s, n))).toEqual([100, 200, 300, 400]);
  });

  it('grows exponentially with the multiplier, starting at the base delay', () => {
    expect([1, 2, 3, 4].map((n) => baseDelay(settings({}), n))).toEqual([100, 200, 400, 800]);
    expect([1, 2, 3].map((n) => baseDelay(settings({ multiplier: 3 }), n))).toEqual([100, 300, 900]);
  });

  it('caps every kind at maxDelay', () => {
    expect([1, 2, 3, 4, 5].map((n) => baseDelay(settings({ maxDelay: 500 }), n))).toEqual([100, 200, 400, 500, 500]);
    expect(baseDelay(settings({ backoff: 'linear', maxDelay: 250 }), 3)).toBe(250);
    expect(baseDelay(settings({ backoff: 'constant', delay: 100, maxDelay: 100 }), 7)).toBe(100);
  });

  it('stays finite when the exponent overflows, and zero when the base is zero', () => {
    expect(baseDelay(settings({ maxDelay: 1000 }), 5000)).toBe(1000);
    expect(baseDelay(settings({ delay: 0, maxDelay: 1000 }), 5000)).toBe(0);
  });
});

const half = () => 0.5;

describe('nextDelay', () => {
  it('applies no jitter', () => {
    expect(nextDelay(settings({ jitter: 'none' }), 3, 0, half)).toBe(400);
  });

  it('applies full jitter: uniform in [0, ceiling)', () => {
    const s = settings({ jitter: 'full' });
    expect(nextDelay(s, 3, 0, half)).toBe(200);
    expect(nextDelay(s, 3, 0, () => 0)).toBe(0);
    expect(nextDelay(s, 3, 0, () => 0.999)).toBeCloseTo(399.6);
  });

  it('applies equal jitter: uniform in [ceiling / 2, ceiling)', () => {
    const s = settings({ jitter: 'equal' });
    expect(nextDelay(s, 3, 0, () => 0)).toBe(200);
    expect(nextDelay(s, 3, 0, half)).toBe(300);
  });

  it('applies decorrelated jitter: min(maxDelay, random_between(delay, previous × 3))', () => {
    const s = settings({ jitter: 'decorrelated', maxDelay: 1000 });
    expect(nextDelay(s, 1, 100, half)).toBe(200);
    expect(nextDelay(s, 2, 200, half)).toBe(350);
    expect(nextDelay(s, 2, 200, () => 0)).toBe(100);
    expect(nextDelay(s, 9, 900, half)).toBe(1000);
  });

  it('calls random once per jittered delay and never without jitter', () => {
    let draws = 0;
    const random = () => {
      draws++;
      return 0.25;
    };
    nextDelay(settings({ jitter: 'none' }), 2, 0, random);
    expect(draws).toBe(0);
    for (const jitter of ['full', 'equal', 'decorrelated'] as const) nextDelay(settings({ jitter }), 2, 100, random);
    expect(draws).toBe(3);
  });
});

describe('decorrelatedDelay', () => {
  it('never goes below the base delay, even from a zero previous delay', () => {
    expect(decorrelatedDelay(100, 0, 1000, () => 0.9)).toBe(100);
    expect(decorrelatedDelay(0, 0, 1000, () => 0.9)).toBe(0);
  });
});
