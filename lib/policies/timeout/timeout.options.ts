import type { Duration } from '../../core/duration.js';

/** Options of a timeout policy. */
export interface TimeoutOptions {
  /** The time allowed to each call (each attempt, under a retry). At most 2³¹−1 ms. */
  duration: Duration;
}
