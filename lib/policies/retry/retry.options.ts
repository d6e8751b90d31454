import type { Duration } from '../../core/duration.js';
import type { ErrorMatcher } from '../../core/matchers.js';
import type { RetryBudgetInstance, RetryBudgetOptions } from './retry-budget.js';

/** How the delay between attempts grows. */
export type BackoffKind = 'constant' | 'linear' | 'exponential';
/** How the delay is randomised (AWS's terms). */
export type JitterKind = 'none' | 'full' | 'equal' | 'decorrelated';

/** Options of a retry policy. */
export interface RetryOptions {
  /** Attempts in all, the first one included: `maxAttempts: 3` means up to 2 retries. @default 3 */
  maxAttempts?: number;
  /** How the delay grows: `delay`, `delay × n`, or `delay × multiplier^(n−1)` before retry n. @default 'exponential' */
  backoff?: BackoffKind;
  /** The base delay: the first retry's delay before jitter. @default '100ms' */
  delay?: Duration;
  /** Exponential growth factor, a number ≥ 1. @default 2 */
  multiplier?: number;
  /** The longest delay between two attempts (≥ `delay`, at most 2³¹−1 ms); also caps a `Retry-After`. @default '30s' */
  maxDelay?: Duration;
  /**
   * How the delay is randomised: `none`; `full`, uniform in [0, d); `equal`, uniform in [d/2, d);
   * `decorrelated`, `min(maxDelay, random_between(delay, previous × 3))` (ignores `backoff`).
   * @default 'full'
   */
  jitter?: JitterKind;
  /** Only errors matching one of these are retried. @default every error */
  retryOn?: ErrorMatcher | ErrorMatcher[];
  /** Errors matching one of these are never retried (checked before `retryOn`). */
  abortOn?: ErrorMatcher | ErrorMatcher[];
  /** Honour a delay the error carries (`retryAfterMs`, or `retryAfter` in seconds or as a Date), up to `maxDelay`. @default true */
  honorRetryAfter?: boolean;
  /** Also retry our own refusals (open circuit, rate limit, full bulkhead). @default false */
  retryRejections?: boolean;
  /**
   * A retry budget: every call deposits into it and every retry withdraws one token; when it is
   * empty the retry gives up (reason `'budget'`), rethrowing the last error. Give a budget to share
   * it (with other retries, with hedges), or its options for one of this policy's own.
   * @default no budget
   */
  budget?: RetryBudgetInstance | RetryBudgetOptions;
}
