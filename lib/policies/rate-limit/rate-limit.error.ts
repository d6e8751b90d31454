import { brandGuard, ResilienceError } from '../../core/errors.js';
import { rejectionBrand } from '../../core/rejection.js';
import type { RateLimitDecision } from './rate-limit.options.js';

const BRAND = Symbol.for('nest-resilience.RateLimitExceededError');

/** A rate limit refused the call. Built without a stack trace: a refusal is a hot path and its stack would show only the limiter. */
export class RateLimitExceededError extends ResilienceError {
  readonly [BRAND] = true;
  readonly [rejectionBrand] = true;
  /** Milliseconds until a call of the same cost could pass; `undefined` when it never could. */
  readonly retryAfterMs: number | undefined;

  /** Built by a rate limiter that refuses a call; each parameter is kept as the field of the same name. */
  constructor(
    /** The limiter's name. */
    readonly limiter: string,
    /** The decision that refused the call (limits, remaining, reset). */
    readonly decision: RateLimitDecision,
  ) {
    super(
      decision.retryAfterMs === undefined
        ? `Rate limit "${limiter}" refused a call whose cost exceeds its capacity`
        : `Rate limit "${limiter}" exceeded; retry in ${Math.ceil(decision.retryAfterMs)} ms`,
      undefined,
      false,
    );
    this.retryAfterMs = decision.retryAfterMs;
  }
}

/** Tells whether `error` is a {@link RateLimitExceededError}. */
export const isRateLimitExceededError = brandGuard<RateLimitExceededError>(BRAND);
