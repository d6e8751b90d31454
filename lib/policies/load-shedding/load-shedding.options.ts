import type { Duration } from '../../core/duration.js';

/**
 * Options of the application's overload detector. The detector reads the event-loop delay every
 * `sampleInterval` and sets an overload level from it: above `eventLoopDelay` it is 1 and sheds
 * `'low'` calls (priority below 1), above twice that 2 and also sheds `'normal'` ones (below 2),
 * above four times that 3 and sheds everything below `'critical'`. Calls of priority 3 or more
 * are never shed. The level rises at once and falls by one step per sample, so a single quiet
 * sample right after shedding began does not let every call back in at once.
 */
export interface LoadSheddingOptions {
  /**
   * The event-loop delay (the 99th percentile over one sample window) above which calls are
   * shed: the first of the three thresholds, the others being twice and four times it.
   * @default '100ms'
   */
  eventLoopDelay?: Duration;
  /** How often the delay is read and the level updated (at least 1 ms). @default '500ms' */
  sampleInterval?: Duration;
  /** The `Retry-After` of a shed call (`retryAfterMs` of its `LoadShedError`). @default '1s' */
  retryAfter?: Duration;
  /**
   * Where the delay comes from: a function returning the current delay in milliseconds, read once
   * per sample (tests, or another overload signal such as a queue length scaled to milliseconds).
   * A reading that is not a finite number ≥ 0, or a throw, leaves the level as it is.
   * @default the 99th percentile of `perf_hooks.monitorEventLoopDelay` over the sample window
   */
  delaySource?: () => number;
}
