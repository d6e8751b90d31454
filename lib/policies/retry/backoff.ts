import type { BackoffKind, JitterKind } from './retry.options.js';

/**
 * The settings that shape the delay between attempts, durations in milliseconds. The functions
 * below are pure over it: the same settings, attempt and random draw always give the same delay.
 */
export interface BackoffSettings {
  /** How the delay grows from one retry to the next. */
  readonly backoff: BackoffKind;
  /** The base delay in ms: the first retry's delay before jitter. */
  readonly delay: number;
  /** Exponential growth factor (≥ 1). */
  readonly multiplier: number;
  /** The cap on every delay, in ms (≥ `delay`). */
  readonly maxDelay: number;
  /** How the delay is randomised. */
  readonly jitter: JitterKind;
}

/**
 * The delay before retry `attempt` (1 = after the first failed attempt) without jitter, capped at
 * `maxDelay`: `delay` (constant), `delay × attempt` (linear), `delay × multiplier^(attempt−1)`
 * (exponential).
 */
export function baseDelay(settings: BackoffSettings, attempt: number): number {
  const { delay, maxDelay } = settings;
  // 0 × Infinity is NaN: a zero base stays zero however far the exponent grows.
  if (delay === 0) return 0;
  let raw: number;
  switch (settings.backoff) {
    case 'constant':
      raw = delay;
      break;
    case 'linear':
      raw = delay * attempt;
      break;
    case 'exponential':
      raw = delay * settings.multiplier ** (attempt - 1);
      break;
  }
  return raw < maxDelay ? raw : maxDelay;
}

/**
 * AWS's decorrelated jitter: `min(maxDelay, random_between(delay, previous × 3))`, where
 * `previous` is the delay returned for the retry before (the base `delay` for the first one).
 * It ignores `backoff` and `multiplier`: the growth comes from the factor 3.
 */
export function decorrelatedDelay(delay: number, previous: number, maxDelay: number, random: () => number): number {
  const upper = previous * 3;
  const value = upper > delay ? delay + random() * (upper - delay) : delay;
  return value < maxDelay ? value : maxDelay;
}

/**
 * The delay before retry `attempt`, jitter applied (AWS architecture blog definitions), with
 * `ceiling = baseDelay(settings, attempt)`:
 * - `none`: `ceiling`;
 * - `full`: uniform in `[0, ceiling)`;
 * - `equal`: uniform in `[ceiling / 2, ceiling)`;
 * - `decorrelated`: see {@link decorrelatedDelay}; `previous` is the value this function
 *   returned for the retry before (ignored by the other kinds).
 *
 * Never above `maxDelay`. `random` returns uniform numbers in `[0, 1)`.
 */
export function nextDelay(settings: BackoffSettings, attempt: number, previous: number, random: () => number): number {
  switch (settings.jitter) {
    case 'none':
      return baseDelay(settings, attempt);
    case 'full':
      return random() * baseDelay(settings, attempt);
    case 'equal': {
      const half = baseDelay(settings, attempt) / 2;
      return half + random() * half;
    }
    case 'decorrelated':
      return decorrelatedDelay(settings.delay, previous, settings.maxDelay, random);
  }
}
