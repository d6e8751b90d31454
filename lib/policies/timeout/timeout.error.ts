import { brandGuard, ResilienceError } from '../../core/errors.js';

const BRAND = Symbol.for('nest-resilience.TimeoutExceededError');

/** The call did not finish before its deadline (its own or an enclosing one). Built without a stack trace: it is raised by a timer, whose stack says nothing. */
export class TimeoutExceededError extends ResilienceError {
  readonly [BRAND] = true;

  /** Built by a timeout whose deadline passed; the parameter is kept as `timeoutMs`. */
  constructor(
    /** The timeout that expired, in milliseconds. */
    readonly timeoutMs: number,
  ) {
    super(`Operation timed out after ${timeoutMs} ms`, undefined, false);
  }
}

/** Tells whether `error` is a {@link TimeoutExceededError}. */
export const isTimeoutExceededError = brandGuard<TimeoutExceededError>(BRAND);
