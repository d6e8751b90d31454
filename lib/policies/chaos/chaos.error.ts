import { brandGuard, ResilienceError } from '../../core/errors.js';

const INJECTED_BRAND = Symbol.for('nest-resilience.ChaosInjectedError');
const NOT_ALLOWED_BRAND = Symbol.for('nest-resilience.ChaosNotAllowedError');

/**
 * A failure injected by a chaos policy. It stands for the dependency failing, so it is not a
 * policy refusal: a breaker counts it as a failure and a retry retries it. Also the `cause` of
 * the `OperationAbortedError` an injected abort rejects with. Built without a stack trace (it
 * would show only the engine).
 */
export class ChaosInjectedError extends ResilienceError {
  readonly [INJECTED_BRAND] = true;

  /** Built by a chaos policy that injects a fault; each parameter is kept as the field of the same name. */
  constructor(
    /** The chaos policy's name. */
    readonly policy: string,
    /** The fault injected. */
    readonly fault: 'error' | 'abort',
  ) {
    super(fault === 'error' ? `Chaos "${policy}" injected a failure` : `Chaos "${policy}" injected an abort`, undefined, false);
  }
}

/** Tells whether `error` is a {@link ChaosInjectedError}. */
export const isChaosInjectedError = brandGuard<ChaosInjectedError>(INJECTED_BRAND);

/** A chaos policy was asked to inject faults in production, which was not allowed. */
export class ChaosNotAllowedError extends ResilienceError {
  readonly [NOT_ALLOWED_BRAND] = true;

  /** @param policy the chaos policy's name, kept as `policy`. */
  constructor(
    /** The chaos policy's name. */
    readonly policy: string,
  ) {
    super(
      `Chaos "${policy}" cannot be enabled: NODE_ENV is "production" and fault injection is off there unless allowed. ` +
        'Set ResilienceModule.forRoot({ chaos: { allowInProduction: true } }) (or, for an engine built by hand, the dependency `allowInProduction: true`).',
    );
  }
}

/** Tells whether `error` is a {@link ChaosNotAllowedError}. */
export const isChaosNotAllowedError = brandGuard<ChaosNotAllowedError>(NOT_ALLOWED_BRAND);
