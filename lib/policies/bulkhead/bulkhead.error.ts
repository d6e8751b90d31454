import { brandGuard, ResilienceError } from '../../core/errors.js';
import { rejectionBrand } from '../../core/rejection.js';

const BRAND = Symbol.for('nest-resilience.BulkheadRejectedError');

/** The bulkhead refused the call: it and its queue were full, or the call waited past `queueTimeout`. */
export class BulkheadRejectedError extends ResilienceError {
  readonly [BRAND] = true;
  readonly [rejectionBrand] = true;

  constructor(
    /** The bulkhead's name. */
    readonly bulkhead: string,
    /** `'full'`: no permit and no queue slot; `'queue-timeout'`: waited too long. */
    readonly reason: 'full' | 'queue-timeout',
    /** Calls running when refused. */
    readonly active: number,
    /** Calls queued when refused. */
    readonly queued: number,
  ) {
    super(
      reason === 'full'
        ? `Bulkhead "${bulkhead}" is full (${active} running, ${queued} queued)`
        : `Bulkhead "${bulkhead}": no permit within the queue timeout`,
    );
  }
}

/** Tells whether `error` is a {@link BulkheadRejectedError}. */
export const isBulkheadRejectedError = brandGuard<BulkheadRejectedError>(BRAND);
