import type { PolicyMode } from '../../core/dependencies.js';
import type { Duration } from '../../core/duration.js';
import type { ErrorMatcher } from '../../core/matchers.js';

/** The states of a circuit breaker. */
export type CircuitState = 'CLOSED' | 'OPEN' | 'HALF_OPEN' | 'FORCED_OPEN' | 'DISABLED';

/** Options of a circuit breaker. Every field is optional; defaults follow Resilience4j's. */
export interface CircuitBreakerOptions {
  /** Name used in events, errors and metrics. @default 'default' */
  name?: string;
  /** `'shadow'` records and emits as usual but never rejects a call. @default 'enforce' */
  mode?: PolicyMode;
  /** `'count'`: the last `windowSize` calls; `'time'`: the calls of the last `windowSize` duration. @default 'count' */
  windowType?: 'count' | 'time';
  /** Calls (count window) or a duration (time window). @default 100 calls, or '60s' for a time window */
  windowSize?: number | Duration;
  /** Buckets of a time window (its resolution). @default 10 */
  windowBuckets?: number;
  /** Calls the window must hold before rates are evaluated. @default 10 */
  minimumCalls?: number;
  /** Failure rate (percent, above 0 and at most 100) at or above which the circuit opens. @default 50 */
  failureRateThreshold?: number;
  /** Slow-call rate (percent, above 0 and at most 100) at or above which the circuit opens. @default 100 */
  slowCallRateThreshold?: number;
  /** A call slower than this is slow, whether it succeeds or fails. @default '60s' */
  slowCallDuration?: Duration;
  /** Consecutive-failures mode: open after this many failures in a row (rates are then not used). */
  consecutiveFailures?: number;
  /** How long the circuit stays open before probing. @default '30s' */
  openDuration?: Duration;
  /** Probes admitted in HALF_OPEN, exactly, even when calls arrive concurrently. @default 1 */
  halfOpenMaxCalls?: number;
  /** A probe that has not settled after this long counts as failed and frees HALF_OPEN. @default openDuration */
  probeTimeout?: Duration;
  /** Which errors count as failures. @default every error except those carrying an HTTP status 400–499 */
  isFailure?: (error: unknown) => boolean;
  /** Errors that count as neither success nor failure (classes or predicates). */
  ignore?: ErrorMatcher | ErrorMatcher[];
}
