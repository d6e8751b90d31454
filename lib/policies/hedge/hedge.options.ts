import type { Duration } from '../../core/duration.js';
import type { RetryBudgetInstance, RetryBudgetOptions } from '../retry/retry-budget.js';

/** A hedging delay that follows the latency of recent successful attempts. */
export interface HedgePercentileDelay {
  /** The latency percentile of recent successes after which another attempt starts, above 0 and at most 100. */
  percentile: number;
  /** The shortest delay, whatever the percentile says. @default 0 */
  minDelay?: Duration;
  /**
   * The longest delay, whatever the percentile says; also the delay used until 10 successes (or
   * `sampleSize`, if fewer) have been seen.
   * @default '1s'
   */
  maxDelay?: Duration;
  /** How many of the latest successful attempts the percentile is taken over (an integer ≥ 1). @default 100 */
  sampleSize?: number;
}

/** Options of a hedge policy. */
export interface HedgeOptions {
  /**
   * How long an attempt may go unanswered before another one starts: a fixed duration, or a
   * percentile of the latency of recent successful attempts (see {@link HedgePercentileDelay}).
   * @default { percentile: 95 }
   */
  delay?: Duration | HedgePercentileDelay;
  /** Extra attempts a call may start, besides the first (an integer ≥ 1). @default 1 */
  maxHedges?: number;
  /**
   * A retry budget every hedge withdraws a token from (a refused hedge is not started, the call
   * keeps waiting for the attempts already running); every call deposits into it. Give a budget
   * to share it, or its options for one of this policy's own.
   * @default no budget
   */
  budget?: RetryBudgetInstance | RetryBudgetOptions;
}
