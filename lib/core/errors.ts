const RESILIENCE_BRAND = Symbol.for('nest-resilience.error');

/**
 * Base class of every error the engines raise. Errors carry a brand (a registered symbol) so
 * the `isX(error)` guards work even when two copies of the package are loaded.
 */
export abstract class ResilienceError extends Error {
  /** Brand shared by every error of this package. */
  readonly [RESILIENCE_BRAND]: true;

  /**
   * @param stack `false` for errors raised on hot paths whose stack would only show the engine's
   *   internals (a refusal, a deadline's timer): capturing it costs several µs, more than the
   *   rest of a refused call. Their `stack` is then the header alone, `Name: message`.
   */
  protected constructor(message: string, options?: ErrorOptions, stack = true) {
    if (stack) {
      super(message, options);
    } else {
      const limit = suspendStackCapture();
      try {
        super(message, options);
      } finally {
        Error.stackTraceLimit = limit;
      }
    }
    this[RESILIENCE_BRAND] = true;
    this.name = new.target.name;
    // What V8 prints for a stack of no frames.
    if (!stack) this.stack = `${this.name}: ${this.message}`;
  }
}

/**
 * Turns stack capture off for the errors built until `Error.stackTraceLimit` is set back to the
 * value returned. A limit that is not a number skips the capture entirely, where a limit of 0
 * still walks the stack (~1 µs from a request handler's depth). Such errors have `stack`
 * undefined: set it to their header, `Name: message`. Internal.
 */
export function suspendStackCapture(): number {
  const limit = Error.stackTraceLimit;
  (Error as { stackTraceLimit: unknown }).stackTraceLimit = undefined;
  return limit;
}

/** Tells whether `error` is any error raised by this package. */
export function isResilienceError(error: unknown): error is ResilienceError {
  return typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[RESILIENCE_BRAND] === true;
}

/**
 * Builds an `isX` guard for a branded error class: it checks the brand, not `instanceof`, so it
 * recognises errors from another copy of the package.
 */
export function brandGuard<T extends ResilienceError>(brand: symbol): (error: unknown) => error is T {
  return (error: unknown): error is T =>
    typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[brand] === true;
}

/**
 * A policy option that cannot work. Thrown when a policy is built (at bootstrap in a Nest app),
 * never during a call. The message names the option, the value and what is allowed; the Nest
 * layer prefixes it with the class, method and decorator.
 */
export class InvalidOptionError extends ResilienceError {
  /** Where the option was given, e.g. `@Retry on PaymentsService.charge`; empty when unknown. */
  readonly where: string;

  /**
   * @param option the option's path, e.g. `circuitBreaker.failureRateThreshold`.
   * @param value the value given.
   * @param expected what is allowed, in words.
   * @param where where the option was given, e.g. `@Retry on PaymentsService.charge`.
   */
  constructor(
    /** The option's path, e.g. `circuitBreaker.failureRateThreshold`. */
    readonly option: string,
    /** The value given. */
    readonly value: unknown,
    /** What is allowed. */
    readonly expected: string,
    where = '',
  ) {
    super(`${where ? `${where}: ` : ''}invalid option "${option}": got ${describeValue(value)}; expected ${expected}`);
    this.where = where;
  }

  /** The same error with a prefix saying where the option was written, and the option path under `scope`. */
  withContext(where: string, scope?: string): InvalidOptionError {
    const option = scope ? `${scope}.${this.option}` : this.option;
    return new InvalidOptionError(option, this.value, this.expected, where);
  }
}

/** Formats a value for an error message: strings quoted, functions by name, objects as JSON. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null || typeof value !== 'object') return String(value);
  try {
    return JSON.stringify(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

const ABORTED_BRAND = Symbol.for('nest-resilience.OperationAbortedError');

/** The call was aborted by its caller (through an `AbortSignal`) before it finished. */
export class OperationAbortedError extends ResilienceError {
  readonly [ABORTED_BRAND] = true;

  /** @param reason why the call was aborted (the signal's reason), kept as the error's `cause`. */
  constructor(reason?: unknown) {
    super('The operation was aborted', reason === undefined ? undefined : { cause: reason });
  }
}

/** Tells whether `error` is an {@link OperationAbortedError}. */
export const isOperationAbortedError = brandGuard<OperationAbortedError>(ABORTED_BRAND);

/**
 * Reads a server-requested delay carried by an error: `retryAfterMs` (milliseconds), or
 * `retryAfter` as seconds (number or numeric string, like the HTTP header) or a `Date`.
 * Returns `undefined` when the error carries none.
 */
export function retryAfterOf(error: unknown, now = Date.now()): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const carrier = error as { retryAfterMs?: unknown; retryAfter?: unknown };
  if (typeof carrier.retryAfterMs === 'number' && carrier.retryAfterMs >= 0) return carrier.retryAfterMs;
  const after = carrier.retryAfter;
  if (typeof after === 'number' && after >= 0) return after * 1000;
  if (typeof after === 'string' && after.trim() !== '') {
    const seconds = Number(after);
    if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
    const date = Date.parse(after);
    if (!Number.isNaN(date)) return Math.max(0, date - now);
  }
  if (after instanceof Date) return Math.max(0, after.getTime() - now);
  return undefined;
}

/**
 * The HTTP status an error carries (`status`, `statusCode`, or Nest's `getStatus()`), if any.
 * Used by the default failure predicate: client errors (4xx) do not trip a breaker.
 */
export function httpStatusOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const carrier = error as { status?: unknown; statusCode?: unknown; getStatus?: unknown };
  if (typeof carrier.getStatus === 'function') {
    const status = (carrier.getStatus as () => unknown).call(error);
    if (typeof status === 'number') return status;
  }
  if (typeof carrier.status === 'number') return carrier.status;
  if (typeof carrier.statusCode === 'number') return carrier.statusCode;
  return undefined;
}
