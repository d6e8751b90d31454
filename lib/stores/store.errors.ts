import { brandGuard, ResilienceError } from '../core/errors.js';
import { rejectionBrand } from '../core/rejection.js';

const BRAND = Symbol.for('nest-resilience.StoreUnavailableError');

/**
 * The store could not decide (Redis unreachable, too slow, out of memory) and the failure policy
 * is `'fail-closed'`: the call is refused without running. Mapped to 503 with `Retry-After` in HTTP,
 * never to 429.
 */
export class StoreUnavailableError extends ResilienceError {
  readonly [BRAND] = true;
  readonly [rejectionBrand] = true;

  /**
   * @param store the store's kind, e.g. `'redis'`.
   * @param retryAfterMs milliseconds after which asking again makes sense.
   * @param cause the error the store met, if any.
   */
  constructor(
    /** The store's kind, e.g. `'redis'`. */
    readonly store: string,
    /** Milliseconds after which asking again makes sense. */
    readonly retryAfterMs: number,
    cause?: unknown,
  ) {
    super(`The ${store} store is unavailable; the call was refused (fail-closed)`, cause === undefined ? undefined : { cause });
  }
}

/** Tells whether `error` is a {@link StoreUnavailableError}. */
export const isStoreUnavailableError = brandGuard<StoreUnavailableError>(BRAND);
