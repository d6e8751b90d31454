import { brandGuard, ResilienceError } from '../../core/errors.js';

const BRAND = Symbol.for('nest-resilience.TimeoutExceededError');

/** The call did not finish before its deadline (its own or an enclosing one). */
export class TimeoutExceededError extends ResilienceError {
  readonly [BRAND] = true;

  constructor(
    /** The timeout that expired, in milliseconds. */
    readonly timeoutMs: number,
  ) {
    super(`Operation timed out after ${timeoutMs} ms`);
  }
}

/** Tells whether `error` is a {@link TimeoutExceededError}. */
export const isTimeoutExceededError = brandGuard<TimeoutExceededError>(BRAND);
