import { brandGuard, ResilienceError } from '../../core/errors.js';
import { rejectionBrand } from '../../core/rejection.js';

const BRAND = Symbol.for('nest-resilience.LoadShedError');

/**
 * The application is overloaded and the call's priority is too low to run now: it was refused
 * without running (HTTP 503 with `Retry-After`). Built without a stack trace: shedding is a hot
 * path, and it is exactly when the process can least afford the work.
 */
export class LoadShedError extends ResilienceError {
  readonly [BRAND] = true;
  readonly [rejectionBrand] = true;

  /** Built by a load-shedding policy that refuses a call; each parameter is kept as the field of the same name. */
  constructor(
    /** The refused call's priority. */
    readonly priority: number,
    /** Milliseconds after which the client may try again (the detector's `retryAfter`). */
    readonly retryAfterMs: number,
    /** The overload level when the call was refused: calls of priority below it are shed. */
    readonly level: number,
  ) {
    super(`Overloaded (level ${level}): a call of priority ${priority} was shed; retry in ${Math.ceil(retryAfterMs)} ms`, undefined, false);
  }
}

/** Tells whether `error` is a {@link LoadShedError}. */
export const isLoadShedError = brandGuard<LoadShedError>(BRAND);
