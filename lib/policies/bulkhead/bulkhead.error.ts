import { brandGuard, ResilienceError } from '../../core/errors.js';
import { rejectionBrand } from '../../core/rejection.js';

const BRAND = Symbol.for('nest-resilience.BulkheadRejectedError');

/**
 * Why a bulkhead refused a call: `'full'` (no permit and no queue slot), `'queue-timeout'`
 * (waited longer than `queueTimeout`), `'displaced'` (it was queued, and a call of higher
 * priority took its place in the full queue), `'closed'` (the bulkhead was closed, e.g. at shutdown).
 */
export type BulkheadRejectReason = 'full' | 'queue-timeout' | 'displaced' | 'closed';

/**
 * The bulkhead refused the call: it and its queue were full, the call waited past `queueTimeout`,
 * a call of higher priority displaced it from the full queue, or the bulkhead was closed. Built
 * without a stack trace (a refusal is a hot path).
 */
export class BulkheadRejectedError extends ResilienceError {
  readonly [BRAND] = true;
  readonly [rejectionBrand] = true;

  /** Built by a bulkhead that refuses a call; each parameter is kept as the field of the same name. */
  constructor(
    /** The bulkhead's name. */
    readonly bulkhead: string,
    /** Why the call was refused; see {@link BulkheadRejectReason}. */
    readonly reason: BulkheadRejectReason,
    /** Calls running when refused. */
    readonly active: number,
    /** Calls queued when refused. */
    readonly queued: number,
  ) {
    super(
      reason === 'full'
        ? `Bulkhead "${bulkhead}" is full (${active} running, ${queued} queued)`
        : reason === 'queue-timeout'
          ? `Bulkhead "${bulkhead}": no permit within the queue timeout`
          : reason === 'displaced'
            ? `Bulkhead "${bulkhead}": displaced from the queue by a call of higher priority`
            : `Bulkhead "${bulkhead}" is closed`,
      undefined,
      false,
    );
  }
}

/** Tells whether `error` is a {@link BulkheadRejectedError}. */
export const isBulkheadRejectedError = brandGuard<BulkheadRejectedError>(BRAND);
