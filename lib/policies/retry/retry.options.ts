import type { Duration } from '../../core/duration.js';
import type { ErrorMatcher } from '../../core/matchers.js';

/** How the delay between attempts grows. */
export type BackoffKind = 'constant' | 'linear' | 'exponential';
/** How the delay is randomised (AWS's terms). */
export type JitterKind = 'none' | 'full' | 'equal' | 'decorrelated';

/** Options of a retry policy. */
export interface RetryOptions {
  /** Attempts in all, the first one included: `maxAttempts: 3` means up to 2 retries. @default 3 */
  maxAttempts?: number;
  /** @default 'exponential' */
  backoff?: BackoffKind;
  /** The base delay: the first retry's delay before jitter. @default '100ms' */
  delay?: Duration;
  /** Exponential growth factor. @default 2 */
  multiplier?: number;
  /** The longest delay between two attempts. @default '30s' */
  maxDelay?: Duration;
  /** @default 'full' */
  jitter?: JitterKind;
  /** Only errors matching one of these are retried. @default every error */
  retryOn?: ErrorMatcher | ErrorMatcher[];
  /** Errors matching one of these are never retried (checked before `retryOn`). */
  abortOn?: ErrorMatcher | ErrorMatcher[];
  /** Honour a delay the error carries (`retryAfterMs`, or `retryAfter` in seconds or as a Date), up to `maxDelay`. @default true */
  honorRetryAfter?: boolean;
  /** Also retry our own refusals (open circuit, rate limit, full bulkhead). @default false */
  retryRejections?: boolean;
}
