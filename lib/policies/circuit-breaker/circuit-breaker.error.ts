import { brandGuard, ResilienceError } from '../../core/errors.js';
import { rejectionBrand } from '../../core/rejection.js';
import type { CircuitState } from './circuit-breaker.options.js';

const BRAND = Symbol.for('nest-resilience.CircuitOpenError');

/** The circuit is open (or forced open): the call was refused without running. Built without a stack trace (a refusal is a hot path). */
export class CircuitOpenError extends ResilienceError {
  readonly [BRAND] = true;
  readonly [rejectionBrand] = true;

  /** Built by a breaker that refuses a call; each parameter is kept as the field of the same name. */
  constructor(
    /** The breaker's name. */
    readonly breaker: string,
    /** The state that refused the call. */
    readonly state: CircuitState,
    /** Milliseconds until the next probe may run; `undefined` when forced open (no probe is scheduled). */
    readonly retryAfterMs: number | undefined,
  ) {
    super(
      state === 'FORCED_OPEN'
        ? `Circuit "${breaker}" is forced open`
        : state === 'HALF_OPEN'
          ? `Circuit "${breaker}" is half-open and its probes are all in flight`
          : `Circuit "${breaker}" is open; next probe in ${Math.ceil(retryAfterMs ?? 0)} ms`,
      undefined,
      false,
    );
  }
}

/** Tells whether `error` is a {@link CircuitOpenError}. */
export const isCircuitOpenError = brandGuard<CircuitOpenError>(BRAND);
